//! Retention (`store.retention_days`, 0 = keep forever): tickets closed for
//! longer than that lose their raw mail copies and the bodies of the mail
//! sent about them. Nothing that dedupe, threading or own-mail detection
//! needs goes: the ticket, its Ingested records (marked `pruned`, so
//! `tickets raw` shows a stand-in saying so), Message-ID and outbox-id
//! indexes, and the sent records themselves (only their body is emptied;
//! who, when, subject, ids and internal lines stay). A raw copy another
//! record or a quarantine entry still names stays. Rate-limit records
//! older than their one-hour window are dropped too: they count for
//! nothing any more.
//!
//! A run is planned from committed state outside the writer (the scans may
//! be long) and applied by the writer as one bounded [`Job::Prune`]
//! (at most [`TICKETS_PER_RUN`] tickets), which re-checks every item: a
//! ticket that changed since the plan is left for the next run. Raw copies
//! are deleted only after the records saying so are committed, and never
//! while a backup is copying blobs. The daemon runs this hourly; `ticketd
//! store prune` runs it until nothing is left.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::tx::Tx;
use super::writer::Job;
use super::{Desk, DeskError};
use crate::outbox::{OutState, OutboxEntry};
use crate::record::TicketRecord;
use crate::store::{Get, IngestRecord, Records, Scan, Store, StoreError, Table, be, json, parse};
use crate::ticket::Status;

pub const TICKETS_PER_RUN: usize = 500;
pub const ACKS_PER_RUN: usize = 10_000;
/// Bounded runs the daemon makes per hour while work is left.
const RUNS_PER_HOUR: usize = 10;
const HOURLY: Duration = Duration::from_secs(3600);
/// The first run waits this long after the start: startup stays quick.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(300);
const MARK_PREFIX: &[u8] = b"pruned\0";

fn mark_key(n: u64) -> Vec<u8> {
    let mut k = MARK_PREFIX.to_vec();
    k.extend_from_slice(&be(n));
    k
}

/// A ticket done: the version it had then (a later change makes it due again).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Mark {
    version: u64,
    #[serde(with = "crate::ticket::rfc3339")]
    at: DateTime<Utc>,
}

/// What one run will do, from committed state.
#[derive(Debug, Default)]
pub struct Plan {
    tickets: Vec<PlanTicket>,
    acks: Vec<Vec<u8>>,
    /// Held mail older than `spam.retention_days`.
    spam: Vec<u64>,
    more: bool,
}

#[derive(Debug)]
struct PlanTicket {
    number: u64,
    version: u64,
    /// Ingested keys and their raw copies, none named elsewhere.
    raws: Vec<(Vec<u8>, String)>,
    /// Sent records whose body goes.
    sent: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    pub tickets: u64,
    pub raw_copies: u64,
    pub sent_records: u64,
    pub stale_acks: u64,
    /// Held mail (the spam list) removed with its raw copy.
    #[serde(default)]
    pub spam: u64,
    /// More is due than one run takes.
    pub more: bool,
    /// Why the tickets of this run were left for later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

impl PruneReport {
    pub fn add(&mut self, o: &PruneReport) {
        self.tickets += o.tickets;
        self.raw_copies += o.raw_copies;
        self.sent_records += o.sent_records;
        self.stale_acks += o.stale_acks;
        self.spam += o.spam;
        self.more = o.more;
        self.waiting.clone_from(&o.waiting);
    }

    pub fn is_empty(&self) -> bool {
        self.tickets == 0 && self.stale_acks == 0 && self.spam == 0
    }
}

fn ingested(store: &Store) -> impl Iterator<Item = Result<(Vec<u8>, IngestRecord), StoreError>> + '_ {
    store.backend().scan(Table::Ingested, Scan::default()).map(|r| {
        let (k, v) = r?;
        Ok((k, parse(Table::Ingested, &v)?))
    })
}

fn due(rec: &TicketRecord, cutoff: DateTime<Utc>) -> bool {
    rec.ticket.status == Status::Closed && rec.ticket.updated_at < cutoff
}

/// Plans one run as of `now`.
pub fn plan(store: &Store, retention_days: u32, now: DateTime<Utc>) -> Result<Plan, StoreError> {
    let mut plan = Plan::default();
    if retention_days > 0 {
        let cutoff = now - chrono::Duration::days(i64::from(retention_days));
        let mut chosen: BTreeMap<u64, u64> = BTreeMap::new();
        for rec in store.tickets_from(None, false) {
            let rec = rec?;
            if !due(&rec, cutoff) {
                continue;
            }
            let mark: Option<Mark> =
                store.get(Table::Meta, &mark_key(rec.number))?.map(|v| parse(Table::Meta, &v)).transpose()?;
            if mark.is_some_and(|m| m.version == rec.version) {
                continue;
            }
            if chosen.len() == TICKETS_PER_RUN {
                plan.more = true;
                break;
            }
            chosen.insert(rec.number, rec.version);
        }
        if !chosen.is_empty() {
            plan.tickets = plan_tickets(store, &chosen)?;
        }
    }
    for item in store.backend().scan(Table::Acks, Scan::default()) {
        let (k, v) = item?;
        // Records of an older format count as nothing, like the desk reads them.
        let recent: crate::store::Recent = serde_json::from_slice(&v).unwrap_or_default();
        if recent.count(now) == 0 {
            if plan.acks.len() == ACKS_PER_RUN {
                plan.more = true;
                break;
            }
            plan.acks.push(k);
        }
    }
    Ok(plan)
}

/// Held mail older than `days` (0: kept until a person drops it), at most
/// [`SPAM_PER_RUN`].
pub fn plan_spam(store: &Store, plan: &mut Plan, days: u32, now: DateTime<Utc>) -> Result<(), StoreError> {
    if days == 0 {
        return Ok(());
    }
    let cutoff = now - chrono::Duration::days(i64::from(days));
    for item in store.backend().scan(Table::Spam, Scan::default()) {
        let (_, v) = item?;
        let e: crate::store::spam::SpamEntry = parse(Table::Spam, &v)?;
        if e.at >= cutoff {
            continue;
        }
        if plan.spam.len() == SPAM_PER_RUN {
            plan.more = true;
            break;
        }
        plan.spam.push(e.id);
    }
    Ok(())
}

pub const SPAM_PER_RUN: usize = 1000;

fn plan_tickets(store: &Store, chosen: &BTreeMap<u64, u64>) -> Result<Vec<PlanTicket>, StoreError> {
    let picked = |r: &IngestRecord| r.ticket.is_some_and(|t| chosen.contains_key(&t));
    let mut raws: BTreeMap<u64, Vec<(Vec<u8>, String)>> = BTreeMap::new();
    let mut shas: HashSet<String> = HashSet::new();
    for item in ingested(store) {
        let (k, r) = item?;
        if picked(&r) && r.pruned.is_none() {
            shas.insert(r.raw_sha256.clone());
            raws.entry(r.ticket.unwrap_or_default()).or_default().push((k, r.raw_sha256));
        }
    }
    // A copy something else still names stays (two tickets cannot normally
    // share one, but a retried quarantine entry or a changed rule might).
    if !shas.is_empty() {
        for item in ingested(store) {
            let (_, r) = item?;
            if !picked(&r) && r.pruned.is_none() {
                shas.remove(&r.raw_sha256);
            }
        }
        for q in store.quarantine_entries()? {
            shas.remove(&q.raw_sha256);
        }
        for e in store.spam_entries()? {
            shas.remove(&e.raw_sha256);
        }
    }
    let mut sent: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for item in store.backend().scan(Table::Sent, Scan::default()) {
        let (k, v) = item?;
        let e: OutboxEntry = parse(Table::Sent, &v)?;
        if chosen.contains_key(&e.mail.ticket) && prunable_sent(&e) {
            let seq = crate::store::from_be(&k).unwrap_or_default();
            sent.entry(e.mail.ticket).or_default().push(seq);
        }
    }
    Ok(chosen
        .iter()
        .map(|(&number, &version)| PlanTicket {
            number,
            version,
            raws: raws.remove(&number).unwrap_or_default().into_iter().filter(|(_, sha)| shas.contains(sha)).collect(),
            sent: sent.remove(&number).unwrap_or_default(),
        })
        .collect())
}

/// A failed mail may still be retried: it keeps its body.
fn prunable_sent(e: &OutboxEntry) -> bool {
    matches!(e.state, OutState::Sent | OutState::Dropped) && !e.mail.body.is_empty()
}

/// One planned run's writes into the writer's unit of work; returns what
/// was done and the raw copies that lose their last record (the caller
/// deletes them in the same commit). Nothing is pruned while a backup is
/// copying blobs (`copying`).
pub(super) fn prune_writes(
    tx: &mut Tx<'_>,
    plan: Plan,
    now: DateTime<Utc>,
    copying: bool,
) -> Result<(PruneReport, Vec<String>), DeskError> {
    let mut report = PruneReport { more: plan.more, ..PruneReport::default() };
    let mut doomed = BTreeSet::new();
    if !plan.tickets.is_empty() && copying {
        report.waiting = Some("a backup is copying stored mail; pruning waits for it".into());
        report.more = true;
    } else {
        for t in plan.tickets {
            let Some(rec) = tx.ticket(t.number)? else { continue };
            if rec.version != t.version || rec.ticket.status != Status::Closed {
                continue;
            }
            for (key, sha) in t.raws {
                let Some(mut r) = tx.ingested(&key)? else { continue };
                if r.ticket != Some(t.number) || r.pruned.is_some() || r.raw_sha256 != sha {
                    continue;
                }
                r.pruned = Some(now);
                tx.put(Table::Ingested, key, json(&r));
                doomed.insert(sha);
                report.raw_copies += 1;
            }
            for seq in t.sent {
                let Some(mut e) = tx.sent_entry(seq)? else { continue };
                if e.mail.ticket != t.number || !prunable_sent(&e) {
                    continue;
                }
                e.mail.body.clear();
                tx.put(Table::Sent, be(seq), json(&e));
                report.sent_records += 1;
            }
            tx.put(Table::Meta, mark_key(t.number), json(&Mark { version: t.version, at: now }));
            report.tickets += 1;
        }
    }
    if !plan.spam.is_empty() && copying {
        report.waiting = Some("a backup is copying stored mail; pruning waits for it".into());
        report.more = true;
    } else {
        for id in plan.spam {
            use crate::store::spam::SpamRecords;
            let Some(e) = tx.spam_entry(id)? else { continue };
            tx.delete(Table::Spam, be(id));
            super::spam::forget_raw(tx, &e, now)?;
            report.spam += 1;
        }
    }
    for key in plan.acks {
        let Some(v) = tx.get(Table::Acks, &key)? else { continue };
        let recent: crate::store::Recent = serde_json::from_slice(&v).unwrap_or_default();
        if recent.count(now) == 0 {
            tx.delete(Table::Acks, key);
            report.stale_acks += 1;
        }
    }
    Ok((report, doomed.into_iter().collect()))
}

impl Desk {
    /// One bounded run of retention as of `now` (see the module note).
    pub async fn prune(&self, now: DateTime<Utc>) -> Result<PruneReport, DeskError> {
        let store = self.store().clone();
        let days = self.config().store.retention_days;
        let spam_days = self.config().spam.retention_days;
        let plan = tokio::task::spawn_blocking(move || {
            let mut p = plan(&store, days, now)?;
            plan_spam(&store, &mut p, spam_days, now)?;
            Ok::<_, StoreError>(p)
        })
        .await
        .map_err(|e| DeskError::Store(format!("planning retention: {e}")))??;
        self.ask(|reply| Job::Prune { plan, now, reply }).await?
    }

    /// Runs until nothing is due (or a run cannot proceed).
    pub async fn prune_all(&self, now: DateTime<Utc>) -> Result<PruneReport, DeskError> {
        let mut total = PruneReport::default();
        loop {
            let r = self.prune(now).await?;
            total.add(&r);
            if !r.more || r.waiting.is_some() || r.is_empty() {
                return Ok(total);
            }
        }
    }
}

/// The daemon's hourly retention, until `shutdown`.
pub async fn run_hourly(desk: Desk, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FIRST_RUN_AFTER, HOURLY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let mut total = PruneReport::default();
        for _ in 0..RUNS_PER_HOUR {
            let r = tokio::select! {
                r = desk.prune(Utc::now()) => r,
                _ = shutdown.cancelled() => return,
            };
            match r {
                Ok(r) => {
                    total.add(&r);
                    if !r.more || r.waiting.is_some() || r.is_empty() {
                        break;
                    }
                }
                Err(DeskError::Stopped) => return,
                Err(e) => {
                    warn!(error = %e, "retention run failed; trying again in an hour");
                    break;
                }
            }
        }
        if !total.is_empty() {
            info!(
                tickets = total.tickets,
                raw_copies = total.raw_copies,
                sent_records = total.sent_records,
                stale_acks = total.stale_acks,
                spam = total.spam,
                more = total.more,
                "retention: pruned"
            );
        }
    }
}

/// What `tickets raw` shows for a mail whose copy was pruned: a short
/// message saying so, marked by a header `ticketd import` passes over.
pub fn pruned_placeholder(ticket: u64, rec: &IngestRecord, at: DateTime<Utc>) -> Vec<u8> {
    let fmt = crate::ticket::rfc3339::format;
    format!(
        "X-Ticketd-Pruned: {}\r\nDate: {}\r\nSubject: [pruned] a mail of support_ticket_{ticket}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe original of this mail (received {}, SHA-256 {}) was pruned on {}:\r\nthe ticket had been closed for longer than store.retention_days. The\r\nticket keeps its text.\r\n",
        fmt(&at),
        rec.at.to_rfc2822(),
        fmt(&rec.at),
        rec.raw_sha256,
        fmt(&at),
    )
    .into_bytes()
}

/// Tickets pruned so far and raw copies gone (for `store stats`).
pub fn pruned_counts(store: &Store) -> Result<(u64, u64), StoreError> {
    let scan = Scan { prefix: MARK_PREFIX.to_vec(), ..Scan::default() };
    let tickets = store.backend().scan(Table::Meta, scan).count() as u64;
    let mut raws = 0;
    for item in ingested(store) {
        if item?.1.pruned.is_some() {
            raws += 1;
        }
    }
    Ok((tickets, raws))
}

#[cfg(test)]
mod tests;
