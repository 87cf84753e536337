//! `ticketd backup` and `ticketd restore`: the whole desk in one file.
//!
//! A backup is a tar archive (inspect it with `tar tvf`) of:
//!
//! ```text
//! ticketd-backup              "ticketd backup, format 1": always first
//! tables/<table>.jsonl        every record of one table, in key order
//! blobs/raw/<sha256>          each original mail, byte for byte
//! blobs/attachment/<sha256>   each attachment
//! manifest.json               always last: format, counts, SHA-256 per table
//! ```
//!
//! A table line is `{"k":…,"v":…}`: key and value as text when they are
//! UTF-8 without control characters, else as hex under `kx`/`vx`, so every
//! byte comes back as it was. The `running` marker is left out (a restored
//! desk has not crashed). Blobs are named by the SHA-256 of their content
//! and checked against it; the manifest lists the exceptions (stores from
//! before content addressing). A file without its manifest was cut off.
//!
//! Consistency: the tables are copied inside the desk's writer
//! ([`Job::Backup`](super::writer)), after committing what it holds and
//! before it takes the next request, so the copy is one committed state
//! however busy the desk is. They are spooled to files next to the store
//! and the writer goes on while the archive is written: blobs are
//! immutable and content-addressed, so copying them afterwards is safe as
//! long as none is deleted meanwhile — retention waits while a copy runs
//! ([`BlobCopy`]). Mail arriving meanwhile may add blobs no record names;
//! they are harmless.
//!
//! Restore goes into an empty store only. The file is read twice: first
//! every checksum is verified, then records and blobs are written, under a
//! `restoring` marker that keeps a desk from starting on a half-restored
//! store.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::writer::Job;
use super::{Desk, DeskError};
use crate::store::{BlobKind, Get, Scan, Store, StoreError, Table, WriteSet, keys};

pub const FORMAT: u32 = 1;
const MAGIC: &str = "ticketd-backup";
const MANIFEST: &str = "manifest.json";
/// Set while a restore writes; a desk refuses to start on such a store.
pub const RESTORING: &[u8] = b"restoring";
/// Longest record a restore accepts (a ticket holds whole mail bodies).
const MAX_RECORD: usize = 1 << 30;
/// Limits of one restore commit.
const COMMIT_OPS: usize = 5000;
const COMMIT_BYTES: usize = 16 << 20;
/// The writer tells the watchdog it is still making progress this often.
const BUSY_EVERY: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Desk(#[from] DeskError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0} is not a ticketd backup")]
    NotABackup(String),
    #[error("the backup was made by a newer ticketd (format {0}; this ticketd reads format {FORMAT})")]
    Newer(u32),
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("the backup is incomplete (no manifest at its end): it was cut off while being written or copied")]
    Incomplete,
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

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    pub table: String,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    pub kind: String,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    #[serde(with = "crate::ticket::rfc3339")]
    pub created: DateTime<Utc>,
    pub ticketd_version: String,
    pub tables: Vec<TableEntry>,
    pub blobs: Vec<BlobEntry>,
    /// Entry → SHA-256 of its content, for blobs not named by theirs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    /// SHA-256 of the blob entries' paths, one per line in archive order:
    /// with the tables' digests, the whole archive is named in here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_list_sha256: Option<String>,
    /// HMAC-SHA256 under the desk secret of this manifest without the
    /// signature (see [`Manifest::signed_bytes`]): who made the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// What a backup's signature says about where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Signed under the secret at hand: made by this desk (or one sharing its secret).
    Ours,
    /// Signed under another secret, or not checked because no secret was at hand.
    Foreign,
    /// No signature (made by a ticketd from before signing).
    Unsigned,
}

/// Largest single entry a restore reads (a blob, the manifest): an archive
/// may claim anything in its headers.
const MAX_ENTRY: u64 = 1 << 30;

impl Manifest {
    /// What the signature covers: this manifest, signature left out.
    fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&Manifest { signature: None, ..self.clone() }).expect("a manifest serialises")
    }

    fn sign(&mut self, secret: &[u8]) {
        self.signature = Some(mac(secret, &self.signed_bytes()));
    }

    /// Whether the signature holds under `secret`.
    pub fn origin(&self, secret: Option<&[u8]>) -> Origin {
        use subtle::ConstantTimeEq;
        match (&self.signature, secret) {
            (None, _) => Origin::Unsigned,
            (Some(sig), Some(secret))
                if bool::from(mac(secret, &self.signed_bytes()).as_bytes().ct_eq(sig.as_bytes())) =>
            {
                Origin::Ours
            }
            (Some(_), _) => Origin::Foreign,
        }
    }

    pub fn records(&self) -> u64 {
        self.tables.iter().map(|t| t.records).sum()
    }

    pub fn blob_count(&self) -> u64 {
        self.blobs.iter().map(|b| b.count).sum()
    }

    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.bytes).sum()
    }
}

fn mac(secret: &[u8], bytes: &[u8]) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"ticketd backup manifest 1\n");
    m.update(bytes);
    hex::encode(m.finalize().into_bytes())
}

fn kind_name(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Raw => "raw",
        BlobKind::Attachment => "attachment",
    }
}

const KINDS: [BlobKind; 2] = [BlobKind::Raw, BlobKind::Attachment];

fn table_named(name: &str) -> Option<Table> {
    Table::ALL.iter().copied().find(|t| t.name() == name)
}

/// One record of a table, losslessly.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kx: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vx: Option<String>,
}

/// Text when that reads back as the same bytes and is readable; else hex.
fn encode(b: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(char::is_control) => (Some(s.to_owned()), None),
        _ => (None, Some(hex::encode(b))),
    }
}

fn decode(text: Option<String>, hex_form: Option<String>, what: &str) -> Result<Vec<u8>, String> {
    match (text, hex_form) {
        (Some(s), None) => Ok(s.into_bytes()),
        (None, Some(x)) => hex::decode(x).map_err(|e| format!("{what}: bad hex: {e}")),
        _ => Err(format!("{what}: needs exactly one of its text or hex form")),
    }
}

impl Line {
    fn of(k: &[u8], v: &[u8]) -> Line {
        let (k, kx) = encode(k);
        let (v, vx) = encode(v);
        Line { k, kx, v, vx }
    }

    fn into_pair(self) -> Result<(Vec<u8>, Vec<u8>), String> {
        Ok((decode(self.k, self.kx, "key")?, decode(self.v, self.vx, "value")?))
    }
}

/// Counts and hashes what passes through.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
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

/// A table copied to the spool.
pub(super) struct Spooled {
    table: Table,
    path: PathBuf,
    entry: TableEntry,
}

/// The tables of one committed state, and the promise that its blobs stay.
pub struct Snapshot {
    created: DateTime<Utc>,
    tables: Vec<Spooled>,
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
        let path = dir.join(format!("{}.jsonl", table.name()));
        let what = format!("spooling table {} to {}", table.name(), path.display());
        let file = std::fs::File::create(&path).map_err(io_err(what.clone()))?;
        let mut w = Hashing { inner: io::BufWriter::new(file), sha: Sha256::new(), bytes: 0 };
        let mut records = 0;
        for item in store.backend().scan(table, Scan::default()) {
            let (k, v) = item?;
            if table == Table::Meta && k == keys::RUNNING {
                continue;
            }
            serde_json::to_writer(&mut w, &Line::of(&k, &v)).map_err(|e| io_err(what.clone())(e.into()))?;
            w.write_all(b"\n").map_err(io_err(what.clone()))?;
            records += 1;
            seen += 1;
            if seen.is_multiple_of(BUSY_EVERY) {
                health.writer_busy(true);
            }
        }
        w.flush().map_err(io_err(what))?;
        let entry = TableEntry {
            table: table.name().to_owned(),
            records,
            bytes: w.bytes,
            sha256: hex::encode(w.sha.finalize()),
        };
        tables.push(Spooled { table, path, entry });
    }
    Ok(Snapshot { created, tables, _copy: copy })
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub records: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

fn header(size: u64, mtime: DateTime<Utc>) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime.timestamp().max(0) as u64);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn write_archive<W: Write>(
    store: &Store,
    snap: Snapshot,
    secret: &[u8],
    out: W,
) -> Result<(BackupSummary, W), BackupError> {
    let writing = || io_err("writing the backup");
    let mut tar = tar::Builder::new(out);
    let magic = format!("ticketd backup, format {FORMAT}\n");
    tar.append_data(&mut header(magic.len() as u64, snap.created), MAGIC, magic.as_bytes()).map_err(writing())?;
    let mut manifest = Manifest {
        format: FORMAT,
        created: snap.created,
        ticketd_version: env!("CARGO_PKG_VERSION").to_owned(),
        tables: Vec::new(),
        blobs: Vec::new(),
        checksums: BTreeMap::new(),
        blob_list_sha256: None,
        signature: None,
    };
    let mut blob_list = Sha256::new();
    for t in &snap.tables {
        let file = std::fs::File::open(&t.path).map_err(io_err(format!("reading the spool {}", t.path.display())))?;
        let name = format!("tables/{}.jsonl", t.table.name());
        tar.append_data(&mut header(t.entry.bytes, snap.created), &name, io::BufReader::new(file)).map_err(writing())?;
        manifest.tables.push(t.entry.clone());
    }
    for kind in KINDS {
        let mut entry = BlobEntry { kind: kind_name(kind).to_owned(), count: 0, bytes: 0 };
        for item in store.backend().blobs(kind) {
            let (name, _) = item?;
            // Gone since it was listed: only an admin's hand does that.
            let Some(bytes) = store.backend().get_blob(kind, &name)? else { continue };
            let path = format!("blobs/{}/{name}", kind_name(kind));
            let sha = hex::encode(Sha256::digest(&bytes));
            if sha != name {
                manifest.checksums.insert(path.clone(), sha);
            }
            blob_list.update(format!("{path}\n").as_bytes());
            tar.append_data(&mut header(bytes.len() as u64, snap.created), &path, bytes.as_slice())
                .map_err(writing())?;
            entry.count += 1;
            entry.bytes += bytes.len() as u64;
        }
        manifest.blobs.push(entry);
    }
    manifest.blob_list_sha256 = Some(hex::encode(blob_list.finalize()));
    manifest.sign(secret);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| writing()(e.into()))?;
    tar.append_data(&mut header(json.len() as u64, snap.created), MANIFEST, json.as_slice()).map_err(writing())?;
    let out = tar.into_inner().map_err(writing())?;
    let summary =
        BackupSummary { records: manifest.records(), blobs: manifest.blob_count(), blob_bytes: manifest.blob_bytes() };
    Ok((summary, out))
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
        .map_err(io_err("creating the backup spool directory"))
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

/// A file next to `file` that did not exist before and is nobody else's:
/// created new (`O_EXCL`: a symlink or file planted under the name is never
/// followed or reused), mode 0600, under a random name.
pub fn create_partial(file: &Path) -> io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
    for _ in 0..16 {
        let partial = file.with_file_name(format!(".{name}.{}.partial", hex::encode(rand::random::<[u8; 6]>())));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&partial)
        {
            Ok(f) => return Ok((partial, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free name for the partial file"))
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
            let r = write_archive(&store, snap, &secret, out);
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
    let (partial, f) = create_partial(file).map_err(io_err(format!("creating a file beside {}", file.display())))?;
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

fn open_archive(file: &Path) -> Result<tar::Archive<io::BufReader<std::fs::File>>, BackupError> {
    let f = std::fs::File::open(file).map_err(io_err(format!("opening {}", file.display())))?;
    Ok(tar::Archive::new(io::BufReader::with_capacity(1 << 20, f)))
}

fn damaged(e: io::Error) -> BackupError {
    BackupError::Damaged(e.to_string())
}

/// What an entry is.
enum Part {
    Magic,
    Table(Table),
    Blob(BlobKind, String),
    Manifest,
}

fn part_of(path: &str) -> Result<Part, BackupError> {
    if path == MAGIC {
        return Ok(Part::Magic);
    }
    if path == MANIFEST {
        return Ok(Part::Manifest);
    }
    if let Some(name) = path.strip_prefix("tables/").and_then(|p| p.strip_suffix(".jsonl"))
        && let Some(t) = table_named(name)
    {
        return Ok(Part::Table(t));
    }
    for kind in KINDS {
        if let Some(name) = path.strip_prefix(&format!("blobs/{}/", kind_name(kind)))
            && !name.is_empty()
            && !name.contains('/')
            && name != "."
            && name != ".."
        {
            return Ok(Part::Blob(kind, name.to_owned()));
        }
    }
    Err(BackupError::Damaged(format!("unexpected entry {path:?}")))
}

fn entry_path<R: Read>(e: &tar::Entry<'_, R>) -> Result<String, BackupError> {
    Ok(e.path().map_err(damaged)?.to_string_lossy().into_owned())
}

fn check_magic<R: Read>(e: &mut tar::Entry<'_, R>, file: &Path) -> Result<(), BackupError> {
    let mut text = String::new();
    e.take(256).read_to_string(&mut text).map_err(damaged)?;
    let format = text
        .trim()
        .strip_prefix("ticketd backup, format ")
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| BackupError::NotABackup(file.display().to_string()))?;
    if format > FORMAT {
        return Err(BackupError::Newer(format));
    }
    Ok(())
}

/// Reads the whole file and checks it against its manifest: every table
/// (bytes, records, SHA-256), every blob (its content against its name),
/// the counts. Writes nothing.
pub fn verify(file: &Path) -> Result<Manifest, BackupError> {
    let mut archive = open_archive(file)?;
    let mut tables: BTreeMap<String, TableEntry> = BTreeMap::new();
    let mut blobs: BTreeMap<&'static str, BlobEntry> = BTreeMap::new();
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let mut first = true;
    let mut blob_list = Sha256::new();
    let entries = archive.entries().map_err(|_| BackupError::NotABackup(file.display().to_string()))?;
    for e in entries {
        let mut e =
            e.map_err(|err| if first { BackupError::NotABackup(file.display().to_string()) } else { damaged(err) })?;
        let path = entry_path(&e)?;
        check_entry(&e, &path)?;
        if manifest.is_some() {
            return Err(BackupError::Damaged(format!("entry {path:?} after the manifest")));
        }
        let part = part_of(&path);
        if first {
            if !matches!(part, Ok(Part::Magic)) {
                return Err(BackupError::NotABackup(file.display().to_string()));
            }
            check_magic(&mut e, file)?;
            first = false;
            continue;
        }
        match part? {
            Part::Magic => return Err(BackupError::Damaged("a second format entry".into())),
            Part::Table(t) => {
                let mut w = Hashing { inner: LineCount(0), sha: Sha256::new(), bytes: 0 };
                io::copy(&mut e, &mut w).map_err(damaged)?;
                let entry = TableEntry {
                    table: t.name().to_owned(),
                    records: w.inner.0,
                    bytes: w.bytes,
                    sha256: hex::encode(w.sha.finalize()),
                };
                if tables.insert(t.name().to_owned(), entry).is_some() {
                    return Err(BackupError::Damaged(format!("table {} twice", t.name())));
                }
            }
            Part::Blob(kind, name) => {
                let mut w = Hashing { inner: io::sink(), sha: Sha256::new(), bytes: 0 };
                io::copy(&mut e, &mut w).map_err(damaged)?;
                let sha = hex::encode(w.sha.finalize());
                if sha != name {
                    // A name that is a SHA-256 is a promise about the content:
                    // no manifest entry excuses breaking it.
                    if crate::store::is_sha256_name(&name) {
                        return Err(BackupError::Damaged(format!("{path}: its content does not match its name")));
                    }
                    renamed.insert(path.clone(), sha);
                }
                blob_list.update(format!("{path}\n").as_bytes());
                let b = blobs.entry(kind_name(kind)).or_insert_with(|| BlobEntry {
                    kind: kind_name(kind).to_owned(),
                    count: 0,
                    bytes: 0,
                });
                b.count += 1;
                b.bytes += w.bytes;
            }
            Part::Manifest => {
                let mut json = Vec::new();
                e.take(64 << 20).read_to_end(&mut json).map_err(damaged)?;
                let m: Manifest = serde_json::from_slice(&json)
                    .map_err(|err| BackupError::Damaged(format!("the manifest does not parse: {err}")))?;
                manifest = Some(m);
            }
        }
    }
    if first {
        return Err(BackupError::NotABackup(file.display().to_string()));
    }
    let m = manifest.ok_or(BackupError::Incomplete)?;
    if m.format > FORMAT {
        return Err(BackupError::Newer(m.format));
    }
    for want in &m.tables {
        match tables.remove(&want.table) {
            Some(got) if got == *want => {}
            Some(got) => {
                return Err(BackupError::Damaged(format!(
                    "table {}: {} record(s), {} bytes, SHA-256 {} where the manifest says {}, {}, {}",
                    want.table, got.records, got.bytes, got.sha256, want.records, want.bytes, want.sha256
                )));
            }
            None => return Err(BackupError::Damaged(format!("table {} is missing", want.table))),
        }
    }
    if let Some(extra) = tables.keys().next() {
        return Err(BackupError::Damaged(format!("table {extra} is not in the manifest")));
    }
    for want in &m.blobs {
        let got = blobs.remove(want.kind.as_str()).unwrap_or(BlobEntry { kind: want.kind.clone(), count: 0, bytes: 0 });
        if got != *want {
            return Err(BackupError::Damaged(format!(
                "{} blobs: {} ({} bytes) where the manifest says {} ({} bytes)",
                want.kind, got.count, got.bytes, want.count, want.bytes
            )));
        }
    }
    if let Some(extra) = blobs.keys().next() {
        return Err(BackupError::Damaged(format!("{extra} blobs are not in the manifest")));
    }
    for (path, sha) in &renamed {
        if m.checksums.get(path) != Some(sha) {
            return Err(BackupError::Damaged(format!("{path}: its content does not match its checksum")));
        }
    }
    if let Some(want) = &m.blob_list_sha256
        && *want != hex::encode(blob_list.finalize())
    {
        return Err(BackupError::Damaged("the blobs are not the ones the manifest lists".into()));
    }
    if m.signature.is_some() && m.blob_list_sha256.is_none() {
        return Err(BackupError::Damaged("a signed manifest without its list of blobs".into()));
    }
    Ok(m)
}

/// Only plain files of believable size: a GNU sparse entry of 3 GiB in a
/// 37 KB file, a link or a device is never a ticketd backup's.
fn check_entry<R: Read>(e: &tar::Entry<'_, R>, path: &str) -> Result<(), BackupError> {
    let h = e.header();
    if h.entry_type() != tar::EntryType::Regular {
        return Err(BackupError::Damaged(format!(
            "{path}: a {:?} entry (only plain files belong here)",
            h.entry_type()
        )));
    }
    let size = h.size().map_err(damaged)?;
    if size > MAX_ENTRY {
        return Err(BackupError::Damaged(format!("{path}: {size} bytes, over the {MAX_ENTRY} an entry may hold")));
    }
    Ok(())
}

/// Counts lines; discards the bytes.
struct LineCount(u64);

impl Write for LineCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += memchr::memchr_iter(b'\n', buf).count() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
        if k != keys::SECRET && k != keys::RUNNING && k != keys::ATTACHMENT_INDEX && k != keys::SUMMARY_INDEX {
            return Ok(Some(format!("meta key {:?}", String::from_utf8_lossy(&k))));
        }
    }
    for kind in KINDS {
        if store.backend().blobs(kind).next().transpose()?.is_some() {
            return Ok(Some(format!("{} blobs", kind_name(kind))));
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
    let manifest = verify(file)?;
    let origin = manifest.origin(secret);
    if origin != Origin::Ours && !trust {
        return Err(BackupError::Untrusted { origin, has_secret: secret.is_some() });
    }
    let mut b = Batcher { desk, w: WriteSet::default(), bytes: 0 };
    b.w.put(Table::Meta, RESTORING, vec![1]);
    b.commit()?;
    let mut indexed = false;
    let mut summarised = false;
    let mut archive = open_archive(file)?;
    for e in archive.entries().map_err(damaged)? {
        let e = e.map_err(damaged)?;
        let path = entry_path(&e)?;
        check_entry(&e, &path)?;
        match part_of(&path)? {
            Part::Magic | Part::Manifest => {}
            Part::Table(table) => {
                let mut r = io::BufReader::with_capacity(1 << 20, e);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    let n = (&mut r).take(MAX_RECORD as u64 + 1).read_until(b'\n', &mut line).map_err(damaged)?;
                    if n == 0 {
                        break;
                    }
                    if line.len() > MAX_RECORD {
                        return Err(BackupError::Damaged(format!("a record of {} is too long", table.name())));
                    }
                    let parsed: Line = serde_json::from_slice(&line)
                        .map_err(|err| BackupError::Damaged(format!("a line of table {}: {err}", table.name())))?;
                    let (k, v) = parsed
                        .into_pair()
                        .map_err(|err| BackupError::Damaged(format!("a line of table {}: {err}", table.name())))?;
                    if table == Table::Meta && k == RESTORING {
                        continue;
                    }
                    if table == Table::Meta && k == keys::ATTACHMENT_INDEX {
                        indexed = true;
                    }
                    if table == Table::Meta && k == keys::SUMMARY_INDEX {
                        summarised = true;
                    }
                    b.put(table, k, v)?;
                }
            }
            Part::Blob(kind, name) => {
                let mut bytes = Vec::with_capacity(e.header().size().unwrap_or(0).min(64 << 20) as usize);
                let mut e = e;
                e.read_to_end(&mut bytes).map_err(damaged)?;
                // Checked in the first pass; the file may have changed since.
                crate::store::verify_blob(kind, &name, &bytes)
                    .map_err(|_| BackupError::Damaged(format!("blob {name}: its content does not match its name")))?;
                b.put_blob(kind, &name, bytes)?;
            }
        }
    }
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
    fn partial_files_are_new_private_and_never_a_planted_one() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("desk.tar");
        // Whatever sits under the old fixed name is left alone.
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join(".desk.tar.partial")).unwrap();
        let (a, fa) = create_partial(&file).unwrap();
        let (b, _) = create_partial(&file).unwrap();
        assert_ne!(a, b);
        assert_eq!(fa.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

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

    #[test]
    fn table_lines_keep_every_byte() {
        for (k, v) in [
            (&b"plain"[..], &b"{\"a\":1}"[..]),
            (&[0u8, 0, 0, 0, 0, 0, 0, 42][..], &b"x"[..]),
            (&b"inhand\0support"[..], &[0xff, 0xfe, 0x00][..]),
            ("naïve@例え.jp".as_bytes(), "tab\there".as_bytes()),
        ] {
            let line = serde_json::to_string(&Line::of(k, v)).unwrap();
            assert!(!line.contains('\n'));
            let back: Line = serde_json::from_str(&line).unwrap();
            assert_eq!(back.into_pair().unwrap(), (k.to_vec(), v.to_vec()), "{line}");
        }
        let readable = serde_json::to_string(&Line::of(b"support", b"{\"uid_validity\":1}")).unwrap();
        assert_eq!(readable, r#"{"k":"support","v":"{\"uid_validity\":1}"}"#);
        let bad: Line = serde_json::from_str(r#"{"k":"a","kx":"00","v":"b"}"#).unwrap();
        assert!(bad.into_pair().is_err(), "both forms of one key is an error");
    }
}
