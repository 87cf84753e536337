//! `check-config --connect` for the database: reachable, which version,
//! writable (a primary, not a standby or a read-only session), ready for
//! the schema, and not behind a transaction pooler.
//!
//! Why the last one: the lease is a *session* advisory lock. Behind
//! PgBouncer in transaction (or statement) mode, each transaction may run
//! on another server session, so the lock stays with a server session that
//! other clients then use, and "the holder's session ended" no longer means
//! anything. Session pooling is fine.
//!
//! How it is detected: two connections A and B. A sets a session variable
//! and takes a session advisory lock; B opens a transaction (so it holds a
//! server session for its duration); A then asks again. On a direct
//! connection A stays on one server process that still has its variable
//! and its lock, and B is another process that sees neither. Behind a
//! transaction pooler B is typically handed A's just-released server
//! process (PgBouncer reuses the most recent one by default) and sees A's
//! variable, or A's next statement lands elsewhere and has lost it. Limits:
//! a pooler that round-robins over a large idle pool may, by chance, give
//! both answers of a direct connection; and a pooler is invisible when it
//! pins sessions (then it is harmless).

use std::time::Duration;

use super::conn::{PgSettings, Role, store_error, timed_out, wait};
use crate::store::StoreError;

/// What the probe found. `problems` empty means the database is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub target: String,
    pub server_version: String,
    pub version_num: i32,
    pub tls: bool,
    /// The schema version ticketd wrote there, if any yet.
    pub schema: Option<i32>,
    pub problems: Vec<String>,
}

impl ProbeReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: PostgreSQL {}", self.target, self.server_version)?;
        match self.schema {
            Some(v) => write!(f, ", ticketd schema version {v}")?,
            None => write!(f, ", no ticketd schema yet (created at the first start)")?,
        }
        for p in &self.problems {
            write!(f, "\n  problem: {p}")?;
        }
        Ok(())
    }
}

/// What the pooler check saw (see the module note).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCheck {
    pub a_pid_before: i32,
    pub a_pid_after: i32,
    pub b_pid: i32,
    /// A's session variable, read by A afterwards.
    pub a_kept_setting: bool,
    /// A's advisory lock, seen from A's session afterwards.
    pub a_kept_lock: bool,
    /// B saw A's session variable.
    pub b_saw_setting: bool,
}

/// Why the sessions do not behave like direct connections, if they do not.
pub fn pooled(c: SessionCheck) -> Option<String> {
    let mut why = Vec::new();
    if c.a_pid_before != c.a_pid_after {
        why.push("one connection's statements ran in two server processes");
    }
    if c.b_pid == c.a_pid_before {
        why.push("a second connection was handed the first one's server process");
    }
    if !c.a_kept_setting || c.b_saw_setting {
        why.push("a session setting did not stay with its connection");
    }
    if !c.a_kept_lock {
        why.push("a session advisory lock did not stay with its connection");
    }
    if why.is_empty() {
        return None;
    }
    Some(format!(
        "store.url goes through a transaction or statement pooler ({}): the writer's lease is a session lock \
         and needs a direct connection to PostgreSQL (or a pooler in session mode)",
        why.join("; ")
    ))
}

/// Connects and checks; an `Err` means it could not even ask.
pub fn probe(settings: &PgSettings) -> Result<ProbeReport, StoreError> {
    let s = settings.clone();
    wait(async move {
        let limit = Duration::from_secs(15);
        tokio::time::timeout(limit, run(s)).await.unwrap_or_else(|_| Err(timed_out("probing the database", limit)))
    })?
}

async fn run(s: PgSettings) -> Result<ProbeReport, StoreError> {
    let e = |e| store_error("probing the database", e);
    let a = s.connect(Role::Probe).await.map_err(e)?;
    let row = a
        .client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), \
             pg_is_in_recovery(), current_setting('transaction_read_only'), pg_backend_pid(), \
             to_regclass('ticketd_schema') IS NOT NULL, has_schema_privilege(current_schema(), 'CREATE')",
            &[],
        )
        .await
        .map_err(e)?;
    let (version_num, server_version): (i32, String) = (row.get(0), row.get(1));
    let (recovery, read_only, a_pid_before): (bool, String, i32) = (row.get(2), row.get(3), row.get(4));
    let (has_schema, can_create): (bool, bool) = (row.get(5), row.get(6));
    let mut problems = Vec::new();
    if recovery {
        problems.push(
            "the server is a read-only standby (pg_is_in_recovery): point store.url at the primary \
             (with several hosts, add target_session_attrs=read-write)"
                .to_owned(),
        );
    } else if read_only == "on" {
        problems.push("sessions are read-only (default_transaction_read_only is on for this role or database)".into());
    }
    if version_num < 130000 {
        problems.push(format!("PostgreSQL {server_version} is older than 13, which ticketd is not tested with"));
    }
    let schema = if has_schema {
        a.client.query_opt("SELECT version FROM ticketd_schema WHERE id = 1", &[]).await.map_err(e)?.map(|r| r.get(0))
    } else {
        None
    };
    if !has_schema && !can_create {
        problems.push(
            "this role may not create tables in its schema (PostgreSQL 15 no longer lets every role create in \
             `public`): GRANT CREATE ON SCHEMA public TO it, or make it the database's owner"
                .into(),
        );
    }
    let token = format!("{:016x}", rand::random::<u64>());
    a.client
        .batch_execute(&format!("SET ticketd.probe = '{token}'; SELECT pg_advisory_lock(1953063787, 2)"))
        .await
        .map_err(e)?;
    let b = s.connect(Role::Probe).await.map_err(e)?;
    b.client.batch_execute("BEGIN").await.map_err(e)?;
    let rb = b
        .client
        .query_one("SELECT pg_backend_pid(), coalesce(current_setting('ticketd.probe', true), '')", &[])
        .await
        .map_err(e)?;
    let ra = a
        .client
        .query_one(
            "SELECT pg_backend_pid(), coalesce(current_setting('ticketd.probe', true), ''), \
             EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() \
                     AND classid = 1953063787::int8::oid AND objid = 2::int8::oid)",
            &[],
        )
        .await
        .map_err(e)?;
    b.client.batch_execute("COMMIT").await.map_err(e)?;
    let _ = a.client.batch_execute("SELECT pg_advisory_unlock_all()").await;
    let check = SessionCheck {
        a_pid_before,
        a_pid_after: ra.get(0),
        b_pid: rb.get(0),
        a_kept_setting: ra.get::<_, String>(1) == token,
        a_kept_lock: ra.get(2),
        b_saw_setting: rb.get::<_, String>(1) == token,
    };
    problems.extend(pooled(check));
    Ok(ProbeReport { target: s.describe(), server_version, version_num, tls: s.tls(), schema, problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sessions_that_stay_put_pass() {
        let direct = SessionCheck {
            a_pid_before: 10,
            a_pid_after: 10,
            b_pid: 11,
            a_kept_setting: true,
            a_kept_lock: true,
            b_saw_setting: false,
        };
        assert_eq!(pooled(direct), None);
        let handed_over = SessionCheck { b_pid: 10, b_saw_setting: true, ..direct };
        let why = pooled(handed_over).unwrap();
        assert!(why.contains("handed the first one's server process") && why.contains("session lock"), "{why}");
        let moved = SessionCheck { a_pid_after: 12, a_kept_setting: false, a_kept_lock: false, ..direct };
        let why = pooled(moved).unwrap();
        assert!(why.contains("two server processes") && why.contains("advisory lock"), "{why}");
    }
}
