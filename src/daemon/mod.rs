//! `ticketd run`: opens the desk (its writer thread owns the store), starts
//! one IMAP worker per mailbox, the SMTP sender, retention, the clock that
//! drives time-based work, the status/watchdog loop and the API; tells
//! systemd when it is ready; and drains when [`Control::stop`] is called.
//! Signals are main's: here they arrive as intents, so a test can run the
//! daemon in-process and stop it. On PostgreSQL the same work runs in
//! terms of a cluster node instead ([`cluster`], with [`listen`] bringing
//! the other nodes' changes).

mod cluster;
mod listen;

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, Tls};
use crate::desk::Desk;
use crate::imap::worker::Worker;
use crate::outbound::sender::Sender;

/// Well under the unit's TimeoutStopSec (60 s): the drain ends first.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Ticks run back to back while time-based work is left, at most this
/// many per `desk.clock_interval` (a timer that cannot move on must not
/// keep the writer busy).
const MAX_TICKS_AT_ONCE: usize = 100;

/// What the process asks of a running daemon (main maps signals to it).
#[derive(Clone, Default)]
pub struct Control {
    shutdown: CancellationToken,
    reload: Arc<Notify>,
}

impl Control {
    /// Drain and stop.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Re-read what may change without a restart (the API's token files).
    pub fn reload(&self) {
        self.reload.notify_waiters();
    }

    pub async fn stopped(&self) {
        self.shutdown.cancelled().await
    }

    /// What `reload` notifies (the API server waits on it).
    pub(crate) fn reload_notify(&self) -> Arc<Notify> {
        self.reload.clone()
    }
}

/// Runs the daemon until `control` says stop (or a task fails).
pub async fn run(cfg: Config, control: Control) -> anyhow::Result<()> {
    if let crate::config::StoreBackend::Postgres { .. } = cfg.store.backend {
        // A node of a cluster: it writes only while it holds the lease.
        return cluster::run(cfg, control).await;
    }
    let cfg = Arc::new(cfg);
    for m in &cfg.mailboxes {
        if m.tls == Tls::None {
            warn!(mailbox = %m.name, host = %m.host, "tls = \"none\": the password and mail cross the network in clear text");
        }
    }
    if cfg.smtp.tls == Tls::None && cfg.smtp.username.is_some() {
        warn!(host = %cfg.smtp.host, "smtp tls = \"none\" with AUTH: the password crosses the network in clear text");
    }
    let started = Desk::open(cfg.clone(), true)?;
    let desk = started.desk;
    let health = desk.health().clone();
    if started.unclean {
        warn!("the last run did not stop cleanly: the first batch of each mailbox is handled one message at a time");
    }
    // The tasks' own token: cancelled by Control, or when a task fails.
    let shutdown = CancellationToken::new();

    let mut tasks = spawn_work(&cfg, &desk, &shutdown);
    // STATUS= says what each mailbox is doing; the watchdog is fed only
    // while the runtime runs AND nothing is stuck (the writer busy past the
    // limit, or an IMAP worker, the sender or the clock late for the beat it
    // promised, see `Health::beat`), so a hang gets the service restarted
    // (and a message in the writer's hands quarantined).
    let watchdog = sd_notify::watchdog_enabled();
    {
        let stop = shutdown.clone();
        let health = health.clone();
        tasks.spawn(async move {
            let period = watchdog.map(|p| p / 2).unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
            let writer_limit = watchdog.unwrap_or(Duration::from_secs(60)).max(Duration::from_secs(10));
            let mut tick = tokio::time::interval(period);
            let mut last_status = String::new();
            let mut starving = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                let status = health.status_line();
                if status != last_status {
                    let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
                    last_status = status;
                }
                match (watchdog, health.stuck(writer_limit)) {
                    (Some(_), None) => {
                        starving = false;
                        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                    }
                    (Some(_), Some(why)) if !starving => {
                        starving = true;
                        error!(reason = %why, "not feeding the systemd watchdog: work is stuck; systemd will restart ticketd");
                    }
                    _ => {}
                }
            }
            "status"
        });
    }
    // Bound before READY: the CLI can use it at once.
    if let Some(api) = crate::api::server::Server::bind_extra(&desk, Box::new(crate::console::router)).await? {
        let stop = shutdown.clone();
        let reload = control.reload.clone();
        tasks.spawn(async move {
            api.run(stop, reload).await;
            "api server"
        });
    }

    let status = format!("store open; connecting to {} mailbox(es)", cfg.mailboxes.len());
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    info!(mailboxes = cfg.mailboxes.len(), db = %cfg.store.path.display(), "ticketd ready");

    let mut failed = false;
    tokio::select! {
        _ = control.stopped() => {}
        _ = desk.writer_stopped() => {
            error!("the desk writer stopped unexpectedly; shutting down");
            failed = true;
        }
        done = tasks.join_next() => {
            // A task that ends on its own is a bug or a dead end: stop everything.
            error!(task = ?done.map(|r| r.ok()), "a task stopped unexpectedly; shutting down");
            failed = true;
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    shutdown.cancel();
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                error!(error = %e, "task panicked during shutdown");
                failed = true;
            }
        }
    })
    .await;
    if drained.is_err() {
        warn!("drain deadline passed; stopping anyway (nothing uncommitted is acknowledged)");
    } else if let Err(e) = desk.end_run().await {
        // Nothing is in hand, but the next start will be careful anyway.
        warn!(error = %e, "could not record the clean stop");
    }
    info!("stopped");
    if failed {
        anyhow::bail!("stopped after a task failure");
    }
    Ok(())
}

/// The work of a writing node, on `desk` until `stop`: one IMAP worker per
/// mailbox, retention, the clock and the SMTP sender. A single daemon runs
/// it for its whole life; a cluster node for each term it leads.
pub(crate) fn spawn_work(cfg: &Config, desk: &Desk, stop: &CancellationToken) -> JoinSet<&'static str> {
    let mut tasks = JoinSet::new();
    for mb in &cfg.mailboxes {
        let w = Worker {
            mb: mb.clone(),
            desk: desk.clone(),
            max_message_bytes: cfg.desk.max_message_bytes,
            shutdown: stop.clone(),
        };
        tasks.spawn(async move {
            w.run().await;
            "imap worker"
        });
    }
    {
        let desk = desk.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            crate::desk::retention::run_hourly(desk, stop).await;
            "retention"
        });
    }
    {
        // The clock: time-based work runs in the writer, from durable
        // state, at the time this task reads (the rules never read a clock).
        let desk = desk.clone();
        let stop = stop.clone();
        let every = cfg.desk.clock_interval;
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let health = desk.health().clone();
            loop {
                // A tick is a writer job or a hundred: two minutes is ample.
                health.beat("clock", every + Duration::from_secs(120));
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                // A tick is bounded; while work is left (many tickets due
                // at once, a sweep after a config change) the next one
                // follows at once, each a job of its own, so mail and
                // API changes go on in between.
                for _ in 0..MAX_TICKS_AT_ONCE {
                    let now = chrono::Utc::now();
                    if let Err(e) = desk.tick(now).await {
                        warn!(error = %e, "time-based work failed; it is tried again at the next tick");
                        break;
                    }
                    if stop.is_cancelled() || !desk.time_backlog(now).unwrap_or(false) {
                        break;
                    }
                }
            }
            health.quiet("clock");
            "clock"
        });
    }
    let sender =
        Sender { smtp: cfg.smtp.clone(), desk: desk.clone(), wake: desk.wake().clone(), shutdown: stop.clone() };
    tasks.spawn(async move {
        sender.run().await;
        "smtp sender"
    });
    tasks
}
