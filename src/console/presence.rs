//! Who is looking at or answering a ticket right now. Kept in memory
//! only (a page sends a heartbeat while it is open, and a mark expires
//! after [`TTL`] without one); each change is published to the live
//! stream so the queue and the ticket page show it. Presence is advice,
//! never a lock: the stale-edit check is what refuses a collision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Console;
use super::events::Hub;
use super::session::{Fields, User};
use super::views::Mark;

/// A mark lasts this long after the last heartbeat (pages beat every 20 s).
pub const TTL: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Doing {
    Viewing,
    Replying,
}

impl Doing {
    pub fn as_str(self) -> &'static str {
        match self {
            Doing::Viewing => "viewing",
            Doing::Replying => "replying",
        }
    }
}

struct Seen {
    session: [u8; 32],
    label: String,
    name: String,
    state: Doing,
    until: Instant,
}

/// One person on a ticket, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Who {
    pub agent: String,
    pub name: String,
    pub state: Doing,
}

#[derive(Clone, Default)]
pub struct Presence(Arc<Mutex<HashMap<u64, Vec<Seen>>>>);

fn shown(list: &[Seen]) -> Vec<Who> {
    let mut out: Vec<Who> = Vec::new();
    for s in list {
        match out.iter_mut().find(|w| w.agent == s.label) {
            Some(w) => w.state = w.state.max(s.state),
            None => out.push(Who { agent: s.label.clone(), name: s.name.clone(), state: s.state }),
        }
    }
    out.sort_by(|a, b| a.agent.cmp(&b.agent));
    out
}

impl Presence {
    fn change(&self, ticket: u64, hub: &Hub, f: impl FnOnce(&mut Vec<Seen>)) {
        let (before, after) = {
            let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let list = m.entry(ticket).or_default();
            let before = shown(list);
            f(list);
            let after = shown(list);
            if list.is_empty() {
                m.remove(&ticket);
            }
            (before, after)
        };
        if before != after {
            hub.presence(ticket, &after);
        }
    }

    /// `user` is on `ticket` (None: left it).
    pub fn set(&self, ticket: u64, user: &User, state: Option<Doing>, hub: &Hub) {
        let until = Instant::now() + TTL;
        self.change(ticket, hub, |list| {
            list.retain(|s| s.session != user.key);
            if let Some(state) = state {
                list.push(Seen {
                    session: user.key,
                    label: user.label().to_owned(),
                    name: user.name.clone(),
                    state,
                    until,
                });
            }
        });
    }

    /// A session signed out: off every ticket.
    pub fn forget(&self, session: &[u8; 32], hub: &Hub) {
        let tickets: Vec<u64> = {
            let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
            m.iter().filter(|(_, l)| l.iter().any(|s| &s.session == session)).map(|(t, _)| *t).collect()
        };
        for t in tickets {
            self.change(t, hub, |list| list.retain(|s| &s.session != session));
        }
    }

    /// Drops marks whose heartbeat stopped.
    pub fn sweep(&self, hub: &Hub) {
        let now = Instant::now();
        let tickets: Vec<u64> = {
            let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
            m.iter().filter(|(_, l)| l.iter().any(|s| s.until <= now)).map(|(t, _)| *t).collect()
        };
        for t in tickets {
            self.change(t, hub, |list| list.retain(|s| s.until > now));
        }
    }

    pub fn who(&self, ticket: u64) -> Vec<Who> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&ticket).map(|l| shown(l)).unwrap_or_default()
    }

    /// The marks of a ticket as pages show them, leaving out `me`.
    pub fn marks(&self, ticket: u64, me: &str) -> Vec<Mark> {
        self.who(ticket)
            .into_iter()
            .filter(|w| w.agent != me)
            .map(|w| Mark { name: w.name, state: w.state.as_str() })
            .collect()
    }
}

/// `POST /desk/tickets/{number}/presence`: `state=viewing|replying|left`.
pub async fn beat(
    State(c): State<Console>,
    user: User,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = Fields::parse(&body);
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).or(f.get("csrf"));
    if !user.token_ok(sent) {
        return super::pages::bad_token();
    }
    let Ok(n) = number.parse::<u64>() else { return StatusCode::NOT_FOUND.into_response() };
    let state = match f.get("state") {
        Some("viewing") => Some(Doing::Viewing),
        Some("replying") => Some(Doing::Replying),
        Some("left") => None,
        _ => return (StatusCode::BAD_REQUEST, "state must be viewing, replying or left").into_response(),
    };
    c.presence.set(n, &user, state, &c.hub);
    StatusCode::NO_CONTENT.into_response()
}
