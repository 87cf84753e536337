//! Live updates: `GET /desk/events`, a Server-Sent Events stream. What it
//! carries comes from one place — the writer's change feed
//! (`Desk::subscribe`: after each durable commit, the tickets it changed
//! and whether the outbox or quarantine moved) — plus presence changes.
//! Events are hints to re-read, never the data: a page fetches what it
//! shows through the same routes as always.
//!
//! Each event has an id; the last [`KEEP`] are kept, so a browser that
//! reconnects with `Last-Event-ID` (or `?last=`) gets what it missed, and
//! one that missed more gets `reset` and re-reads everything. The script
//! keeps one stream per browser, shared by its tabs (HTTP/1.1 allows six
//! connections per host).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Console;
use super::presence::{Presence, Who};
use super::session::User;
use crate::desk::Changes;

/// Events kept for reconnecting browsers.
pub const KEEP: usize = 512;
/// How often expired presence marks are swept.
const SWEEP: Duration = Duration::from_secs(5);
/// How often a stream checks that its session still counts.
const RECHECK: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Ev {
    pub id: u64,
    pub kind: &'static str,
    pub data: String,
}

struct HubInner {
    tx: broadcast::Sender<Arc<Ev>>,
    ring: Mutex<VecDeque<Arc<Ev>>>,
    next: AtomicU64,
}

#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

impl Hub {
    /// Starts forwarding the writer's changes (and sweeping `presence`)
    /// until `stop`.
    pub fn start(changes: broadcast::Receiver<Changes>, presence: Presence, stop: CancellationToken) -> Hub {
        let hub = Hub(Arc::new(HubInner {
            tx: broadcast::channel(KEEP).0,
            ring: Mutex::new(VecDeque::with_capacity(KEEP)),
            next: AtomicU64::new(1),
        }));
        let h = hub.clone();
        tokio::spawn(async move {
            let mut changes = changes;
            let mut sweep = tokio::time::interval(SWEEP);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = sweep.tick() => presence.sweep(&h),
                    got = changes.recv() => match got {
                        Ok(c) => h.changes(&c),
                        Err(broadcast::error::RecvError::Lagged(_)) => h.publish("reset", "{}".into()),
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        });
        hub
    }

    fn changes(&self, c: &Changes) {
        if c.everything {
            // What a page does when it fell behind: re-read it all.
            self.publish("reset", "{}".into());
            return;
        }
        if !c.tickets.is_empty() {
            self.publish("tickets", serde_json::json!({ "tickets": c.tickets }).to_string());
        }
        if c.outbox {
            self.publish("outbox", "{}".into());
        }
        if c.quarantine {
            self.publish("quarantine", "{}".into());
        }
        if c.spam {
            self.publish("spam", "{}".into());
        }
    }

    pub fn presence(&self, ticket: u64, who: &[Who]) {
        self.publish("presence", serde_json::json!({ "ticket": ticket, "who": who }).to_string());
    }

    pub fn publish(&self, kind: &'static str, data: String) {
        let mut ring = self.0.ring.lock().unwrap_or_else(|e| e.into_inner());
        // Ids are taken under the lock, so the ring is in id order.
        let ev = Arc::new(Ev { id: self.0.next.fetch_add(1, Ordering::SeqCst), kind, data });
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(ev.clone());
        drop(ring);
        let _ = self.0.tx.send(ev);
    }

    /// The events after `last`; None when some of them are no longer kept.
    fn since(&self, last: u64) -> Option<Vec<Arc<Ev>>> {
        let ring = self.0.ring.lock().unwrap_or_else(|e| e.into_inner());
        let newest = self.0.next.load(Ordering::SeqCst).saturating_sub(1);
        if last == newest {
            return Some(Vec::new());
        }
        // From before a restart (ids start over): it cannot be resumed.
        if last > newest {
            return None;
        }
        let oldest = ring.front().map(|e| e.id).unwrap_or(newest + 1);
        if last + 1 < oldest {
            return None;
        }
        Some(ring.iter().filter(|e| e.id > last).cloned().collect())
    }

    /// The id of the newest event (0: none yet).
    pub fn newest(&self) -> u64 {
        self.0.next.load(Ordering::SeqCst).saturating_sub(1)
    }
}

#[derive(serde::Deserialize)]
pub struct EventsQuery {
    last: Option<u64>,
}

fn event(e: &Ev) -> Event {
    Event::default().id(e.id.to_string()).event(e.kind).data(&e.data)
}

struct Feed {
    c: Console,
    headers: HeaderMap,
    backlog: VecDeque<Event>,
    rx: broadcast::Receiver<Arc<Ev>>,
    last: u64,
    recheck: tokio::time::Interval,
}

pub async fn stream(
    State(c): State<Console>,
    _user: User,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.last);
    let rx = c.hub.0.tx.subscribe();
    let mut backlog = VecDeque::new();
    let mut sent = c.hub.newest();
    match last {
        // A first connection starts from now.
        None => backlog.push_back(Event::default().id(sent.to_string()).event("hello").data("{}")),
        Some(l) => match c.hub.since(l) {
            Some(missed) => {
                sent = l;
                for e in missed {
                    sent = sent.max(e.id);
                    backlog.push_back(event(&e));
                }
            }
            None => backlog.push_back(Event::default().id(sent.to_string()).event("reset").data("{}")),
        },
    }
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.reset();
    let feed = Feed { c, headers, backlog, rx, last: sent, recheck };
    let stream = futures::stream::unfold(feed, next);
    let mut r = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies (nginx) must pass events on as they come.
    r.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

async fn next(mut f: Feed) -> Option<(Result<Event, Infallible>, Feed)> {
    if let Some(e) = f.backlog.pop_front() {
        return Some((Ok(e), f));
    }
    loop {
        tokio::select! {
            _ = f.c.stop.cancelled() => return None,
            _ = f.recheck.tick() => {
                if !super::session::still_valid(&f.c, &f.headers).await {
                    return None;
                }
            }
            got = f.rx.recv() => match got {
                Ok(e) if e.id <= f.last => continue,
                Ok(e) => {
                    f.last = e.id;
                    let ev = event(&e);
                    return Some((Ok(ev), f));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    f.last = f.c.hub.newest();
                    let ev = Event::default().id(f.last.to_string()).event("reset").data("{}");
                    return Some((Ok(ev), f));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reconnect_gets_what_it_missed_or_a_reset() {
        let (_tx, rx) = broadcast::channel(4);
        let hub = Hub::start(rx, Presence::default(), CancellationToken::new());
        for i in 0..(KEEP + 10) {
            hub.publish("tickets", format!("{{\"tickets\":[{i}]}}"));
        }
        let newest = hub.newest();
        assert_eq!(newest, (KEEP + 10) as u64);
        let missed = hub.since(newest - 3).unwrap();
        assert_eq!(missed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![newest - 2, newest - 1, newest]);
        assert!(hub.since(newest).unwrap().is_empty());
        assert!(hub.since(1).is_none(), "too old: a reset");
        assert!(hub.since(newest + 5).is_none(), "from another run: a reset");
    }

    #[tokio::test]
    async fn a_change_feed_that_may_have_missed_changes_tells_every_page_to_re_read() {
        let (tx, rx) = broadcast::channel(16);
        let stop = CancellationToken::new();
        let hub = Hub::start(rx, Presence::default(), stop.clone());
        let mut seen = hub.0.tx.subscribe();
        tx.send(Changes { tickets: vec![4], ..Changes::default() }).unwrap();
        // After a LISTEN reconnect (daemon::listen): no ticket named, but any may have moved.
        tx.send(Changes { everything: true, ..Changes::default() }).unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await.unwrap().unwrap();
        assert_eq!((first.kind, first.data.as_str()), ("tickets", r#"{"tickets":[4]}"#));
        let second = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await.unwrap().unwrap();
        assert_eq!(second.kind, "reset", "the script re-reads the queue and the open ticket on reset");
        stop.cancel();
    }
}
