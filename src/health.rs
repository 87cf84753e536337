//! What the desk is doing, as the loops that do the work report it: each
//! mailbox's connection state and last successful fetch, the writer's
//! current unit of work, counts of messages and sends. Read by systemd's
//! STATUS line and watchdog, `/readyz` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Connecting,
    /// Logged in and waiting in IDLE (or between polls).
    Idle,
    Fetching,
    /// Connection lost or refused; retrying.
    Down,
    /// The server refused the credentials; retrying slowly.
    LoginFailed,
    /// Connected, but the store refuses writes (disk full?).
    StoreWait,
    Stopped,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Idle => "idle",
            LinkState::Fetching => "fetching",
            LinkState::Down => "down",
            LinkState::LoginFailed => "login failed",
            LinkState::StoreWait => "waiting for the store",
            LinkState::Stopped => "stopped",
        }
    }

    /// Able to take mail in right now.
    pub fn is_up(self) -> bool {
        matches!(self, LinkState::Idle | LinkState::Fetching)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MailboxStatus {
    pub state: LinkState,
    #[serde(with = "crate::ticket::rfc3339")]
    pub since: DateTime<Utc>,
    #[serde(with = "crate::ticket::rfc3339_opt")]
    pub last_fetch: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    #[serde(with = "crate::ticket::rfc3339_opt")]
    pub retry_at: Option<DateTime<Utc>>,
}

/// Upper bounds (seconds) of the ingest latency histogram buckets.
pub const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Clone, Default, Serialize)]
pub struct Histogram {
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`].
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; LATENCY_BUCKETS.len()];
        }
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if v <= *b {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }
}

#[derive(Default)]
struct State {
    mailboxes: BTreeMap<String, MailboxStatus>,
    /// (mailbox, outcome) → messages.
    messages: BTreeMap<(String, &'static str), u64>,
    /// result → SMTP transactions.
    sends: BTreeMap<&'static str, u64>,
    /// Where a Content-Security-Policy report came from (`console`, `mail`)
    /// → reports received by the desk console.
    csp_reports: BTreeMap<&'static str, u64>,
    latency: Histogram,
    /// (warning | breach, priority, target) → response target notices.
    sla: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    /// Automatic lifecycle step → count.
    automations: BTreeMap<&'static str, u64>,
    /// The writer's current unit of work began then.
    writer_busy: Option<Instant>,
    /// Each long-running task's promise to beat again by then.
    beats: BTreeMap<String, Instant>,
    /// (what, label) → count: the door's work (see [`Health::count_door`]).
    door: BTreeMap<(&'static str, String), u64>,
}

/// Shared by every task; cheap to clone.
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<State>>);

#[derive(Debug, Clone, Serialize)]
pub struct Readings {
    pub mailboxes: BTreeMap<String, MailboxStatus>,
    pub messages: Vec<(String, String, u64)>,
    pub sends: Vec<(String, u64)>,
    pub csp_reports: Vec<(String, u64)>,
    pub latency: Histogram,
    /// (what, label, count) of the door: `held` by verdict source,
    /// `blocked`, `released`, `acks_refused` by reason, `scans` by result.
    pub door: Vec<(String, String, u64)>,
    /// (warning | breach, priority, target, count).
    pub sla: Vec<(String, String, String, u64)>,
    /// (lifecycle step, count).
    pub automations: Vec<(String, u64)>,
}

impl Health {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records a mailbox's new state; the time it changed is kept only when
    /// the state really changes.
    pub fn link(&self, mailbox: &str, state: LinkState, error: Option<String>, retry_in: Option<Duration>) {
        let now = Utc::now();
        self.with(|s| {
            let e = s.mailboxes.entry(mailbox.to_owned()).or_insert(MailboxStatus {
                state,
                since: now,
                last_fetch: None,
                last_error: None,
                retry_at: None,
            });
            if e.state != state {
                e.state = state;
                e.since = now;
            }
            if error.is_some() {
                e.last_error = error;
            }
            e.retry_at = retry_in.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| now + d);
        });
    }

    /// A fetch round finished: the mailbox is up to date.
    pub fn fetched(&self, mailbox: &str) {
        let now = Utc::now();
        self.with(|s| {
            if let Some(e) = s.mailboxes.get_mut(mailbox) {
                e.last_fetch = Some(now);
                e.last_error = None;
            }
        });
    }

    pub fn count_message(&self, mailbox: &str, outcome: &'static str) {
        self.with(|s| *s.messages.entry((mailbox.to_owned(), outcome)).or_default() += 1);
    }

    /// Seconds from fetch to durable commit of one message.
    pub fn observe_ingest(&self, seconds: f64) {
        self.with(|s| s.latency.observe(seconds));
    }

    /// One more of `what` (`held`, `blocked`, `released`, `acks_refused`,
    /// `scans`) under `label` (a source, a reason, a result; may be empty).
    pub fn count_door(&self, what: &'static str, label: &str) {
        self.with(|s| *s.door.entry((what, label.to_owned())).or_default() += 1);
    }

    pub fn count_send(&self, result: &'static str) {
        self.with(|s| *s.sends.entry(result).or_default() += 1);
    }

    /// A browser reported a Content-Security-Policy violation on a console
    /// page (`console`) or in a mail's frame (`mail`).
    pub fn count_csp_report(&self, source: &'static str) {
        self.with(|s| *s.csp_reports.entry(source).or_default() += 1);
    }

    /// A response target's warning or breach notice went out (#19).
    pub fn count_sla(&self, kind: &'static str, priority: &'static str, target: &'static str) {
        self.with(|s| *s.sla.entry((kind, priority, target)).or_default() += 1);
    }

    /// An automatic lifecycle step (pending reminder, pending → resolved,
    /// resolved → closed) was taken (#19).
    pub fn count_automation(&self, event: &'static str) {
        self.with(|s| *s.automations.entry(event).or_default() += 1);
    }

    pub fn writer_busy(&self, busy: bool) {
        self.with(|s| s.writer_busy = busy.then(Instant::now));
    }

    /// `owner` (an IMAP worker, the sender, the clock) is alive and says
    /// when it will beat again at the latest: `within` covers the wait it is
    /// about to start plus the timeouts of what follows. Past that it is
    /// stuck (a hang no timeout caught).
    pub fn beat(&self, owner: &str, within: Duration) {
        let by = Instant::now() + within;
        self.with(|s| match s.beats.get_mut(owner) {
            Some(t) => *t = by,
            None => {
                s.beats.insert(owner.to_owned(), by);
            }
        });
    }

    /// `owner` stopped on purpose: nothing more is expected of it.
    pub fn quiet(&self, owner: &str) {
        self.with(|s| s.beats.remove(owner));
    }

    /// Every task that beats has ended (a cluster term stopped, some of its
    /// tasks perhaps abandoned): nothing is expected of any of them.
    pub fn quiet_all(&self) {
        self.with(|s| s.beats.clear());
    }

    /// Something that should have finished long ago and has not: the reason
    /// to stop feeding the watchdog (systemd then restarts the service).
    pub fn stuck(&self, writer_limit: Duration) -> Option<String> {
        self.with(|s| {
            if let Some(t) = s.writer_busy
                && t.elapsed() > writer_limit
            {
                return Some(format!("the writer has been busy for {}s", t.elapsed().as_secs()));
            }
            let now = Instant::now();
            s.beats.iter().find_map(|(owner, by)| {
                (now > *by).then(|| format!("{owner} is {}s late", now.duration_since(*by).as_secs()))
            })
        })
    }

    pub fn readings(&self) -> Readings {
        self.with(|s| Readings {
            mailboxes: s.mailboxes.clone(),
            messages: s.messages.iter().map(|((m, o), n)| (m.clone(), (*o).to_owned(), *n)).collect(),
            sends: s.sends.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect(),
            csp_reports: s.csp_reports.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect(),
            latency: s.latency.clone(),
            door: s.door.iter().map(|((w, l), n)| ((*w).to_owned(), l.clone(), *n)).collect(),
            sla: s.sla.iter().map(|((k, p, t), n)| ((*k).to_owned(), (*p).to_owned(), (*t).to_owned(), *n)).collect(),
            automations: s.automations.iter().map(|(e, n)| ((*e).to_owned(), *n)).collect(),
        })
    }

    /// One line for systemd's STATUS=: what each mailbox is doing.
    pub fn status_line(&self) -> String {
        let now = Utc::now();
        let ago = |t: DateTime<Utc>| humanize((now - t).num_seconds().max(0));
        let parts: Vec<String> = self.with(|s| {
            s.mailboxes
                .iter()
                .map(|(name, m)| {
                    let mut p = format!("{name}: {}", m.state.as_str());
                    if let (false, Some(e)) = (m.state.is_up(), &m.last_error) {
                        p.push_str(&format!(": {}", crate::text::truncate_chars(&crate::text::clean_line(e), 80)));
                    }
                    match (m.state, m.last_fetch, m.retry_at) {
                        (LinkState::Idle | LinkState::Fetching, Some(t), _) => p.push_str(&format!(", {} ago", ago(t))),
                        (_, _, Some(r)) if r > now => {
                            p.push_str(&format!(", retrying in {}", humanize((r - now).num_seconds())))
                        }
                        _ => {}
                    }
                    p
                })
                .collect()
        });
        if parts.is_empty() { "starting".into() } else { parts.join("; ") }
    }
}

fn humanize(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_says_what_each_mailbox_does() {
        let h = Health::default();
        h.link("support", LinkState::Idle, None, None);
        h.fetched("support");
        h.link(
            "billing",
            LinkState::LoginFailed,
            Some("login refused: wrong password".into()),
            Some(Duration::from_secs(60)),
        );
        let line = h.status_line();
        assert!(line.starts_with("billing: login failed: login refused: wrong password, retrying in"), "{line}");
        assert!(line.contains("support: idle, 0 s ago"), "{line}");
        h.beat("imap worker support", Duration::from_secs(60));
        h.beat("smtp sender", Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        let why = h.stuck(Duration::from_secs(60));
        assert!(why.as_deref().is_some_and(|s| s.starts_with("smtp sender is ")), "{why:?}");
        h.beat("smtp sender", Duration::from_secs(60));
        assert_eq!(h.stuck(Duration::from_secs(60)), None, "a beat in time clears it");
        h.beat("clock", Duration::from_millis(1));
        h.quiet("clock");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(h.stuck(Duration::from_secs(60)), None, "a task that stopped on purpose is not stuck");
        h.observe_ingest(0.02);
        assert_eq!(h.readings().latency.buckets[2], 1, "0.02 s falls in the 0.025 bucket");
    }
}
