//! Persistence behind a small trait. A [`Backend`] is a set of ordered
//! key/value tables plus content-addressed blobs; its one write operation,
//! [`Backend::commit`], applies a [`WriteSet`] — records and blobs — all or
//! nothing, and is durable when it returns. The desk's single writer builds
//! every write set (see [`crate::desk`]), so the backend needs no
//! transactions of its own; a second backend (PostgreSQL) only has to pass
//! [`contract`].
//!
//! One writer by type: reading needs only a [`Store`], writing needs the
//! store's one [`Committer`], which [`Store::take_committer`] hands out once
//! (the desk's writer takes it when it starts). A backend that can lose the
//! right to write (another node took over) refuses a commit with
//! [`StoreError::Fenced`].
//!
//! [`Store`] is the typed view every reader uses: tickets, indexes,
//! cursors, outbox and quarantine records, all JSON in their tables.

#[cfg(test)]
pub mod contract;
pub mod postgres;
pub mod segments;
pub mod sled_backend;
pub mod spam;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::StoreConfig;
use crate::mail::normalise_id;
use crate::outbox::OutboxEntry;
use crate::record::TicketRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the database {0} is in use by another process (is the ticketd daemon running? stop it first: the store allows one process at a time)"
    )]
    Locked(PathBuf),
    /// The engine failed to read or write (the OS error, when there is one, is kept).
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// The engine refused, for a reason of its own.
    #[error("database error: {0}")]
    Backend(String),
    #[error("corrupt record in table {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error(
        "stored {kind} {sha256} does not match its checksum: the store is damaged (restore it from a backup); it is not served"
    )]
    BlobMismatch { kind: &'static str, sha256: String },
    #[error("stale write to {what}: it changed since it was read")]
    Conflict { what: String },
    /// This instance may no longer write: another node holds the store now.
    #[error("refused: this node no longer holds the store ({0})")]
    Fenced(String),
    /// The connection was lost while the commit was being made durable:
    /// it may or may not have landed. The writer treats it as not done (no
    /// post-action, no send) and replays; a replay is a no-op if it landed.
    #[error("the commit's outcome is unknown ({0}): treated as not done; replaying it is harmless")]
    InDoubt(String),
    #[error("the database is closed (a reopen after an I/O error failed)")]
    Closed,
    #[error("internal error: {0}")]
    Internal(String),
    /// A newer ticketd wrote this store in a layout this build does not
    /// know: refused rather than misread.
    #[error(
        "the database was written by a newer ticketd (store format {found}; this build reads up to {known}): run that version or a newer one, or restore a backup this version made"
    )]
    TooNew { found: u32, known: u32 },
}

impl StoreError {
    /// What an operator should read into this error, from the OS error
    /// under it: a full disk and a process out of file descriptors look
    /// alike from above but are fixed differently.
    pub fn diagnosis(&self) -> &'static str {
        let io = match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        };
        // sled wraps the OS error in one of its own (same kind, no code).
        let code = io.and_then(|e| {
            e.raw_os_error()
                .or_else(|| e.get_ref().and_then(|i| i.downcast_ref::<std::io::Error>()).and_then(|i| i.raw_os_error()))
                .or(match e.kind() {
                    std::io::ErrorKind::StorageFull => Some(28),
                    std::io::ErrorKind::QuotaExceeded => Some(122),
                    std::io::ErrorKind::ReadOnlyFilesystem => Some(30),
                    _ => None,
                })
        });
        match code {
            Some(28) => "the disk is full",
            Some(122) => "the disk quota is exhausted",
            Some(24) | Some(23) => "too many open files: raise LimitNOFILE, or lower api.max_connections",
            Some(30) => "the file system is read-only",
            Some(5) => "an I/O error from the disk",
            _ => "see the error",
        }
    }
}

/// The tables. Keys are bytes; integer keys are big-endian so scans run in
/// numeric order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Counters, the HMAC secret, run and in-hand markers.
    Meta,
    /// Ticket number → [`TicketRecord`].
    Tickets,
    /// Normalised Message-ID → ticket number.
    MessageIds,
    /// Mailbox + dedupe key → [`IngestRecord`].
    Ingested,
    /// Lower-cased address → client id.
    Clients,
    /// Mailbox → [`Cursor`].
    Cursors,
    /// Sequence → pending [`OutboxEntry`].
    Outbox,
    /// Sequence → finished [`OutboxEntry`].
    Sent,
    /// Our Message-ID → outbox sequence.
    OutboxIds,
    /// Sender (without `+detail`) → recent acknowledgement times.
    Acks,
    /// Id → [`QuarantineEntry`].
    Quarantine,
    /// When a pending entry is due + sequence → nothing: the sender's
    /// schedule, read from the front.
    OutboxDue,
    /// Ticket + sequence of each pending entry: a ticket's later mail waits
    /// for its earlier one.
    OutboxTickets,
    /// Attachment SHA-256 + NUL + file name → [`AttachmentIndex`]: what a
    /// download URL names, found without reading any ticket.
    Attachments,
    /// Agent id → [`HeldDigest`]: notifications held past the agent's
    /// hourly limit, until their digest goes out.
    Digests,
    /// Id → [`spam::SpamEntry`]: mail held for review (spam, a blocked
    /// sender), with its verdict.
    Spam,
    /// Blocklist entry (`name@domain`, `@domain`) → [`spam::BlockRecord`]:
    /// the entries added at run time (the config's own are not stored).
    Blocklist,
    /// The desk's clock (#19). Wake buckets: `w` + the earliest instant
    /// in the bucket + a unique id ([`keys::wake_bucket`]), the value the
    /// (instant, ticket) entries one commit filed, each saying when that
    /// ticket next needs looking at. The ticket's record is the truth: an
    /// entry whose ticket has moved on since is stale and dropped when the
    /// clock comes to it, so a save writes no delete and a commit of fifty
    /// new tickets one key. And `d` + a due time + ticket, value empty, for
    /// a ticket whose earliest running due time has no wake before it (a
    /// breached target's ticket waiting on a later instant): with the
    /// wakes not yet looked at, these are the "overdue" count. Kept in step
    /// with each ticket's saved `timers` by `desk::apply`.
    Timers,
    /// Ticket number → its [`crate::desk::summary::TicketSummary`], kept
    /// by the writer with every save: what a queue row shows and filters
    /// on, without reading the ticket's threads.
    Summaries,
    /// Client number → [`ClientInfo`]: the address and the name the
    /// client last wrote under.
    ClientInfo,
    /// SHA-256 of a console session id → its [`crate::desk::sessions::SessionRecord`].
    Sessions,
}

impl Table {
    pub const ALL: &'static [Table] = &[
        Table::Meta,
        Table::Tickets,
        Table::MessageIds,
        Table::Ingested,
        Table::Clients,
        Table::Cursors,
        Table::Outbox,
        Table::Sent,
        Table::OutboxIds,
        Table::Acks,
        Table::Quarantine,
        Table::OutboxDue,
        Table::OutboxTickets,
        Table::Attachments,
        Table::Digests,
        Table::Spam,
        Table::Blocklist,
        Table::Timers,
        Table::Summaries,
        Table::ClientInfo,
        Table::Sessions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Tickets => "tickets",
            Table::MessageIds => "msgids",
            Table::Ingested => "ingested",
            Table::Clients => "clients",
            Table::Cursors => "cursors",
            Table::Outbox => "outbox",
            Table::Sent => "sent",
            Table::OutboxIds => "outbox_ids",
            Table::Acks => "acks",
            Table::Quarantine => "quarantine",
            Table::OutboxDue => "outbox_due",
            Table::OutboxTickets => "outbox_tickets",
            Table::Attachments => "attachments",
            Table::Digests => "digests",
            Table::Spam => "spam",
            Table::Blocklist => "blocklist",
            Table::Timers => "timers",
            Table::Summaries => "summaries",
            Table::ClientInfo => "client_info",
            Table::Sessions => "sessions",
        }
    }
}

/// Content-addressed bytes kept outside the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    /// The original mail, byte for byte.
    Raw,
    /// A decoded attachment, served at its URL.
    Attachment,
}

impl BlobKind {
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Raw => "raw mail",
            BlobKind::Attachment => "attachment",
        }
    }
}

/// Whether `name` is a SHA-256 in hex, as every blob written since content
/// addressing is named (older stores may hold others).
pub fn is_sha256_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Blobs are named by the SHA-256 of their content: bytes that do not hash
/// to their name are never handed out (a damaged segment, a misplaced
/// offset), whoever asks — a download, a relay, a backup.
pub fn verify_blob(kind: BlobKind, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
    if is_sha256_name(sha256) && hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)) != sha256 {
        return Err(StoreError::BlobMismatch { kind: kind.name(), sha256: sha256.to_owned() });
    }
    Ok(())
}

/// A blob to store (if it is not stored yet) or to forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobWrite {
    Put { kind: BlobKind, sha256: String, bytes: Vec<u8> },
    Delete { kind: BlobKind, sha256: String },
}

/// Writes applied together by [`Backend::commit`]; later writes to a key
/// win. Blobs are part of it: a commit that fails stores none of them, so
/// no record ever names bytes that are not there and no bytes outlive the
/// job that staged them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteSet {
    pub ops: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
    pub blobs: Vec<BlobWrite>,
}

impl WriteSet {
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.ops.push((table, key.into(), Some(value)));
    }
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push((table, key.into(), None));
    }
    pub fn put_blob(&mut self, kind: BlobKind, sha256: &str, bytes: Vec<u8>) {
        self.blobs.push(BlobWrite::Put { kind, sha256: sha256.to_owned(), bytes });
    }
    pub fn delete_blob(&mut self, kind: BlobKind, sha256: &str) {
        self.blobs.push(BlobWrite::Delete { kind, sha256: sha256.to_owned() });
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.blobs.is_empty()
    }
}

/// Where a scan starts and which way it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Only keys with this prefix.
    pub prefix: Vec<u8>,
    /// Resume strictly after (or, reversed, strictly before) this key.
    pub after: Option<Vec<u8>>,
    pub reverse: bool,
}

pub type Entries<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + Send + 'a>;

/// Point reads: what the desk's writer needs from committed state (and
/// from its own not-yet-committed writes, see `desk::writer`).
pub trait Get {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

/// A storage engine. Implementations must pass [`contract::run`].
pub trait Backend: Get + Send + Sync {
    fn scan(&self, table: Table, scan: Scan) -> Entries<'_>;
    fn count(&self, table: Table) -> Result<u64, StoreError>;
    /// A stored blob, checked against its name ([`verify_blob`]).
    fn get_blob(&self, kind: BlobKind, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every blob of a kind: (SHA-256, bytes it takes on disk), in hash order.
    fn blobs(&self, kind: BlobKind) -> Box<dyn Iterator<Item = Result<(String, u64), StoreError>> + Send + '_>;
    /// Up to `max` bytes of a blob from `offset` (fewer at its end; empty
    /// past it), unchecked: see [`Store::verified_len`]. None when absent.
    fn blob_range(&self, kind: BlobKind, sha256: &str, offset: u64, max: usize) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies `writes`, records and blobs, all or nothing, durable when it
    /// returns Ok. A blob put that is stored already is a no-op. Refused
    /// with [`StoreError::Fenced`] when this instance may no longer write.
    fn commit(&self, writes: WriteSet) -> Result<(), StoreError>;
    /// Bytes the store occupies on disk, tables and blobs.
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// Whether [`Backend::commit_noted`] sends its notes anywhere (a shared
    /// database tells the other nodes what each commit changed).
    fn takes_notes(&self) -> bool {
        false
    }
    /// [`Backend::commit`], and the notes delivered to whoever listens if
    /// and only if the commit lands.
    fn commit_noted(&self, writes: WriteSet, _notes: Vec<String>) -> Result<(), StoreError> {
        self.commit(writes)
    }
}

/// The one handle that writes a store (see the module note).
pub struct Committer {
    backend: Arc<dyn Backend>,
}

impl Committer {
    pub fn commit(&self, writes: WriteSet) -> Result<(), StoreError> {
        self.backend.commit(writes)
    }

    /// Commits with notes for the other nodes, made only when the backend
    /// takes them (so a single-node store pays nothing for them).
    pub fn commit_noting(&self, writes: WriteSet, notes: impl FnOnce() -> Vec<String>) -> Result<(), StoreError> {
        if self.backend.takes_notes() {
            self.backend.commit_noted(writes, notes())
        } else {
            self.backend.commit(writes)
        }
    }
}

pub(crate) fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub(crate) fn from_be(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

pub fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records always serialise")
}

pub fn parse<T: for<'de> Deserialize<'de>>(table: Table, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt { table: table.name(), detail: e.to_string() })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cursor {
    pub uid_validity: u32,
    /// Highest UID whose effects are committed.
    pub last_uid: u32,
    /// Highest UID whose IMAP post-action is known done. Between the two lie
    /// messages a crash caught after the commit: their post-action is redone.
    #[serde(default)]
    pub acked_uid: Option<u32>,
    /// First contact with `initial = "unseen"`: mail up to this UID that
    /// was already read then is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_seen_until: Option<u32>,
    /// First contact with `initial = "import"`: mail up to this UID is
    /// history, ingested quietly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_until: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestRecord {
    pub raw_sha256: String,
    pub ticket: Option<u64>,
    pub uid_validity: u32,
    pub uid: u32,
    pub at: DateTime<Utc>,
    /// What a person sees (see `InboundMail::content_sha256`): tells a
    /// second copy of one mail from a different mail reusing its Message-ID.
    #[serde(default)]
    pub content_sha256: Option<String>,
    /// Retention removed the raw copy then; the record itself stays for
    /// dedupe and threading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<DateTime<Utc>>,
}

/// Notifications held for one agent's digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldDigest {
    /// When the first one was held.
    pub since: Option<DateTime<Utc>>,
    /// One line each, oldest first, at most [`HeldDigest::MAX_LINES`].
    pub lines: Vec<String>,
    /// Held beyond the lines kept.
    pub more: u32,
}

impl HeldDigest {
    pub const MAX_LINES: usize = 200;

    pub fn hold(&mut self, line: String, now: DateTime<Utc>) {
        self.since.get_or_insert(now);
        if self.lines.len() < Self::MAX_LINES {
            self.lines.push(line);
        } else {
            self.more = self.more.saturating_add(1);
        }
    }
}

/// Who a client is: the address their tickets are keyed by and the display
/// name of their latest mail (cleaned, one line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub address: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// One recorded attachment, as the download route needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentIndex {
    pub mime_type: String,
    pub size: u64,
    /// A ticket that carries it (the first one recorded).
    pub ticket: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: u64,
    pub reason: String,
    pub mailbox: String,
    pub uid: u32,
    pub raw_sha256: String,
    pub at: DateTime<Utc>,
    /// The dedupe record written with it (removed on retry).
    #[serde(default)]
    pub ingest_key: Option<Vec<u8>>,
}

/// The message a careful-mode writer is handling right now, durable before
/// the work starts: found again at the next start, it means the process
/// died with this message in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InHand {
    pub uid_validity: u32,
    pub uid: u32,
    /// Earlier deaths with this message in hand.
    pub deaths: u32,
}

pub mod keys {
    //! Keys of the records the tables hold.
    pub fn ingest(mailbox: &str, dedupe: &str) -> Vec<u8> {
        let mut k = mailbox.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(dedupe.as_bytes());
        k
    }

    /// `Attachments` key: SHA-256, NUL, file name.
    pub fn attachment(sha256: &str, filename: &str) -> Vec<u8> {
        let mut k = sha256.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(filename.as_bytes());
        k
    }

    /// Meta marker: the attachment index covers every ticket.
    pub const ATTACHMENT_INDEX: &[u8] = b"index:attachments:1";

    /// Meta marker: every ticket has its summary (2: with its due time and
    /// merge, #19) and every client its info.
    pub const SUMMARY_INDEX: &[u8] = b"index:summaries:2";
    /// Meta: the store's layout version (`desk::migrate::STORE_FORMAT`,
    /// big-endian u32); none: written before there was one.
    pub const FORMAT: &[u8] = b"format";

    pub fn in_hand(mailbox: &str) -> Vec<u8> {
        let mut k = b"inhand\0".to_vec();
        k.extend_from_slice(mailbox.as_bytes());
        k
    }

    /// `OutboxDue` key: due time (seconds, sign-flipped big-endian so keys
    /// sort by time) then the sequence.
    pub fn due(at: i64, seq: u64) -> Vec<u8> {
        let mut k = sortable(at).to_vec();
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// An instant as key bytes that sort as it does (sign bit flipped).
    fn sortable(at: i64) -> [u8; 8] {
        ((at as u64) ^ (1 << 63)).to_be_bytes()
    }

    pub fn split_due(k: &[u8]) -> Option<(i64, u64)> {
        let at = u64::from_be_bytes(k.get(..8)?.try_into().ok()?) ^ (1 << 63);
        Some((at as i64, u64::from_be_bytes(k.get(8..16)?.try_into().ok()?)))
    }

    /// `OutboxTickets` key: ticket then sequence.
    pub fn ticket_seq(ticket: u64, seq: u64) -> Vec<u8> {
        let mut k = ticket.to_be_bytes().to_vec();
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// `Timers` key of a wake bucket: `w`, its earliest wake (as in
    /// [`due`]), then an id no other bucket has. Its value is
    /// [`wake_entries`]. A key of `w`, instant and ticket alone (17 bytes,
    /// value ignored) is a one-entry bucket as ticketd wrote it before
    /// buckets; it reads as one.
    pub fn wake_bucket(first: i64, id: u128) -> Vec<u8> {
        let mut k = vec![WAKE];
        k.extend_from_slice(&sortable(first));
        k.extend_from_slice(&id.to_be_bytes());
        k
    }

    /// A wake bucket's value: (instant, ticket) pairs, 16 bytes each.
    pub fn wake_entries(entries: &[(i64, u64)]) -> Vec<u8> {
        let mut v = Vec::with_capacity(entries.len() * 16);
        for (at, n) in entries {
            v.extend_from_slice(&at.to_be_bytes());
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    /// The entries of a wake bucket (its key and value).
    pub fn split_wake_bucket(k: &[u8], v: &[u8]) -> Vec<(i64, u64)> {
        if k.len() == 17 {
            return split_timer(k).into_iter().collect();
        }
        v.chunks_exact(16)
            .filter_map(|c| {
                let at = i64::from_be_bytes(c.get(..8)?.try_into().ok()?);
                Some((at, u64::from_be_bytes(c.get(8..)?.try_into().ok()?)))
            })
            .collect()
    }

    /// `Timers` key of the due index: `d`, the instant, the ticket.
    pub fn due_index(at: i64, ticket: u64) -> Vec<u8> {
        let mut k = vec![DUE];
        k.extend_from_slice(&due(at, ticket));
        k
    }

    pub const WAKE: u8 = b'w';
    pub const DUE: u8 = b'd';

    /// (instant, ticket) of a `Timers` key of either index.
    pub fn split_timer(k: &[u8]) -> Option<(i64, u64)> {
        split_due(k.get(1..)?)
    }

    /// Meta: a digest of the time config the tickets' clocks were last
    /// settled under; another one starts the sweep.
    pub const TIMERS_CONFIG: &[u8] = b"timers:config";
    /// Meta: the last ticket number the sweep did, then the digest of the
    /// time config it sweeps for.
    pub const TIMERS_SWEEP: &[u8] = b"timers:sweep";

    pub const RUNNING: &[u8] = b"running";
    pub const SECRET: &[u8] = b"secret";
    pub const NEXT_TICKET: &[u8] = b"next_ticket";
    pub const NEXT_CLIENT: &[u8] = b"next_client";
    pub const NEXT_OUTBOX: &[u8] = b"next_outbox";
    pub const NEXT_QUARANTINE: &[u8] = b"next_quarantine";
    pub const NEXT_SPAM: &[u8] = b"next_spam";
}

/// Typed point reads, for anything that can [`Get`].
pub trait Records: Get {
    fn ticket(&self, number: u64) -> Result<Option<TicketRecord>, StoreError> {
        self.get(Table::Tickets, &be(number))?.map(|v| parse(Table::Tickets, &v)).transpose()
    }
    fn ticket_by_message_id(&self, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.get(Table::MessageIds, normalise_id(id).as_bytes())?.and_then(|v| from_be(&v)))
    }
    fn client(&self, address: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(Table::Clients, address.as_bytes())?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
    fn cursor(&self, mailbox: &str) -> Result<Option<Cursor>, StoreError> {
        self.get(Table::Cursors, mailbox.as_bytes())?.map(|v| parse(Table::Cursors, &v)).transpose()
    }
    fn ingested(&self, key: &[u8]) -> Result<Option<IngestRecord>, StoreError> {
        self.get(Table::Ingested, key)?.map(|v| parse(Table::Ingested, &v)).transpose()
    }
    /// A counter's next value (counters start at 1).
    fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self.get(Table::Meta, key)?.and_then(|v| from_be(&v)).unwrap_or(1))
    }
    fn in_hand(&self, mailbox: &str) -> Result<Option<InHand>, StoreError> {
        self.get(Table::Meta, &keys::in_hand(mailbox))?.map(|v| parse(Table::Meta, &v)).transpose()
    }
    /// Recent acknowledgements (or notifications) counted under `key`. A
    /// record that does not parse (an older format) counts as none.
    fn recent(&self, key: &str) -> Result<Recent, StoreError> {
        Ok(self.get(Table::Acks, key.as_bytes())?.and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default())
    }
    fn outbox_entry(&self, seq: u64) -> Result<Option<OutboxEntry>, StoreError> {
        self.get(Table::Outbox, &be(seq))?.map(|v| parse(Table::Outbox, &v)).transpose()
    }
    fn sent_entry(&self, seq: u64) -> Result<Option<OutboxEntry>, StoreError> {
        self.get(Table::Sent, &be(seq))?.map(|v| parse(Table::Sent, &v)).transpose()
    }
    /// The outbox sequence of a Message-ID we generated.
    fn outbox_seq(&self, message_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.get(Table::OutboxIds, normalise_id(message_id).as_bytes())?.and_then(|v| from_be(&v)))
    }
    /// A mail we sent (or will send), pending or finished.
    fn our_mail(&self, message_id: &str) -> Result<Option<(u64, OutboxEntry)>, StoreError> {
        let Some(seq) = self.outbox_seq(message_id)? else { return Ok(None) };
        Ok(match self.outbox_entry(seq)? {
            Some(e) => Some((seq, e)),
            None => self.sent_entry(seq)?.map(|e| (seq, e)),
        })
    }
    fn attachment_index(&self, sha256: &str, filename: &str) -> Result<Option<AttachmentIndex>, StoreError> {
        self.get(Table::Attachments, &keys::attachment(sha256, filename))?
            .map(|v| parse(Table::Attachments, &v))
            .transpose()
    }
    fn held_digest(&self, agent: &str) -> Result<Option<HeldDigest>, StoreError> {
        self.get(Table::Digests, agent.as_bytes())?.map(|v| parse(Table::Digests, &v)).transpose()
    }
    fn quarantined(&self, id: u64) -> Result<Option<QuarantineEntry>, StoreError> {
        self.get(Table::Quarantine, &be(id))?.map(|v| parse(Table::Quarantine, &v)).transpose()
    }
    fn client_info(&self, number: u64) -> Result<Option<ClientInfo>, StoreError> {
        self.get(Table::ClientInfo, &be(number))?.map(|v| parse(Table::ClientInfo, &v)).transpose()
    }
}

impl<T: Get + ?Sized> Records for T {}

/// The open store, for reading. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// Whether the committer was handed out (shared by every clone).
    committer_taken: Arc<std::sync::atomic::AtomicBool>,
}

impl Get for Store {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get(table, key)
    }
}

impl Store {
    /// Opens (and if needed creates or migrates) the sled store.
    pub fn open(cfg: &StoreConfig) -> Result<Store, StoreError> {
        Self::open_path(&cfg.path, &cfg.attachments_dir, cfg.cache_bytes)
    }

    pub fn open_path(path: &Path, attachments_dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let backend = sled_backend::SledBackend::open(path, attachments_dir, cache_bytes)?;
        Ok(Store::with_backend(Arc::new(backend)))
    }

    pub fn with_backend(backend: Arc<dyn Backend>) -> Store {
        Store { backend, committer_taken: Default::default() }
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The store's one writing handle; a second call is refused. The desk's
    /// writer takes it when it starts.
    pub fn take_committer(&self) -> Result<Committer, StoreError> {
        if self.committer_taken.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Internal("the store has a writer already; every change goes through it".into()));
        }
        Ok(Committer { backend: self.backend.clone() })
    }

    /// Every ticket, in number order (or newest first), from `after` on.
    pub fn tickets_from(
        &self,
        after: Option<u64>,
        reverse: bool,
    ) -> impl Iterator<Item = Result<TicketRecord, StoreError>> + '_ {
        let scan = Scan { prefix: Vec::new(), after: after.map(|n| be(n).to_vec()), reverse };
        self.backend.scan(Table::Tickets, scan).map(|r| r.and_then(|(_, v)| parse(Table::Tickets, &v)))
    }

    pub fn tickets(&self) -> Result<Vec<TicketRecord>, StoreError> {
        self.tickets_from(None, false).collect()
    }

    pub fn quarantine_entries(&self) -> Result<Vec<QuarantineEntry>, StoreError> {
        self.backend
            .scan(Table::Quarantine, Scan::default())
            .map(|r| r.and_then(|(_, v)| parse(Table::Quarantine, &v)))
            .collect()
    }

    fn entries(&self, table: Table) -> impl Iterator<Item = Result<(u64, OutboxEntry), StoreError>> + '_ {
        self.backend.scan(table, Scan::default()).map(move |r| {
            let (k, v) = r?;
            let seq = from_be(&k).ok_or(StoreError::Corrupt { table: table.name(), detail: "bad key".into() })?;
            Ok((seq, parse(table, &v)?))
        })
    }

    pub fn pending_entries(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.entries(Table::Outbox).collect()
    }

    pub fn sent_entries(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.entries(Table::Sent).collect()
    }

    pub fn pending_count(&self) -> u64 {
        self.backend.count(Table::Outbox).unwrap_or(0)
    }

    /// Entries that may be sent now, earliest due first, at most one per
    /// ticket and only a ticket's oldest pending one: a ticket's later mail
    /// waits while an earlier one is retrying, so the customer never reads
    /// an answer before the question's acknowledgement. Reads the schedule
    /// from its front: the cost is what is due, not what waits.
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let mut out = Vec::new();
        let mut tickets = std::collections::HashSet::new();
        for item in self.backend.scan(Table::OutboxDue, Scan::default()) {
            let (k, _) = item?;
            let Some((at, seq)) = keys::split_due(&k) else { continue };
            if at > now.timestamp() {
                break;
            }
            let Some(e) = self.outbox_entry(seq)? else { continue };
            if tickets.contains(&e.mail.ticket) {
                continue;
            }
            let first = self
                .backend
                .scan(Table::OutboxTickets, Scan { prefix: be(e.mail.ticket).to_vec(), ..Scan::default() })
                .next()
                .transpose()?
                .and_then(|(k, _)| from_be(&k[8..]));
            // Not the ticket's oldest pending mail: that one goes first,
            // when it is due (it may come later in this scan).
            if first.is_some_and(|f| f != seq) {
                continue;
            }
            tickets.insert(e.mail.ticket);
            out.push((seq, e));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The wake buckets whose earliest wake is at or before `until`,
    /// earliest first, until they hold at least `limit` entries at or
    /// before it: each bucket's key and entries (all of them, the later
    /// ones too). The cost is what is due, not what waits.
    #[allow(clippy::type_complexity)]
    pub fn wake_buckets(&self, until: i64, limit: usize) -> Result<Vec<(Vec<u8>, Vec<(i64, u64)>)>, StoreError> {
        let mut out = Vec::new();
        let mut due = 0;
        for item in self.backend.scan(Table::Timers, Scan { prefix: vec![keys::WAKE], ..Scan::default() }) {
            let (k, v) = item?;
            let Some((first, _)) = keys::split_timer(&k) else { continue };
            if first > until || due >= limit {
                break;
            }
            let entries = keys::split_wake_bucket(&k, &v);
            due += entries.iter().filter(|(at, _)| *at <= until).count();
            out.push((k, entries));
        }
        Ok(out)
    }

    /// Tickets under the due index at or before `until`, earliest first.
    pub fn dues_until(&self, until: i64) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for item in self.backend.scan(Table::Timers, Scan { prefix: vec![keys::DUE], ..Scan::default() }) {
            let (k, _) = item?;
            let Some((at, n)) = keys::split_timer(&k) else { continue };
            if at > until {
                break;
            }
            out.push(n);
        }
        Ok(out)
    }

    /// The earliest instant of one of the clock's indexes.
    pub fn first_timer(&self, index: u8) -> Result<Option<i64>, StoreError> {
        let first = self.backend.scan(Table::Timers, Scan { prefix: vec![index], ..Scan::default() }).next();
        Ok(first.transpose()?.and_then(|(k, _)| keys::split_timer(&k)).map(|(at, _)| at))
    }

    /// When the earliest waiting entry becomes due.
    pub fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let first = self.backend.scan(Table::OutboxDue, Scan::default()).next().transpose()?;
        Ok(first.and_then(|(k, _)| keys::split_due(&k)).and_then(|(at, _)| DateTime::from_timestamp(at, 0)))
    }

    pub fn raw(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get_blob(BlobKind::Raw, sha256)
    }

    pub fn attachment(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get_blob(BlobKind::Attachment, sha256)
    }

    /// Reads a blob through in [`CHUNK`]-sized pieces, checking it against
    /// its name, and returns its length: the check before a download is
    /// streamed, so damaged bytes are refused before a 200 goes out, in
    /// bounded memory whatever the blob's size.
    pub fn verified_len(&self, kind: BlobKind, sha256: &str) -> Result<Option<u64>, StoreError> {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        let mut offset = 0u64;
        loop {
            let Some(piece) = self.backend.blob_range(kind, sha256, offset, CHUNK)? else { return Ok(None) };
            hash.update(&piece);
            offset += piece.len() as u64;
            if piece.len() < CHUNK {
                break;
            }
        }
        if is_sha256_name(sha256) && hex::encode(hash.finalize()) != sha256 {
            return Err(StoreError::BlobMismatch { kind: kind.name(), sha256: sha256.to_owned() });
        }
        Ok(Some(offset))
    }

    /// One piece of a blob, for streaming after [`Store::verified_len`].
    pub fn blob_chunk(&self, kind: BlobKind, sha256: &str, offset: u64) -> Result<Vec<u8>, StoreError> {
        Ok(self.backend.blob_range(kind, sha256, offset, CHUNK)?.unwrap_or_default())
    }

    /// The records of the mails that went into ticket `n`, in the order
    /// they came.
    pub fn ingest_records_for_ticket(&self, n: u64) -> Result<Vec<IngestRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.backend.scan(Table::Ingested, Scan::default()) {
            let (_, v) = item?;
            let rec: IngestRecord = parse(Table::Ingested, &v)?;
            if rec.ticket == Some(n) {
                out.push(rec);
            }
        }
        out.sort_by_key(|r| r.at);
        Ok(out)
    }

    /// The raw messages that went into ticket `n`, in the order they came;
    /// `None` where retention pruned the copy (or it is missing).
    pub fn raw_for_ticket(&self, n: u64) -> Result<Vec<TicketMail>, StoreError> {
        let mut out = Vec::new();
        for rec in self.ingest_records_for_ticket(n)? {
            let raw = if rec.pruned.is_some() { None } else { self.raw(&rec.raw_sha256)? };
            out.push((rec, raw));
        }
        Ok(out)
    }
}

/// Blobs are streamed in pieces of this size: a download holds at most one
/// in memory.
pub const CHUNK: usize = 1 << 20;

/// One mail of a ticket: its record and, unless pruned, its bytes.
pub type TicketMail = (IngestRecord, Option<Vec<u8>>);

/// `<dir>/<sha[0:2]>/<sha>`: spread over 256 folders.
pub fn attachment_file(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(&sha256[..2.min(sha256.len())]).join(sha256)
}

/// How many times something happened in the last hour, per minute: at
/// most 60 small entries however busy the key is (one sender writing ten
/// thousand times an hour costs the same as one writing once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    /// (unix minute, count), oldest first.
    per_minute: Vec<(i64, u32)>,
}

impl Recent {
    fn minute(now: DateTime<Utc>) -> i64 {
        now.timestamp().div_euclid(60)
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        let first = Self::minute(now) - 59;
        self.per_minute.retain(|(m, _)| *m >= first);
    }

    /// Within the last 60 minutes (to the minute).
    pub fn count(&self, now: DateTime<Utc>) -> u32 {
        let first = Self::minute(now) - 59;
        self.per_minute.iter().filter(|(m, _)| *m >= first).map(|(_, n)| *n).sum()
    }

    pub fn add(&mut self, now: DateTime<Utc>) {
        self.prune(now);
        let m = Self::minute(now);
        match self.per_minute.last_mut() {
            Some((last, n)) if *last == m => *n = n.saturating_add(1),
            _ => self.per_minute.push((m, 1)),
        }
    }
}

#[cfg(test)]
mod tests;
