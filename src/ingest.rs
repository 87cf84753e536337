//! The ingest task: the single writer of tickets. Mailbox workers send it
//! batches of raw messages; it parses, snapshots, decides and applies each
//! one in its own transaction, flushes once per batch (group commit), and
//! only then answers with the UIDs the worker may now mark processed.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::mail::InboundMail;
use crate::outbound::templates::Templates;
use crate::store::{Origin, Store, StoreError};
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
}

impl Ingest {
    pub async fn run(self, mut rx: mpsc::Receiver<Batch>) {
        while let Some(batch) = rx.recv().await {
            let result = self.process(&batch.mailbox, batch.uid_validity, &batch.items).await;
            let _ = batch.reply.send(result);
        }
        debug!("ingest: all workers gone, stopping");
    }

    pub async fn process(&self, mailbox: &str, uid_validity: u32, items: &[Item]) -> BatchResult {
        let mut done = Vec::with_capacity(items.len());
        let mut queued = false;
        let mut error = None;
        for item in items {
            match self.one(mailbox, uid_validity, item) {
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
        let flushed = self.store.flush().await;
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

    fn one(&self, mailbox: &str, uid_validity: u32, item: &Item) -> Result<(u32, bool), StoreError> {
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
                let origin = Origin { mailbox, uid_validity, uid: *uid, raw: header, dedupe_key: dedupe };
                self.store.apply(&origin, None, &d, now)?;
                warn!(mailbox, uid, size, "message too large: quarantined");
                return Ok((*uid, false));
            }
            Item::Mail { uid, raw } => match InboundMail::parse(raw) {
                Ok(mail) => {
                    let snap = self.store.snapshot(mailbox, &mail, &self.tokens, now)?;
                    let ctx = Context {
                        cfg: &self.cfg,
                        mailbox: mb,
                        secret: &self.secret,
                        templates: &self.templates,
                        tokens: &self.tokens,
                    };
                    let d = decide(&mail, &snap, &ctx, now);
                    (*uid, raw, Some(mail), d)
                }
                Err(e) => {
                    let d = Decision {
                        outcome: Outcome::Quarantined,
                        effects: vec![Effect::Quarantine { reason: format!("unparseable: {e}") }],
                    };
                    (*uid, raw, None, d)
                }
            },
        };
        let dedupe_key = match &parsed {
            Some(m) => m.dedupe_key(),
            None => format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw))),
        };
        let origin = Origin { mailbox, uid_validity, uid, raw, dedupe_key };
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
