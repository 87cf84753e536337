//! The backup file: the whole desk in one tar archive (inspect it with
//! `tar tvf`), its manifest and signature, and reading it back.
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
//! byte comes back as it was. Blobs are named by the SHA-256 of their
//! content and checked against it; the manifest lists the exceptions
//! (stores from before content addressing) and, signed with the desk's
//! secret, names every entry: a file without its manifest was cut off, one
//! whose signature does not hold came from elsewhere.
//!
//! Only the format lives here. Taking a consistent copy of a running desk
//! and restoring through its writer are the desk's (`desk::backup`).

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{BlobKind, Store, StoreError, Table};

pub const FORMAT: u32 = 1;
const MAGIC: &str = "ticketd-backup";
const MANIFEST: &str = "manifest.json";
/// Longest record a restore accepts (a ticket holds whole mail bodies).
const MAX_RECORD: usize = 1 << 30;

/// What is wrong with a backup file, or with writing one.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
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
}

pub fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let what = what.into();
    move |source| ArchiveError::Io { what, source }
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

pub fn kind_name(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Raw => "raw",
        BlobKind::Attachment => "attachment",
    }
}

pub const KINDS: [BlobKind; 2] = [BlobKind::Raw, BlobKind::Attachment];

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

/// Writes one table's records to a spool file, counting and hashing them
/// for the manifest.
pub struct TableWriter {
    table: Table,
    path: PathBuf,
    w: Hashing<io::BufWriter<std::fs::File>>,
    records: u64,
}

/// A table spooled to a file, ready for [`write_archive`].
pub struct SpooledTable {
    table: Table,
    path: PathBuf,
    entry: TableEntry,
}

impl TableWriter {
    pub fn create(table: Table, path: PathBuf) -> Result<TableWriter, ArchiveError> {
        let file = std::fs::File::create(&path).map_err(io_err(format!("spooling to {}", path.display())))?;
        Ok(TableWriter {
            table,
            path,
            w: Hashing { inner: io::BufWriter::new(file), sha: Sha256::new(), bytes: 0 },
            records: 0,
        })
    }

    fn err(&self) -> impl FnOnce(io::Error) -> ArchiveError {
        io_err(format!("spooling table {} to {}", self.table.name(), self.path.display()))
    }

    pub fn push(&mut self, k: &[u8], v: &[u8]) -> Result<(), ArchiveError> {
        let r = serde_json::to_writer(&mut self.w, &Line::of(k, v)).map_err(io::Error::from);
        r.and_then(|()| self.w.write_all(b"\n")).map_err(self.err())?;
        self.records += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<SpooledTable, ArchiveError> {
        self.w.flush().map_err(self.err())?;
        let entry = TableEntry {
            table: self.table.name().to_owned(),
            records: self.records,
            bytes: self.w.bytes,
            sha256: hex::encode(self.w.sha.finalize()),
        };
        Ok(SpooledTable { table: self.table, path: self.path, entry })
    }
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

/// Writes the archive of one committed state to `out`: the spooled
/// `tables`, then every blob in `store` (immutable and content-addressed:
/// read after the tables, they are those of the same state or newer ones
/// nothing names yet), then the manifest signed with `secret`. Hands `out`
/// back for the caller to sync or close.
pub fn write_archive<W: Write>(
    store: &Store,
    created: DateTime<Utc>,
    tables: &[SpooledTable],
    secret: &[u8],
    out: W,
) -> Result<(BackupSummary, W), ArchiveError> {
    let writing = || io_err("writing the backup");
    let mut tar = tar::Builder::new(out);
    let magic = format!("ticketd backup, format {FORMAT}\n");
    tar.append_data(&mut header(magic.len() as u64, created), MAGIC, magic.as_bytes()).map_err(writing())?;
    let mut manifest = Manifest {
        format: FORMAT,
        created,
        ticketd_version: env!("CARGO_PKG_VERSION").to_owned(),
        tables: Vec::new(),
        blobs: Vec::new(),
        checksums: BTreeMap::new(),
        blob_list_sha256: None,
        signature: None,
    };
    let mut blob_list = Sha256::new();
    for t in tables {
        let file = std::fs::File::open(&t.path).map_err(io_err(format!("reading the spool {}", t.path.display())))?;
        let name = format!("tables/{}.jsonl", t.table.name());
        tar.append_data(&mut header(t.entry.bytes, created), &name, io::BufReader::new(file)).map_err(writing())?;
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
            tar.append_data(&mut header(bytes.len() as u64, created), &path, bytes.as_slice()).map_err(writing())?;
            entry.count += 1;
            entry.bytes += bytes.len() as u64;
        }
        manifest.blobs.push(entry);
    }
    manifest.blob_list_sha256 = Some(hex::encode(blob_list.finalize()));
    manifest.sign(secret);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| writing()(e.into()))?;
    tar.append_data(&mut header(json.len() as u64, created), MANIFEST, json.as_slice()).map_err(writing())?;
    let out = tar.into_inner().map_err(writing())?;
    let summary =
        BackupSummary { records: manifest.records(), blobs: manifest.blob_count(), blob_bytes: manifest.blob_bytes() };
    Ok((summary, out))
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

fn open_archive(file: &Path) -> Result<tar::Archive<io::BufReader<std::fs::File>>, ArchiveError> {
    let f = std::fs::File::open(file).map_err(io_err(format!("opening {}", file.display())))?;
    Ok(tar::Archive::new(io::BufReader::with_capacity(1 << 20, f)))
}

fn damaged(e: io::Error) -> ArchiveError {
    ArchiveError::Damaged(e.to_string())
}

/// What an entry is.
enum Part {
    Magic,
    Table(Table),
    Blob(BlobKind, String),
    Manifest,
}

fn part_of(path: &str) -> Result<Part, ArchiveError> {
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
    Err(ArchiveError::Damaged(format!("unexpected entry {path:?}")))
}

fn entry_path<R: Read>(e: &tar::Entry<'_, R>) -> Result<String, ArchiveError> {
    Ok(e.path().map_err(damaged)?.to_string_lossy().into_owned())
}

fn check_magic<R: Read>(e: &mut tar::Entry<'_, R>, file: &Path) -> Result<(), ArchiveError> {
    let mut text = String::new();
    e.take(256).read_to_string(&mut text).map_err(damaged)?;
    let format = text
        .trim()
        .strip_prefix("ticketd backup, format ")
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| ArchiveError::NotABackup(file.display().to_string()))?;
    if format > FORMAT {
        return Err(ArchiveError::Newer(format));
    }
    Ok(())
}

/// Reads the whole file and checks it against its manifest: every table
/// (bytes, records, SHA-256), every blob (its content against its name),
/// the counts. Writes nothing.
pub fn verify(file: &Path) -> Result<Manifest, ArchiveError> {
    let mut archive = open_archive(file)?;
    let mut tables: BTreeMap<String, TableEntry> = BTreeMap::new();
    let mut blobs: BTreeMap<&'static str, BlobEntry> = BTreeMap::new();
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let mut first = true;
    let mut blob_list = Sha256::new();
    let entries = archive.entries().map_err(|_| ArchiveError::NotABackup(file.display().to_string()))?;
    for e in entries {
        let mut e =
            e.map_err(|err| if first { ArchiveError::NotABackup(file.display().to_string()) } else { damaged(err) })?;
        let path = entry_path(&e)?;
        check_entry(&e, &path)?;
        if manifest.is_some() {
            return Err(ArchiveError::Damaged(format!("entry {path:?} after the manifest")));
        }
        let part = part_of(&path);
        if first {
            if !matches!(part, Ok(Part::Magic)) {
                return Err(ArchiveError::NotABackup(file.display().to_string()));
            }
            check_magic(&mut e, file)?;
            first = false;
            continue;
        }
        match part? {
            Part::Magic => return Err(ArchiveError::Damaged("a second format entry".into())),
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
                    return Err(ArchiveError::Damaged(format!("table {} twice", t.name())));
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
                        return Err(ArchiveError::Damaged(format!("{path}: its content does not match its name")));
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
                    .map_err(|err| ArchiveError::Damaged(format!("the manifest does not parse: {err}")))?;
                manifest = Some(m);
            }
        }
    }
    if first {
        return Err(ArchiveError::NotABackup(file.display().to_string()));
    }
    let m = manifest.ok_or(ArchiveError::Incomplete)?;
    if m.format > FORMAT {
        return Err(ArchiveError::Newer(m.format));
    }
    for want in &m.tables {
        match tables.remove(&want.table) {
            Some(got) if got == *want => {}
            Some(got) => {
                return Err(ArchiveError::Damaged(format!(
                    "table {}: {} record(s), {} bytes, SHA-256 {} where the manifest says {}, {}, {}",
                    want.table, got.records, got.bytes, got.sha256, want.records, want.bytes, want.sha256
                )));
            }
            None => return Err(ArchiveError::Damaged(format!("table {} is missing", want.table))),
        }
    }
    if let Some(extra) = tables.keys().next() {
        return Err(ArchiveError::Damaged(format!("table {extra} is not in the manifest")));
    }
    for want in &m.blobs {
        let got = blobs.remove(want.kind.as_str()).unwrap_or(BlobEntry { kind: want.kind.clone(), count: 0, bytes: 0 });
        if got != *want {
            return Err(ArchiveError::Damaged(format!(
                "{} blobs: {} ({} bytes) where the manifest says {} ({} bytes)",
                want.kind, got.count, got.bytes, want.count, want.bytes
            )));
        }
    }
    if let Some(extra) = blobs.keys().next() {
        return Err(ArchiveError::Damaged(format!("{extra} blobs are not in the manifest")));
    }
    for (path, sha) in &renamed {
        if m.checksums.get(path) != Some(sha) {
            return Err(ArchiveError::Damaged(format!("{path}: its content does not match its checksum")));
        }
    }
    if let Some(want) = &m.blob_list_sha256
        && *want != hex::encode(blob_list.finalize())
    {
        return Err(ArchiveError::Damaged("the blobs are not the ones the manifest lists".into()));
    }
    if m.signature.is_some() && m.blob_list_sha256.is_none() {
        return Err(ArchiveError::Damaged("a signed manifest without its list of blobs".into()));
    }
    Ok(m)
}

/// Only plain files of believable size: a GNU sparse entry of 3 GiB in a
/// 37 KB file, a link or a device is never a ticketd backup's.
fn check_entry<R: Read>(e: &tar::Entry<'_, R>, path: &str) -> Result<(), ArchiveError> {
    let h = e.header();
    if h.entry_type() != tar::EntryType::Regular {
        return Err(ArchiveError::Damaged(format!(
            "{path}: a {:?} entry (only plain files belong here)",
            h.entry_type()
        )));
    }
    let size = h.size().map_err(damaged)?;
    if size > MAX_ENTRY {
        return Err(ArchiveError::Damaged(format!("{path}: {size} bytes, over the {MAX_ENTRY} an entry may hold")));
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

/// One record or blob of a backup, in archive order.
pub enum Item {
    Record(Table, Vec<u8>, Vec<u8>),
    Blob(BlobKind, String, Vec<u8>),
}

/// Hands every record and blob of `file` to `each`, in archive order, one
/// at a time (a record at most [`MAX_RECORD`] bytes). Call [`verify`]
/// first: this checks each blob against its name again (the file may have
/// changed since), not the manifest.
pub fn replay<E: From<ArchiveError>>(file: &Path, mut each: impl FnMut(Item) -> Result<(), E>) -> Result<(), E> {
    let mut archive = open_archive(file)?;
    for e in archive.entries().map_err(damaged)? {
        let mut e = e.map_err(damaged)?;
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
                        return Err(ArchiveError::Damaged(format!("a record of {} is too long", table.name())).into());
                    }
                    let bad = |err: String| ArchiveError::Damaged(format!("a line of table {}: {err}", table.name()));
                    let parsed: Line = serde_json::from_slice(&line).map_err(|err| bad(err.to_string()))?;
                    let (k, v) = parsed.into_pair().map_err(bad)?;
                    each(Item::Record(table, k, v))?;
                }
            }
            Part::Blob(kind, name) => {
                let mut bytes = Vec::with_capacity(e.header().size().unwrap_or(0).min(64 << 20) as usize);
                e.read_to_end(&mut bytes).map_err(damaged)?;
                crate::store::verify_blob(kind, &name, &bytes)
                    .map_err(|_| ArchiveError::Damaged(format!("blob {name}: its content does not match its name")))?;
                each(Item::Blob(kind, name, bytes))?;
            }
        }
    }
    Ok(())
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
