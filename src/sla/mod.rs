//! Response targets (#19): when a ticket's first answer and its resolution
//! are due, and which warnings and breach notices are owed. Pure: every
//! function takes `now`, the rules come from [`SlaConfig`], the state lives
//! in the ticket record; the desk's writer does the I/O and the scheduling.
//!
//! The rules where the issue leaves a choice, as a Zendesk or Zammad user
//! would expect them:
//!
//! - Both clocks start when the ticket is created and are recomputed from
//!   that start whenever the rule changes (priority, category, a reloaded
//!   config): time already spent counts against the new target, so
//!   low → urgent may be overdue at once; time paused stays paused out.
//! - `pending`, `resolved` and `closed` stop both clocks. The stops are kept
//!   as wall-clock intervals, so a due time is always recomputed exactly,
//!   whatever calendar the rule in force uses. A stop that begins after a
//!   target has passed buys nothing: pausing never hides a breach.
//! - An agent's answer that reaches the customer meets the first response;
//!   a note or a system entry does not. Resolving (or closing) meets both:
//!   the customer has an outcome. Reopening keeps the first response met
//!   and resumes the resolution clock where it stopped, with the resolved
//!   time paused out (Zendesk's "agent work time"), so a quick reopen does
//!   not hand the desk a whole new budget, nor charge it for the time the
//!   customer took to write back.
//! - A target is breached when its due instant is reached unmet. Meeting it
//!   later records it as met late; it stays breached.
//! - At most one warning and one breach notice per ticket and target, ever:
//!   both flags live in the stored state and are only ever set. A breach
//!   owed together with its warning sends the breach alone. Every question
//!   compares stored instants with the `now` it is given, so a clock that
//!   jumps forward owes what it jumped over (once), and a clock that jumps
//!   back owes nothing again.
//! - The warning comes `warn_before` (wall time) ahead of the due instant,
//!   but never more than half the target ahead, so a short target does not
//!   warn the moment it starts.

pub mod calendar;
pub mod config;
pub mod lifecycle;
pub mod record;
#[cfg(test)]
mod tests;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

pub use calendar::{Calendar, CalendarError, Clock, DayHours, HORIZON_DAYS};
pub use config::{
    DEFAULT_WARN_BEFORE, RawCalendar, RawDeskTimers, RawHours, RawSla, RawSlaConfig, SlaConfig, SlaConfigError,
    SlaRule, build,
};
pub use lifecycle::{LifecycleConfig, LifecycleEvent, lifecycle_due};
pub use record::Timers;

use crate::ticket::{Category, Priority, Status, ThreadType};

/// What decides which rule applies to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketKey<'a> {
    pub priority: Priority,
    pub category: Category,
    /// The name of the mailbox the ticket came in through.
    pub mailbox: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    FirstResponse,
    Resolution,
}

impl TargetKind {
    pub const ALL: [TargetKind; 2] = [TargetKind::FirstResponse, TargetKind::Resolution];

    /// A stable name for logs, metrics and system entries.
    pub fn code(self) -> &'static str {
        match self {
            TargetKind::FirstResponse => "first_response",
            TargetKind::Resolution => "resolution",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlaEventKind {
    /// The target passes in less than the warning lead time.
    Warning,
    /// The target has passed unmet.
    Breach,
}

/// A notice a ticket is owed. Send it, then [`SlaState::mark_emitted`] in
/// the same commit as the system entry that records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlaEvent {
    pub target: TargetKind,
    pub kind: SlaEventKind,
    pub due: DateTime<Utc>,
}

/// One target of one ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetState {
    /// Length of the target under the rule in force, in seconds of its
    /// clock; `None`: no rule sets this target now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secs: Option<u64>,
    /// `None`: no target, or beyond the calendar's horizon. Kept as it was
    /// once the target is met.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "record::instant::opt")]
    pub due: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "record::instant::opt")]
    pub met: Option<DateTime<Utc>>,
    /// The warning was sent (or is moot: the breach was).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warned: bool,
    /// The target passed unmet: the breach notice was sent, or it was met
    /// late. Never cleared.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub breached: bool,
}

/// A ticket's response targets, stored in its record. An old record
/// without it loads as the empty state, which no transition changes until
/// [`SlaState::start`] or [`SlaState::adopt`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaState {
    /// When the clocks started: the ticket's creation.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "record::instant::opt")]
    since: Option<DateTime<Utc>>,
    /// Finished stops (pending, resolved, closed) as wall-clock intervals,
    /// sorted and disjoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "record::instant::pairs")]
    pauses: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// The stop in progress.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "record::instant::opt")]
    paused_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "TargetState::is_empty")]
    first_response: TargetState,
    #[serde(default, skip_serializing_if = "TargetState::is_empty")]
    resolution: TargetState,
}

impl TargetState {
    fn is_empty(&self) -> bool {
        *self == TargetState::default()
    }
}

impl SlaState {
    /// The clocks of a new ticket, started at `now`.
    pub fn start(cfg: &SlaConfig, key: TicketKey<'_>, now: DateTime<Utc>) -> SlaState {
        let mut s = SlaState { since: Some(now), ..SlaState::default() };
        s.retarget(cfg, key);
        s
    }

    /// The clocks of a ticket that existed before targets did (an old
    /// record, imported history): started at its creation, stopped if its
    /// status says so, and with whatever already passed marked as sent, so
    /// an upgrade or an import shows what is overdue without a flood of
    /// notices.
    pub fn adopt(
        cfg: &SlaConfig,
        key: TicketKey<'_>,
        status: Status,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> SlaState {
        let mut s = SlaState::start(cfg, key, created_at);
        s.set_status(cfg, key, status, now);
        for ev in s.due(now, cfg.warn_before) {
            s.mark_emitted(&ev);
        }
        s
    }

    pub fn is_started(&self) -> bool {
        self.since.is_some()
    }

    /// The empty state, which the record need not store.
    pub fn is_empty(&self) -> bool {
        *self == SlaState::default()
    }

    /// Recomputes the due times of unmet targets from the ticket's start
    /// under the rule for `key`: after a priority or category change, or
    /// with a new config.
    pub fn retarget(&mut self, cfg: &SlaConfig, key: TicketKey<'_>) {
        let Some(since) = self.since else { return };
        let rule = cfg.rule_for(&key);
        let clock = rule.map(|r| r.clock.clone()).unwrap_or_default();
        for kind in TargetKind::ALL {
            let length = rule.and_then(|r| match kind {
                TargetKind::FirstResponse => r.first_response,
                TargetKind::Resolution => r.resolution,
            });
            if self.target(kind).met.is_some() {
                continue;
            }
            let due = length.and_then(|l| due_after(&clock, since, l, &self.pauses));
            let t = self.target_mut(kind);
            t.secs = length.map(|l| l.num_seconds().unsigned_abs());
            t.due = due;
        }
    }

    /// The ticket's status became `to` (it may be the same as before).
    pub fn set_status(&mut self, cfg: &SlaConfig, key: TicketKey<'_>, to: Status, now: DateTime<Utc>) {
        if self.since.is_none() {
            return;
        }
        match to {
            Status::Pending => {
                // From resolved: back to work, but still waiting on the
                // customer, so the stop goes on.
                self.resolution.met = None;
                self.paused_since.get_or_insert(now);
            }
            Status::Resolved | Status::Closed => {
                for kind in TargetKind::ALL {
                    self.meet(kind, now);
                }
                self.paused_since.get_or_insert(now);
            }
            Status::Open | Status::InProgress => {
                if let Some(from) = self.paused_since.take() {
                    self.push_pause(from, now);
                }
                self.resolution.met = None;
            }
        }
        self.retarget(cfg, key);
    }

    /// A thread entry was added. Only an agent's entry that reaches the
    /// customer (not a note, not a held relay) meets the first response.
    pub fn on_entry(&mut self, kind: ThreadType, internal: bool, now: DateTime<Utc>) {
        if self.since.is_some() && kind == ThreadType::Agent && !internal {
            self.meet(TargetKind::FirstResponse, now);
        }
    }

    fn meet(&mut self, kind: TargetKind, now: DateTime<Utc>) {
        if self.target(kind).met.is_some() {
            return;
        }
        let late = self.overdue(kind, now);
        let t = self.target_mut(kind);
        t.met = Some(now);
        t.breached |= late;
    }

    /// The notices owed at `now`: at most one per target, each at most once
    /// over the ticket's life once [`SlaState::mark_emitted`] recorded it.
    pub fn due(&self, now: DateTime<Utc>, warn_before: TimeDelta) -> Vec<SlaEvent> {
        let mut out = Vec::new();
        for target in TargetKind::ALL {
            let t = self.target(target);
            let Some(due) = self.running_due(target) else { continue };
            if now >= due {
                if !t.breached {
                    out.push(SlaEvent { target, kind: SlaEventKind::Breach, due });
                }
            } else if !t.warned && !t.breached && self.warn_at(target, warn_before).is_some_and(|w| now >= w) {
                out.push(SlaEvent { target, kind: SlaEventKind::Warning, due });
            }
        }
        out
    }

    /// Records that `ev` was sent (or deliberately not sent); never undone.
    pub fn mark_emitted(&mut self, ev: &SlaEvent) {
        let t = self.target_mut(ev.target);
        t.warned = true;
        if ev.kind == SlaEventKind::Breach {
            t.breached = true;
        }
    }

    /// The next instant at which [`SlaState::due`] will owe something, for
    /// the writer's schedule; `None` while nothing can come due (targets
    /// met, stopped, absent or already breached). Changes only with a
    /// transition or [`SlaState::mark_emitted`].
    pub fn next_wakeup(&self, warn_before: TimeDelta) -> Option<DateTime<Utc>> {
        TargetKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let t = self.target(kind);
                let due = self.running_due(kind).filter(|_| !t.breached)?;
                Some(if t.warned { due } else { self.warn_at(kind, warn_before).unwrap_or(due) })
            })
            .min()
    }

    /// `firstResponseDue` of the public ticket: `null` where no target
    /// applies or it was met. While the ticket is pending this is the due
    /// time as of the stop; it moves later when the ticket is back at work.
    pub fn first_response_due(&self) -> Option<DateTime<Utc>> {
        self.public_due(TargetKind::FirstResponse)
    }

    /// `resolutionDue` of the public ticket; see
    /// [`SlaState::first_response_due`].
    pub fn resolution_due(&self) -> Option<DateTime<Utc>> {
        self.public_due(TargetKind::Resolution)
    }

    fn public_due(&self, kind: TargetKind) -> Option<DateTime<Utc>> {
        let t = self.target(kind);
        t.due.filter(|_| t.met.is_none())
    }

    /// The earliest due instant of a target whose clock runs: what the
    /// queue's "overdue" (`<= now`) and "due soon" filters compare.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        TargetKind::ALL.into_iter().filter_map(|k| self.running_due(k)).min()
    }

    pub fn target(&self, kind: TargetKind) -> &TargetState {
        match kind {
            TargetKind::FirstResponse => &self.first_response,
            TargetKind::Resolution => &self.resolution,
        }
    }

    fn target_mut(&mut self, kind: TargetKind) -> &mut TargetState {
        match kind {
            TargetKind::FirstResponse => &mut self.first_response,
            TargetKind::Resolution => &mut self.resolution,
        }
    }

    /// Whether the target's clock is stopped by a stop still in progress.
    pub fn is_paused(&self, kind: TargetKind) -> bool {
        let t = self.target(kind);
        t.met.is_none() && self.stop_counts(t.due)
    }

    /// A stop in progress holds a clock only if it began before the target
    /// passed.
    fn stop_counts(&self, due: Option<DateTime<Utc>>) -> bool {
        matches!((self.paused_since, due), (Some(p), Some(d)) if p < d)
    }

    /// The due instant of a target whose clock is running.
    fn running_due(&self, kind: TargetKind) -> Option<DateTime<Utc>> {
        let t = self.target(kind);
        t.due.filter(|_| t.met.is_none() && !self.stop_counts(t.due))
    }

    /// Met now, would it be late?
    fn overdue(&self, kind: TargetKind, now: DateTime<Utc>) -> bool {
        self.running_due(kind).is_some_and(|d| now > d)
    }

    fn warn_at(&self, kind: TargetKind, warn_before: TimeDelta) -> Option<DateTime<Utc>> {
        let t = self.target(kind);
        let half = TimeDelta::try_seconds(i64::try_from(t.secs? / 2).ok()?)?;
        let lead = warn_before.min(half);
        if lead <= TimeDelta::zero() {
            return None;
        }
        t.due?.checked_sub_signed(lead)
    }

    /// Adds a finished stop. A clock that went backwards can give an empty
    /// or overlapping one: empty ones are dropped, overlaps joined, so no
    /// time is paused out twice.
    fn push_pause(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) {
        if to <= from {
            return;
        }
        self.pauses.push((from, to));
        self.pauses.sort_unstable();
        let mut joined: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(self.pauses.len());
        for &(a, b) in &self.pauses {
            match joined.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => joined.push((a, b)),
            }
        }
        self.pauses = joined;
    }
}

/// When `length` of `clock` time has run from `since`, not counting the
/// stops. Each stop that began before the target passed pushes it later by
/// the clock time it held; a later stop counts for nothing.
fn due_after(
    clock: &Clock,
    since: DateTime<Utc>,
    length: TimeDelta,
    pauses: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Option<DateTime<Utc>> {
    let mut due = clock.add(since, length)?;
    for &(from, to) in pauses {
        let from = from.max(since);
        if from >= due {
            break;
        }
        due = clock.add(due, clock.between(from, to))?;
    }
    Some(due)
}
