//! The desk keeps time (#19), as rules: what a change does to a ticket's
//! response targets and lifecycle timers ([`settle`]), and what the
//! desk's clock owes a ticket at an instant ([`fire`]). Pure, like the rest
//! of triage: the record, the config and `now` go in; a [`Decision`] comes
//! out for `desk::apply` to record.
//!
//! [`settle`] is the one place a ticket's [`Timers`] change. `decide` and
//! `act` run it on every record they save, comparing it with the record as
//! it was, so whatever channel changed the ticket the clocks follow: a new
//! ticket starts them; a status change (a customer reply moving pending →
//! open included) stops or resumes them; an agent's answer that reached the
//! customer meets the first response; a priority or category change (or a
//! new config) moves the due times. It also computes what the store
//! indexes the record by: the next instant the clock must look at it
//! (`wake`) and its earliest running due time (`due`, for the queue's
//! "overdue" and "due soon").
//!
//! [`fire`] decides what is owed at `now` of a ticket the wake index
//! names: at most one warning and one breach notice per target (the flags
//! live in the record and are set in the same commit as the notice is
//! queued, so a restart or a clock jump neither loses nor repeats one), the
//! pending reminder, pending → resolved, resolved → closed. Every automatic
//! change is a `system` entry on the ticket.
//!
//! Records from before #19 have no clocks: they are adopted ([`adopt`]) at
//! the first change or by the desk's sweep after an upgrade, started at
//! their creation with their history replayed (the first agent answer
//! meets the first response when it was sent), and with whatever already
//! passed counted as sent, so an upgrade shows what is overdue without a
//! burst of notices; their lifecycle timers count from the adoption.

use chrono::{DateTime, Utc};

use super::act::{self, Action, Actor};
use super::outgoing::Composer;
use super::{Decision, Effect, Outcome};
use crate::outbox::OutMail;
use crate::record::TicketRecord;
use crate::sla::{
    LifecycleEvent, SlaConfig, SlaEvent, SlaEventKind, SlaState, TargetKind, TicketKey, Timers, lifecycle_due,
};
use crate::ticket::{Priority, Status, ThreadType};

fn key(rec: &TicketRecord) -> TicketKey<'_> {
    TicketKey { priority: rec.ticket.priority, category: rec.ticket.category, mailbox: &rec.mailbox }
}

fn fmt(t: DateTime<Utc>) -> String {
    crate::ticket::rfc3339::format(&t)
}

/// Makes `after`'s time bookkeeping true to what changed since `before`
/// (`None`: `after` is a new ticket). A pure function of the two records:
/// running it again on the same pair gives the same result.
pub fn settle(before: Option<&TicketRecord>, after: &mut TicketRecord, cfg: &SlaConfig, now: DateTime<Utc>) {
    let mut t = match before {
        None => {
            let created = after.ticket.created_at;
            Timers { sla: SlaState::start(cfg, key(after), created), since: Some(created), ..Timers::default() }
        }
        Some(b) if !b.timers.sla.is_started() => adopt(b, cfg, now),
        Some(b) => b.timers.clone(),
    };
    // New entries are the ones the rules just wrote (stamped `now`); a
    // merge sorts older entries in, and those meet nothing here.
    let skip = before.map_or(0, |b| b.ticket.threads.len());
    let added: Vec<(ThreadType, bool, DateTime<Utc>)> = after
        .ticket
        .threads
        .iter()
        .skip(skip)
        .filter(|e| before.is_none() || e.timestamp >= now)
        .map(|e| (e.kind, e.internal, e.timestamp))
        .collect();
    for &(kind, internal, at) in &added {
        t.sla.on_entry(kind, internal, at);
    }
    let k = key(after);
    let status = after.ticket.status;
    if before.is_some_and(|b| b.ticket.status != status) {
        t.sla.set_status(cfg, k, status, now);
        t.since = Some(now);
        t.reminded = false;
    } else {
        t.sla.retarget(cfg, k);
        let answered = added.iter().any(|&(kind, internal, _)| kind == ThreadType::Agent && !internal);
        if before.is_some() && answered && status == Status::Pending {
            // Waiting for the customer again: the wait starts over.
            t.since = Some(now);
            t.reminded = false;
        }
    }
    refresh(&mut t, after, cfg, now);
    after.timers = t;
}

/// Runs [`settle`] on every record `d` saves, each against the record as
/// it was among `known` (none: a new ticket).
pub fn settle_decision(d: &mut Decision, known: &[&TicketRecord], cfg: &SlaConfig, now: DateTime<Utc>) {
    for e in &mut d.effects {
        if let Effect::SaveTicket(rec) = e {
            let before = known.iter().copied().find(|k| k.number == rec.number);
            settle(before, rec, cfg, now);
        }
    }
}

/// Imported history (`ticketd import`, `initial = "import"`): decided at
/// the mail's own date, so whatever is already due at `now` (the real
/// time) is counted as sent: history is shown as it stands, never
/// announced.
pub fn history(d: &mut Decision, cfg: &SlaConfig, now: DateTime<Utc>) {
    for e in &mut d.effects {
        if let Effect::SaveTicket(rec) = e {
            let mut t = rec.timers.clone();
            for ev in t.sla.due(now, cfg.warn_before) {
                t.sla.mark_emitted(&ev);
            }
            refresh(&mut t, rec, cfg, now);
            rec.timers = t;
        }
    }
}

/// The clocks of a record written before there were any (see the module
/// note).
pub fn adopt(b: &TicketRecord, cfg: &SlaConfig, now: DateTime<Utc>) -> Timers {
    let k = key(b);
    let mut sla = SlaState::start(cfg, k, b.ticket.created_at);
    for e in &b.ticket.threads {
        sla.on_entry(e.kind, e.internal, e.timestamp);
    }
    let t = &b.ticket;
    let stopped_at = match t.status {
        Status::Resolved | Status::Closed => t.resolved_at.unwrap_or(t.updated_at),
        Status::Pending => t.updated_at,
        Status::Open | Status::InProgress => now,
    };
    sla.set_status(cfg, k, t.status, stopped_at.min(now));
    for ev in sla.due(now, cfg.warn_before) {
        sla.mark_emitted(&ev);
    }
    Timers { sla, since: Some(now), ..Timers::default() }
}

/// What the store indexes and the public ticket shows, from the state.
fn refresh(t: &mut Timers, rec: &mut TicketRecord, cfg: &SlaConfig, now: DateTime<Utc>) {
    let life =
        t.since.and_then(|s| lifecycle_due(&cfg.lifecycle, rec.ticket.status, s, t.reminded, now)).map(|(at, _)| at);
    t.wake = [t.sla.next_wakeup(cfg.warn_before), life].into_iter().flatten().min().map(whole_second);
    t.due = t.sla.next_due().map(whole_second);
    rec.ticket.first_response_due = t.sla.first_response_due();
    rec.ticket.resolution_due = t.sla.resolution_due();
}

/// The store indexes by the second; rounded up, an instant is never
/// looked at before it comes.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    let down = t.trunc_subsecs(0);
    if down == t { t } else { down + chrono::TimeDelta::seconds(1) }
}

/// The bookkeeping `rec` would have under `cfg` with nothing changed: for
/// the desk's sweep after the time config changed (or after an upgrade).
/// A new config applies from the sweep on: a target it moves into the past
/// is shown as overdue, not announced (as an upgrade's adoption does); a
/// target it leaves where it was keeps its notices. `None` when nothing the
/// store indexes or the public ticket shows would change, so the sweep
/// writes only what it must.
pub fn resettle(rec: &TicketRecord, cfg: &SlaConfig, now: DateTime<Utc>) -> Option<TicketRecord> {
    let mut after = rec.clone();
    settle(Some(rec), &mut after, cfg, now);
    let mut t = after.timers.clone();
    let mut moved = false;
    for ev in t.sla.due(now, cfg.warn_before) {
        if rec.timers.sla.target(ev.target).due != Some(ev.due) {
            t.sla.mark_emitted(&ev);
            moved = true;
        }
    }
    if moved {
        refresh(&mut t, &mut after, cfg, now);
        after.timers = t;
    }
    let shown = |r: &TicketRecord| {
        (r.timers.wake, r.timers.due, r.ticket.first_response_due, r.ticket.resolution_due, r.timers.sla.clone())
    };
    let fresh = rec.timers.sla.is_started() || after.timers.wake.is_some() || after.timers.due.is_some();
    if !fresh || shown(&after) == shown(rec) {
        return None;
    }
    // What the ticket shows moved: said on it, like every automatic change
    // (an upgrade's first settling, which only adds due times, is not a
    // move).
    let mut moved = Vec::new();
    for (name, was, is) in [
        ("first response", rec.ticket.first_response_due, after.ticket.first_response_due),
        ("resolution", rec.ticket.resolution_due, after.ticket.resolution_due),
    ] {
        if was != is && was.is_some() {
            let at = |t: Option<DateTime<Utc>>| t.map_or_else(|| "none".to_owned(), fmt);
            moved.push(format!("{name} due {} (was {})", at(is), at(was)));
        }
    }
    if !moved.is_empty() {
        let entry = format!("response targets changed with the desk's time config: {}", moved.join(", "));
        after.ticket.push_thread("system", ThreadType::System, entry, now);
    }
    Some(after)
}

/// What [`fire`] did, besides the decision: for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub decision: Decision,
    pub sla: Vec<SlaEvent>,
    pub lifecycle: Option<LifecycleEvent>,
    /// The ticket's priority when the notices went out.
    pub priority: Priority,
}

fn target_name(t: TargetKind) -> &'static str {
    match t {
        TargetKind::FirstResponse => "first response",
        TargetKind::Resolution => "resolution",
    }
}

/// How the target is counted, for the agents.
fn rule_text(cfg: &SlaConfig, rec: &TicketRecord, target: TargetKind) -> String {
    let Some(rule) = cfg.rule_for(&key(rec)) else { return String::new() };
    let length = match target {
        TargetKind::FirstResponse => rule.first_response,
        TargetKind::Resolution => rule.resolution,
    };
    let Some(length) = length else { return String::new() };
    let clock = match rule.clock.calendar() {
        Some(name) => format!(" of business hours ({name})"),
        None => String::new(),
    };
    let secs = u64::try_from(length.num_seconds()).unwrap_or(0);
    format!(
        " The target for {} tickets is {}{clock}.",
        rec.ticket.priority,
        humantime::format_duration(std::time::Duration::from_secs(secs))
    )
}

/// Everything the desk's clock owes `rec` at `now`, decided: notices,
/// system entries, status changes. `agents_last_hour` are the
/// notifications each agent got in the last hour: past
/// `desk.notifications_per_agent_per_hour` a notice waits for the agent's
/// digest (once, like any notification). A ticket owed nothing gets a
/// decision that only moves its wake time (or nothing at all).
pub fn fire(rec: &TicketRecord, out: &Composer<'_>, agents_last_hour: &[(String, u32)], now: DateTime<Utc>) -> Fired {
    let cfg = &out.ctx.cfg.sla;
    let desk = &out.ctx.cfg.desk;
    // The notices owed are recorded as sent before anything else: the
    // record settled below starts from this, so the flags go into the same
    // commit as the mail.
    let mut base = rec.clone();
    let events = if base.timers.sla.is_started() { base.timers.sla.due(now, cfg.warn_before) } else { Vec::new() };
    for ev in &events {
        base.timers.sla.mark_emitted(ev);
    }
    let since = base.timers.since;
    let life = since
        .and_then(|s| lifecycle_due(&cfg.lifecycle, base.ticket.status, s, base.timers.reminded, now))
        .filter(|(at, _)| *at <= now)
        .map(|(_, ev)| ev);
    if life == Some(LifecycleEvent::PendingReminder) {
        base.timers.reminded = true;
    }

    let mut rec = base.clone();
    let mut changes = Vec::new();
    let mut effects = Vec::new();
    let mut mails: Vec<OutMail> = Vec::new();
    let mut counts: Vec<(String, u32)> = agents_last_hour.to_vec();
    for ev in &events {
        let target = target_name(ev.target);
        let who = match super::outgoing::notified(out.ctx.cfg, &rec)[..] {
            [] => "nobody (no agents configured)".to_owned(),
            [a] if rec.ticket.assigned_to.as_ref() == Some(&a.id) => a.id.clone(),
            _ => "every agent".to_owned(),
        };
        let (headline, entry, message) = match ev.kind {
            SlaEventKind::Warning => (
                "Due soon",
                format!("response target: {target} due at {}; {who} warned", fmt(ev.due)),
                format!(
                    "The {target} on ticket #{} is due at {} ({} from now).{}",
                    rec.number,
                    fmt(ev.due),
                    humantime::format_duration(std::time::Duration::from_secs(
                        u64::try_from((ev.due - now).num_seconds()).unwrap_or(0)
                    )),
                    rule_text(cfg, &rec, ev.target)
                ),
            ),
            SlaEventKind::Breach => (
                "Overdue",
                format!("response target breached: {target} was due at {}; {who} told", fmt(ev.due)),
                format!(
                    "The {target} on ticket #{} was due at {} and has not happened.{}",
                    rec.number,
                    fmt(ev.due),
                    rule_text(cfg, &rec, ev.target)
                ),
            ),
        };
        rec.ticket.push_thread("system", ThreadType::System, entry.clone(), now);
        changes.push(entry);
        let kind = match ev.kind {
            SlaEventKind::Warning => "warning",
            SlaEventKind::Breach => "breach",
        };
        let seeded =
            Composer { ctx: out.ctx, seed: format!("{}:{}:{kind}", out.seed, ev.target.code()), inbound_id: None, now };
        for (agent, m) in seeded.escalation(&rec, headline, &message) {
            let slot = match counts.iter_mut().find(|(a, _)| *a == agent) {
                Some(s) => s,
                None => {
                    counts.push((agent.clone(), 0));
                    counts.last_mut().expect("just pushed")
                }
            };
            if slot.1 >= desk.notifications_per_agent_per_hour {
                let title = crate::text::truncate_chars(&crate::text::clean_line(&rec.ticket.title), 80);
                let line = format!("#{} {headline} ({target}): {title}", rec.number);
                effects.push(Effect::HoldForDigest { agent, line });
            } else {
                slot.1 += 1;
                mails.push(m);
                effects.push(Effect::CountAgentNotify { agent });
            }
        }
    }

    match life {
        Some(LifecycleEvent::PendingReminder) => {
            let since = since.unwrap_or(now);
            let next = match cfg.lifecycle.pending_resolve_after.and_then(|d| since.checked_add_signed(d)) {
                Some(at) => format!(
                    "\nWithout an answer from you it will be closed as resolved on {}.\n",
                    at.format("%Y-%m-%d")
                ),
                None => String::new(),
            };
            let m = out.pending_reminder(&rec, &next);
            let entry = format!("reminder sent to the customer: pending since {} without an answer", fmt(since));
            rec.ticket.push_thread("system", ThreadType::System, entry.clone(), now);
            changes.push(entry);
            super::push_thread_id(&mut rec, &m.message_id);
            mails.push(m);
        }
        Some(ev @ (LifecycleEvent::PendingResolve | LifecycleEvent::CloseResolved)) => {
            let waited = since.map(fmt).unwrap_or_default();
            let (why, to) = match ev {
                LifecycleEvent::PendingResolve => (
                    format!(
                        "no answer from the customer since {waited} (desk.pending_resolve_after): resolved automatically"
                    ),
                    Status::Resolved,
                ),
                _ => (
                    format!("resolved since {waited} (desk.close_resolved_after): closed automatically"),
                    Status::Closed,
                ),
            };
            // The one set of rules for a status change: the same entry
            // wording and the same resolved notice as any other channel.
            match act::changes(&rec, Actor::System, &[Action::System(why.clone()), Action::Status(to)], out, now) {
                Ok(acted) => {
                    rec = acted.rec;
                    changes.push(why);
                    changes.extend(acted.changes);
                    mails.extend(acted.mails);
                }
                Err(errors) => {
                    let e = errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ");
                    // Said once on the ticket, and the timer stops until
                    // the ticket's status changes again: tried every tick,
                    // it would be refused every tick.
                    let entry = format!(
                        "automatic step not taken ({to} refused: {e}); the timer waits for the next change of status"
                    );
                    rec.ticket.push_thread("system", ThreadType::System, entry.clone(), now);
                    changes.push(entry);
                    base.timers.since = None;
                }
            }
        }
        None => {}
    }

    settle(Some(&base), &mut rec, cfg, now);
    let number = rec.number;
    let priority = rec.ticket.priority;
    let mut all = Vec::with_capacity(1 + 2 * mails.len() + effects.len());
    all.push(Effect::SaveTicket(Box::new(rec)));
    for m in mails {
        all.push(Effect::IndexMessageId { id: crate::mail::normalise_id(&m.message_id), ticket: number });
        all.push(Effect::Send(Box::new(m)));
    }
    all.extend(effects);
    Fired {
        decision: Decision { outcome: Outcome::Acted { ticket: number, changes }, effects: all },
        sla: events,
        lifecycle: life,
        priority,
    }
}

#[cfg(test)]
pub(crate) mod tests;
