//! The sled backend: every table lives in one sled tree under a one-byte
//! prefix, so a [`WriteSet`]'s records are one atomic `apply_batch` (no
//! transaction is needed: the store has one committer) followed by one
//! flush. Blobs (raw mail, attachments) live outside sled in append-only
//! segment files in `attachments_dir` ([`super::segments`]): the commit
//! appends the new ones, syncs them once, and records their place in the
//! same batch, so a failed commit names none of them. sled holds only
//! small records, so its page cache stays what `cache_capacity` says.
//! Stores written before kept raw mail in a `raw` tree and attachments as
//! files `<attachments_dir>/<sha[0:2]>/<sha>`; both are still read.
//!
//! sled refuses every write after an I/O error (a full disk) until the
//! database is reopened: a commit that fails so reopens it at once.
//! sled's process lock is what makes this instance the store's only
//! writer: a second process gets [`StoreError::Locked`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::segments::{LZ4, Loc, PLAIN, Segments};
use super::{Backend, BlobKind, BlobWrite, Entries, Get, Scan, StoreError, Table, WriteSet, attachment_file};

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        match e {
            sled::Error::Io(source) => StoreError::Io { what: "database".into(), source },
            e => StoreError::Backend(e.to_string()),
        }
    }
}

/// Private prefix of the blob index (`B`, kind, sha → [`Loc`]).
const BLOB_INDEX: u8 = b'B';

fn blob_key(kind: BlobKind, sha256: &str) -> Vec<u8> {
    let mut k = vec![BLOB_INDEX, kind_byte(kind)];
    k.extend_from_slice(sha256.as_bytes());
    k
}

fn kind_byte(kind: BlobKind) -> u8 {
    match kind {
        BlobKind::Raw => b'r',
        BlobKind::Attachment => b'a',
    }
}

fn prefix(table: Table) -> u8 {
    match table {
        Table::Meta => b'm',
        Table::Tickets => b't',
        Table::MessageIds => b'i',
        Table::Ingested => b'g',
        Table::Clients => b'c',
        Table::Cursors => b'u',
        Table::Outbox => b'o',
        Table::Sent => b's',
        Table::OutboxIds => b'x',
        Table::Acks => b'a',
        Table::Quarantine => b'q',
        Table::OutboxDue => b'd',
        Table::OutboxTickets => b'k',
        Table::Attachments => b'f',
        Table::Digests => b'h',
        Table::Spam => b'p',
        Table::Blocklist => b'l',
        Table::Timers => b'w',
        Table::Summaries => b'y',
        Table::ClientInfo => b'n',
        Table::Sessions => b'z',
    }
}

fn key(table: Table, k: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(k.len() + 1);
    out.push(prefix(table));
    out.extend_from_slice(k);
    out
}

enum Legacy {
    Raw(String),
    File(PathBuf),
}

struct Inner {
    db: sled::Db,
    desk: sled::Tree,
    raw: sled::Tree,
}

pub struct SledBackend {
    current: RwLock<Option<Arc<Inner>>>,
    path: PathBuf,
    attachments_dir: PathBuf,
    cache_bytes: u64,
    segments: Segments,
}

fn open_db(path: &Path, cache_bytes: u64) -> Result<Inner, StoreError> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes.max(1 << 20))
        .flush_every_ms(Some(500))
        .open()
        .map_err(|e| match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => StoreError::Locked(path.to_owned()),
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => StoreError::Locked(path.to_owned()),
        e => StoreError::from(e),
    })?;
    let desk = db.open_tree("desk")?;
    let raw = db.open_tree("raw")?;
    migrate_from_trees(&db, &desk)?;
    Ok(Inner { db, desk, raw })
}

/// Stores written before the one-tree layout kept each table in a tree of
/// its own (and notes as a list of thread indexes): copy them over once.
fn migrate_from_trees(db: &sled::Db, desk: &sled::Tree) -> Result<(), StoreError> {
    let names: Vec<Vec<u8>> = db.tree_names().into_iter().map(|n| n.to_vec()).collect();
    let old: Vec<Table> =
        Table::ALL.iter().copied().filter(|t| names.iter().any(|n| n == t.name().as_bytes())).collect();
    if old.is_empty() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for table in &old {
        let tree = db.open_tree(table.name())?;
        for item in tree.iter() {
            let (k, v) = item?;
            let v = if *table == Table::Tickets { legacy_ticket(&v)? } else { v.to_vec() };
            batch.insert(key(*table, &k), v);
        }
    }
    desk.apply_batch(batch)?;
    db.flush()?;
    for table in &old {
        db.drop_tree(table.name())?;
    }
    db.flush()?;
    Ok(())
}

fn legacy_ticket(v: &[u8]) -> Result<Vec<u8>, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt { table: "tickets", detail: e.to_string() };
    let mut rec: serde_json::Value = serde_json::from_slice(v).map_err(corrupt)?;
    if let Some(internal) = rec.as_object_mut().and_then(|o| o.remove("internal"))
        && let Some(list) = internal.as_array()
    {
        for i in list.iter().filter_map(|i| i.as_u64()) {
            if let Some(entry) = rec["ticket"]["threads"].get_mut(i as usize) {
                entry["internal"] = serde_json::Value::Bool(true);
            }
        }
    }
    serde_json::to_vec(&rec).map_err(corrupt)
}

impl SledBackend {
    pub fn open(path: &Path, attachments_dir: &Path, cache_bytes: u64) -> Result<SledBackend, StoreError> {
        let inner = open_db(path, cache_bytes)?;
        Ok(SledBackend {
            current: RwLock::new(Some(Arc::new(inner))),
            path: path.to_owned(),
            attachments_dir: attachments_dir.to_owned(),
            cache_bytes,
            segments: Segments::open(attachments_dir)?,
        })
    }

    /// The open database; when an earlier reopen failed, tries again (the
    /// disk may have room by now).
    fn inner(&self) -> Result<Arc<Inner>, StoreError> {
        if let Some(t) = self.current.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(t);
        }
        let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(Arc::new(open_db(&self.path, self.cache_bytes)?));
        }
        slot.clone().ok_or(StoreError::Closed)
    }

    fn indexed(&self, kind: BlobKind, sha256: &str) -> Result<Option<Loc>, StoreError> {
        Ok(self.inner()?.desk.get(blob_key(kind, sha256))?.and_then(|v| Loc::decode(&v)))
    }

    /// Whether a blob is stored (in a segment, or the old way).
    fn has_blob(&self, inner: &Inner, kind: BlobKind, sha256: &str) -> Result<bool, StoreError> {
        if inner.desk.contains_key(blob_key(kind, sha256))? {
            return Ok(true);
        }
        Ok(match kind {
            BlobKind::Raw => inner.raw.contains_key(sha256)?,
            BlobKind::Attachment => attachment_file(&self.attachments_dir, sha256).is_file(),
        })
    }

    /// Appends a blob's bytes: raw mail compressed (it is mostly text and
    /// shrinks 3–5×), attachments as they are (usually compressed formats
    /// already, and served often).
    fn append_blob(&self, kind: BlobKind, bytes: &[u8]) -> Result<Loc, StoreError> {
        if kind == BlobKind::Raw {
            let packed = lz4_flex::compress_prepend_size(bytes);
            if packed.len() < bytes.len() {
                return self.segments.append(&packed, LZ4);
            }
        }
        self.segments.append(bytes, PLAIN)
    }

    /// Closes the database and opens it again (after an I/O error). Blocks
    /// for up to a few seconds while readers finish what they hold.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.take() {
            let weak = Arc::downgrade(&old);
            drop(old);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while weak.strong_count() > 0 {
                if std::time::Instant::now() > deadline {
                    *slot = weak.upgrade();
                    return Err(StoreError::Internal("the database could not be reopened: still in use".into()));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        // sled's flusher thread lets go of the file lock a moment after the Db.
        let mut result = Err(StoreError::Closed);
        for _ in 0..100 {
            result = open_db(&self.path, self.cache_bytes);
            if !matches!(result, Err(StoreError::Locked(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        *slot = Some(Arc::new(result?));
        Ok(())
    }

    fn apply(&self, writes: WriteSet) -> Result<Vec<PathBuf>, StoreError> {
        let inner = self.inner()?;
        // Blob bytes first: nothing may name bytes a crash could lose.
        let t0 = std::time::Instant::now();
        let mut batch = sled::Batch::default();
        // What this write set did to a blob so far (true: stored): the last
        // write wins, as the committed index is read only before the first.
        let mut done: std::collections::HashMap<(BlobKind, &str), bool> = std::collections::HashMap::new();
        let mut gone = Vec::new();
        // Nothing is written when any blob is not what its name promises.
        for b in &writes.blobs {
            if let BlobWrite::Put { kind, sha256, bytes } = b {
                super::verify_blob(*kind, sha256, bytes)?;
            }
        }
        for b in &writes.blobs {
            match b {
                BlobWrite::Put { kind, sha256, bytes } => {
                    let here = match done.get(&(*kind, sha256.as_str())) {
                        Some(stored) => *stored,
                        None => self.has_blob(&inner, *kind, sha256)?,
                    };
                    if here {
                        continue;
                    }
                    let loc = self.append_blob(*kind, bytes)?;
                    batch.insert(blob_key(*kind, sha256), &loc.encode()[..]);
                    done.insert((*kind, sha256.as_str()), true);
                }
                BlobWrite::Delete { kind, sha256 } => {
                    // The bytes stay in their segment as dead space.
                    batch.remove(blob_key(*kind, sha256));
                    done.insert((*kind, sha256.as_str()), false);
                    match kind {
                        BlobKind::Raw => gone.push(Legacy::Raw(sha256.clone())),
                        BlobKind::Attachment => gone.push(Legacy::File(attachment_file(&self.attachments_dir, sha256))),
                    }
                }
            }
        }
        self.segments.sync()?;
        let t1 = std::time::Instant::now();
        for (table, k, v) in writes.ops {
            match v {
                Some(v) => batch.insert(key(table, &k), v),
                None => batch.remove(key(table, &k)),
            }
        }
        inner.desk.apply_batch(batch)?;
        let t2 = std::time::Instant::now();
        inner.db.flush()?;
        tracing::trace!(
            sync_us = (t1 - t0).as_micros() as u64,
            apply_us = (t2 - t1).as_micros() as u64,
            flush_us = t2.elapsed().as_micros() as u64,
            "sled commit"
        );
        // Copies kept the old way go once the index no longer names them.
        let mut files = Vec::new();
        for g in gone {
            match g {
                Legacy::Raw(sha) => {
                    inner.raw.remove(sha)?;
                }
                Legacy::File(p) => files.push(p),
            }
        }
        Ok(files)
    }

    /// Written by an older version: the `raw` tree or an attachment file.
    fn legacy_blob(&self, kind: BlobKind, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match kind {
            BlobKind::Raw => Ok(self.inner()?.raw.get(sha256)?.map(|v| v.to_vec())),
            BlobKind::Attachment => {
                let path = attachment_file(&self.attachments_dir, sha256);
                match std::fs::read(&path) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(StoreError::Io { what: format!("attachment file {}", path.display()), source: e }),
                }
            }
        }
    }
}

impl Get for SledBackend {
    fn get(&self, table: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner()?.desk.get(key(table, k))?.map(|v| v.to_vec()))
    }
}

impl Backend for SledBackend {
    fn scan(&self, table: Table, scan: Scan) -> Entries<'_> {
        let inner = match self.inner() {
            Ok(i) => i,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let start = key(table, &scan.prefix);
        let mut end = start.clone();
        // The smallest key after every key with this prefix.
        let upper = loop {
            match end.pop() {
                None => break None,
                Some(0xff) => continue,
                Some(b) => {
                    end.push(b + 1);
                    break Some(end);
                }
            }
        };
        use std::ops::Bound;
        let lower = match &scan.after {
            Some(a) if !scan.reverse => Bound::Excluded(key(table, a)),
            _ => Bound::Included(start),
        };
        let upper = match (&scan.after, upper) {
            (Some(a), _) if scan.reverse => Bound::Excluded(key(table, a)),
            (_, Some(u)) => Bound::Excluded(u),
            (_, None) => Bound::Unbounded,
        };
        let iter = inner.desk.range::<Vec<u8>, _>((lower, upper));
        let strip = |r: sled::Result<(sled::IVec, sled::IVec)>| {
            r.map(|(k, v)| (k[1..].to_vec(), v.to_vec())).map_err(StoreError::from)
        };
        if scan.reverse { Box::new(iter.rev().map(strip)) } else { Box::new(iter.map(strip)) }
    }

    fn count(&self, table: Table) -> Result<u64, StoreError> {
        let inner = self.inner()?;
        Ok(inner.desk.scan_prefix([prefix(table)]).keys().count() as u64)
    }

    fn get_blob(&self, kind: BlobKind, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes = match self.indexed(kind, sha256)? {
            Some(loc) => Some(self.segments.read(loc)?),
            None => self.legacy_blob(kind, sha256)?,
        };
        if let Some(b) = &bytes {
            super::verify_blob(kind, sha256, b)?;
        }
        Ok(bytes)
    }

    fn blob_range(&self, kind: BlobKind, sha256: &str, offset: u64, max: usize) -> Result<Option<Vec<u8>>, StoreError> {
        let slice = |b: Vec<u8>| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
            b[start..(start.saturating_add(max)).min(b.len())].to_vec()
        };
        match self.indexed(kind, sha256)? {
            Some(loc) if loc.codec == PLAIN => Ok(Some(self.segments.read_range(loc, offset, max)?)),
            // Compressed (raw mail): read whole; it is bounded by max_message_bytes.
            Some(loc) => Ok(Some(slice(self.segments.read(loc)?))),
            None => Ok(self.legacy_blob(kind, sha256)?.map(slice)),
        }
    }

    fn blobs(&self, kind: BlobKind) -> Box<dyn Iterator<Item = Result<(String, u64), StoreError>> + Send + '_> {
        let inner = match self.inner() {
            Ok(i) => i,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let mut found: Vec<(String, u64)> = Vec::new();
        let prefix = [BLOB_INDEX, kind_byte(kind)];
        for item in inner.desk.scan_prefix(prefix) {
            match item {
                Ok((k, v)) => {
                    let sha = String::from_utf8_lossy(&k[2..]).into_owned();
                    found.push((sha, Loc::decode(&v).map_or(0, |l| l.len)));
                }
                Err(e) => return Box::new(std::iter::once(Err(e.into()))),
            }
        }
        let legacy: Result<Vec<(String, u64)>, StoreError> = match kind {
            BlobKind::Raw => inner
                .raw
                .iter()
                .map(|r| r.map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.len() as u64)).map_err(Into::into))
                .collect(),
            BlobKind::Attachment => attachment_files(&self.attachments_dir),
        };
        match legacy {
            Ok(l) => found.extend(l),
            Err(e) => return Box::new(std::iter::once(Err(e))),
        }
        found.sort();
        found.dedup_by(|a, b| a.0 == b.0);
        Box::new(found.into_iter().map(Ok))
    }

    fn commit(&self, writes: WriteSet) -> Result<(), StoreError> {
        match self.apply(writes) {
            Ok(files) => {
                for p in files {
                    match std::fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => tracing::warn!(path = %p.display(), error = %e, "an old attachment file stays"),
                    }
                }
                Ok(())
            }
            Err(e) => {
                // sled refuses every write after an I/O error until it is
                // reopened; if that fails too, the next use tries again.
                if matches!(e, StoreError::Io { .. } | StoreError::Backend(_))
                    && let Err(re) = self.reopen()
                {
                    tracing::debug!(error = %re, "reopening the database failed; tried again at the next use");
                }
                Err(e)
            }
        }
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let db = self.inner()?.db.size_on_disk()?;
        Ok(db + dir_size(&self.attachments_dir))
    }
}

/// `(sha256, size)` of every attachment file under `dir/<xx>/`.
fn attachment_files(dir: &Path) -> Result<Vec<(String, u64)>, StoreError> {
    let err = |p: PathBuf| move |source| StoreError::Io { what: format!("attachment files {}", p.display()), source };
    let mut found = Vec::new();
    let Ok(dirs) = std::fs::read_dir(dir) else { return Ok(found) };
    for d in dirs {
        let d = d.map_err(err(dir.to_owned()))?;
        if !d.file_type().map_err(err(d.path()))?.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(d.path()).map_err(err(d.path()))? {
            let f = f.map_err(err(d.path()))?;
            let name = f.file_name().to_string_lossy().into_owned();
            // Temporary files of an interrupted write start with a dot.
            if name.starts_with('.') {
                continue;
            }
            found.push((name, f.metadata().map_err(err(f.path()))?.len()));
        }
    }
    Ok(found)
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod prefixes {
    use super::*;

    /// Tables share one tree: two with one prefix would read each other's
    /// records.
    #[test]
    fn every_table_has_a_prefix_of_its_own() {
        let mut seen: Vec<u8> = vec![BLOB_INDEX];
        for t in Table::ALL {
            let p = prefix(*t);
            assert!(!seen.contains(&p), "{} shares its prefix {:?}", t.name(), p as char);
            seen.push(p);
        }
    }
}
