//! `ticketd backup` and `ticketd restore` on a desk: a consistent copy of
//! a running desk, and a restore through its writer. The file's format is
//! [`crate::archive`]'s.
//!
//! Consistency: the tables are copied inside the desk's writer
//! ([`Job::Backup`](super::writer)), after committing what it holds and
//! before it takes the next request, so the copy is one committed state
//! however busy the desk is. They are spooled to files next to the store
//! and the writer goes on while the archive is written: blobs are
//! immutable and content-addressed, so copying them afterwards is safe as
//! long as none is deleted meanwhile — retention waits while a copy runs
//! ([`BlobCopy`]). Mail arriving meanwhile may add blobs no record names;
//! they are harmless. The `running` marker is left out (a restored desk
//! has not crashed).
//!
//! Restore goes into an empty store only. The file is read twice: first
//! every checksum is verified, then records and blobs are written, under a
//! `restoring` marker that keeps a desk from starting on a half-restored
//! store.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::writer::Job;
use super::{Desk, DeskError};
use crate::archive::{self, ArchiveError, BackupSummary, Item, Origin, SpooledTable, TableWriter, io_err};
use crate::store::{BlobKind, Get, Scan, Store, StoreError, Table, WriteSet, keys};

/// Set while a restore writes; a desk refuses to start on such a store.
pub const RESTORING: &[u8] = b"restoring";
/// Limits of one restore commit.
const COMMIT_OPS: usize = 5000;
const COMMIT_BYTES: usize = 16 << 20;
/// The writer tells the watchdog it is still making progress this often.
const BUSY_EVERY: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Desk(#[from] DeskError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store is not empty ({why}): restore only into a new store; move {} and the attachments directory aside first", .path.display())]
    NotEmpty { why: String, path: PathBuf },
    #[error(
        "a restore into this store did not finish: delete {} and the attachments directory, then restore again",
        .0.display()
    )]
    Unfinished(PathBuf),
    #[error("{}", untrusted_text(*.origin, *.has_secret))]
    Untrusted { origin: Origin, has_secret: bool },
}

fn untrusted_text(origin: Origin, has_secret: bool) -> String {
    let why = match (origin, has_secret) {
        (Origin::Unsigned, _) => "the backup is not signed (made by an older ticketd)",
        (_, false) => "this desk has no desk.secret_file to check the backup's signature with",
        _ => "the backup is signed with another desk's secret",
    };
    format!(
        "{why}: restore it only if you know where it came from, with --trust (a restored desk sends mail from your support address)"
    )
}

/// While alive, a backup is copying blobs: nothing may delete one.
pub struct BlobCopy(Arc<AtomicUsize>);

impl BlobCopy {
    pub(super) fn start(copies: &Arc<AtomicUsize>) -> BlobCopy {
        copies.fetch_add(1, Ordering::SeqCst);
        BlobCopy(copies.clone())
    }
}

impl Drop for BlobCopy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The tables of one committed state, and the promise that its blobs stay.
pub struct Snapshot {
    created: DateTime<Utc>,
    tables: Vec<SpooledTable>,
    _copy: BlobCopy,
}

/// Copies every table to `dir`. The writer runs it between two commits, so
/// no commit comes between two tables: one committed state.
pub(super) fn snapshot(
    store: &Store,
    health: &crate::health::Health,
    blob_copies: &Arc<AtomicUsize>,
    dir: &Path,
) -> Result<Snapshot, BackupError> {
    let copy = BlobCopy::start(blob_copies);
    let created = Utc::now().trunc_subsecs(0);
    let mut tables = Vec::new();
    let mut seen = 0u64;
    for table in Table::ALL.iter().copied() {
        let mut w = TableWriter::create(table, dir.join(format!("{}.jsonl", table.name())))?;
        for item in store.backend().scan(table, Scan::default()) {
            let (k, v) = item?;
            if table == Table::Meta && k == keys::RUNNING {
                continue;
            }
            w.push(&k, &v)?;
            seen += 1;
            if seen.is_multiple_of(BUSY_EVERY) {
                health.writer_busy(true);
            }
        }
        tables.push(w.finish()?);
    }
    Ok(Snapshot { created, tables, _copy: copy })
}

const SPOOL_PREFIX: &str = ".ticketd-backup-";

fn spool_parent(store_path: &Path) -> &Path {
    store_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Where a snapshot's tables wait while the archive is written: a private
/// (0700) directory next to the store (the service may write there), else
/// in the temp directory. Removed when the backup ends, and at the next
/// start if a killed backup left one behind ([`clean_spools`]).
fn spool_dir(store_path: &Path) -> Result<tempfile::TempDir, BackupError> {
    tempfile::Builder::new()
        .prefix(SPOOL_PREFIX)
        .tempdir_in(spool_parent(store_path))
        .or_else(|_| tempfile::Builder::new().prefix(&SPOOL_PREFIX[1..]).tempdir())
        .map_err(|e| io_err("creating the backup spool directory")(e).into())
}

/// Removes what killed backups left beside the store: a copy of every
/// table. Only while this process holds the store, so no backup of its own
/// runs yet.
pub fn clean_spools(store_path: &Path) {
    let Ok(entries) = std::fs::read_dir(spool_parent(store_path)) else { return };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let is_spool = name.to_string_lossy().starts_with(SPOOL_PREFIX);
        // Never follow a symlink someone put there.
        if is_spool && e.file_type().is_ok_and(|t| t.is_dir()) {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => tracing::info!(path = %e.path().display(), "removed the spool of an interrupted backup"),
                Err(err) => {
                    tracing::warn!(path = %e.path().display(), error = %err, "cannot remove an old backup spool")
                }
            }
        }
    }
}

impl Desk {
    /// Writes a backup of the whole desk to `out` (see the module note) and
    /// hands `out` back for the caller to sync or close. The HTTP API can
    /// stream a response through this.
    pub async fn backup<W: Write + Send + 'static>(&self, out: W) -> Result<(BackupSummary, W), BackupError> {
        let spool = spool_dir(&self.config().store.path)?;
        let dir = spool.path().to_owned();
        let snap = self.ask(|reply| Job::Backup { dir, reply }).await??;
        let store = self.store().clone();
        let secret = self.secret().to_vec();
        tokio::task::spawn_blocking(move || {
            let r = archive::write_archive(&store, snap.created, &snap.tables, &secret, out).map_err(BackupError::from);
            drop(spool);
            r
        })
        .await
        .map_err(|e| BackupError::Desk(DeskError::Store(format!("the backup task failed: {e}"))))?
    }
}

/// `ticketd backup FILE`: the archive is written beside FILE (mode 0600:
/// it holds mail and the desk's secret), synced, then renamed over it, so
/// FILE is always a whole backup.
pub async fn backup_to_file(desk: &Desk, file: &Path) -> Result<BackupSummary, BackupError> {
    let (partial, f) =
        archive::create_partial(file).map_err(io_err(format!("creating a file beside {}", file.display())))?;
    let finish = async {
        let (summary, w) = desk.backup(io::BufWriter::with_capacity(1 << 20, f)).await?;
        let f = w.into_inner().map_err(|e| io_err(format!("writing {}", partial.display()))(e.into_error()))?;
        f.sync_all().map_err(io_err(format!("syncing {}", partial.display())))?;
        std::fs::rename(&partial, file).map_err(io_err(format!("renaming to {}", file.display())))?;
        if let Some(dir) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(summary)
    };
    let r = finish.await;
    if r.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    r
}

/// Why `store` is not empty, if it is not. A fresh store may hold a
/// generated secret (the backup's replaces it) and nothing else.
fn why_not_empty(store: &Store) -> Result<Option<String>, BackupError> {
    for table in Table::ALL.iter().copied().filter(|t| *t != Table::Meta) {
        let n = store.backend().count(table)?;
        if n > 0 {
            return Ok(Some(format!("{n} record(s) in table {}", table.name())));
        }
    }
    for item in store.backend().scan(Table::Meta, Scan::default()) {
        let (k, _) = item?;
        // What a fresh desk writes for itself on its first start.
        if ![keys::SECRET, keys::RUNNING, keys::ATTACHMENT_INDEX, keys::SUMMARY_INDEX, keys::FORMAT].contains(&&k[..]) {
            return Ok(Some(format!("meta key {:?}", String::from_utf8_lossy(&k))));
        }
    }
    for kind in archive::KINDS {
        if store.backend().blobs(kind).next().transpose()?.is_some() {
            return Ok(Some(format!("{} blobs", archive::kind_name(kind))));
        }
    }
    Ok(None)
}

/// Whether a restore into this store was started and not finished.
pub fn unfinished(store: &Store) -> Result<bool, StoreError> {
    Ok(store.get(Table::Meta, RESTORING)?.is_some())
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSummary {
    pub records: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    #[serde(with = "crate::ticket::rfc3339")]
    pub created: DateTime<Utc>,
}

/// Hands a restore's writes to the desk's writer in bounded pieces.
struct Batcher<'d> {
    desk: &'d Desk,
    w: WriteSet,
    bytes: usize,
}

impl Batcher<'_> {
    fn put(&mut self, table: Table, k: Vec<u8>, v: Vec<u8>) -> Result<(), BackupError> {
        self.bytes += k.len() + v.len();
        self.w.put(table, k, v);
        if self.w.ops.len() >= COMMIT_OPS || self.bytes >= COMMIT_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    fn put_blob(&mut self, kind: BlobKind, sha256: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        self.bytes += bytes.len();
        self.w.put_blob(kind, sha256, bytes);
        if self.bytes >= COMMIT_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), BackupError> {
        self.desk.load_blocking(std::mem::take(&mut self.w))?;
        self.bytes = 0;
        Ok(())
    }
}

/// Restores `file` into `store`, which must be empty (`store_path` names it
/// in errors). Nothing else may use the store meanwhile.
/// `secret` is this desk's (`desk.secret_file`), if it has one to check
/// with; a backup not signed under it is refused unless `trust` says the
/// admin knows where it came from: a consistent archive anyone can forge,
/// and a restored desk sends mail from the support address.
///
/// Through `desk`'s writer, like every write: call it on the blocking pool
/// of a desk opened on the empty store (nothing else uses it meanwhile).
pub fn restore(desk: &Desk, file: &Path, secret: Option<&[u8]>, trust: bool) -> Result<RestoreSummary, BackupError> {
    let store = desk.store();
    let store_path = &desk.config().store.path;
    if let Some(why) = why_not_empty(store)? {
        return Err(BackupError::NotEmpty { why, path: store_path.to_owned() });
    }
    let manifest = archive::verify(file)?;
    let origin = manifest.origin(secret);
    if origin != Origin::Ours && !trust {
        return Err(BackupError::Untrusted { origin, has_secret: secret.is_some() });
    }
    let mut b = Batcher { desk, w: WriteSet::default(), bytes: 0 };
    b.w.put(Table::Meta, RESTORING, vec![1]);
    b.commit()?;
    let mut indexed = false;
    let mut summarised = false;
    archive::replay(file, |item| match item {
        Item::Record(Table::Meta, k, _) if k == RESTORING => Ok(()),
        Item::Record(table, k, v) => {
            if table == Table::Meta && k == keys::FORMAT {
                // From a newer ticketd: refused here, not misread later.
                super::migrate::readable(&v)?;
            }
            indexed |= table == Table::Meta && k == keys::ATTACHMENT_INDEX;
            summarised |= table == Table::Meta && k == keys::SUMMARY_INDEX;
            b.put(table, k, v)
        }
        Item::Blob(kind, name, bytes) => b.put_blob(kind, &name, bytes),
    })?;
    b.w.delete(Table::Meta, RESTORING);
    if !indexed {
        // A backup from before the attachment index: built at the next start.
        b.w.delete(Table::Meta, keys::ATTACHMENT_INDEX);
    }
    if !summarised {
        // A backup from before ticket summaries: built at the next start.
        b.w.delete(Table::Meta, keys::SUMMARY_INDEX);
    }
    b.commit()?;
    Ok(RestoreSummary {
        records: manifest.records(),
        blobs: manifest.blob_count(),
        blob_bytes: manifest.blob_bytes(),
        created: manifest.created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spools_of_killed_backups_are_removed_and_symlinks_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("db");
        let stale = d.path().join(".ticketd-backup-abc");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("tickets.jsonl"), "a copy of every ticket").unwrap();
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("x"), "keep").unwrap();
        std::os::unix::fs::symlink(&elsewhere, d.path().join(".ticketd-backup-link")).unwrap();
        clean_spools(&store);
        assert!(!stale.exists());
        assert_eq!(std::fs::read_to_string(elsewhere.join("x")).unwrap(), "keep");
    }
}
