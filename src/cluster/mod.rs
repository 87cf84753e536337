//! Several nodes on one PostgreSQL database (DESIGN section 11): exactly
//! one of them, the leader, runs the desk's writer, the IMAP workers and
//! the SMTP sender; the others (standbys) serve the API and the console
//! from the database and forward changes to the leader.
//!
//! Here: [`lease`], the pure state machine (when to lead, when to stop
//! side effects, when to step down) over the local monotonic clock, and
//! [`Node`], what the rest of the daemon asks about the cluster: whether
//! this node writes now, who leads, and whether a side effect may start.
//! The shells that drive them live with what they drive:
//! `daemon::cluster` (`ticketd run` on PostgreSQL: the lease thread and
//! the terms it starts and ends), `daemon::listen` (each commit's changes
//! reach every node's change feed over LISTEN/NOTIFY), `api::forward` (a
//! standby's API passes changes to the leader) and `cli::cluster` (the CLI
//! and the offline commands on PostgreSQL).

pub mod lease;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{ClusterConfig, Config, StoreBackend};
use crate::store::postgres::{LeaderInfo, PgSettings, PostgresBackend};

/// A change came to a node that does not write now: which node it was,
/// and who leads (and where), if anyone does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLeader {
    pub node: String,
    pub leader: Option<String>,
    pub address: Option<String>,
}

/// The node's settings for the database, from the config (the URL read now).
pub async fn settings(cfg: &Config, suffix: &str) -> anyhow::Result<PgSettings> {
    let StoreBackend::Postgres { url } = &cfg.store.backend else {
        anyhow::bail!("store.backend is not \"postgres\"");
    };
    let cc = cfg.cluster.as_ref().context("store.backend = \"postgres\" needs [cluster]")?;
    let url = url.resolve().await.context("reading store.url_file")?;
    let mut node = cc.node.clone();
    if !suffix.is_empty() {
        node.truncate(40 - suffix.len().min(40));
        node.push_str(suffix);
    }
    Ok(PgSettings::from_url(&url, &node)?
        .with_advertise(cc.advertise.as_deref().unwrap_or(""))
        .with_lease_timeout(cc.lease_timeout))
}

/// This node's view of the cluster, shared by the lease thread, the desk
/// and the API.
pub struct Node {
    pub name: String,
    pub advertise: Option<String>,
    pub forward: bool,
    pub timing: lease::Timing,
    pub backend: Arc<PostgresBackend>,
    /// The state machine the lease thread drives; [`Node::may_act`] reads it.
    machine: Mutex<lease::Lease>,
    /// A term's writer is up: changes are taken here.
    serving: AtomicBool,
    /// The epoch of the current term (0: none).
    epoch: AtomicU64,
    /// Who leads, as last read from the database.
    leader: RwLock<Option<LeaderInfo>>,
    /// The lock connection answered its last call (heartbeat or lease read).
    lock_ok: AtomicBool,
    /// When the lock connection last answered.
    lock_seen: Mutex<Option<Instant>>,
    /// Seconds of the last takeover by this node (ms), and how many.
    takeover_ms: AtomicU64,
    takeovers: AtomicU64,
}

/// What `/readyz`, `/metrics` and `STATUS=` say about the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub node: String,
    pub leading: bool,
    pub epoch: u64,
    pub leader: Option<String>,
    pub leader_address: Option<String>,
    pub lock_ok: bool,
    pub fence_refusals: u64,
    pub takeover_seconds: Option<f64>,
    pub takeovers: u64,
}

impl Node {
    pub fn new(cfg: &ClusterConfig, backend: Arc<PostgresBackend>) -> Node {
        let timing = lease::Timing::new(cfg.lease_timeout);
        Node {
            name: cfg.node.clone(),
            advertise: cfg.advertise.clone(),
            forward: cfg.forward,
            timing,
            backend,
            machine: Mutex::new(lease::Lease::new(timing)),
            serving: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            leader: RwLock::new(None),
            lock_ok: AtomicBool::new(false),
            lock_seen: Mutex::new(None),
            takeover_ms: AtomicU64::new(u64::MAX),
            takeovers: AtomicU64::new(0),
        }
    }

    /// Whether a side effect (an IMAP post-action, an SMTP send) may start
    /// now: this node serves a term and its lease was confirmed less than
    /// half the lease timeout ago, by the local monotonic clock.
    pub fn may_act(&self) -> bool {
        self.serving() && self.machine().may_act(Instant::now())
    }

    pub(crate) fn machine(&self) -> std::sync::MutexGuard<'_, lease::Lease> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A term's writer takes changes on this node.
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    pub(crate) fn set_serving(&self, epoch: Option<u64>) {
        self.epoch.store(epoch.unwrap_or(0), Ordering::SeqCst);
        self.serving.store(epoch.is_some(), Ordering::SeqCst);
    }

    pub(crate) fn set_leader(&self, info: LeaderInfo) {
        *self.leader.write().unwrap_or_else(|e| e.into_inner()) = Some(info);
    }

    pub fn leader(&self) -> Option<LeaderInfo> {
        self.leader.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn lock_answered(&self, ok: bool) {
        self.lock_ok.store(ok, Ordering::SeqCst);
        if ok {
            *self.lock_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
    }

    pub(crate) fn took_over(&self, seconds: f64) {
        self.takeover_ms.store((seconds * 1000.0).round().max(0.0) as u64, Ordering::SeqCst);
        self.takeovers.fetch_add(1, Ordering::SeqCst);
    }

    /// Where a change should go instead, and why this node does not take it.
    pub fn not_leader(&self) -> NotLeader {
        let (leader, address) = match self.leader() {
            Some(l) if l.held && l.node.as_deref() != Some(self.name.as_str()) => (l.node, l.advertise),
            _ => (None, None),
        };
        NotLeader { node: self.name.clone(), leader, address }
    }

    pub fn status(&self) -> Status {
        let leading = self.serving();
        let info = self.leader();
        let (leader, leader_address) = match (&info, leading) {
            (_, true) => (Some(self.name.clone()), self.advertise.clone()),
            (Some(l), false) if l.held => (l.node.clone(), l.advertise.clone().filter(|a| !a.is_empty())),
            _ => (None, None),
        };
        let epoch = if leading { self.epoch.load(Ordering::SeqCst) } else { info.as_ref().map_or(0, |l| l.epoch) };
        let fresh = self
            .lock_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < self.timing.lease_timeout / 2 + Duration::from_secs(1));
        let ms = self.takeover_ms.load(Ordering::SeqCst);
        Status {
            node: self.name.clone(),
            leading,
            epoch,
            leader,
            leader_address,
            lock_ok: self.lock_ok.load(Ordering::SeqCst) && fresh,
            fence_refusals: self.backend.fence_refusals(),
            takeover_seconds: (ms != u64::MAX).then(|| ms as f64 / 1000.0),
            takeovers: self.takeovers.load(Ordering::SeqCst),
        }
    }
}

impl Status {
    /// The cluster's part of systemd's `STATUS=`.
    pub fn line(&self) -> String {
        if self.leading {
            return format!("leader (node {}, epoch {})", self.node, self.epoch);
        }
        match (&self.leader, &self.leader_address) {
            (Some(l), Some(a)) => format!("standby (node {}; leader {l} at {a}, epoch {})", self.node, self.epoch),
            (Some(l), None) => format!("standby (node {}; leader {l}, epoch {})", self.node, self.epoch),
            _ => format!("standby (node {}; no leader right now)", self.node),
        }
    }
}
