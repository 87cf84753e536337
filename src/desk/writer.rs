//! The one writer. Every change to the desk arrives here as a typed
//! [`Job`] over a bounded channel and is decided by the pure rules
//! (`triage::decide` for mail, `triage::act` for everything else) on a
//! dedicated thread. Jobs that queue up while one commit runs are handled
//! together and committed once (group commit); each gets its answer only
//! after that commit is durable. A job that fails rolls back to its
//! savepoint without touching the others.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, error, info, warn};

use super::apply::{apply, queue_mail, record_delivery, store_entry};
use super::ingest::{BatchResult, Item, Mode, POISON_DEATHS, ingest_batch, ingest_one, quarantine_unread};
use super::tx::Tx;
use super::{Delivery, DeskError, Upload};
use crate::config::Config;
use crate::health::Health;
use crate::mail::safe_filename;
use crate::outbox::OutAttachment;
use crate::outbox::templates::Templates;
use crate::record::TicketRecord;
use crate::store::{BlobKind, Committer, Cursor, Get, InHand, Records, Store, StoreError, Table, be, json, keys};
use crate::ticket::Attachment;
use crate::triage::act::{Action, Actor, act};
use crate::triage::outgoing::Composer;
use crate::triage::{Context, attachment_url};

/// Who asks for a change, by name, as it travels to the writer; the writer
/// resolves it against the config into the rules' [`Actor`] (which borrows
/// the agent's entry). The API's `Principal` is who holds a token, before
/// any "act as"; the mail path proves an agent and names it here too. Four
/// types, one fact at each stage: who holds the credential (`Principal`),
/// the authenticated request (`Caller`), who acts (this), as the rules see
/// it (`Actor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorRef {
    Agent(String),
    Admin,
    System,
}

impl ActorRef {
    /// How entries and logs name it.
    pub fn label(&self) -> &str {
        match self {
            ActorRef::Agent(id) => id,
            ActorRef::Admin => "admin",
            ActorRef::System => "system",
        }
    }
}

pub(super) enum Job {
    Ingest {
        mailbox: String,
        uid_validity: u32,
        items: Vec<Item>,
        /// When the batch left the IMAP worker (for the latency histogram).
        fetched: std::time::Instant,
        mode: Mode,
        /// The worker's connection (0: not a worker). After a batch of a
        /// session fails, the session's later batches are refused: their
        /// UIDs must not move the cursor past the mail that failed.
        session: u64,
        reply: oneshot::Sender<BatchResult>,
    },
    /// Nobody waits for it: see [`Desk::acked`](super::Desk::acked).
    Acked {
        mailbox: String,
        uid_validity: u32,
        uid: u32,
    },
    SetCursor {
        mailbox: String,
        cursor: Cursor,
        reply: oneshot::Sender<Result<(), DeskError>>,
    },
    Act {
        ticket: u64,
        actor: ActorRef,
        actions: Vec<Action>,
        uploads: Vec<Upload>,
        expect_version: Option<u64>,
        reply: oneshot::Sender<Result<TicketRecord, DeskError>>,
    },
    Delivery {
        seq: u64,
        reports: Vec<Delivery>,
        reply: oneshot::Sender<Result<(), DeskError>>,
    },
    QuarantineRetry {
        id: u64,
        actor: ActorRef,
        reply: oneshot::Sender<Result<RetryOutcome, DeskError>>,
    },
    QuarantineDrop {
        id: u64,
        actor: ActorRef,
        reply: oneshot::Sender<Result<(), DeskError>>,
    },
    OutboxRetry {
        seq: u64,
        actor: ActorRef,
        reply: oneshot::Sender<Result<(), DeskError>>,
    },
    OutboxDrop {
        seq: u64,
        actor: ActorRef,
        reply: oneshot::Sender<Result<(), DeskError>>,
    },
    /// A clean stop: nothing is in hand.
    EndRun {
        reply: oneshot::Sender<Result<(), DeskError>>,
    },
    /// Writes as they are, without rules: a restore into an empty store
    /// (`backup::restore`), the only caller.
    Load {
        writes: crate::store::WriteSet,
        reply: oneshot::Sender<Result<(), DeskError>>,
    },
    /// Copies every table of the committed state to `dir` (a backup).
    Backup {
        dir: std::path::PathBuf,
        reply: oneshot::Sender<Result<super::backup::Snapshot, super::backup::BackupError>>,
    },
    /// Ticket `from` merged into ticket `into` (#19).
    Merge {
        from: u64,
        into: u64,
        actor: ActorRef,
        reply: oneshot::Sender<Result<TicketRecord, DeskError>>,
    },
    /// Time-based work due at `now` (the clock is the caller's): held
    /// notifications' digests, response targets, lifecycle timers (#19).
    Tick {
        now: DateTime<Utc>,
        reply: oneshot::Sender<Result<usize, DeskError>>,
    },
    /// A change to the console's sessions.
    Session {
        op: super::sessions::SessionOp,
        reply: oneshot::Sender<Result<usize, DeskError>>,
    },
    /// One bounded run of retention.
    Prune {
        plan: super::retention::Plan,
        now: DateTime<Utc>,
        reply: oneshot::Sender<Result<super::retention::PruneReport, DeskError>>,
    },
    /// Ingest a held mail as ordinary mail (`desk::spam`).
    SpamRelease {
        id: u64,
        actor: ActorRef,
        reply: oneshot::Sender<Result<RetryOutcome, DeskError>>,
    },
    /// Forget a held mail.
    SpamDrop {
        id: u64,
        actor: ActorRef,
        reply: oneshot::Sender<Result<(), DeskError>>,
    },
    /// Add (`add`) or remove a run-time blocklist entry; the answer says
    /// whether anything changed.
    Block {
        entry: crate::spam::BlockEntry,
        add: bool,
        actor: ActorRef,
        reply: oneshot::Sender<Result<bool, DeskError>>,
    },
}

/// What a quarantine retry did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum RetryOutcome {
    /// It became (part of) a ticket.
    Ingested { ticket: Option<u64> },
    /// Still not acceptable: a new entry with the new reason.
    Quarantined { id: u64, reason: String },
    /// Held at the door (spam, a blocked sender): spam list entry `id`.
    Held { id: u64, reason: String },
}

pub(super) struct Writer {
    rules: super::Rules,
    store: Store,
    /// The store's one writing handle: only the writer holds it.
    committer: Committer,
    /// Mailboxes whose next batch is handled one message at a time.
    careful: BTreeSet<String>,
    /// Wakes the SMTP sender when mail was queued.
    wake: Arc<Notify>,
    /// Mail was queued in the group being built.
    queued: bool,
    /// Commits are failing: log the change of state once, not every retry.
    failing: bool,
    /// Post-actions known done, to record with the next commit.
    acks: std::collections::BTreeMap<String, (u32, u32)>,
    /// Worker connections with a failed batch: their later batches are refused.
    failed_sessions: std::collections::HashSet<(String, u64)>,
    health: Health,
    /// Backups copying blobs right now: retention deletes none meanwhile.
    blob_copies: Arc<std::sync::atomic::AtomicUsize>,
    /// What each commit changed, for whoever subscribes.
    changes: tokio::sync::broadcast::Sender<super::Changes>,
}

pub(super) type Finish = Box<dyn FnOnce(Option<&Failed>) + Send>;

/// Why a group commit failed, as each of its jobs is told.
pub(super) struct Failed {
    text: String,
    /// The database refused it: another node leads now (a cluster).
    fenced: Option<String>,
}

impl Failed {
    fn of(e: &StoreError) -> Failed {
        let fenced = match e {
            StoreError::Fenced(why) => Some(why.clone()),
            _ => None,
        };
        Failed { text: e.to_string(), fenced }
    }

    pub(super) fn desk_error(&self) -> DeskError {
        match &self.fenced {
            Some(why) => DeskError::Fenced(why.clone()),
            None => DeskError::Store(self.text.clone()),
        }
    }
}

/// Change notices kept for subscribers that fall behind; one further back
/// is told it lagged and re-reads everything.
const CHANGES: usize = 256;

fn stopped<T>(r: Result<T, StoreError>) -> Result<T, DeskError> {
    r.map_err(DeskError::from)
}

/// What opening the writer found.
pub(super) struct Opened {
    pub(super) writer: Writer,
    /// The last run of the daemon did not stop cleanly.
    pub(super) unclean: bool,
}

impl Writer {
    /// Takes the store's committer and brings the store up to date before
    /// any job runs: the secret (generated once when there is no
    /// `desk.secret_file`), the daemon's running marker (an unclean stop is
    /// noticed at the next start), and the indexes older stores lack. All
    /// in one commit, by the writer.
    pub(super) fn open(
        cfg: Arc<Config>,
        store: Store,
        secret: Option<Vec<u8>>,
        templates: Templates,
        wake: Arc<Notify>,
        health: Health,
        daemon: bool,
    ) -> Result<Opened, StoreError> {
        if super::backup::unfinished(&store)? {
            return Err(StoreError::Internal(format!(
                "a restore into {} did not finish: delete it (and the attachments directory) and run `ticketd restore` again",
                cfg.store.path.display()
            )));
        }
        let committer = store.take_committer()?;
        let mut tx = Tx::new(&store);
        let secret = match secret {
            Some(s) => s,
            None => match tx.get(Table::Meta, keys::SECRET)? {
                Some(s) => s,
                None => {
                    let fresh: [u8; 32] = rand::random();
                    tx.put(Table::Meta, keys::SECRET, fresh.to_vec());
                    fresh.to_vec()
                }
            },
        };
        let mut unclean = false;
        if daemon {
            super::backup::clean_spools(&cfg.store.path);
            unclean = tx.get(Table::Meta, keys::RUNNING)?.is_some();
            tx.put(Table::Meta, keys::RUNNING, vec![1]);
        }
        super::migrate::format(&mut tx)?;
        super::migrate::schedule_outbox(&mut tx)?;
        super::migrate::index_attachments(&mut tx)?;
        super::migrate::index_summaries(&mut tx)?;
        if !tx.is_empty() {
            committer.commit(tx.into_writes())?;
        }
        let careful: BTreeSet<String> =
            if unclean { cfg.mailboxes.iter().map(|m| m.name.clone()).collect() } else { BTreeSet::new() };
        let writer = Writer::new(cfg, store, committer, secret, templates, careful, wake, health);
        Ok(Opened { writer, unclean })
    }

    pub(super) fn secret(&self) -> &[u8] {
        &self.rules.secret
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        cfg: Arc<Config>,
        store: Store,
        committer: Committer,
        secret: Vec<u8>,
        templates: Templates,
        careful: BTreeSet<String>,
        wake: Arc<Notify>,
        health: Health,
    ) -> Writer {
        Writer {
            rules: super::Rules::new(cfg, secret, templates),
            store,
            committer,
            careful,
            wake,
            queued: false,
            failing: false,
            acks: Default::default(),
            failed_sessions: Default::default(),
            health,
            blob_copies: Default::default(),
            changes: tokio::sync::broadcast::channel(CHANGES).0,
        }
    }

    pub(super) fn changes(&self) -> tokio::sync::broadcast::Sender<super::Changes> {
        self.changes.clone()
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < 64 {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.health.writer_busy(true);
            let stop = self.group(jobs);
            self.health.writer_busy(false);
            if stop {
                break;
            }
        }
        debug!("desk writer stopped");
    }

    /// Handles `jobs` in order and commits them together. True when the
    /// desk should stop (a clean end of the run was recorded).
    fn group(&mut self, jobs: Vec<Job>) -> bool {
        let store = self.store.clone();
        let mut tx = Tx::new(&store);
        let mut finish: Vec<Finish> = Vec::new();
        let mut stop = false;
        let mut sessions: Vec<(String, u64)> = Vec::new();
        for job in jobs {
            match job {
                Job::Ingest { mailbox, session, reply, .. }
                    if session != 0 && self.failed_sessions.contains(&(mailbox.clone(), session)) =>
                {
                    let _ = reply.send(BatchResult {
                        done: Vec::new(),
                        error: Some("an earlier batch of this connection was not stored; fetching again".into()),
                    });
                }
                Job::Ingest { mailbox, uid_validity, items, reply, mode, session, .. } if self.is_careful(&mailbox) => {
                    // Alone and committed message by message: flush the group first.
                    let earlier = std::mem::replace(&mut tx, Tx::new(&store));
                    self.commit(earlier, std::mem::take(&mut finish));
                    let r = self.ingest_careful(&mailbox, uid_validity, &items, mode);
                    if r.error.is_some() && session != 0 {
                        self.failed_sessions.insert((mailbox.clone(), session));
                    }
                    crate::failpoint::hit("flushed");
                    self.wake_sender();
                    let _ = reply.send(r);
                }
                Job::Acked { mailbox, uid_validity, uid } => {
                    // Not worth an fsync of its own: losing it only means
                    // redoing an idempotent post-action. It rides along with
                    // the next commit.
                    let e = self.acks.entry(mailbox).or_insert((uid_validity, uid));
                    *e = if e.0 == uid_validity { (uid_validity, e.1.max(uid)) } else { (uid_validity, uid) };
                }
                Job::EndRun { reply } => {
                    tx.delete(Table::Meta, keys::RUNNING);
                    finish.push(Box::new(move |err| {
                        let _ = reply.send(err.map_or(Ok(()), |e| Err(e.desk_error())));
                    }));
                    stop = true;
                }
                Job::Load { writes, reply } => {
                    let earlier = std::mem::replace(&mut tx, Tx::new(&store));
                    self.commit(earlier, std::mem::take(&mut finish));
                    let r = self.commit_writes(writes).map_err(DeskError::from);
                    let _ = reply.send(r);
                }
                Job::Backup { dir, reply } => {
                    // A copy of committed state: what this group holds is committed first.
                    let earlier = std::mem::replace(&mut tx, Tx::new(&store));
                    self.commit(earlier, std::mem::take(&mut finish));
                    let _ = reply.send(super::backup::snapshot(&self.store, &self.health, &self.blob_copies, &dir));
                }
                job => {
                    if let Job::Ingest { mailbox, session, .. } = &job
                        && *session != 0
                    {
                        sessions.push((mailbox.clone(), *session));
                    }
                    finish.push(self.handle(&mut tx, job))
                }
            }
        }
        if !finish.is_empty() {
            for (mailbox, (uid_validity, uid)) in std::mem::take(&mut self.acks) {
                if let Err(e) = set_acked(&mut tx, &mailbox, uid_validity, uid) {
                    debug!(mailbox, error = %e, "recording a finished post-action failed; it is redone later");
                }
            }
        }
        if !self.commit(tx, finish) {
            self.failed_sessions.extend(sessions);
        }
        stop
    }

    /// False when the commit failed (every job of it was told).
    fn commit(&mut self, tx: Tx<'_>, finish: Vec<Finish>) -> bool {
        if tx.is_empty() {
            // Nothing to make durable (a tick with nothing due, a refused
            // change): a flush here would cost the store a sync for naught.
            for f in finish {
                f(None);
            }
            self.wake_sender();
            return true;
        }
        let writes = tx.into_writes();
        let (n, started) = (writes.ops.len(), std::time::Instant::now());
        let r = self.commit_writes(writes);
        tracing::trace!(writes = n, us = started.elapsed().as_micros() as u64, "committed");
        crate::failpoint::hit("flushed");
        match &r {
            Ok(()) => self.commit_succeeded(),
            Err(e) => self.commit_failed(e),
        }
        let err = r.err().map(|e| Failed::of(&e));
        for f in finish {
            f(err.as_ref());
        }
        self.wake_sender();
        err.is_none()
    }

    /// Commits and, once durable, tells whoever watches (the console's
    /// live updates) what changed. Every commit after the writer opened
    /// goes through here.
    fn commit_writes(&mut self, writes: crate::store::WriteSet) -> Result<(), StoreError> {
        let changes = super::Changes::of(&writes);
        self.committer.commit_noting(writes, || changes.notes())?;
        if !changes.is_empty() {
            // Nobody listening is fine: the feed is a hint to re-read.
            let _ = self.changes.send(changes);
        }
        Ok(())
    }

    fn wake_sender(&mut self) {
        if std::mem::take(&mut self.queued) {
            self.wake.notify_one();
        }
    }

    fn commit_succeeded(&mut self) {
        if std::mem::take(&mut self.failing) {
            info!("the store accepts writes again; resuming");
        }
    }

    /// Nothing of a failed commit is acknowledged anywhere: mail is fetched
    /// again after a backoff, API callers get the error.
    fn commit_failed(&mut self, e: &StoreError) {
        self.queued = false;
        if !self.failing {
            error!(error = %e, cause = e.diagnosis(), "cannot store changes ({}); nothing is marked processed on IMAP until this is fixed; retrying", e.diagnosis());
            self.failing = true;
        } else {
            debug!(error = %e, "store still failing");
        }
    }

    fn handle(&mut self, tx: &mut Tx<'_>, job: Job) -> Finish {
        fn done<T: Send + 'static>(reply: oneshot::Sender<Result<T, DeskError>>, r: Result<T, DeskError>) -> Finish {
            Box::new(move |err| {
                let _ = reply.send(match err {
                    Some(e) => Err(e.desk_error()),
                    None => r,
                });
            })
        }
        let sp = tx.savepoint();
        let guarded = |tx: &mut Tx<'_>, r: Result<(), DeskError>| {
            if r.is_err() {
                tx.rollback(sp);
            }
            r
        };
        match job {
            Job::Ingest { mailbox, uid_validity, items, fetched, mode, reply, session } => {
                let (done_uids, error, queued) =
                    ingest_batch(&self.rules, &self.health, tx, &mailbox, uid_validity, &items, mode);
                self.queued |= queued;
                let error = error.map(|e| {
                    self.commit_failed(&e);
                    if session != 0 {
                        self.failed_sessions.insert((mailbox.clone(), session));
                    }
                    e.to_string()
                });
                let health = self.health.clone();
                Box::new(move |err| {
                    let r = match err {
                        Some(e) => BatchResult { done: Vec::new(), error: Some(e.text.clone()) },
                        None => {
                            let secs = fetched.elapsed().as_secs_f64();
                            for _ in &done_uids {
                                health.observe_ingest(secs);
                            }
                            BatchResult { done: done_uids, error }
                        }
                    };
                    let _ = reply.send(r);
                })
            }
            Job::Acked { .. } => unreachable!("handled in group()"),
            Job::SetCursor { mailbox, cursor, reply } => {
                tx.put(Table::Cursors, mailbox.as_bytes(), json(&cursor));
                done(reply, Ok(()))
            }
            Job::Act { ticket, actor, actions, uploads, expect_version, reply } => {
                let r = self.act(tx, ticket, &actor, actions, uploads, expect_version);
                if r.is_err() {
                    tx.rollback(sp);
                }
                done(reply, r)
            }
            Job::Delivery { seq, reports, reply } => {
                let r = self.delivery(tx, seq, reports);
                let r = guarded(tx, r);
                done(reply, r)
            }
            Job::QuarantineRetry { id, actor, reply } => {
                info!(id, by = actor.label(), "quarantine entry retried");
                let r = self.quarantine_retry(tx, id);
                if r.is_err() {
                    tx.rollback(sp);
                }
                done(reply, r)
            }
            Job::QuarantineDrop { id, actor, reply } => {
                let r = match stopped(tx.quarantined(id)) {
                    Ok(Some(_)) => {
                        info!(id, by = actor.label(), "quarantine entry dropped");
                        // Its dedupe record stays: it is not ingested again.
                        tx.delete(Table::Quarantine, be(id));
                        Ok(())
                    }
                    Ok(None) => Err(DeskError::NotFound(format!("quarantine entry {id}"))),
                    Err(e) => Err(e),
                };
                done(reply, r)
            }
            Job::OutboxRetry { seq, actor, reply } => {
                info!(seq, by = actor.label(), "outbox entry retried");
                let r = self.outbox_retry(tx, seq);
                let r = guarded(tx, r);
                done(reply, r)
            }
            Job::OutboxDrop { seq, actor, reply } => {
                let r = self.outbox_drop(tx, seq, &actor);
                let r = guarded(tx, r);
                done(reply, r)
            }
            Job::Session { op, reply } => {
                let r = super::sessions::apply(tx, op);
                if r.is_err() {
                    tx.rollback(sp);
                }
                done(reply, r)
            }
            Job::Prune { plan, now, reply } => {
                let copying = self.blob_copies.load(std::sync::atomic::Ordering::SeqCst) > 0;
                let r = super::retention::prune_writes(tx, plan, now, copying);
                if r.is_err() {
                    tx.rollback(sp);
                }
                // The raw copies go in the same commit as the records that
                // stop naming them: all or nothing.
                let r = r.map(|(report, doomed)| {
                    for sha in doomed {
                        tx.delete_blob(BlobKind::Raw, &sha);
                    }
                    report
                });
                done(reply, r)
            }
            Job::Tick { now, reply } => {
                let r = self.tick(tx, now);
                let (r, work) = match r {
                    Ok((n, work)) => (Ok(n), Some(work)),
                    Err(e) => {
                        tx.rollback(sp);
                        (Err(e), None)
                    }
                };
                // Counted once durable: a failed commit fires them again.
                let health = self.health.clone();
                let finish = done(reply, r);
                Box::new(move |err| {
                    if let (None, Some(w)) = (err, &work) {
                        w.count(&health);
                    }
                    finish(err)
                })
            }
            Job::Merge { from, into, actor, reply } => {
                let now = Utc::now().trunc_subsecs(0);
                let r = super::merge::merge(&self.rules, tx, from, into, &actor, now);
                if r.is_err() {
                    tx.rollback(sp);
                }
                done(reply, r)
            }
            Job::SpamRelease { id, actor, reply } => {
                debug!(id, by = actor.label(), "releasing a spam entry");
                let r =
                    super::spam::release(&self.rules, &self.health, &self.store, tx, id).map(|(outcome, queued)| {
                        self.queued |= queued;
                        outcome
                    });
                if r.is_err() {
                    tx.rollback(sp);
                }
                done(reply, r)
            }
            Job::SpamDrop { id, actor, reply } => {
                let copying = self.blob_copies.load(std::sync::atomic::Ordering::SeqCst) > 0;
                let r = super::spam::drop_entry(tx, id, &actor, copying);
                let r = guarded(tx, r);
                done(reply, r)
            }
            Job::Block { entry, add, actor, reply } => {
                let r = super::spam::change_block(&self.rules.cfg, tx, &entry, add, &actor);
                if r.is_err() {
                    tx.rollback(sp);
                }
                done(reply, r)
            }
            Job::EndRun { .. } | Job::Backup { .. } | Job::Load { .. } => unreachable!("handled in group()"),
        }
    }

    fn is_careful(&self, mailbox: &str) -> bool {
        self.careful.contains(mailbox)
    }

    /// The careful path after an unclean stop: each message is marked in
    /// hand (durably, before the work starts) and committed on its own; a
    /// message found in hand [`POISON_DEATHS`] times is quarantined unread.
    fn ingest_careful(&mut self, mailbox: &str, uid_validity: u32, items: &[Item], mode: Mode) -> BatchResult {
        info!(
            mailbox,
            count = items.len(),
            "the last run stopped uncleanly: handling this batch one message at a time"
        );
        let store = self.store.clone();
        let mut done = Vec::new();
        for item in items {
            let uid = item.uid();
            let r = (|| -> Result<(), StoreError> {
                let deaths = match store.in_hand(mailbox)? {
                    Some(h) if h.uid_validity == uid_validity && h.uid == uid => h.deaths + 1,
                    _ => 0,
                };
                let mut tx = Tx::new(&store);
                if deaths >= POISON_DEATHS {
                    quarantine_unread(&self.health, &mut tx, mailbox, uid_validity, item, deaths)?;
                } else {
                    let mut marker = Tx::new(&store);
                    marker.put(Table::Meta, keys::in_hand(mailbox), json(&InHand { uid_validity, uid, deaths }));
                    self.commit_writes(marker.into_writes())?;
                    self.queued |=
                        ingest_one(&self.rules, &self.health, &mut tx, mailbox, uid_validity, item, true, mode)?;
                }
                self.commit_writes(tx.into_writes())
            })();
            match r {
                Ok(()) => done.push(uid),
                Err(e) => {
                    self.commit_failed(&e);
                    return BatchResult { done, error: Some(e.to_string()) };
                }
            }
        }
        self.careful.remove(mailbox);
        self.commit_succeeded();
        BatchResult { done, error: None }
    }

    fn ctx_for<'a>(&'a self, rec: &TicketRecord) -> Context<'a> {
        self.rules.context(self.rules.mailbox(&rec.mailbox), false)
    }

    /// Runs the shared rules for one change and saves the result.
    fn act(
        &mut self,
        tx: &mut Tx<'_>,
        ticket: u64,
        actor: &ActorRef,
        mut actions: Vec<Action>,
        uploads: Vec<Upload>,
        expect_version: Option<u64>,
    ) -> Result<TicketRecord, DeskError> {
        let now = Utc::now().trunc_subsecs(0);
        let rec = tx.ticket(ticket)?.ok_or_else(|| DeskError::NotFound(format!("ticket {ticket}")))?;
        if let Some(v) = expect_version
            && v != rec.version
        {
            return Err(DeskError::Conflict { current: rec.version });
        }
        let cfg = self.rules.cfg.clone();
        let agent;
        let actor = match actor {
            ActorRef::Agent(id) => {
                agent = cfg
                    .agents
                    .iter()
                    .find(|a| &a.id == id)
                    .ok_or_else(|| DeskError::invalid("actor", format!("unknown agent {id:?}")))?;
                Actor::Agent(agent)
            }
            ActorRef::Admin => Actor::Admin,
            ActorRef::System => Actor::System,
        };
        if !uploads.is_empty() {
            let files = self.store_uploads(tx, &uploads)?;
            match actions.iter_mut().find(|a| matches!(a, Action::Reply { .. })) {
                Some(Action::Reply { attachments, .. }) => attachments.extend(files),
                _ => return Err(DeskError::invalid("attachments", "attachments go with a reply")),
            }
        }
        let ctx = self.ctx_for(&rec);
        let out = Composer { ctx: &ctx, seed: format!("act:{ticket}:{}", rec.version), inbound_id: None, now };
        let decision = act(&rec, actor, &actions, &out, now).map_err(DeskError::Invalid)?;
        self.queued |= !apply(tx, None, None, &decision, now)?.is_empty();
        tx.ticket(ticket)?.ok_or_else(|| DeskError::NotFound(format!("ticket {ticket}")))
    }

    fn store_uploads(
        &self,
        tx: &mut Tx<'_>,
        uploads: &[Upload],
    ) -> Result<Vec<(Attachment, OutAttachment)>, DeskError> {
        let max = self.rules.cfg.attachments.max_bytes;
        let mut out = Vec::new();
        for u in uploads {
            if u.bytes.len() as u64 > max {
                return Err(DeskError::invalid(
                    "attachments",
                    format!("{:?} is {} bytes, over attachments.max_bytes ({max})", u.filename, u.bytes.len()),
                ));
            }
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&u.bytes));
            tx.put_blob(BlobKind::Attachment, &sha, &u.bytes);
            let filename = safe_filename(&u.filename, "attachment.bin");
            let mime_type = u.mime_type.clone().unwrap_or_else(|| "application/octet-stream".into());
            out.push((
                Attachment {
                    filename: filename.clone(),
                    url: attachment_url(&self.rules.cfg.attachments.base_url, &sha, &filename),
                    size: u.bytes.len() as u64,
                    mime_type: mime_type.clone(),
                },
                OutAttachment { filename, mime_type, sha256: sha },
            ));
        }
        Ok(out)
    }

    /// A system entry on `ticket` through the shared rules.
    fn system_note(&mut self, tx: &mut Tx<'_>, ticket: u64, text: String) -> Result<(), DeskError> {
        let Some(rec) = tx.ticket(ticket)? else { return Ok(()) };
        let now = Utc::now().trunc_subsecs(0);
        let ctx = self.ctx_for(&rec);
        let out = Composer { ctx: &ctx, seed: format!("system:{ticket}:{}", rec.version), inbound_id: None, now };
        let decision = act(&rec, Actor::System, &[Action::System(text)], &out, now).map_err(DeskError::Invalid)?;
        apply(tx, None, None, &decision, now)?;
        Ok(())
    }

    /// What the sender reports about one outbox entry: the entry's own
    /// rules decide (`OutboxEntry::record`), the ticket gets their notes.
    fn delivery(&mut self, tx: &mut Tx<'_>, seq: u64, reports: Vec<Delivery>) -> Result<(), DeskError> {
        let now: DateTime<Utc> = Utc::now().trunc_subsecs(0);
        for report in reports {
            if let Some((ticket, note)) = record_delivery(tx, seq, report, now)? {
                self.system_note(tx, ticket, note)?;
            }
        }
        Ok(())
    }

    fn outbox_retry(&mut self, tx: &mut Tx<'_>, seq: u64) -> Result<(), DeskError> {
        let now = Utc::now().trunc_subsecs(0);
        let (mut e, finished) = match tx.outbox_entry(seq)? {
            Some(e) => (e, false),
            None => match tx.sent_entry(seq)? {
                Some(e) => (e, true),
                None => return Err(DeskError::NotFound(format!("outbox entry {seq}"))),
            },
        };
        e.retry_now(finished, now).map_err(|why| DeskError::invalid("seq", format!("outbox entry {seq}: {why}")))?;
        store_entry(tx, seq, &e, finished, false)?;
        self.queued = true;
        Ok(())
    }

    fn outbox_drop(&mut self, tx: &mut Tx<'_>, seq: u64, actor: &ActorRef) -> Result<(), DeskError> {
        let Some(mut e) = tx.outbox_entry(seq)? else {
            return Err(DeskError::NotFound(format!("queued outbox entry {seq}")));
        };
        let r = e.drop_unsent(actor.label());
        store_entry(tx, seq, &e, false, r.finished)?;
        match r.note {
            Some(note) => self.system_note(tx, e.mail.ticket, note),
            None => Ok(()),
        }
    }

    /// The time-based work due at `now`: the clock's (response targets,
    /// lifecycle timers; see `desk::timers`), then the digests. Returns
    /// how much was done (tickets fired or swept, digests queued).
    fn tick(&mut self, tx: &mut Tx<'_>, now: DateTime<Utc>) -> Result<(usize, super::timers::Work), DeskError> {
        let now = now.trunc_subsecs(0);
        let work = super::timers::run(&self.rules, tx, now)?;
        self.queued |= work.queued;
        let digests = self.digests(tx, now)?;
        Ok((digests + work.fired + work.swept, work))
    }

    /// Sends each held digest whose agent is under the hourly limit again,
    /// or whose oldest line has waited an hour. Returns the digests queued.
    fn digests(&mut self, tx: &mut Tx<'_>, now: DateTime<Utc>) -> Result<usize, DeskError> {
        let cfg = self.rules.cfg.clone();
        let Some(mailbox) = cfg.mailboxes.first() else { return Ok(0) };
        let ctx = self.rules.context(mailbox, false);
        let mut queued = 0;
        for agent in &cfg.agents {
            let Some(held) = tx.held_digest(&agent.id)? else { continue };
            let sent = tx.recent(&crate::triage::agent_notify_key(&agent.id))?.count(now);
            let waited = held.since.is_none_or(|s| now - s >= chrono::Duration::hours(1));
            if sent >= cfg.desk.notifications_per_agent_per_hour && !waited {
                continue;
            }
            let seed = format!("digest:{}:{}", agent.id, held.since.map(|s| s.timestamp()).unwrap_or(0));
            let m = crate::triage::outgoing::digest(&ctx, agent, &held.lines, held.more, &seed, now);
            queue_mail(tx, &m, now)?;
            tx.delete(Table::Digests, agent.id.as_bytes());
            self.queued = true;
            queued += 1;
        }
        Ok(queued)
    }

    /// Takes the entry out of quarantine and runs its raw mail through
    /// ingest again, in the same unit of work: if that fails, the entry
    /// stays as it was.
    fn quarantine_retry(&mut self, tx: &mut Tx<'_>, id: u64) -> Result<RetryOutcome, DeskError> {
        let q = tx.quarantined(id)?.ok_or_else(|| DeskError::NotFound(format!("quarantine entry {id}")))?;
        let raw = self
            .store
            .raw(&q.raw_sha256)?
            .ok_or_else(|| DeskError::NotFound(format!("the raw mail of quarantine entry {id}")))?;
        tx.delete(Table::Quarantine, be(id));
        if let Some(k) = &q.ingest_key {
            tx.delete(Table::Ingested, k.clone());
        }
        let (outcome, queued) = super::ingest::reingest(&self.rules, &self.health, tx, &q.mailbox, q.uid, &raw, false)?;
        self.queued |= queued;
        Ok(outcome)
    }
}

fn set_acked(tx: &mut Tx<'_>, mailbox: &str, uid_validity: u32, uid: u32) -> Result<(), StoreError> {
    if let Some(mut c) = tx.cursor(mailbox)?
        && c.uid_validity == uid_validity
    {
        c.acked_uid = Some(c.acked_uid.unwrap_or(0).max(uid).min(c.last_uid));
        tx.put(Table::Cursors, mailbox.as_bytes(), json(&c));
    }
    Ok(())
}

impl From<StoreError> for DeskError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { what } => {
                warn!(what, "a stale write was refused");
                DeskError::Store(format!("stale write refused: {what}"))
            }
            StoreError::Fenced(why) => DeskError::Fenced(why),
            e => DeskError::Store(e.to_string()),
        }
    }
}
