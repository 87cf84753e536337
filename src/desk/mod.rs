//! The application layer every channel uses — mail ingest, the SMTP
//! sender, the HTTP API and the CLI. Changes go to the one writer
//! ([`writer`]) as typed requests and come back once durable; queries read
//! committed state straight from the store and return view types.

pub mod apply;
pub mod backup;
pub mod import;
pub mod ingest;
mod merge;
pub mod migrate;
pub mod query;
pub mod retention;
pub mod sessions;
pub mod spam;
pub mod stats;
pub mod status;
pub mod summary;
mod term;
pub mod timers;
pub mod tx;
pub mod views;
pub mod writer;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::Config;
use crate::health::Health;
pub use crate::outbox::Delivery;
use crate::outbox::templates::Templates;
use crate::record::TicketRecord;
use crate::store::{Records, Store, StoreError, WriteSet};
use crate::triage::act::{ActError, Action};
pub use ingest::{BatchResult, Item, Mode};
pub use writer::{ActorRef, RetryOutcome};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeskError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ActError>),
    #[error("the ticket changed meanwhile (now version {current})")]
    Conflict { current: u64 },
    #[error("store: {0}")]
    Store(String),
    #[error("the desk is stopping")]
    Stopped,
    /// A cluster node lost the lead while the change was being committed:
    /// the database refused it, so nothing changed; the new leader takes it.
    #[error("this node lost the lead while committing ({0}); nothing was changed: send it again")]
    Fenced(String),
    /// A standby of a cluster: changes go to the leader.
    #[error("{}", not_leader_text(node, leader.as_deref(), address.as_deref()))]
    NotLeader { node: String, leader: Option<String>, address: Option<String> },
}

impl From<crate::cluster::NotLeader> for DeskError {
    fn from(n: crate::cluster::NotLeader) -> DeskError {
        DeskError::NotLeader { node: n.node, leader: n.leader, address: n.address }
    }
}

fn not_leader_text(node: &str, leader: Option<&str>, address: Option<&str>) -> String {
    match (leader, address) {
        (Some(l), Some(a)) => format!("node {node} is a standby and does not write: the leader is {l}, at {a}"),
        (Some(l), None) => format!("node {node} is a standby and does not write: the leader is {l}"),
        _ => format!("node {node} is a standby and does not write, and no node leads right now: try again shortly"),
    }
}

impl DeskError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> DeskError {
        DeskError::Invalid(vec![ActError { field, message: message.into() }])
    }
}

/// An attachment uploaded with an API/CLI reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub filename: String,
    pub mime_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// What one commit changed: the tickets (by number) and whether the
/// queues moved. Published by the writer once the commit is durable
/// ([`Desk::subscribe`]); a hint to re-read, never the data itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub tickets: Vec<u64>,
    pub outbox: bool,
    pub quarantine: bool,
    /// The spam list or the blocklist.
    #[serde(default)]
    pub spam: bool,
    /// Anything may have changed, unsaid (changes sent while a node was
    /// not listening are lost): every page re-reads what it shows. Never
    /// part of a commit's notes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub everything: bool,
}

impl Changes {
    fn of(w: &WriteSet) -> Changes {
        let mut c = Changes::default();
        for (table, key, _) in &w.ops {
            match table {
                crate::store::Table::Tickets => {
                    if let Some(n) = crate::store::from_be(key)
                        && !c.tickets.contains(&n)
                    {
                        c.tickets.push(n);
                    }
                }
                crate::store::Table::Outbox | crate::store::Table::Sent => c.outbox = true,
                crate::store::Table::Quarantine => c.quarantine = true,
                crate::store::Table::Spam | crate::store::Table::Blocklist => c.spam = true,
                _ => {}
            }
        }
        c
    }

    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty() && !self.outbox && !self.quarantine && !self.spam && !self.everything
    }

    /// As notes for the other nodes (see `Committer::commit_noting`): JSON,
    /// split so each stays well under PostgreSQL's 8000-byte payload.
    pub fn notes(&self) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut chunks = self.tickets.chunks(400).peekable();
        if chunks.peek().is_none() {
            out.push(serde_json::to_string(self).unwrap_or_default());
        }
        for (i, c) in chunks.enumerate() {
            let first = i == 0;
            let part = Changes {
                tickets: c.to_vec(),
                outbox: self.outbox && first,
                quarantine: self.quarantine && first,
                spam: self.spam && first,
                everything: false,
            };
            out.push(serde_json::to_string(&part).unwrap_or_default());
        }
        out
    }
}

/// What the rules need besides the mail and the store: the config, the
/// desk's secret, the templates, the subject-token matcher. The writer owns
/// one; ingest and the other jobs borrow it to build a [`Context`].
pub(crate) struct Rules {
    pub(crate) cfg: Arc<Config>,
    pub(crate) secret: Vec<u8>,
    pub(crate) templates: Templates,
    pub(crate) tokens: crate::triage::token::TokenMatcher,
}

impl Rules {
    pub(crate) fn new(cfg: Arc<Config>, secret: Vec<u8>, templates: Templates) -> Rules {
        let tokens = crate::triage::token::TokenMatcher::new(&cfg.desk.subject_tag);
        Rules { cfg, secret, templates, tokens }
    }

    /// The mailbox named `name`; one removed from the config since is
    /// answered for by the first (its tickets still get their mail).
    pub(crate) fn mailbox(&self, name: &str) -> &crate::config::MailboxConfig {
        self.cfg.mailbox(name).unwrap_or(&self.cfg.mailboxes[0])
    }

    /// The rules' context for mail of `mailbox` (quiet: history, not live mail).
    pub(crate) fn context<'a>(
        &'a self,
        mailbox: &'a crate::config::MailboxConfig,
        quiet: bool,
    ) -> crate::triage::Context<'a> {
        crate::triage::Context {
            cfg: &self.cfg,
            mailbox,
            secret: &self.secret,
            templates: &self.templates,
            tokens: &self.tokens,
            quiet,
        }
    }
}

/// Capacity of the writer's queue: callers wait when it is full.
const QUEUE: usize = 64;

/// What a desk is made of.
pub struct Parts {
    pub cfg: Arc<Config>,
    pub store: Store,
    /// HMAC key of our Message-IDs and backups (`desk.secret_file`); None:
    /// generated once and kept in the store.
    pub secret: Option<Vec<u8>>,
    pub templates: Templates,
    /// Woken when mail is queued.
    pub wake: Arc<Notify>,
    pub health: Health,
    /// Run by the daemon: marks the store in use, so an unclean stop is
    /// noticed at the next start and the first batch of every mailbox is
    /// handled carefully.
    pub daemon: bool,
}

/// A handle to the desk. Cheap to clone.
#[derive(Clone)]
pub struct Desk {
    store: Store,
    cfg: Arc<Config>,
    /// The desk's HMAC key (agent proofs, our Message-IDs, backup signatures).
    secret: Arc<[u8]>,
    health: Health,
    /// Woken when mail was queued (the SMTP sender waits on it).
    wake: Arc<Notify>,
    jobs: mpsc::Sender<writer::Job>,
    changes: tokio::sync::broadcast::Sender<Changes>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// A node of a cluster on PostgreSQL: whether it writes now (see `term`).
    cluster: Option<Arc<term::Terms>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading desk.secret_file {}: {source}", path.display())]
    Secret { path: std::path::PathBuf, source: std::io::Error },
    #[error("loading the templates: {0}")]
    Templates(String),
}

pub struct Started {
    pub desk: Desk,
    /// The last run of the daemon did not stop cleanly.
    pub unclean: bool,
}

impl Desk {
    /// Opens the store `cfg` names and starts the desk on it, with the
    /// secret of `desk.secret_file` (else the store's own) and the
    /// templates: the one wiring the daemon and the CLI share. `daemon`
    /// marks the store in use, so an unclean stop is noticed at the next start.
    pub fn open(cfg: Arc<Config>, daemon: bool) -> Result<Started, OpenError> {
        let secret = match &cfg.desk.secret_file {
            Some(p) => Some(
                crate::config::read_secret_file(p)
                    .map_err(|source| OpenError::Secret { path: p.clone(), source })?
                    .trim_ascii()
                    .to_vec(),
            ),
            None => None,
        };
        let templates =
            Templates::load(cfg.desk.templates_dir.as_deref()).map_err(|e| OpenError::Templates(e.to_string()))?;
        let store = Store::open(&cfg.store)?;
        let parts =
            Parts { cfg, store, secret, templates, wake: Default::default(), health: Health::default(), daemon };
        Ok(Desk::start(parts)?)
    }

    /// Starts the writer (which takes the store's one committer).
    pub fn start(parts: Parts) -> Result<Started, StoreError> {
        let Parts { cfg, store, secret, templates, wake, health, daemon } = parts;
        let writer::Opened { writer, unclean } =
            writer::Writer::open(cfg.clone(), store.clone(), secret, templates, wake.clone(), health.clone(), daemon)?;
        let secret: Arc<[u8]> = writer.secret().into();
        let changes = writer.changes();
        let (jobs, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("desk-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Internal(format!("starting the writer thread: {e}")))?;
        Ok(Started {
            desk: Desk {
                store,
                cfg,
                secret,
                health,
                wake,
                jobs,
                changes,
                thread: Arc::new(Mutex::new(Some(thread))),
                cluster: None,
            },
            unclean,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// What each commit from now on changed (see [`Changes`]).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Changes> {
        self.changes.subscribe()
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Notified when mail was queued.
    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// Resolves when the writer has stopped (after [`Desk::end_run`], or
    /// because it died: then every change fails and the daemon must stop).
    pub async fn writer_stopped(&self) {
        self.jobs.closed().await
    }

    async fn ask<T>(&self, job: impl FnOnce(oneshot::Sender<T>) -> writer::Job) -> Result<T, DeskError> {
        if let Some(c) = &self.cluster
            && !c.node.serving()
        {
            return Err(c.node.not_leader().into());
        }
        let (tx, rx) = oneshot::channel();
        self.jobs.send(job(tx)).await.map_err(|_| self.refused())?;
        rx.await.map_err(|_| self.refused())
    }

    /// Why a job got no answer: the desk stops, or (a standby) another node writes.
    fn refused(&self) -> DeskError {
        match &self.cluster {
            Some(c) if !c.node.serving() => c.node.not_leader().into(),
            _ => DeskError::Stopped,
        }
    }

    /// Whether an IMAP post-action or an SMTP send may start now: always
    /// on a single node; in a cluster, only while this node's lease is
    /// confirmed (see `cluster::Node::may_act`).
    pub fn may_act(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.node.may_act())
    }

    /// This node of a cluster, if it is one.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Node>> {
        self.cluster.as_ref().map(|c| &c.node)
    }

    /// Commits a fetched batch; the answer names the UIDs now durable.
    pub async fn ingest(&self, mailbox: &str, uid_validity: u32, items: Vec<Item>) -> BatchResult {
        self.ingest_with(mailbox, uid_validity, items, Mode::Live).await
    }

    /// Hands a batch to the writer and returns at once; the answer comes on
    /// the receiver once the batch is durable. Lets the IMAP worker fetch
    /// the next batch meanwhile.
    /// `session` names the worker's connection: once one of its batches
    /// fails, its later ones are refused until it reconnects.
    pub async fn submit(
        &self,
        mailbox: &str,
        uid_validity: u32,
        items: Vec<Item>,
        mode: Mode,
        session: u64,
    ) -> Result<oneshot::Receiver<BatchResult>, DeskError> {
        let (reply, rx) = oneshot::channel();
        let mailbox = mailbox.to_owned();
        let fetched = std::time::Instant::now();
        self.jobs
            .send(writer::Job::Ingest { mailbox, uid_validity, items, fetched, mode, reply, session })
            .await
            .map_err(|_| self.refused())?;
        Ok(rx)
    }

    /// [`Desk::ingest`] of live mail or of quiet history.
    pub async fn ingest_with(&self, mailbox: &str, uid_validity: u32, items: Vec<Item>, mode: Mode) -> BatchResult {
        let mailbox = mailbox.to_owned();
        let fetched = std::time::Instant::now();
        match self
            .ask(|reply| writer::Job::Ingest { mailbox, uid_validity, items, fetched, mode, reply, session: 0 })
            .await
        {
            Ok(r) => r,
            Err(e) => BatchResult { done: Vec::new(), error: Some(e.to_string()) },
        }
    }

    /// The post-action for everything up to `uid` is done.
    /// Does not wait for the writer (which may be in the middle of the next
    /// batch): the note rides along with a later commit, and losing it only
    /// means redoing an idempotent post-action.
    pub async fn acked(&self, mailbox: &str, uid_validity: u32, uid: u32) -> Result<(), DeskError> {
        let mailbox = mailbox.to_owned();
        self.jobs.send(writer::Job::Acked { mailbox, uid_validity, uid }).await.map_err(|_| DeskError::Stopped)
    }

    /// Where a mailbox stands (first contact decides it, see `initial`; a
    /// UIDVALIDITY change starts it over).
    pub async fn set_cursor(&self, mailbox: &str, cursor: crate::store::Cursor) -> Result<(), DeskError> {
        let mailbox = mailbox.to_owned();
        self.ask(|reply| writer::Job::SetCursor { mailbox, cursor, reply }).await?
    }

    /// Applies `actions` to ticket `n` through the shared rules. With
    /// `expect_version`, refuses (Conflict) if the ticket changed since.
    pub async fn act(
        &self,
        n: u64,
        actor: ActorRef,
        actions: Vec<Action>,
        uploads: Vec<Upload>,
        expect_version: Option<u64>,
    ) -> Result<TicketRecord, DeskError> {
        self.ask(|reply| writer::Job::Act { ticket: n, actor, actions, uploads, expect_version, reply }).await?
    }

    pub async fn delivery(&self, seq: u64, reports: Vec<Delivery>) -> Result<(), DeskError> {
        self.ask(|reply| writer::Job::Delivery { seq, reports, reply }).await?
    }

    pub async fn quarantine_retry(&self, id: u64, actor: ActorRef) -> Result<RetryOutcome, DeskError> {
        self.ask(|reply| writer::Job::QuarantineRetry { id, actor, reply }).await?
    }

    pub async fn quarantine_drop(&self, id: u64, actor: ActorRef) -> Result<(), DeskError> {
        self.ask(|reply| writer::Job::QuarantineDrop { id, actor, reply }).await?
    }

    pub async fn outbox_retry(&self, seq: u64, actor: ActorRef) -> Result<(), DeskError> {
        self.ask(|reply| writer::Job::OutboxRetry { seq, actor, reply }).await?
    }

    pub async fn outbox_drop(&self, seq: u64, actor: ActorRef) -> Result<(), DeskError> {
        self.ask(|reply| writer::Job::OutboxDrop { seq, actor, reply }).await?
    }

    /// Commits `writes` as they are, through the writer, from a blocking
    /// thread: a restore's batches (see `backup::restore`).
    pub(crate) fn load_blocking(&self, writes: WriteSet) -> Result<(), DeskError> {
        let (reply, rx) = oneshot::channel();
        self.jobs.blocking_send(writer::Job::Load { writes, reply }).map_err(|_| DeskError::Stopped)?;
        rx.blocking_recv().map_err(|_| DeskError::Stopped)?
    }

    /// [`Desk::load_blocking`] for tests in this crate.
    #[cfg(test)]
    pub(crate) async fn load(&self, writes: WriteSet) -> Result<(), DeskError> {
        self.ask(|reply| writer::Job::Load { writes, reply }).await?
    }

    /// Runs the time-based work due at `now`; returns how much was done.
    /// Bounded: see [`Desk::time_backlog`].
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, DeskError> {
        self.ask(|reply| writer::Job::Tick { now, reply }).await?
    }

    /// Whether a tick at `now` would find more than one tick does (tickets
    /// due past [`timers::PER_TICK`], a sweep under way): the daemon's
    /// clock ticks again at once. Reads committed state.
    pub fn time_backlog(&self, now: DateTime<Utc>) -> Result<bool, DeskError> {
        let due = self.store.first_timer(crate::store::keys::WAKE)?.is_some_and(|at| at <= now.timestamp());
        Ok(due || !timers::settled(&self.store, &self.cfg.sla)?)
    }

    /// (tickets overdue, tickets the clock should have looked at by `now`
    /// and has not yet), from the clock's indexes: for the metrics.
    ///
    /// Overdue: the `d` keys up to `now`, and the tickets the clock has yet
    /// to look at whose wake came no later than a due time up to `now`.
    /// Only that backlog's records are read (an entry is a hint; the record
    /// says whether it is stale), so the cost is what is late, not what
    /// waits.
    pub fn time_counts(&self, now: DateTime<Utc>) -> Result<(u64, u64), DeskError> {
        let now = now.timestamp();
        let mut overdue: std::collections::HashSet<u64> = self.store.dues_until(now)?.into_iter().collect();
        let mut late = std::collections::HashSet::new();
        for (_, entries) in self.store.wake_buckets(now, usize::MAX)? {
            for (at, n) in entries.into_iter().filter(|(at, _)| *at <= now) {
                let Some(rec) = self.store.ticket(n)? else { continue };
                let (wake, due) = (rec.timers.wake.map(|t| t.timestamp()), rec.timers.due.map(|t| t.timestamp()));
                if wake != Some(at) {
                    continue;
                }
                late.insert(n);
                if apply::covered(wake, due) && due.is_some_and(|d| d <= now) {
                    overdue.insert(n);
                }
            }
        }
        Ok((overdue.len() as u64, late.len() as u64))
    }

    /// Merges ticket `from` into ticket `into` (`triage::merge` says how,
    /// and when it is refused); returns the survivor.
    pub async fn merge(&self, from: u64, into: u64, actor: ActorRef) -> Result<TicketRecord, DeskError> {
        self.ask(|reply| writer::Job::Merge { from, into, actor, reply }).await?
    }

    /// Records a clean stop and ends the writer; waits for its thread.
    pub async fn end_run(&self) -> Result<(), DeskError> {
        let r = self.ask(|reply| writer::Job::EndRun { reply }).await?;
        self.join().await;
        r
    }

    /// Drops this handle and, if it was the last, waits for the writer to
    /// finish what it was asked.
    pub async fn join_when_last(self) {
        let thread = self.thread.clone();
        drop(self);
        if Arc::strong_count(&thread) == 1 {
            let t = thread.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(t) = t {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
        }
    }

    /// Waits for the writer thread to end (after every handle is gone or
    /// [`Desk::end_run`]).
    pub async fn join(&self) {
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}
