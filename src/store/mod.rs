//! The sled store. Every effect of one inbound message (ticket, indexes,
//! outbox entries, raw copy, mailbox cursor) is written in ONE transaction;
//! the caller flushes before any IMAP post-action or SMTP send.
//!
//! Trees: `meta` (counters, secret), `tickets` (n → record), `msgids`
//! (Message-ID → n), `ingested` (mailbox + dedupe key → record), `clients`
//! (address → client id), `cursors` (mailbox → UIDVALIDITY + last UID),
//! `raw` (SHA-256 → bytes), `outbox` (seq → pending mail), `sent` (seq →
//! finished mail), `outbox_ids` (Message-ID → seq), `acks` (sender → recent
//! ack times), `quarantine` (seq → entry).

pub mod outbox;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::config::StoreConfig;
use crate::mail::{InboundMail, normalise_id};
use crate::outbound::{OutState, OutboxEntry};
use crate::ticket::{TicketRecord, client_id};
use crate::triage::{Decision, Effect, Snapshot, token::TokenMatcher};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the database {0} is in use by another process (is the ticketd daemon running? stop it first: sled allows one process at a time)"
    )]
    Locked(PathBuf),
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in tree {tree}: {detail}")]
    Corrupt { tree: &'static str, detail: String },
    #[error("attachment store {path}: {source}")]
    Attachment { path: PathBuf, source: std::io::Error },
    #[error("the store changed under a decision (another writer?)")]
    Conflict,
    #[error("the database is closed (a reopen after an I/O error failed)")]
    Closed,
    #[error("the database could not be reopened: still in use")]
    Busy,
    #[error("internal error: {0}")]
    Internal(String),
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub uid_validity: u32,
    /// Highest UID whose effects are committed.
    pub last_uid: u32,
    /// Highest UID whose IMAP post-action is known done. Between the two lie
    /// messages a crash caught after the commit: their post-action is redone.
    #[serde(default)]
    pub acked_uid: Option<u32>,
}

/// Where one inbound message came from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub mailbox: &'a str,
    pub uid_validity: u32,
    pub uid: u32,
    pub raw: &'a [u8],
    pub dedupe_key: String,
    /// Handled in careful mode: the commit also clears the in-hand marker.
    pub clear_in_hand: bool,
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

fn in_hand_key(mailbox: &str) -> Vec<u8> {
    let mut k = b"inhand\0".to_vec();
    k.extend_from_slice(mailbox.as_bytes());
    k
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestRecord {
    pub raw_sha256: String,
    pub ticket: Option<u64>,
    pub uid_validity: u32,
    pub uid: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: u64,
    pub reason: String,
    pub mailbox: String,
    pub uid: u32,
    pub raw_sha256: String,
    pub at: DateTime<Utc>,
}

/// The open database: every tree of one sled `Db`. Behind [`Store`], which
/// can swap it for a fresh one (sled refuses all writes after an I/O error
/// such as a full disk, until reopened).
pub struct Trees {
    db: sled::Db,
    meta: sled::Tree,
    tickets: sled::Tree,
    msgids: sled::Tree,
    ingested: sled::Tree,
    clients: sled::Tree,
    cursors: sled::Tree,
    raw: sled::Tree,
    outbox: sled::Tree,
    sent: sled::Tree,
    outbox_ids: sled::Tree,
    acks: sled::Tree,
    quarantine: sled::Tree,
    attachments_dir: PathBuf,
}

/// Acknowledgement times that still count against the per-sender limit.
fn keep_last_hour(times: &mut Vec<DateTime<Utc>>, now: DateTime<Utc>) {
    times.retain(|t| now.signed_duration_since(*t) < chrono::Duration::hours(1));
}

/// `<dir>/<sha[0:2]>/<sha>`: spread over 256 folders.
fn attachment_file(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(&sha256[..2.min(sha256.len())]).join(sha256)
}

pub(crate) fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub(crate) fn from_be(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

pub(crate) fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records always serialise")
}

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(tree: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt { tree, detail: e.to_string() })
}

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_parse<T: for<'de> Deserialize<'de>>(tree: &'static str, b: &[u8]) -> TxResult<T> {
    parse(tree, b).map_err(ConflictableTransactionError::Abort)
}

fn flatten<T>(r: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

fn counter(meta: &TransactionalTree, key: &str) -> TxResult<u64> {
    Ok(meta.get(key)?.and_then(|v| from_be(&v)).unwrap_or(1))
}

impl Trees {
    fn open(path: &Path, attachments_dir: &Path, cache_bytes: u64) -> Result<Trees, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes.max(1 << 20))
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(path.to_owned())
                }
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked(path.to_owned())
                }
                e => StoreError::Sled(e),
            })?;
        Ok(Trees {
            meta: db.open_tree("meta")?,
            tickets: db.open_tree("tickets")?,
            msgids: db.open_tree("msgids")?,
            ingested: db.open_tree("ingested")?,
            clients: db.open_tree("clients")?,
            cursors: db.open_tree("cursors")?,
            raw: db.open_tree("raw")?,
            outbox: db.open_tree("outbox")?,
            sent: db.open_tree("sent")?,
            outbox_ids: db.open_tree("outbox_ids")?,
            acks: db.open_tree("acks")?,
            quarantine: db.open_tree("quarantine")?,
            attachments_dir: attachments_dir.to_owned(),
            db,
        })
    }

    /// Makes everything written so far durable. Call before any IMAP
    /// post-action or SMTP send that depends on it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// The HMAC secret for agent-only ids when no `desk.secret_file` is
    /// configured: generated once, kept in the store.
    pub fn secret(&self) -> Result<Vec<u8>, StoreError> {
        if let Some(s) = self.meta.get("secret")? {
            return Ok(s.to_vec());
        }
        let fresh: [u8; 32] = rand::random();
        let _ = self.meta.compare_and_swap("secret", None as Option<&[u8]>, Some(&fresh[..]))?;
        self.db.flush()?;
        Ok(self.meta.get("secret")?.map(|s| s.to_vec()).unwrap_or_else(|| fresh.to_vec()))
    }

    pub fn cursor(&self, mailbox: &str) -> Result<Option<Cursor>, StoreError> {
        self.cursors.get(mailbox)?.map(|v| parse("cursors", &v)).transpose()
    }

    /// Marks the store as in use by a running daemon, durably. True when the
    /// mark was already there: the last run did not stop cleanly.
    pub fn begin_run(&self) -> Result<bool, StoreError> {
        let unclean = self.meta.insert("running", &[1u8])?.is_some();
        self.db.flush()?;
        Ok(unclean)
    }

    /// A clean stop: nothing was in hand.
    pub fn end_run(&self) -> Result<(), StoreError> {
        self.meta.remove("running")?;
        self.db.flush()?;
        Ok(())
    }

    pub fn in_hand(&self, mailbox: &str) -> Result<Option<InHand>, StoreError> {
        self.meta.get(in_hand_key(mailbox))?.map(|v| parse("meta", &v)).transpose()
    }

    /// Durable before it returns: the marker must survive whatever the
    /// message is about to do to the process.
    pub fn set_in_hand(&self, mailbox: &str, h: InHand) -> Result<(), StoreError> {
        self.meta.insert(in_hand_key(mailbox), json(&h))?;
        self.db.flush()?;
        Ok(())
    }

    /// Records that the post-action for everything up to `uid` is done. Not
    /// flushed: losing it only means redoing an idempotent post-action.
    pub fn set_acked(&self, mailbox: &str, uid_validity: u32, uid: u32) -> Result<(), StoreError> {
        let r = self.cursors.transaction(|cursors| {
            if let Some(b) = cursors.get(mailbox)? {
                let mut c: Cursor = tx_parse("cursors", &b)?;
                if c.uid_validity == uid_validity {
                    c.acked_uid = Some(c.acked_uid.unwrap_or(0).max(uid).min(c.last_uid));
                    cursors.insert(mailbox, json(&c))?;
                }
            }
            Ok(())
        });
        flatten(r)
    }

    /// Starts a mailbox over after a UIDVALIDITY change. Dedupe by
    /// Message-ID keeps the re-read from duplicating anything.
    pub fn reset_cursor(&self, mailbox: &str, uid_validity: u32) -> Result<(), StoreError> {
        self.cursors.insert(mailbox, json(&Cursor { uid_validity, last_uid: 0, acked_uid: Some(0) }))?;
        Ok(())
    }

    pub fn ticket(&self, number: u64) -> Result<Option<TicketRecord>, StoreError> {
        self.tickets.get(be(number))?.map(|v| parse("tickets", &v)).transpose()
    }

    pub fn tickets(&self) -> impl Iterator<Item = Result<TicketRecord, StoreError>> + '_ {
        self.tickets.iter().map(|r| {
            let (_, v) = r?;
            parse("tickets", &v)
        })
    }

    pub fn ticket_by_message_id(&self, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.msgids.get(normalise_id(id))?.and_then(|v| from_be(&v)))
    }

    pub fn raw(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.raw.get(sha256)?.map(|v| v.to_vec()))
    }

    pub fn quarantined(&self) -> impl Iterator<Item = Result<QuarantineEntry, StoreError>> + '_ {
        self.quarantine.iter().map(|r| {
            let (_, v) = r?;
            parse("quarantine", &v)
        })
    }

    fn ingest_key(mailbox: &str, dedupe: &str) -> Vec<u8> {
        let mut k = mailbox.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(dedupe.as_bytes());
        k
    }

    /// Everything [`crate::triage::decide`] needs to know about `mail`.
    pub fn snapshot(
        &self,
        mailbox: &str,
        mail: &InboundMail,
        tokens: &TokenMatcher,
        now: DateTime<Utc>,
    ) -> Result<Snapshot, StoreError> {
        let duplicate = self.ingested.contains_key(Self::ingest_key(mailbox, &mail.dedupe_key()))?;
        let bounced = mail.report.as_ref().and_then(|r| r.original_message_id.as_deref());
        let mut by_thread = None;
        for id in bounced.into_iter().chain(mail.parent_ids()) {
            if let Some(n) = self.ticket_by_message_id(id)? {
                by_thread = self.ticket(n)?;
                if by_thread.is_some() {
                    break;
                }
            }
        }
        let by_token = match tokens.find(&mail.subject) {
            Some(n) if by_thread.as_ref().is_none_or(|t| t.number != n) => self.ticket(n)?,
            _ => None,
        };
        let sender = mail.from.as_ref().map(|f| f.address.as_str()).unwrap_or("");
        let sender_client = self.clients.get(sender)?.map(|v| String::from_utf8_lossy(&v).into_owned());
        let read =
            |k: &str| -> Result<u64, StoreError> { Ok(self.meta.get(k)?.and_then(|v| from_be(&v)).unwrap_or(1)) };
        Ok(Snapshot {
            duplicate,
            by_thread,
            by_token,
            sender_client,
            next_client: read("next_client")?,
            next_ticket: read("next_ticket")?,
            acks_last_hour: self.recent_acks(sender, now)?.len() as u32,
        })
    }

    fn recent_acks(&self, sender: &str, now: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let mut v: Vec<DateTime<Utc>> = match self.acks.get(sender)? {
            Some(b) => parse("acks", &b)?,
            None => Vec::new(),
        };
        keep_last_hour(&mut v, now);
        Ok(v)
    }

    /// Content-addressed: written before the transaction that refers to it,
    /// so a crash leaves at worst an orphan file, never a dangling URL.
    pub fn write_attachment(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let path = attachment_file(&self.attachments_dir, sha256);
        let dir = path.parent().unwrap_or(&self.attachments_dir).to_owned();
        let err = |source| StoreError::Attachment { path: path.clone(), source };
        if path.exists() {
            return Ok(path);
        }
        std::fs::create_dir_all(&dir).map_err(err)?;
        let tmp = dir.join(format!(".{sha256}.tmp"));
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        Ok(path)
    }

    /// Applies one decision and the message's bookkeeping atomically.
    /// Returns the outbox sequence numbers queued.
    pub fn apply(
        &self,
        origin: &Origin<'_>,
        mail: Option<&InboundMail>,
        decision: &Decision,
        now: DateTime<Utc>,
    ) -> Result<Vec<u64>, StoreError> {
        if let Some(mail) = mail {
            for e in &decision.effects {
                if let Effect::WriteAttachment { index } = e
                    && let Some(a) = mail.attachments.get(*index)
                {
                    self.write_attachment(&a.sha256, &a.bytes)?;
                }
            }
        }
        let raw_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(origin.raw));
        let ingest_key = Self::ingest_key(origin.mailbox, &origin.dedupe_key);
        let trees = (
            &self.meta,
            &self.tickets,
            &self.msgids,
            &self.ingested,
            &self.clients,
            &self.cursors,
            &self.raw,
            &self.outbox,
            &self.outbox_ids,
            &self.acks,
            &self.quarantine,
            &self.sent,
        );
        let result = trees.transaction(
            |(meta, tickets, msgids, ingested, clients, cursors, raw, outbox, outbox_ids, acks, quarantine, sent)| {
                let mut cursor = match cursors.get(origin.mailbox)? {
                    Some(c) => tx_parse::<Cursor>("cursors", &c)?,
                    None => Cursor { uid_validity: origin.uid_validity, last_uid: 0, acked_uid: Some(0) },
                };
                if cursor.uid_validity != origin.uid_validity {
                    cursor = Cursor { uid_validity: origin.uid_validity, last_uid: 0, acked_uid: Some(0) };
                }
                cursor.last_uid = cursor.last_uid.max(origin.uid);
                cursors.insert(origin.mailbox.as_bytes(), json(&cursor))?;
                if origin.clear_in_hand {
                    meta.remove(in_hand_key(origin.mailbox))?;
                }
                if ingested.get(&ingest_key)?.is_some() {
                    // Already ingested (a re-fetch after a crash): only the cursor moves.
                    return Ok(Vec::new());
                }
                let mut queued = Vec::new();
                let mut ticket_no = None;
                for effect in &decision.effects {
                    match effect {
                        Effect::CreateClient { address, number } => {
                            if counter(meta, "next_client")? != *number {
                                return abort(StoreError::Conflict);
                            }
                            clients.insert(address.as_bytes(), client_id(*number).as_bytes())?;
                            meta.insert("next_client", &be(number + 1))?;
                        }
                        Effect::SaveTicket(rec) => {
                            let next = counter(meta, "next_ticket")?;
                            if tickets.get(be(rec.number))?.is_none() {
                                if rec.number != next {
                                    return abort(StoreError::Conflict);
                                }
                                meta.insert("next_ticket", &be(next + 1))?;
                            }
                            tickets.insert(&be(rec.number), json(rec.as_ref()))?;
                            ticket_no = Some(rec.number);
                        }
                        Effect::IndexMessageId { id, ticket } => {
                            msgids.insert(normalise_id(id).as_bytes(), &be(*ticket))?;
                            ticket_no = ticket_no.or(Some(*ticket));
                        }
                        Effect::WriteAttachment { .. } => {}
                        Effect::Send(mail) => {
                            let seq = counter(meta, "next_outbox")?;
                            meta.insert("next_outbox", &be(seq + 1))?;
                            let entry = OutboxEntry {
                                mail: mail.as_ref().clone(),
                                state: OutState::Queued,
                                attempts: 0,
                                next_attempt: now,
                                last_error: None,
                                created: now,
                                done_rcpts: Vec::new(),
                                failed_rcpts: Vec::new(),
                            };
                            outbox.insert(&be(seq), json(&entry))?;
                            outbox_ids.insert(normalise_id(&mail.message_id).as_bytes(), &be(seq))?;
                            queued.push(seq);
                        }
                        Effect::CountAck { sender } => {
                            let mut v: Vec<DateTime<Utc>> = match acks.get(sender.as_bytes())? {
                                Some(b) => tx_parse("acks", &b)?,
                                None => Vec::new(),
                            };
                            keep_last_hour(&mut v, now);
                            v.push(now);
                            acks.insert(sender.as_bytes(), json(&v))?;
                        }
                        Effect::MarkSentFailed { message_id, reason } => {
                            if let Some(seq) = outbox_ids.get(normalise_id(message_id).as_bytes())? {
                                for tree in [&outbox, &sent] {
                                    if let Some(b) = tree.get(&seq)? {
                                        let mut e: OutboxEntry = tx_parse("outbox", &b)?;
                                        e.state = OutState::Failed;
                                        e.last_error = Some(reason.clone());
                                        tree.insert(&seq, json(&e))?;
                                    }
                                }
                                // A bounced message no longer waits to be sent.
                                if let Some(b) = outbox.remove(&seq)? {
                                    sent.insert(&seq, b)?;
                                }
                            }
                        }
                        Effect::Quarantine { reason } => {
                            let id = counter(meta, "next_quarantine")?;
                            meta.insert("next_quarantine", &be(id + 1))?;
                            let q = QuarantineEntry {
                                id,
                                reason: reason.clone(),
                                mailbox: origin.mailbox.to_owned(),
                                uid: origin.uid,
                                raw_sha256: raw_sha.clone(),
                                at: now,
                            };
                            quarantine.insert(&be(id), json(&q))?;
                        }
                    }
                }
                raw.insert(raw_sha.as_bytes(), origin.raw)?;
                let rec = IngestRecord {
                    raw_sha256: raw_sha.clone(),
                    ticket: ticket_no,
                    uid_validity: origin.uid_validity,
                    uid: origin.uid,
                    at: now,
                };
                ingested.insert(ingest_key.as_slice(), json(&rec))?;
                Ok(queued)
            },
        );
        flatten(result)
    }
}

#[cfg(test)]
mod tests;

impl Trees {
    /// The raw messages that went into ticket `n`, in the order they came.
    pub fn raw_for_ticket(&self, n: u64) -> Result<Vec<(IngestRecord, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.ingested.iter() {
            let (_, v) = item?;
            let rec: IngestRecord = parse("ingested", &v)?;
            if rec.ticket == Some(n)
                && let Some(raw) = self.raw.get(rec.raw_sha256.as_bytes())?
            {
                out.push((rec, raw.to_vec()));
            }
        }
        out.sort_by_key(|(r, _)| r.at);
        Ok(out)
    }

    pub fn quarantined_entry(&self, id: u64) -> Result<Option<QuarantineEntry>, StoreError> {
        self.quarantine.get(be(id))?.map(|v| parse("quarantine", &v)).transpose()
    }

    /// Takes an entry out of quarantine so its raw bytes can be ingested
    /// again: the entry and its dedupe record go, the raw copy stays.
    pub fn release_quarantined(&self, id: u64) -> Result<Option<(QuarantineEntry, Vec<u8>)>, StoreError> {
        let Some(q) = self.quarantined_entry(id)? else { return Ok(None) };
        let raw = self.raw(&q.raw_sha256)?.unwrap_or_default();
        let key_tail: Vec<Vec<u8>> = self
            .ingested
            .scan_prefix(Self::ingest_key(&q.mailbox, ""))
            .filter_map(|r| r.ok())
            .filter(|(_, v)| {
                parse::<IngestRecord>("ingested", v).is_ok_and(|r| r.raw_sha256 == q.raw_sha256 && r.ticket.is_none())
            })
            .map(|(k, _)| k.to_vec())
            .collect();
        let r = (&self.quarantine, &self.ingested).transaction(|(quarantine, ingested)| {
            quarantine.remove(&be(id))?;
            for k in &key_tail {
                ingested.remove(k.as_slice())?;
            }
            Ok(())
        });
        flatten(r)?;
        Ok(Some((q, raw)))
    }

    /// Forgets a quarantined message for good (its dedupe record stays, so
    /// it is not ingested again).
    pub fn drop_quarantined(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.quarantine.remove(be(id))?.is_some())
    }
}

/// The store the daemon and the CLI use: a handle to the open [`Trees`]
/// that can be reopened in place after an I/O error (a full disk poisons a
/// sled `Db` for good; a fresh open recovers once space is back).
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    current: RwLock<Option<Arc<Trees>>>,
    /// Writes are failing: log the change of state once, not every retry.
    failing: std::sync::atomic::AtomicBool,
    path: PathBuf,
    attachments_dir: PathBuf,
    cache_bytes: u64,
}

impl Store {
    pub fn open(cfg: &StoreConfig) -> Result<Store, StoreError> {
        Self::open_path(&cfg.path, &cfg.attachments_dir, cfg.cache_bytes)
    }

    pub fn open_path(path: &Path, attachments_dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let trees = Trees::open(path, attachments_dir, cache_bytes)?;
        Ok(Store {
            shared: Arc::new(Shared {
                current: RwLock::new(Some(Arc::new(trees))),
                failing: Default::default(),
                path: path.to_owned(),
                attachments_dir: attachments_dir.to_owned(),
                cache_bytes,
            }),
        })
    }

    /// The open trees; when an earlier reopen failed, tries to open again
    /// (the disk may have room by now).
    fn t(&self) -> Result<Arc<Trees>, StoreError> {
        if let Some(t) = self.shared.current.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(t);
        }
        let mut slot = self.shared.current.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot =
                Some(Arc::new(Trees::open(&self.shared.path, &self.shared.attachments_dir, self.shared.cache_bytes)?));
        }
        slot.clone().ok_or(StoreError::Closed)
    }

    /// Closes the database and opens it again. Blocks for up to a few
    /// seconds while other tasks finish what they hold.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.shared.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.take() {
            let weak = Arc::downgrade(&old);
            drop(old);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while weak.strong_count() > 0 {
                if std::time::Instant::now() > deadline {
                    *slot = weak.upgrade();
                    return Err(StoreError::Busy);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        // sled's flusher thread lets go of the file lock a moment after the Db.
        let mut result = Err(StoreError::Closed);
        for _ in 0..100 {
            result = Trees::open(&self.shared.path, &self.shared.attachments_dir, self.shared.cache_bytes);
            if !matches!(result, Err(StoreError::Locked(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        *slot = Some(Arc::new(result?));
        Ok(())
    }

    /// Records a failed write; true when this starts a failing spell.
    pub fn note_failure(&self) -> bool {
        !self.shared.failing.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Records a good write; true when this ends a failing spell.
    pub fn note_success(&self) -> bool {
        self.shared.failing.swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.t()?.flush().await
    }
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.t()?.flush_blocking()
    }
    pub fn secret(&self) -> Result<Vec<u8>, StoreError> {
        self.t()?.secret()
    }
    pub fn cursor(&self, mailbox: &str) -> Result<Option<Cursor>, StoreError> {
        self.t()?.cursor(mailbox)
    }
    pub fn begin_run(&self) -> Result<bool, StoreError> {
        self.t()?.begin_run()
    }
    pub fn end_run(&self) -> Result<(), StoreError> {
        self.t()?.end_run()
    }
    pub fn in_hand(&self, mailbox: &str) -> Result<Option<InHand>, StoreError> {
        self.t()?.in_hand(mailbox)
    }
    pub fn set_in_hand(&self, mailbox: &str, h: InHand) -> Result<(), StoreError> {
        self.t()?.set_in_hand(mailbox, h)
    }
    pub fn set_acked(&self, mailbox: &str, uid_validity: u32, uid: u32) -> Result<(), StoreError> {
        self.t()?.set_acked(mailbox, uid_validity, uid)
    }
    pub fn reset_cursor(&self, mailbox: &str, uid_validity: u32) -> Result<(), StoreError> {
        self.t()?.reset_cursor(mailbox, uid_validity)
    }
    pub fn ticket(&self, number: u64) -> Result<Option<TicketRecord>, StoreError> {
        self.t()?.ticket(number)
    }
    pub fn tickets(&self) -> Result<Vec<TicketRecord>, StoreError> {
        self.t()?.tickets().collect()
    }
    pub fn ticket_by_message_id(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.t()?.ticket_by_message_id(id)
    }
    pub fn raw(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.t()?.raw(sha256)
    }
    pub fn quarantined(&self) -> Result<Vec<QuarantineEntry>, StoreError> {
        self.t()?.quarantined().collect()
    }
    pub fn quarantined_entry(&self, id: u64) -> Result<Option<QuarantineEntry>, StoreError> {
        self.t()?.quarantined_entry(id)
    }
    pub fn raw_for_ticket(&self, n: u64) -> Result<Vec<(IngestRecord, Vec<u8>)>, StoreError> {
        self.t()?.raw_for_ticket(n)
    }
    pub fn release_quarantined(&self, id: u64) -> Result<Option<(QuarantineEntry, Vec<u8>)>, StoreError> {
        self.t()?.release_quarantined(id)
    }
    pub fn drop_quarantined(&self, id: u64) -> Result<bool, StoreError> {
        self.t()?.drop_quarantined(id)
    }
    pub fn snapshot(
        &self,
        mailbox: &str,
        mail: &InboundMail,
        tokens: &TokenMatcher,
        now: DateTime<Utc>,
    ) -> Result<Snapshot, StoreError> {
        self.t()?.snapshot(mailbox, mail, tokens, now)
    }
    pub fn write_attachment(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        self.t()?.write_attachment(sha256, bytes)
    }
    pub fn attachment_path(&self, sha256: &str) -> PathBuf {
        attachment_file(&self.shared.attachments_dir, sha256)
    }
    pub fn apply(
        &self,
        origin: &Origin<'_>,
        mail: Option<&InboundMail>,
        decision: &Decision,
        now: DateTime<Utc>,
    ) -> Result<Vec<u64>, StoreError> {
        self.t()?.apply(origin, mail, decision, now)
    }
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.t()?.due(now, limit)
    }
    pub fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.t()?.next_due_at()
    }
    pub fn pending_count(&self) -> usize {
        self.t().map(|t| t.pending_count()).unwrap_or(0)
    }
    pub fn pending_entries(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.t()?.pending_entries().collect()
    }
    pub fn sent_entries(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.t()?.sent_entries().collect()
    }
    pub fn mark_sent(&self, seq: u64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.t()?.mark_sent(seq, now)
    }
    pub fn mark_retry(&self, seq: u64, error: &str, next: DateTime<Utc>) -> Result<(), StoreError> {
        self.t()?.mark_retry(seq, error, next)
    }
    pub fn record_rcpt(
        &self,
        seq: u64,
        rcpt: &str,
        refused: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.t()?.record_rcpt(seq, rcpt, refused, now)
    }
    pub fn mark_failed(&self, seq: u64, error: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.t()?.mark_failed(seq, error, now)
    }
}

impl StoreError {
    /// Errors after which the open database refuses further writes.
    pub fn needs_reopen(&self) -> bool {
        matches!(self, StoreError::Sled(sled::Error::Io(_)) | StoreError::Sled(sled::Error::ReportableBug(_)))
    }
}
