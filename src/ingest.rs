//! The ingest task: the single writer of tickets. Mailbox workers send it
//! batches of raw messages; it parses, snapshots, decides and applies each
//! one in its own transaction, flushes once per batch (group commit), and
//! only then answers with the UIDs the worker may now mark processed.
//!
//! One message must never stop the desk. The work runs on a blocking
//! thread (parsing a hostile mail never stalls the runtime), a panic is
//! contained to its message (quarantined with the reason), and a crash the
//! process cannot survive (stack overflow, abort, a kill while stuck) is
//! caught on the next start: after an unclean stop the first batch of each
//! mailbox is handled one message at a time, each marked in hand durably
//! before the work starts, and a message found in hand after
//! [`POISON_DEATHS`] such deaths is quarantined instead of read again.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::{SubsecRound, Utc};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::mail::InboundMail;
use crate::outbound::templates::Templates;
use crate::store::{InHand, Origin, Store, StoreError};
use crate::triage::{Context, Decision, Effect, Outcome, decide, token::TokenMatcher};

pub enum Item {
    /// A fetched message.
    Mail { uid: u32, raw: Vec<u8> },
    /// Over `desk.max_message_bytes`: only its header was fetched.
    TooLarge { uid: u32, size: u64, header: Vec<u8> },
}

pub struct Batch {
    pub mailbox: String,
    pub uid_validity: u32,
    pub items: Vec<Item>,
    pub reply: oneshot::Sender<BatchResult>,
}

#[derive(Debug)]
pub struct BatchResult {
    /// Durable: safe for the post-action.
    pub done: Vec<u32>,
    /// Set when the batch stopped early; the rest must be fetched again.
    pub error: Option<StoreError>,
}

pub struct Ingest {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub secret: Vec<u8>,
    pub templates: Templates,
    pub tokens: TokenMatcher,
    /// Wakes the SMTP sender when mail was queued.
    pub outbox_wake: Arc<Notify>,
    /// Mailboxes whose next batch is handled one message at a time (the
    /// last run stopped uncleanly, perhaps because of a message in it).
    pub careful: Mutex<BTreeSet<String>>,
}

/// Deaths with one message in hand (in careful mode) before it is
/// quarantined unread. Two: one crash may be bad luck (a kill, a power cut),
/// the same message in hand at two is the message.
pub const POISON_DEATHS: u32 = 2;

impl Ingest {
    pub async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Batch>) {
        while let Some(batch) = rx.recv().await {
            let result = self.process(batch.mailbox, batch.uid_validity, batch.items).await;
            let _ = batch.reply.send(result);
        }
        debug!("ingest: all workers gone, stopping");
    }

    /// Handles one batch on a blocking thread.
    pub async fn process(self: &Arc<Self>, mailbox: String, uid_validity: u32, items: Vec<Item>) -> BatchResult {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.process_blocking(&mailbox, uid_validity, &items)).await {
            Ok(r) => r,
            // Per-message panics are caught inside; this is the store itself.
            Err(e) => BatchResult { done: Vec::new(), error: Some(StoreError::Internal(e.to_string())) },
        }
    }

    fn process_blocking(&self, mailbox: &str, uid_validity: u32, items: &[Item]) -> BatchResult {
        let careful = self.careful.lock().unwrap_or_else(|e| e.into_inner()).remove(mailbox);
        if careful {
            info!(
                mailbox,
                count = items.len(),
                "the last run stopped uncleanly: handling this batch one message at a time"
            );
        }
        let mut done = Vec::with_capacity(items.len());
        let mut queued = false;
        let mut error = None;
        for item in items {
            let r = if careful {
                self.one_careful(mailbox, uid_validity, item)
            } else {
                self.one(mailbox, uid_validity, item, false)
            };
            match r {
                Ok((uid, q)) => {
                    done.push(uid);
                    queued |= q;
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if careful && error.is_some() {
            // Not finished: the rest stays careful.
            self.careful.lock().unwrap_or_else(|e| e.into_inner()).insert(mailbox.to_owned());
        }
        let flushed = self.store.flush_blocking();
        crate::failpoint::hit("flushed");
        if let Err(e) = flushed {
            self.failed(mailbox, &e);
            return BatchResult { done: Vec::new(), error: Some(e) };
        }
        match &error {
            Some(e) => self.failed(mailbox, e),
            None if self.store.note_success() => info!(mailbox, "the store accepts writes again; resuming"),
            None => {}
        }
        if queued {
            self.outbox_wake.notify_one();
        }
        BatchResult { done, error }
    }

    /// Nothing of the failed message is acknowledged on IMAP: the worker
    /// fetches it again after a backoff.
    fn failed(&self, mailbox: &str, e: &StoreError) {
        if self.store.note_failure() {
            error!(mailbox, error = %e, "cannot store messages (disk full?); nothing is marked processed on IMAP until this is fixed; retrying");
        } else {
            debug!(mailbox, error = %e, "store still failing");
        }
        if e.needs_reopen() {
            // sled refuses every write after an I/O error until reopened.
            if let Err(re) = self.store.reopen() {
                debug!(error = %re, "reopen failed; will try again");
            }
        }
    }

    /// Marks the message in hand (durably) before touching it; a message
    /// that was in hand at [`POISON_DEATHS`] deaths is quarantined unread.
    fn one_careful(&self, mailbox: &str, uid_validity: u32, item: &Item) -> Result<(u32, bool), StoreError> {
        let (Item::Mail { uid, raw } | Item::TooLarge { uid, header: raw, .. }) = item;
        let deaths = match self.store.in_hand(mailbox)? {
            Some(h) if h.uid_validity == uid_validity && h.uid == *uid => h.deaths + 1,
            _ => 0,
        };
        if deaths >= POISON_DEATHS {
            let reason = format!(
                "ticketd stopped unexpectedly {deaths} times while handling this message; it is kept here unread so the mailbox can go on"
            );
            error!(mailbox, uid, deaths, "a message keeps stopping ticketd: quarantined without reading it");
            let now = Utc::now().trunc_subsecs(0);
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw));
            let d = Decision { outcome: Outcome::Quarantined, effects: vec![Effect::Quarantine { reason }] };
            let origin = Origin {
                mailbox,
                uid_validity,
                uid: *uid,
                raw,
                dedupe_key: format!("sha256:{sha}"),
                clear_in_hand: true,
            };
            self.store.apply(&origin, None, &d, now)?;
            return Ok((*uid, false));
        }
        self.store.set_in_hand(mailbox, InHand { uid_validity, uid: *uid, deaths })?;
        self.one(mailbox, uid_validity, item, true)
    }

    fn one(
        &self,
        mailbox: &str,
        uid_validity: u32,
        item: &Item,
        clear_in_hand: bool,
    ) -> Result<(u32, bool), StoreError> {
        // Whole seconds, as in the ticket object's examples.
        let now = Utc::now().trunc_subsecs(0);
        let mb = self.cfg.mailbox(mailbox).unwrap_or(&self.cfg.mailboxes[0]);
        let (uid, raw, parsed, decision) = match item {
            Item::TooLarge { uid, size, header } => {
                let reason = format!(
                    "message of {size} bytes is over desk.max_message_bytes ({}); only its header was kept",
                    self.cfg.desk.max_message_bytes
                );
                let dedupe = format!("toolarge:{uid_validity}:{uid}");
                let d = Decision { outcome: Outcome::Quarantined, effects: vec![Effect::Quarantine { reason }] };
                let origin =
                    Origin { mailbox, uid_validity, uid: *uid, raw: header, dedupe_key: dedupe, clear_in_hand };
                self.store.apply(&origin, None, &d, now)?;
                warn!(mailbox, uid, size, "message too large: quarantined");
                return Ok((*uid, false));
            }
            Item::Mail { uid, raw } => {
                let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::failpoint::poison(raw);
                    InboundMail::parse(raw).map(|mail| {
                        let snap = self.store.snapshot(mailbox, &mail, &self.tokens, now)?;
                        let ctx = Context {
                            cfg: &self.cfg,
                            mailbox: mb,
                            secret: &self.secret,
                            templates: &self.templates,
                            tokens: &self.tokens,
                        };
                        let d = decide(&mail, &snap, &ctx, now);
                        Ok::<_, StoreError>((mail, d))
                    })
                }));
                let quarantine = |reason: String| Decision {
                    outcome: Outcome::Quarantined,
                    effects: vec![Effect::Quarantine { reason }],
                };
                match read {
                    Ok(Ok(Ok((mail, d)))) => (*uid, raw, Some(mail), d),
                    Ok(Ok(Err(e))) => return Err(e),
                    Ok(Err(e)) => (*uid, raw, None, quarantine(format!("unparseable: {e}"))),
                    Err(panic) => {
                        let what = panic_text(panic.as_ref());
                        error!(mailbox, uid, panic = %what, "internal error while reading a message: quarantined, the mailbox goes on");
                        (*uid, raw, None, quarantine(format!("internal error while reading this message: {what}")))
                    }
                }
            }
        };
        let dedupe_key = match &parsed {
            Some(m) => m.dedupe_key(),
            None => format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw))),
        };
        let origin = Origin { mailbox, uid_validity, uid, raw, dedupe_key, clear_in_hand };
        let queued = self.store.apply(&origin, parsed.as_ref(), &decision, now)?;
        crate::failpoint::hit("committed");
        let message_id = parsed.as_ref().and_then(|m| m.message_id.as_deref()).unwrap_or("");
        match &decision.outcome {
            Outcome::Created { ticket, follow_up_of } => {
                info!(mailbox, uid, message_id, ticket, ?follow_up_of, "new ticket")
            }
            Outcome::Replied { ticket, agent } => info!(mailbox, uid, message_id, ticket, ?agent, "reply added"),
            Outcome::Rejected { ticket } => info!(mailbox, uid, message_id, ticket, "agent command rejected"),
            Outcome::Bounce { ticket } => info!(mailbox, uid, message_id, ticket, "bounce recorded"),
            Outcome::Quarantined => warn!(mailbox, uid, message_id, "message quarantined"),
            Outcome::Duplicate => debug!(mailbox, uid, message_id, "duplicate skipped"),
            Outcome::OwnMail => debug!(mailbox, uid, message_id, "our own mail, skipped"),
        }
        Ok((uid, !queued.is_empty()))
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}
