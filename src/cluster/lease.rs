//! When a node may lead, and when it must stop: a pure state machine over
//! the answers of the lease calls (`store::postgres::lease`) and the local
//! monotonic clock, which the caller passes in. No I/O, no clock inside.
//!
//! Timing, from `lease_timeout` T (the window after which a standby, by
//! the database's clock, deposes a holder whose heartbeat stopped):
//! - the leader beats every T/5;
//! - a confirmed heartbeat vouches for the lease from the moment it was
//!   *sent* (the database stamped it no earlier), so a standby cannot
//!   depose this leader before `sent + T`;
//! - T/2 after the last confirmed send, the lease is in doubt: side
//!   effects (IMAP post-actions, SMTP sends) stop, commits may go on (the
//!   fence refuses them if the lease moved);
//! - 3T/4 after it, the node steps down (writer, IMAP workers, sender
//!   stopped; the lock let go), a quarter of the window before anyone may
//!   take over;
//! - a heartbeat that reports the lease lost (the session ended, another
//!   epoch) stops side effects and steps down at once;
//! - a standby tries to take the lease every T/10 (at least 200 ms), and
//!   each time asks the database to depose a holder older than T.
//!
//! [`Lease::may_act`] is the guard to call right before each side effect:
//! it answers from the clock, not from the last tick, so a process that was
//! paused and resumes refuses before its lease loop has even run.
//! What it cannot stop is a side effect already under way when the pause
//! began (an SMTP DATA in flight); the outbound Message-IDs are
//! deterministic, so such a resend is recognisable.

use std::time::{Duration, Instant};

/// The schedule derived from `lease_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub lease_timeout: Duration,
    pub heartbeat_every: Duration,
    pub in_doubt_after: Duration,
    pub step_down_after: Duration,
    pub standby_poll: Duration,
}

impl Timing {
    pub fn new(lease_timeout: Duration) -> Timing {
        let t = lease_timeout;
        Timing {
            lease_timeout: t,
            heartbeat_every: t / 5,
            in_doubt_after: t / 2,
            step_down_after: t * 3 / 4,
            standby_poll: (t / 10).max(Duration::from_millis(200)),
        }
    }
}

/// What happened, as the lease loop saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `Lease::acquire` returned a lease; `sent` is when the call started.
    Acquired { epoch: u64, sent: Instant },
    /// `try_lease` found it taken (or failed).
    NotAcquired { at: Instant },
    /// A heartbeat sent at `sent` was confirmed.
    Confirmed { sent: Instant },
    /// A heartbeat was not confirmed (timeout, an unrelated error).
    Unconfirmed { at: Instant },
    /// The lease is gone for certain (session ended, another epoch).
    Lost { at: Instant, why: String },
    /// Time passed.
    Tick { now: Instant },
    /// The daemon stops.
    Shutdown,
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the writer (careful mode: a takeover is a crash restart for
    /// the new leader), the IMAP workers and the sender, committing with
    /// this epoch.
    Lead { epoch: u64 },
    /// Stop IMAP post-actions and SMTP sends now.
    PauseSideEffects,
    /// The lease is confirmed again.
    ResumeSideEffects,
    /// Stop the writer, the IMAP workers and the sender, and let go of the
    /// lease (drop it).
    StepDown { why: String },
    /// Send a heartbeat (note the time first).
    Heartbeat,
    /// Try to take the lease; ask the database to depose a holder whose
    /// heartbeat is older than the lease timeout first.
    TryAcquire,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Standby { next_try: Option<Instant> },
    Leading { epoch: u64, confirmed: Instant, paused: bool, next_beat: Instant },
    Stopped,
}

/// One node's view of the lease.
#[derive(Debug, Clone)]
pub struct Lease {
    timing: Timing,
    state: State,
}

impl Lease {
    pub fn new(timing: Timing) -> Lease {
        Lease { timing, state: State::Standby { next_try: None } }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The epoch this node leads with, if it leads.
    pub fn epoch(&self) -> Option<u64> {
        match self.state {
            State::Leading { epoch, .. } => Some(epoch),
            _ => None,
        }
    }

    /// Whether a side effect may start at `now`: leading, and the lease
    /// confirmed less than T/2 ago.
    pub fn may_act(&self, now: Instant) -> bool {
        match self.state {
            State::Leading { confirmed, paused, .. } => {
                !paused && now.saturating_duration_since(confirmed) < self.timing.in_doubt_after
            }
            _ => false,
        }
    }

    /// When the caller should next send a [`Event::Tick`].
    pub fn next_wake(&self, now: Instant) -> Instant {
        match self.state {
            State::Standby { next_try } => next_try.unwrap_or(now),
            State::Leading { confirmed, paused, next_beat, .. } => {
                let edge = if paused { self.timing.step_down_after } else { self.timing.in_doubt_after };
                next_beat.min(confirmed + edge)
            }
            State::Stopped => now + Duration::from_secs(3600),
        }
    }

    pub fn on(&mut self, event: Event) -> Vec<Action> {
        let t = self.timing;
        match (&mut self.state, event) {
            (State::Stopped, _) => vec![],
            (State::Leading { .. }, Event::Shutdown) => {
                self.state = State::Stopped;
                vec![Action::PauseSideEffects, Action::StepDown { why: "shutting down".into() }]
            }
            (_, Event::Shutdown) => {
                self.state = State::Stopped;
                vec![]
            }
            (State::Standby { .. }, Event::Acquired { epoch, sent }) => {
                // Confirmed as of the call's start, like any heartbeat.
                self.state =
                    State::Leading { epoch, confirmed: sent, paused: false, next_beat: sent + t.heartbeat_every };
                vec![Action::Lead { epoch }]
            }
            (State::Standby { next_try }, Event::NotAcquired { at }) => {
                *next_try = Some(at + t.standby_poll);
                vec![]
            }
            (State::Standby { next_try }, Event::Tick { now }) => {
                if next_try.is_none_or(|n| now >= n) {
                    *next_try = Some(now + t.standby_poll);
                    vec![Action::TryAcquire]
                } else {
                    vec![]
                }
            }
            (State::Standby { .. }, _) => vec![],
            (State::Leading { confirmed, paused, .. }, Event::Confirmed { sent }) => {
                if sent <= *confirmed {
                    return vec![];
                }
                *confirmed = sent;
                // `may_act` still bounds what this confirmation vouches for.
                if std::mem::take(paused) {
                    return vec![Action::ResumeSideEffects];
                }
                vec![]
            }
            (State::Leading { .. }, Event::Lost { why, .. }) => self.step_down(why),
            (State::Leading { .. }, Event::Unconfirmed { at }) => self.check(at, false),
            (State::Leading { .. }, Event::Tick { now }) => self.check(now, true),
            (State::Leading { .. }, Event::Acquired { .. } | Event::NotAcquired { .. }) => vec![],
        }
    }

    /// The leader's clock check at `now`; on a tick, also whether a
    /// heartbeat is due.
    fn check(&mut self, now: Instant, tick: bool) -> Vec<Action> {
        let t = self.timing;
        let State::Leading { confirmed, paused, next_beat, .. } = &mut self.state else { return vec![] };
        let age = now.saturating_duration_since(*confirmed);
        if age >= t.step_down_after {
            return self.step_down(format!("no confirmed heartbeat for {age:?}"));
        }
        let mut out = Vec::new();
        if age >= t.in_doubt_after && !*paused {
            *paused = true;
            out.push(Action::PauseSideEffects);
        }
        if tick && now >= *next_beat {
            *next_beat = now + t.heartbeat_every;
            out.push(Action::Heartbeat);
        }
        out
    }

    fn step_down(&mut self, why: String) -> Vec<Action> {
        let was_paused = matches!(self.state, State::Leading { paused: true, .. });
        self.state = State::Standby { next_try: None };
        let mut out = Vec::new();
        if !was_paused {
            out.push(Action::PauseSideEffects);
        }
        out.push(Action::StepDown { why });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn leading(t0: Instant) -> Lease {
        let mut l = Lease::new(Timing::new(T));
        assert_eq!(l.on(Event::Tick { now: t0 }), vec![Action::TryAcquire]);
        assert_eq!(l.on(Event::Acquired { epoch: 7, sent: t0 }), vec![Action::Lead { epoch: 7 }]);
        l
    }

    fn s(n: u64) -> Duration {
        Duration::from_millis(n * 1000)
    }

    #[test]
    fn the_schedule_steps_down_well_inside_the_window() {
        let tm = Timing::new(T);
        assert_eq!(tm.heartbeat_every, s(2));
        assert!(tm.in_doubt_after < tm.step_down_after && tm.step_down_after < tm.lease_timeout);
        assert_eq!(Timing::new(Duration::from_secs(1)).standby_poll, Duration::from_millis(200));
    }

    #[test]
    fn a_standby_tries_on_its_schedule() {
        let t0 = Instant::now();
        let mut l = Lease::new(Timing::new(T));
        assert_eq!(l.on(Event::Tick { now: t0 }), vec![Action::TryAcquire]);
        assert_eq!(l.on(Event::NotAcquired { at: t0 }), vec![]);
        assert_eq!(l.on(Event::Tick { now: t0 + Duration::from_millis(500) }), vec![]);
        assert_eq!(l.next_wake(t0), t0 + s(1));
        assert_eq!(l.on(Event::Tick { now: t0 + s(1) }), vec![Action::TryAcquire]);
        assert!(!l.may_act(t0 + s(1)), "a standby never acts");
        assert_eq!(l.epoch(), None);
    }

    #[test]
    fn a_healthy_leader_beats_and_acts() {
        let t0 = Instant::now();
        let mut l = leading(t0);
        assert!(l.may_act(t0));
        assert_eq!(l.on(Event::Tick { now: t0 + s(1) }), vec![]);
        assert_eq!(l.on(Event::Tick { now: t0 + s(2) }), vec![Action::Heartbeat]);
        assert_eq!(l.on(Event::Confirmed { sent: t0 + s(2) }), vec![]);
        assert_eq!(l.on(Event::Tick { now: t0 + s(4) }), vec![Action::Heartbeat]);
        assert_eq!(l.on(Event::Confirmed { sent: t0 + s(4) }), vec![]);
        assert!(l.may_act(t0 + s(8)), "confirmed at 4 s: good until 9 s");
        assert!(!l.may_act(t0 + s(9)));
        assert_eq!(l.epoch(), Some(7));
    }

    #[test]
    fn unconfirmed_heartbeats_stop_side_effects_then_step_down() {
        let t0 = Instant::now();
        let mut l = leading(t0);
        assert_eq!(l.on(Event::Unconfirmed { at: t0 + s(2) }), vec![]);
        assert_eq!(l.on(Event::Tick { now: t0 + s(4) }), vec![Action::Heartbeat]);
        assert_eq!(l.on(Event::Unconfirmed { at: t0 + s(4) }), vec![]);
        assert_eq!(l.on(Event::Tick { now: t0 + s(5) }), vec![Action::PauseSideEffects]);
        assert!(!l.may_act(t0 + s(5)));
        assert_eq!(l.next_wake(t0 + s(5)), t0 + s(6), "the next heartbeat comes first");
        assert_eq!(l.on(Event::Tick { now: t0 + s(6) }), vec![Action::Heartbeat]);
        let down = l.on(Event::Tick { now: t0 + Duration::from_millis(7500) });
        assert!(matches!(down.as_slice(), [Action::StepDown { .. }]), "already paused: {down:?}");
        assert_eq!(l.epoch(), None);
        assert!(!l.may_act(t0 + s(8)));
    }

    #[test]
    fn a_late_confirmation_resumes_side_effects() {
        let t0 = Instant::now();
        let mut l = leading(t0);
        assert_eq!(l.on(Event::Tick { now: t0 + s(5) }), vec![Action::PauseSideEffects, Action::Heartbeat]);
        assert_eq!(l.on(Event::Confirmed { sent: t0 + s(5) }), vec![Action::ResumeSideEffects]);
        assert!(l.may_act(t0 + s(6)));
        assert_eq!(l.on(Event::Confirmed { sent: t0 + s(1) }), vec![], "an older confirmation changes nothing");
        assert!(l.may_act(t0 + s(9)), "still vouched for from 5 s");
    }

    #[test]
    fn a_lost_lease_stops_side_effects_before_stepping_down() {
        let t0 = Instant::now();
        let mut l = leading(t0);
        let out = l.on(Event::Lost { at: t0 + s(1), why: "the lock session ended".into() });
        assert_eq!(
            out,
            vec![Action::PauseSideEffects, Action::StepDown { why: "the lock session ended".into() }],
            "in this order"
        );
        assert_eq!(l.epoch(), None);
        assert_eq!(l.on(Event::Tick { now: t0 + s(1) }), vec![Action::TryAcquire], "a standby again");
    }

    #[test]
    fn a_paused_process_refuses_side_effects_the_moment_it_resumes() {
        let t0 = Instant::now();
        let l = leading(t0);
        // SIGSTOP at 1 s, SIGCONT at 30 s: no tick ran in between.
        assert!(l.may_act(t0 + s(1)));
        assert!(!l.may_act(t0 + s(30)), "the guard reads the clock, not the last tick");
        let mut l = l;
        let out = l.on(Event::Tick { now: t0 + s(30) });
        assert_eq!(out.first(), Some(&Action::PauseSideEffects));
        assert!(matches!(out.last(), Some(Action::StepDown { .. })));
    }

    #[test]
    fn shutdown_steps_down_once() {
        let t0 = Instant::now();
        let mut l = leading(t0);
        let out = l.on(Event::Shutdown);
        assert_eq!(out.len(), 2);
        assert_eq!(l.on(Event::Tick { now: t0 + s(1) }), vec![]);
        assert_eq!(l.on(Event::Acquired { epoch: 9, sent: t0 }), vec![], "stopped for good");
    }
}
