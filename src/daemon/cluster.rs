//! `ticketd run` with `store.backend = "postgres"`: one node of a cluster.
//!
//! Every node opens the database, serves the API and the console from it,
//! and listens for changes. A thread of its own (the lease thread) drives
//! [`crate::cluster::lease::Lease`] with the database's answers: standbys try for
//! the lease every T/10 and depose a holder whose heartbeat is older than
//! T by the database's clock; the leader beats every T/5. When the machine
//! says `Lead`, this task starts a term: the desk's writer (opened like a
//! daemon after a crash), the IMAP workers, the SMTP sender, retention and
//! the clock. When it says `StepDown`, side effects have already stopped
//! (the guard `may_act` reads the machine with the local clock); the term's
//! tasks are stopped and its writer joined, and only then does the node let
//! go of its lease (a commit still in flight meets the database's fence).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Control;
use crate::cluster::lease::{Action, Event};
use crate::cluster::{Node, settings};
use crate::config::Config;
use crate::desk::Desk;
use crate::health::Health;
use crate::store::postgres::{HeartbeatError, Lease as PgLease, PostgresBackend};
use crate::store::{Get, Store, Table, keys};

/// How long a term's tasks get to stop before the lease is let go anyway.
const TERM_DRAIN: Duration = Duration::from_secs(10);

/// What the lease thread asks of the node's task.
enum Ask {
    /// Start a term with this epoch; `previous_age` is how long the last
    /// holder had not beaten when this node took over (database clock),
    /// measured at `read_at`.
    Lead { epoch: u64, previous_age: Option<Duration>, read_at: Instant },
    /// Stop the term; answer when nothing of it runs any more.
    StepDown { why: String, done: std::sync::mpsc::SyncSender<()> },
}

/// Runs the node until `control` says stop (or a task fails).
pub async fn run(cfg: Config, control: Control) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let cc = cfg.cluster.clone().context("store.backend = \"postgres\" needs [cluster]")?;
    let settings = settings(&cfg, "").await?;
    info!(node = %cc.node, database = %settings.describe(), lease_timeout = ?cc.lease_timeout, "opening the cluster's database");
    let s = settings.clone();
    let backend =
        Arc::new(tokio::task::spawn_blocking(move || PostgresBackend::open(s)).await.context("opening the database")??);
    let node = Arc::new(Node::new(&cc, backend.clone()));
    let secret = secret(&cfg, &backend, &control).await?;
    let Some(secret) = secret else { return Ok(()) };
    let health = Health::default();
    let desk = Desk::standby(cfg.clone(), Store::with_backend(backend.clone()), secret, health.clone(), node.clone())?;
    let shutdown = CancellationToken::new();
    {
        let desk = desk.clone();
        super::listen::start(settings.clone(), move |c| desk.publish(c), shutdown.clone())?;
    }

    let mut tasks = JoinSet::new();
    if let Some(api) = crate::api::server::Server::bind(&desk).await? {
        let stop = shutdown.clone();
        let reload = control.reload_notify();
        tasks.spawn(async move {
            api.run(stop, reload).await;
            "api server"
        });
    }
    {
        let (stop, health, node) = (shutdown.clone(), health.clone(), node.clone());
        tasks.spawn(async move {
            status_loop(node, health, stop).await;
            "status"
        });
    }
    let (asks, mut asked) = tokio::sync::mpsc::channel::<Ask>(4);
    let (stop_lease, lease_stopped) = std::sync::mpsc::channel::<()>();
    let lease_thread = {
        let (node, backend) = (node.clone(), backend.clone());
        std::thread::Builder::new()
            .name("cluster-lease".into())
            .spawn(move || lease_loop(node, backend, asks, lease_stopped))
            .context("starting the lease thread")?
    };
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&node.status().line())]);
    info!(node = %cc.node, mailboxes = cfg.mailboxes.len(), "ticketd ready");

    let mut term: Option<Term> = None;
    let mut failed = false;
    loop {
        let term_failed = async {
            match term.as_mut() {
                Some(t) => t.tasks.join_next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = control.stopped() => break,
            done = tasks.join_next() => {
                error!(task = ?done.map(|r| r.ok()), "a task stopped unexpectedly; shutting down");
                failed = true;
                break;
            }
            done = term_failed => {
                // A term's task that ends on its own: this node should not lead.
                error!(task = ?done.map(|r| r.ok()), "a task of this term stopped unexpectedly; shutting down");
                failed = true;
                break;
            }
            ask = asked.recv() => match ask {
                Some(Ask::Lead { epoch, previous_age, read_at }) => {
                    match start_term(&cfg, &desk, &backend, &node, epoch).await {
                        Ok(t) => {
                            if let Some(age) = previous_age {
                                let secs = (age + read_at.elapsed()).as_secs_f64();
                                node.took_over(secs);
                                info!(epoch, takeover_seconds = secs, "took over: the previous leader's last heartbeat was that long before this term's first commit");
                            }
                            term = Some(t);
                        }
                        Err(e) => {
                            error!(error = %e, "cannot start this node's term; shutting down (the lease is let go)");
                            failed = true;
                            break;
                        }
                    }
                }
                Some(Ask::StepDown { why, done }) => {
                    warn!(reason = %why, "stepping down: stopping mail and the writer before letting go of the lease");
                    node.set_serving(None);
                    if let Some(t) = term.take() {
                        t.stop(&desk, false).await;
                    }
                    let _ = done.send(());
                }
                None => {
                    error!("the lease thread ended; shutting down");
                    failed = true;
                    break;
                }
            }
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    // A clean end: the term records it, so the next leader need not be careful.
    node.set_serving(None);
    if let Some(t) = term.take() {
        t.stop(&desk, true).await;
    }
    let _ = stop_lease.send(());
    // Serve step-downs the lease thread may still ask for, until it ends.
    let joined = tokio::task::spawn_blocking(move || lease_thread.join());
    tokio::pin!(joined);
    loop {
        tokio::select! {
            _ = &mut joined => break,
            ask = asked.recv() => match ask {
                Some(Ask::StepDown { done, .. }) => { let _ = done.send(()); }
                Some(Ask::Lead { .. }) | None => {}
            }
        }
    }
    shutdown.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                error!(error = %e, "task panicked during shutdown");
                failed = true;
            }
        }
    })
    .await;
    if drained.is_err() {
        warn!("drain deadline passed; stopping anyway");
    }
    info!("stopped");
    if failed {
        anyhow::bail!("stopped after a task failure");
    }
    Ok(())
}

/// The desk's secret before any term: `desk.secret_file`, else the one in
/// the database; a fresh database gets one from the first node to take the
/// lease. `None` when told to stop while waiting.
async fn secret(cfg: &Config, backend: &Arc<PostgresBackend>, control: &Control) -> anyhow::Result<Option<Vec<u8>>> {
    if let Some(p) = &cfg.desk.secret_file {
        let s =
            crate::config::read_secret_file(p).with_context(|| format!("reading desk.secret_file {}", p.display()))?;
        return Ok(Some(s.trim_ascii().to_vec()));
    }
    let mut said = false;
    loop {
        let b = backend.clone();
        let got = tokio::task::spawn_blocking(move || -> Result<Option<Vec<u8>>, crate::store::StoreError> {
            if let Some(s) = b.get(Table::Meta, keys::SECRET)? {
                return Ok(Some(s));
            }
            let Some(lease) = b.try_lease()? else { return Ok(None) };
            b.lead(lease);
            let store = Store::with_backend(b.clone());
            let r = (|| {
                if let Some(s) = store.get(Table::Meta, keys::SECRET)? {
                    return Ok(Some(s));
                }
                let fresh: [u8; 32] = rand::random();
                let mut w = crate::store::WriteSet::default();
                w.put(Table::Meta, keys::SECRET, fresh.to_vec());
                store.take_committer()?.commit(w)?;
                info!("made the desk's secret (a fresh database)");
                Ok(Some(fresh.to_vec()))
            })();
            if let Some(l) = b.step_down() {
                l.release();
            }
            r
        })
        .await??;
        if let Some(s) = got {
            return Ok(Some(s));
        }
        if !said {
            info!("waiting for the leader to make the desk's secret");
            said = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = control.stopped() => return Ok(None),
        }
    }
}

/// One leadership of this node: its tasks, stopped by its token.
struct Term {
    tasks: JoinSet<&'static str>,
    stop: CancellationToken,
}

impl Term {
    /// Stops the tasks (bounded), then the writer: nothing of the term
    /// runs when this returns.
    async fn stop(mut self, desk: &Desk, clean: bool) {
        self.stop.cancel();
        let drained = tokio::time::timeout(TERM_DRAIN, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!("this term's tasks did not stop within {}s; abandoning them", TERM_DRAIN.as_secs());
            self.tasks.abort_all();
        }
        desk.health().quiet_all();
        desk.end_term(clean).await;
    }
}

async fn start_term(
    cfg: &Arc<Config>,
    desk: &Desk,
    backend: &Arc<PostgresBackend>,
    node: &Node,
    epoch: u64,
) -> anyhow::Result<Term> {
    let d = desk.clone();
    let store = Store::with_backend(backend.clone());
    let unclean = tokio::task::spawn_blocking(move || d.lead(store)).await??;
    node.set_serving(Some(epoch));
    if unclean {
        warn!(
            epoch,
            "the last term did not end cleanly: the first batch of each mailbox is handled one message at a time"
        );
    } else {
        info!(epoch, "leading: fetching and sending mail");
    }
    let stop = CancellationToken::new();
    let tasks = super::spawn_work(cfg, desk, &stop);
    Ok(Term { tasks, stop })
}

/// STATUS= (the node's role, then what each mailbox does) and the watchdog.
async fn status_loop(node: Arc<Node>, health: Health, stop: CancellationToken) {
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map(|p| p / 2).unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
    let writer_limit = watchdog.unwrap_or(Duration::from_secs(60)).max(Duration::from_secs(10));
    let mut tick = tokio::time::interval(period);
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let st = node.status();
        let status = if st.leading { format!("{}; {}", st.line(), health.status_line()) } else { st.line() };
        if status != last {
            let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
            last = status;
        }
        if watchdog.is_some() && health.stuck(writer_limit).is_none() {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        }
    }
}

/// The lease thread: drives the state machine until told to stop.
fn lease_loop(
    node: Arc<Node>,
    backend: Arc<PostgresBackend>,
    asks: tokio::sync::mpsc::Sender<Ask>,
    stop: std::sync::mpsc::Receiver<()>,
) {
    let mut held = Held::default();
    let mut stopping = false;
    loop {
        let now = Instant::now();
        let event = if stopping { Event::Shutdown } else { Event::Tick { now } };
        let actions = node.machine().on(event);
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            let more = act(&node, &backend, &asks, &mut held, a, stopping);
            queue.extend(more);
        }
        if stopping {
            break;
        }
        let wake = node.machine().next_wake(Instant::now());
        let wait = wake
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(10), node.timing.standby_poll.max(Duration::from_millis(100)));
        match stop.recv_timeout(wait) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => stopping = true,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    if let Some(l) = backend.step_down() {
        l.release();
    }
    if let Some(l) = held.lease.take() {
        l.release();
    }
}

/// What the lease thread holds between actions.
#[derive(Default)]
struct Held {
    lease: Option<PgLease>,
    /// The last holder's heartbeat age, read just before this node took
    /// the lease, and when: for the takeover time.
    previous: Option<(Option<Duration>, Instant)>,
}

/// Carries out one action; returns what the machine says next.
fn act(
    node: &Node,
    backend: &PostgresBackend,
    asks: &tokio::sync::mpsc::Sender<Ask>,
    held: &mut Held,
    action: Action,
    stopping: bool,
) -> Vec<Action> {
    let t = node.timing.lease_timeout;
    match action {
        Action::TryAcquire => {
            let info = backend.leader();
            node.lock_answered(info.is_ok());
            let previous_age = match &info {
                Ok(i) => {
                    node.set_leader(i.clone());
                    i.heartbeat_age.filter(|_| i.epoch > 0)
                }
                Err(_) => None,
            };
            let read_at = Instant::now();
            match backend.depose_stale(t) {
                Ok(Some(d)) => warn!(
                    node = d.node.as_deref().unwrap_or("?"),
                    epoch = d.epoch,
                    "deposed the leader: its heartbeat is older than the lease timeout (database clock)"
                ),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "asking about a stale leader failed"),
            }
            let sent = Instant::now();
            match backend.try_lease() {
                Ok(Some(lease)) => {
                    let epoch = lease.epoch();
                    held.lease = Some(lease);
                    held.previous = Some((previous_age, read_at));
                    node.machine().on(Event::Acquired { epoch, sent })
                }
                Ok(None) => node.machine().on(Event::NotAcquired { at: Instant::now() }),
                Err(e) => {
                    tracing::debug!(error = %e, "trying for the lease failed");
                    node.machine().on(Event::NotAcquired { at: Instant::now() })
                }
            }
        }
        Action::Lead { epoch } => {
            let Some(lease) = held.lease.clone() else {
                return node.machine().on(Event::Lost { at: Instant::now(), why: "no lease in hand".into() });
            };
            backend.lead(lease);
            node.lock_answered(true);
            if let Ok(i) = backend.leader() {
                node.set_leader(i);
            }
            let (previous_age, read_at) = held.previous.take().unwrap_or((None, Instant::now()));
            info!(epoch, "took the writer's lease");
            if asks.blocking_send(Ask::Lead { epoch, previous_age, read_at }).is_err() {
                return node.machine().on(Event::Shutdown);
            }
            vec![]
        }
        Action::Heartbeat => {
            let Some(lease) = held.lease.clone() else { return vec![] };
            let sent = Instant::now();
            let event = match lease.heartbeat() {
                Ok(()) => {
                    node.lock_answered(true);
                    Event::Confirmed { sent }
                }
                Err(HeartbeatError::Lost(why)) => {
                    node.lock_answered(false);
                    Event::Lost { at: Instant::now(), why }
                }
                Err(HeartbeatError::InDoubt(why)) => {
                    node.lock_answered(false);
                    tracing::debug!(reason = %why, "a heartbeat was not confirmed");
                    Event::Unconfirmed { at: Instant::now() }
                }
            };
            node.machine().on(event)
        }
        Action::PauseSideEffects => {
            if !stopping {
                warn!("the lease is in doubt: IMAP post-actions and SMTP sends stop until it is confirmed");
            }
            vec![]
        }
        Action::ResumeSideEffects => {
            info!("the lease is confirmed again: mail goes on");
            vec![]
        }
        Action::StepDown { why } => {
            if !stopping {
                // Stop the term first; its writer's last commits meet the fence.
                let (done, wait) = std::sync::mpsc::sync_channel(1);
                if asks.blocking_send(Ask::StepDown { why, done }).is_ok() {
                    let _ = wait.recv_timeout(TERM_DRAIN + Duration::from_secs(5));
                }
            }
            if let Some(l) = backend.step_down() {
                l.release();
            }
            if let Some(l) = held.lease.take() {
                l.release();
            }
            vec![]
        }
    }
}
