//! `/healthz` (the process answers), `/readyz` (it can do its work: the
//! store reads, the writer runs, every mailbox is logged in) and
//! `/metrics`. Readiness answers 503 with the same body when anything is
//! not ready, so a probe and a person read one document.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::metrics::{self, Scrape};
use crate::desk::status::OutboxSummary;
use crate::health::LinkState;
use crate::store::Table;

pub async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"}))).into_response()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    /// Why not, one line per reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    pub store: Check,
    pub writer: Check,
    pub mailboxes: BTreeMap<String, MailboxReadiness>,
    pub outbox: OutboxReadiness,
    /// Each API listener: serving, or why not.
    #[serde(default)]
    pub listeners: BTreeMap<String, Check>,
    /// A node of a cluster: `leader` or `standby` (absent on a single node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The node that leads (its name), when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Where the leader's API is (`cluster.advertise`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_address: Option<String>,
    /// The lease's epoch (raised by every new leader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// This node's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxReadiness {
    pub up: bool,
    /// connecting, idle, fetching, down, login_failed, store_wait, stopped.
    pub state: String,
    #[serde(with = "crate::ticket::rfc3339_opt", default)]
    pub since: Option<DateTime<Utc>>,
    #[serde(with = "crate::ticket::rfc3339_opt", default)]
    pub last_fetch: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxReadiness {
    pub waiting: u64,
    /// Age of the oldest waiting mail (reported, not a reason to be unready:
    /// an SMTP outage does not stop mail from coming in).
    pub oldest_age_seconds: Option<f64>,
}

fn state_code(s: LinkState) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// What the store says, read on the blocking pool.
struct StoreView {
    read: Result<(), String>,
    outbox: Result<OutboxSummary, String>,
}

impl Readiness {
    /// What anyone may see: ready or not, and up or down per mailbox and
    /// check — no error text (it names accounts, hosts and paths), no
    /// reasons beyond the names.
    pub fn anonymous(mut self) -> Readiness {
        self.problems = self.problems.iter().map(|p| p.split(": ").next().unwrap_or("").to_owned()).collect();
        self.problems.dedup();
        self.store.error = None;
        self.writer.error = None;
        for m in self.mailboxes.values_mut() {
            m.state = if m.up { "up" } else { "down" }.to_owned();
            m.since = None;
            m.last_fetch = None;
            m.last_error = None;
        }
        for l in self.listeners.values_mut() {
            l.error = None;
        }
        self
    }
}

/// Open, for probes; with a valid token it says what is wrong in full.
pub async fn readyz(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let full = st.tokens.caller(&headers, st.desk.config()).is_ok();
    let body = readiness(&st).await;
    let body = if full { body } else { body.anonymous() };
    let status = if body.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// What `/readyz` sees, in full (the console's admin page shows it too).
pub async fn readiness(st: &AppState) -> Readiness {
    let desk = st.desk.clone();
    let view = tokio::task::spawn_blocking(move || StoreView {
        read: desk.store().backend().count(Table::Cursors).map(|_| ()).map_err(|e| e.to_string()),
        outbox: desk.outbox_summary().map_err(|e| e.to_string()),
    })
    .await
    .unwrap_or_else(|e| StoreView { read: Err(format!("the store probe failed: {e}")), outbox: Err(String::new()) });
    let now = Utc::now();
    let snap = st.desk.health().readings();
    let mut problems = Vec::new();
    let store = Check { ok: view.read.is_ok(), error: view.read.err() };
    if let Some(e) = &store.error {
        problems.push(format!("the store cannot be read: {e}"));
    }
    let writer = Check { ok: st.desk.writer_running(), error: None };
    if !writer.ok {
        problems.push("the desk writer has stopped".into());
    }
    let cluster = st.desk.cluster().map(|c| c.status());
    // A standby fetches no mail: its mailboxes are not a reason to be unready.
    let standby = cluster.as_ref().is_some_and(|c| !c.leading);
    if let Some(c) = &cluster
        && !c.lock_ok
    {
        problems.push("the database does not answer the lease's calls".to_owned());
    }
    let mut mailboxes = BTreeMap::new();
    for m in &st.desk.config().mailboxes {
        let r = match snap.mailboxes.get(&m.name) {
            Some(s) => MailboxReadiness {
                up: s.state.is_up(),
                state: state_code(s.state),
                since: Some(s.since),
                last_fetch: s.last_fetch,
                last_error: s.last_error.as_deref().map(crate::text::clean_line),
            },
            None => MailboxReadiness {
                up: false,
                state: state_code(LinkState::Connecting),
                since: None,
                last_fetch: None,
                last_error: None,
            },
        };
        if !r.up && !standby {
            problems.push(format!("mailbox {}: {}", m.name, r.state));
        }
        mailboxes.insert(m.name.clone(), r);
    }
    let outbox = match view.outbox {
        Ok(o) => OutboxReadiness {
            waiting: o.queued + o.retrying,
            oldest_age_seconds: o.oldest().map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
        },
        Err(_) => OutboxReadiness { waiting: 0, oldest_age_seconds: None },
    };
    let mut listeners = BTreeMap::new();
    for (name, error) in st.listeners.snapshot() {
        if let Some(e) = &error {
            problems.push(format!("api listener {name}: {e}"));
        }
        listeners.insert(name, Check { ok: error.is_none(), error });
    }
    Readiness {
        ready: problems.is_empty(),
        problems,
        store,
        writer,
        mailboxes,
        outbox,
        listeners,
        role: cluster.as_ref().map(|c| if c.leading { "leader" } else { "standby" }.to_owned()),
        leader: cluster.as_ref().and_then(|c| c.leader.clone()),
        leader_address: cluster.as_ref().and_then(|c| c.leader_address.clone()),
        epoch: cluster.as_ref().map(|c| c.epoch),
        node: cluster.as_ref().map(|c| c.node.clone()),
    }
}

pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let desk = st.desk.clone();
    let scrape = tokio::task::spawn_blocking(move || -> Result<Scrape, ApiError> {
        let store = desk.store();
        let quarantine =
            store.backend().count(Table::Quarantine).map_err(|e| ApiError::from(crate::desk::DeskError::from(e)))?;
        let now = Utc::now();
        let (overdue, timers_due) = desk.time_counts(now)?;
        Ok(Scrape {
            readings: desk.health().readings(),
            mailboxes: desk.config().mailboxes.iter().map(|m| m.name.clone()).collect(),
            outbox: desk.outbox_summary()?,
            quarantine,
            store_bytes: store.backend().size_on_disk().unwrap_or(0),
            overdue,
            timers_due,
            now,
            cluster: desk.cluster().map(|c| c.status()),
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("the scrape failed: {e}")))??;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render(&scrape)).into_response())
}
