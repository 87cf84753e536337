//! The writer's lease: exactly one node of the cluster commits.
//!
//! A lease is two things, both in the shared database:
//! - a session advisory lock (`pg_try_advisory_lock`), held on a
//!   connection of its own that no pool ever hands out or recycles: it is
//!   free the moment that session ends (process killed, session
//!   terminated, server restarted, keepalives gave up on a cut link);
//! - the `ticketd_lease` row, whose `epoch` each new holder raises right
//!   after taking the lock (every commit is fenced by that epoch, see
//!   [`super::schema`], so a deposed holder never writes again), and the
//!   `ticketd_heartbeat` row, which the holder refreshes with the
//!   database's clock.
//!
//! A paused holder (SIGSTOP, a frozen VM) keeps its session, hence its
//! lock, forever: standbys call [`PostgresBackend::depose_stale`], which
//! ends the holder's lock and writer sessions once its heartbeat is older
//! than the lease timeout *by the database's clock* (no node's clock is
//! ever compared with another's). The fence does the rest.
//!
//! All calls here block, are bounded in time and are safe from any thread
//! (see [`super::conn`]). What to do with their answers over time — when
//! to stop side effects and step down — is [`crate::cluster::lease`]'s.

use std::sync::Arc;
use std::time::Duration;

use super::conn::{Conn, Role, connection_lost, store_error, timed_out, wait};
use super::{PostgresBackend, Shared, read};
use crate::store::StoreError;

/// The advisory lock's key pair: `('tick', 1)`, per database.
pub const LOCK_CLASS: i32 = 0x7469_636b;
pub const LOCK_WRITER: i32 = 1;

/// The right to commit, for one epoch. Cheap to clone; the lock is let go
/// when the last clone is dropped (or at [`Lease::release`]).
#[derive(Clone)]
pub struct Lease {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    epoch: u64,
    pid: i32,
    node: String,
    heartbeat_timeout: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("node", &self.inner.node).field("epoch", &self.inner.epoch).finish()
    }
}

/// Why a heartbeat did not confirm the lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// Gone for certain: the lock's session ended, or another node raised
    /// the epoch. Stop side effects and step down now.
    #[error("the lease is lost: {0}")]
    Lost(String),
    /// No confirmation (no answer in time, an error that says nothing
    /// about the lease). Count time from the last confirmed heartbeat.
    #[error("the lease is in doubt: {0}")]
    InDoubt(String),
}

/// Who holds the lease, as the database sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderInfo {
    /// The node named by the lease row (the last one to take it).
    pub node: Option<String>,
    pub advertise: Option<String>,
    pub epoch: u64,
    /// Age of its last heartbeat, by the database's clock.
    pub heartbeat_age: Option<Duration>,
    /// Whether that node's lock session still holds the lock.
    pub held: bool,
}

/// A holder ended by [`PostgresBackend::depose_stale`].
#[derive(Debug, Clone, PartialEq)]
pub struct Deposed {
    pub node: Option<String>,
    pub epoch: u64,
    /// Its heartbeat's age when it was deposed (database clock); `None`
    /// when it never beat.
    pub heartbeat_age: Option<Duration>,
    /// Sessions ended: its lock session and its writer's.
    pub sessions: u64,
}

impl Lease {
    /// Tries to take the lease (never waits for it): `None` while another
    /// session holds the lock. On success the epoch is one above the last
    /// holder's and every commit of an earlier epoch is refused from now
    /// on (a commit of the old holder already inside its transaction
    /// finishes first: the epoch's `UPDATE` waits for it).
    pub fn acquire(backend: &PostgresBackend) -> Result<Option<Lease>, StoreError> {
        let s = backend.shared.settings.clone();
        wait(async move {
            let limit = s.op_timeout();
            let go = async {
                let e = |e| store_error("taking the lease", e);
                let conn = s.connect(Role::Lease).await.map_err(e)?;
                let got: bool = conn
                    .client
                    .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &LOCK_WRITER])
                    .await
                    .map_err(e)?
                    .get(0);
                if !got {
                    return Ok(None);
                }
                let row = conn
                    .client
                    .query_one(
                        "WITH l AS (UPDATE ticketd_lease SET epoch = epoch + 1, node = $1, advertise = $2, \
                             pid = pg_backend_pid(), acquired_at = now() WHERE id = 1 RETURNING epoch, pid), \
                         e AS (INSERT INTO ticketd_epochs (epoch, node, acquired_at) SELECT epoch, $1, now() FROM l) \
                         UPDATE ticketd_heartbeat h SET epoch = l.epoch, pid = l.pid, at = now() FROM l \
                         WHERE h.id = 1 RETURNING h.epoch, h.pid",
                        &[&s.node, &s.advertise],
                    )
                    .await
                    .map_err(e)?;
                let (epoch, pid): (i64, i32) = (row.get(0), row.get(1));
                tracing::info!(node = %s.node, epoch, "took the writer's lease");
                Ok(Some(Lease {
                    inner: Arc::new(Inner {
                        conn,
                        epoch: epoch as u64,
                        pid,
                        node: s.node.clone(),
                        heartbeat_timeout: (s.lease_timeout / 4).max(Duration::from_millis(250)),
                    }),
                }))
            };
            tokio::time::timeout(limit, go).await.unwrap_or_else(|_| Err(timed_out("taking the lease", limit)))
        })?
    }

    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The server process id of the lock session.
    pub fn pid(&self) -> i32 {
        self.inner.pid
    }

    /// Refreshes the heartbeat (database time) if the lease is still this
    /// one; bounded by a quarter of the lease timeout. Record the local
    /// monotonic time *before* the call: a confirmation vouches for the
    /// lease from then on.
    pub fn heartbeat(&self) -> Result<(), HeartbeatError> {
        let inner = self.inner.clone();
        let r = wait(async move {
            let (limit, epoch) = (inner.heartbeat_timeout, inner.epoch as i64);
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&epoch];
            let beat = inner.conn.client.execute(
                "UPDATE ticketd_heartbeat SET at = now() WHERE id = 1 AND epoch = $1 AND pid = pg_backend_pid()",
                &params,
            );
            match tokio::time::timeout(limit, beat).await {
                Ok(Ok(1)) => Ok(()),
                Ok(Ok(_)) => {
                    Err(HeartbeatError::Lost(format!("another node took the lease after epoch {}", inner.epoch)))
                }
                Ok(Err(e)) if connection_lost(&e) => {
                    Err(HeartbeatError::Lost(format!("the lock session ended: {}", store_error("heartbeat", e))))
                }
                Ok(Err(e)) => Err(HeartbeatError::InDoubt(store_error("heartbeat", e).to_string())),
                Err(_) => Err(HeartbeatError::InDoubt(format!("no answer in {limit:?}"))),
            }
        });
        r.unwrap_or_else(|e| Err(HeartbeatError::InDoubt(e.to_string())))
    }

    /// Lets go of the lock now (a clean step-down, after
    /// [`PostgresBackend::step_down`]), rather than when the last clone is
    /// dropped. Bounded to two seconds. A clone still held elsewhere keeps
    /// the session open but not the lock; its epoch stays valid only until
    /// another node takes the lease.
    pub fn release(self) {
        let inner = self.inner.clone();
        drop(self);
        let _ = wait(async move {
            let unlock = inner.conn.client.execute("SELECT pg_advisory_unlock_all()", &[]);
            let _ = tokio::time::timeout(Duration::from_secs(2), unlock).await;
            drop(inner);
        });
    }
}

impl PostgresBackend {
    /// [`Lease::acquire`] for this backend's database and node.
    pub fn try_lease(&self) -> Result<Option<Lease>, StoreError> {
        Lease::acquire(self)
    }

    /// The lease as the database sees it now.
    pub fn leader(&self) -> Result<LeaderInfo, StoreError> {
        let shared = self.shared.clone();
        let (l, holder) = wait(async move { lease_row(&shared).await })??;
        Ok(LeaderInfo {
            held: holder.is_some() && holder == l.pid,
            node: l.node,
            advertise: l.advertise,
            epoch: l.epoch,
            heartbeat_age: l.age,
        })
    }

    /// A standby's watchdog: when the lease's holder still holds the lock
    /// but has not beaten for longer than `older_than` (database time),
    /// ends its lock session and its writer's sessions
    /// (`pg_terminate_backend`), so the lock is free and no transaction of
    /// it holds the lease row. Returns who was deposed; `None` when the
    /// holder is alive, or nobody holds the lock (then just
    /// [`try_lease`](Self::try_lease)). Needs the right to signal the
    /// holder's backends: the same database role, or `pg_signal_backend`.
    pub fn depose_stale(&self, older_than: Duration) -> Result<Option<Deposed>, StoreError> {
        let shared = self.shared.clone();
        wait(async move {
            let (l, holder) = lease_row(&shared).await?;
            // Free, or held by a session that is still writing its row.
            let Some(pid) = holder.filter(|h| Some(*h) == l.pid) else { return Ok(None) };
            if l.age.is_some_and(|a| a <= older_than) {
                return Ok(None);
            }
            let writer = format!("ticketd/{}/{}", l.node.as_deref().unwrap_or(""), Role::Writer.name());
            let (epoch, secs) = (l.epoch as i64, older_than.as_secs_f64());
            let ended: i64 = read(&shared, "deposing a stale leader", |c| {
                let writer = writer.clone();
                Box::pin(async move {
                    // Checked again in the same statement: a heartbeat that
                    // came in meanwhile saves the holder.
                    let row = c
                        .query_one(
                            "SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid)) FROM pg_stat_activity a \
                             WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() \
                             AND (a.pid = $1 OR a.application_name = $2) \
                             AND EXISTS (SELECT 1 FROM ticketd_lease l, ticketd_heartbeat h \
                                 WHERE l.id = 1 AND h.id = 1 AND l.epoch = $3 AND l.pid = $1 AND NOT ( \
                                     h.epoch = l.epoch AND h.at IS NOT NULL AND now() - h.at <= $4 * interval '1 second'))",
                            &[&pid, &writer, &epoch, &secs],
                        )
                        .await?;
                    Ok(row.get(0))
                })
            })
            .await?;
            if ended == 0 {
                return Ok(None);
            }
            tracing::warn!(
                node = l.node.as_deref().unwrap_or("?"),
                epoch,
                heartbeat_age_ms = l.age.map(|a| a.as_millis() as u64),
                sessions = ended,
                "deposed a leader whose heartbeat is too old"
            );
            Ok(Some(Deposed { node: l.node, epoch: l.epoch, heartbeat_age: l.age, sessions: ended as u64 }))
        })?
    }
}

struct Row {
    node: Option<String>,
    advertise: Option<String>,
    epoch: u64,
    pid: Option<i32>,
    age: Option<Duration>,
}

/// The lease row, and the pid of the session holding the lock (if any).
async fn lease_row(shared: &Shared) -> Result<(Row, Option<i32>), StoreError> {
    read(shared, "reading the lease", |c| {
        Box::pin(async move {
            let row = c
                .query_one(
                    "SELECT l.node, l.advertise, l.epoch, l.pid, \
                     (SELECT EXTRACT(EPOCH FROM now() - h.at)::float8 FROM ticketd_heartbeat h \
                        WHERE h.id = 1 AND h.epoch = l.epoch), \
                     (SELECT k.pid FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted \
                        AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                        AND k.classid = $1::int8::oid AND k.objid = $2::int8::oid AND k.objsubid = 2 LIMIT 1) \
                     FROM ticketd_lease l WHERE l.id = 1",
                    &[&(LOCK_CLASS as i64), &(LOCK_WRITER as i64)],
                )
                .await?;
            let age: Option<f64> = row.get(4);
            Ok((
                Row {
                    node: row.get(0),
                    advertise: row.get(1),
                    epoch: row.get::<_, i64>(2) as u64,
                    pid: row.get(3),
                    age: age.map(|a| Duration::from_secs_f64(a.max(0.0))),
                },
                row.get(5),
            ))
        })
    })
    .await
}
