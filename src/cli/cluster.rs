//! The CLI on PostgreSQL. Whether a daemon writes is the cluster's lease,
//! not a local lock: while a node holds it, the CLI talks to a node's API
//! (this machine's node first: it serves reads and forwards changes; else
//! the leader's advertised address). While nobody holds it, the CLI takes
//! the lease itself (as node `<node>-cli`, a new epoch, heartbeats from a
//! thread of its own) and is the cluster's one writer until it exits; a
//! node starting meanwhile stays a standby until then.
//!
//! The offline commands (import, restore, store prune) refuse while a node
//! leads: they would change the store beside the running desk.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::desk::{Desk, Parts};
use crate::health::Health;
use crate::outbox::templates::Templates;
use crate::store::Store;
use crate::store::postgres::{HeartbeatError, LeaderInfo, PostgresBackend};

/// Where the CLI's requests go.
pub enum Found {
    /// Nobody led: this process holds the lease and has a writer.
    Local(Desk),
    /// A node leads (as the database says).
    Leader(LeaderInfo),
}

/// Opens the store and decides (see the module note).
pub async fn open(cfg: Arc<Config>) -> anyhow::Result<Found> {
    let settings = crate::cluster::settings(&cfg, "-cli").await?;
    let timeout = settings.lease_timeout;
    let backend = tokio::task::spawn_blocking(move || PostgresBackend::open(settings))
        .await
        .context("opening the database")??;
    let backend = Arc::new(backend);
    let b = backend.clone();
    let (info, lease) = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
        let info = b.leader()?;
        if info.held {
            return Ok((info, None));
        }
        let lease = b.try_lease()?;
        Ok((info, lease))
    })
    .await??;
    let Some(lease) = lease else {
        let b = backend.clone();
        let now = tokio::task::spawn_blocking(move || b.leader()).await??;
        return Ok(Found::Leader(if now.held { now } else { info }));
    };
    backend.lead(lease.clone());
    std::thread::Builder::new()
        .name("cli-heartbeat".into())
        .spawn(move || {
            loop {
                std::thread::sleep(timeout / 5);
                if let Err(HeartbeatError::Lost(why)) = lease.heartbeat() {
                    tracing::warn!(reason = %why, "this command lost the writer's lease: its changes are refused");
                    return;
                }
            }
        })
        .context("starting the heartbeat")?;
    let secret = match &cfg.desk.secret_file {
        Some(p) => Some(crate::config::read_secret_file(p)?.trim_ascii().to_vec()),
        None => None,
    };
    let templates = Templates::load(cfg.desk.templates_dir.as_deref()).context("loading the templates")?;
    let parts = Parts {
        cfg,
        store: Store::with_backend(backend),
        secret,
        templates,
        wake: Default::default(),
        health: Health::default(),
        daemon: false,
    };
    Ok(Found::Local(Desk::start(parts)?.desk))
}

/// Why an offline command does not run now.
pub fn refusal(command: &str, leader: &LeaderInfo) -> String {
    let age = leader.heartbeat_age.map(|a| format!(", its heartbeat {:.1} s ago", a.as_secs_f64())).unwrap_or_default();
    format!(
        "refused: node {} leads the cluster (epoch {}{age}); `ticketd {command}` changes the store outside the \
         running desk: stop every ticketd node first (`systemctl stop ticketd` on each), then run it again",
        leader.node.as_deref().unwrap_or("?"),
        leader.epoch
    )
}

/// The leader's API address as a socket address (`http://host:port`).
pub async fn leader_addr(info: &LeaderInfo) -> Option<std::net::SocketAddr> {
    let a = info.advertise.as_deref()?.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let found = tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host(a)).await.ok()?.ok()?;
    found.into_iter().next()
}
