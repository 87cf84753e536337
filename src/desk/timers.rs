//! The desk's clock in the one writer (#19): what a tick does besides the
//! digests. The rules are `triage::timers`; this reads the store, asks
//! them, and hands their decisions to `apply`, inside the tick's unit of
//! work.
//!
//! From durable state only: every ticket's next wake-up instant is stored
//! with it and indexed (`Table::Timers`: one bucket of entries per commit,
//! filed by `apply` whenever a ticket's wake changes), and a tick takes
//! the buckets from the index's front, so its cost is what is due, not
//! what waits, and it fires at most [`PER_TICK`] tickets. An entry is only
//! a hint: the ticket's record says whether it still wakes then.
//! A notice is queued in the same commit as the flag that says it was
//! sent, so a restart neither loses nor repeats one; the rules compare
//! stored instants with the `now` they are given, so a clock that jumps
//! forward owes what it jumped over (once) and one that jumps back owes
//! nothing again.
//!
//! When the time config changes (or on the first start after an upgrade,
//! when no ticket has clocks yet), a sweep re-settles every ticket under
//! the new rules, [`PER_TICK`] tickets a tick, before anything is fired.

use chrono::{DateTime, Utc};
use sha2::Digest;
use tracing::{info, warn};

use super::Rules;
use super::apply::apply;
use super::tx::Tx;
use crate::health::Health;
use crate::store::{Get, Records, StoreError, Table, be, keys};
use crate::triage::outgoing::Composer;
use crate::triage::{Decision, Effect, Outcome, agent_notify_key};

/// Tickets one tick fires, and tickets one tick sweeps: a tick is one
/// bounded unit of work; the daemon's clock ticks again at once while
/// work is left ([`super::Desk::time_backlog`]).
pub const PER_TICK: usize = 200;

/// What a tick did, for the log and (once durable) the metrics.
#[derive(Debug, Default)]
pub(super) struct Work {
    pub(super) fired: usize,
    /// Tickets the sweep rewrote.
    pub(super) swept: usize,
    pub(super) queued: bool,
    /// (notice kind, priority, target) of each warning and breach.
    pub(super) sla: Vec<(&'static str, &'static str, &'static str)>,
    pub(super) lifecycle: Vec<&'static str>,
}

impl Work {
    pub(super) fn count(&self, health: &Health) {
        for (kind, priority, target) in &self.sla {
            health.count_sla(kind, priority, target);
        }
        for event in &self.lifecycle {
            health.count_automation(event);
        }
    }
}

/// The time config as the sweep remembers it.
pub(super) fn fingerprint(cfg: &crate::sla::SlaConfig) -> Vec<u8> {
    sha2::Sha256::digest(format!("{cfg:?}").as_bytes()).to_vec()
}

/// Whether the tickets' clocks were settled under `cfg` (else the sweep
/// has work).
pub(super) fn settled(store: &impl Get, cfg: &crate::sla::SlaConfig) -> Result<bool, StoreError> {
    Ok(store.get(Table::Meta, keys::TIMERS_CONFIG)?.as_deref() == Some(&fingerprint(cfg)[..]))
}

/// The clock's part of a tick at `now` (whole seconds).
pub(super) fn run(rules: &Rules, tx: &mut Tx<'_>, now: DateTime<Utc>) -> Result<Work, StoreError> {
    let mut work = Work::default();
    if !sweep(rules, tx, now, &mut work)? {
        // A ticket not swept yet holds due times of the old rules: fired
        // now, it would be told what the new ones no longer owe.
        return Ok(work);
    }
    // The committed index; each record is read through the unit of work,
    // which knows what earlier jobs of this group changed. A bucket taken
    // is gone: what it holds that is not done now (later instants, past
    // this tick's share, a failure) is filed again with this commit.
    let now_s = now.timestamp();
    let mut budget = PER_TICK;
    for (key, entries) in tx.store().wake_buckets(now_s, PER_TICK)? {
        tx.delete(Table::Timers, key);
        for (at, n) in entries {
            if at > now_s || budget == 0 {
                tx.wake(at, n);
                continue;
            }
            let sp = tx.savepoint();
            match fire_one(rules, tx, at, n, now, &mut work) {
                Ok(Fire::Done) => budget -= 1,
                Ok(Fire::Again) => {
                    budget -= 1;
                    tx.wake(at, n);
                }
                Ok(Fire::Stale) => {}
                Err(e) => {
                    tx.rollback(sp);
                    tx.wake(at, n);
                    warn!(ticket = n, error = %e, "time-based work on a ticket failed; it is tried again at the next tick");
                }
            }
        }
    }
    if work.fired > 0 || work.swept > 0 {
        info!(fired = work.fired, swept = work.swept, "the desk's clock did its work");
    }
    Ok(work)
}

/// What became of one wake entry.
enum Fire {
    /// Its ticket was looked at; its wake moved on (and was filed anew).
    Done,
    /// Looked at, but its wake did not move: looked at again next tick.
    Again,
    /// Its ticket had moved on since: the entry is dropped.
    Stale,
}

/// Does what ticket `n` is owed if its record still wakes at `at` (which
/// the caller checked is not after `now`).
fn fire_one(
    rules: &Rules,
    tx: &mut Tx<'_>,
    at: i64,
    n: u64,
    now: DateTime<Utc>,
    work: &mut Work,
) -> Result<Fire, StoreError> {
    let rec = tx.ticket(n)?;
    let wake = rec.as_ref().and_then(|r| r.timers.wake);
    let Some(rec) = rec.filter(|_| wake.map(|w| w.timestamp()) == Some(at)) else {
        // Moved meanwhile (the record is the truth): the entry is stale.
        return Ok(Fire::Stale);
    };
    let ctx = rules.context(rules.mailbox(&rec.mailbox), false);
    let out = Composer { ctx: &ctx, seed: format!("clock:{n}:{}", rec.version), inbound_id: None, now };
    let counts = rules
        .cfg
        .agents
        .iter()
        .map(|a| Ok((a.id.clone(), tx.recent(&agent_notify_key(&a.id))?.count(now))))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let fired = crate::triage::timers::fire(&rec, &out, &counts, now);
    let mut fire = Fire::Done;
    if fired.decision.saved().is_none_or(|after| after.timers.wake.is_some_and(|w| w <= now)) {
        // The rules always move a fired ticket's wake past `now`; if they
        // did not, the next tick looks again (no loop within this one):
        // its wake did not change, so nothing filed it anew.
        warn!(ticket = n, "a ticket's timer did not move past now");
        fire = Fire::Again;
    }
    work.queued |= !apply(tx, None, None, &fired.decision, now)?.is_empty();
    work.fired += 1;
    let priority = fired.priority.as_str();
    for ev in &fired.sla {
        let kind = match ev.kind {
            crate::sla::SlaEventKind::Warning => "warning",
            crate::sla::SlaEventKind::Breach => "breach",
        };
        work.sla.push((kind, priority, ev.target.code()));
        info!(ticket = n, target = ev.target.code(), kind, due = %ev.due, "response target notice");
    }
    if let Some(ev) = fired.lifecycle {
        work.lifecycle.push(ev.code());
        info!(ticket = n, event = ev.code(), "automatic lifecycle step");
    }
    Ok(fire)
}

/// Re-settles up to [`PER_TICK`] tickets when the time config is not the
/// one they were settled under; records the config once all are. Whether
/// every ticket follows the config now.
fn sweep(rules: &Rules, tx: &mut Tx<'_>, now: DateTime<Utc>, work: &mut Work) -> Result<bool, StoreError> {
    let cfg = &rules.cfg.sla;
    if settled(&*tx, cfg)? {
        return Ok(true);
    }
    let print = fingerprint(cfg);
    let after = sweep_cursor(&*tx, &print)?;
    let numbers: Vec<u64> = tx
        .store()
        .tickets_from(after, false)
        .take(PER_TICK)
        .map(|r| r.map(|rec| rec.number))
        .collect::<Result<_, _>>()?;
    for &n in &numbers {
        let Some(rec) = tx.ticket(n)? else { continue };
        if let Some(new) = crate::triage::timers::resettle(&rec, cfg, now) {
            let d = Decision {
                outcome: Outcome::Acted { ticket: n, changes: Vec::new() },
                effects: vec![Effect::SaveTicket(Box::new(new))],
            };
            apply(tx, None, None, &d, now)?;
            work.swept += 1;
        }
    }
    match numbers.last() {
        Some(&last) if numbers.len() == PER_TICK => {
            tx.put(Table::Meta, keys::TIMERS_SWEEP, [&be(last)[..], &print].concat());
            Ok(false)
        }
        _ => {
            tx.put(Table::Meta, keys::TIMERS_CONFIG, print);
            tx.delete(Table::Meta, keys::TIMERS_SWEEP);
            info!("every ticket's clocks follow the time config now");
            Ok(true)
        }
    }
}

/// The last ticket the sweep for the config `print` did, if one is under
/// way. A cursor left by a sweep for another config (a restart under yet
/// another one cut it short) counts for nothing: the tickets it passed
/// follow that config, not this one, so the sweep starts over.
fn sweep_cursor(store: &impl Get, print: &[u8]) -> Result<Option<u64>, StoreError> {
    let Some(v) = store.get(Table::Meta, keys::TIMERS_SWEEP)? else { return Ok(None) };
    Ok(v.split_at_checked(8).filter(|(_, p)| *p == print).and_then(|(n, _)| crate::store::from_be(n)))
}
