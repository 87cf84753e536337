//! Console sessions, kept in the store so they survive a restart and are
//! shared by every node on one database. Only the SHA-256 of a session id
//! is stored; the id itself lives in the browser's cookie. Every change
//! goes through the writer ([`SessionOp`]); the console touches a session
//! at most about once a minute, not on every request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::tx::Tx;
use super::{Desk, DeskError};
use crate::store::{Get, Scan, Table, json, parse};

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The agent signed in; None: the admin.
    pub agent: Option<String>,
    /// Names the token used to sign in (a keyed hash of it): once that
    /// token is replaced, the session no longer counts.
    pub token_tag: String,
    #[serde(with = "crate::ticket::rfc3339")]
    pub created: DateTime<Utc>,
    #[serde(with = "crate::ticket::rfc3339")]
    pub last_seen: DateTime<Utc>,
    /// The address it signed in from (for the admin's list).
    #[serde(default)]
    pub from: String,
}

impl SessionRecord {
    /// Whether it still counts at `now`.
    pub fn live(&self, now: DateTime<Utc>, idle: chrono::Duration, max: chrono::Duration) -> bool {
        now - self.created < max && now - self.last_seen < idle
    }
}

/// A change to the sessions, done by the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    Create {
        key: [u8; 32],
        record: SessionRecord,
    },
    /// Marks it used at `at` (the console sends this at most once a minute).
    Touch {
        key: [u8; 32],
        at: DateTime<Utc>,
    },
    End {
        key: [u8; 32],
    },
    /// Ends every session of this agent (the admin's "sign out everywhere").
    EndAgent {
        agent: String,
    },
    /// Removes sessions that no longer count.
    Purge {
        now: DateTime<Utc>,
        idle: chrono::Duration,
        max: chrono::Duration,
    },
}

/// Applies `op`; answers how many sessions it touched or removed.
pub(super) fn apply(tx: &mut Tx<'_>, op: SessionOp) -> Result<usize, DeskError> {
    match op {
        SessionOp::Create { key, record } => {
            tx.put(Table::Sessions, key.to_vec(), json(&record));
            Ok(1)
        }
        SessionOp::Touch { key, at } => {
            let Some(v) = tx.get(Table::Sessions, &key)? else { return Ok(0) };
            let mut rec: SessionRecord = parse(Table::Sessions, &v)?;
            if at > rec.last_seen {
                rec.last_seen = at;
                tx.put(Table::Sessions, key.to_vec(), json(&rec));
            }
            Ok(1)
        }
        SessionOp::End { key } => {
            let found = tx.get(Table::Sessions, &key)?.is_some();
            tx.delete(Table::Sessions, key.to_vec());
            Ok(usize::from(found))
        }
        SessionOp::EndAgent { agent } => {
            let doomed = matching(tx, |r| r.agent.as_deref() == Some(agent.as_str()))?;
            for k in &doomed {
                tx.delete(Table::Sessions, k.clone());
            }
            Ok(doomed.len())
        }
        SessionOp::Purge { now, idle, max } => {
            let doomed = matching(tx, |r| !r.live(now, idle, max))?;
            for k in &doomed {
                tx.delete(Table::Sessions, k.clone());
            }
            Ok(doomed.len())
        }
    }
}

/// Keys of the committed sessions for which `pick` holds (and that this
/// unit of work has not removed already).
fn matching(tx: &Tx<'_>, pick: impl Fn(&SessionRecord) -> bool) -> Result<Vec<Vec<u8>>, DeskError> {
    let mut out = Vec::new();
    for item in tx.store().backend().scan(Table::Sessions, Scan::default()) {
        let (k, _) = item?;
        let Some(v) = tx.get(Table::Sessions, &k)? else { continue };
        if pick(&parse(Table::Sessions, &v)?) {
            out.push(k);
        }
    }
    Ok(out)
}

impl Desk {
    /// The session stored under `key` (the SHA-256 of its id).
    pub fn session(&self, key: &[u8; 32]) -> Result<Option<SessionRecord>, DeskError> {
        let v = self.store().get(Table::Sessions, key)?;
        Ok(v.map(|v| parse(Table::Sessions, &v)).transpose()?)
    }

    /// Every stored session with its key.
    pub fn sessions(&self) -> Result<Vec<([u8; 32], SessionRecord)>, DeskError> {
        let mut out = Vec::new();
        for item in self.store().backend().scan(Table::Sessions, Scan::default()) {
            let (k, v) = item?;
            if let Ok(key) = <[u8; 32]>::try_from(k.as_slice()) {
                out.push((key, parse(Table::Sessions, &v)?));
            }
        }
        Ok(out)
    }

    /// Changes the sessions through the writer; answers how many it
    /// touched or removed.
    pub async fn session_op(&self, op: SessionOp) -> Result<usize, DeskError> {
        self.ask(|reply| super::writer::Job::Session { op, reply }).await?
    }
}
