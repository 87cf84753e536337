//! The local JSON API (DESIGN section 9), served inside the daemon:
//! [`server`] binds, serves and drains; [`routes`] is the route table (who
//! may call what, decided by one [`guard`]) and the handlers for tickets,
//! quarantine, outbox and attachments; [`probes`] answers health and
//! [`metrics`]; [`auth`] checks bearer tokens; [`wire`] holds the request
//! and answer shapes the CLI's client reads too.

pub mod auth;
pub mod error;
pub mod forward;
pub mod guard;
pub mod metrics;
pub mod openapi;
pub mod people;
pub mod probes;
pub mod routes;
pub mod server;
pub mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::config::ApiConfig;
use crate::desk::Desk;
use auth::Tokens;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub desk: Desk,
    pub tokens: Arc<Tokens>,
    pub api: Arc<ApiConfig>,
    pub listeners: Arc<Listeners>,
    /// `api.concurrency` permits, each held until its response is sent.
    pub permits: Arc<tokio::sync::Semaphore>,
}

/// The listener a request came through, as the daemon names it
/// (`127.0.0.1:8025`, `unix:/run/ticketd/api.sock`): a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub local: String,
    /// The client's address (TCP only).
    pub peer: Option<std::net::IpAddr>,
}

/// What each configured listener is doing, for `/readyz`.
#[derive(Debug, Default)]
pub struct Listeners {
    state: std::sync::Mutex<std::collections::BTreeMap<String, Option<String>>>,
}

impl Listeners {
    fn set(&self, name: &str, error: Option<String>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), error);
    }

    /// Listener → the error that keeps it from serving (None: serving).
    pub fn snapshot(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
