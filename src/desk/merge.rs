//! Merged tickets in the writer (#19): following the pointer a merged
//! ticket keeps, and a merge asked for by the API or the CLI. The rules
//! are `triage::merge`; mail's `#merge` goes through `decide` with what
//! [`super::ingest::lookup`] found here.

use chrono::{DateTime, Utc};

use super::apply::apply;
use super::tx::Tx;
use super::{ActorRef, DeskError, Rules};
use crate::record::TicketRecord;
use crate::store::{Records, StoreError};
use crate::triage::act::Actor;
use crate::triage::outgoing::Composer;

/// Pointers followed at most (merges of merges): more is a damaged store,
/// not a desk's history.
pub const MAX_HOPS: usize = 32;

/// The ticket `rec` was merged into, through every merge since; the
/// tickets passed on the way are added to `via`.
pub(super) fn follow(tx: &Tx<'_>, rec: TicketRecord, via: &mut Vec<u64>) -> Result<TicketRecord, StoreError> {
    let mut rec = rec;
    for _ in 0..MAX_HOPS {
        let Some(next) = rec.merged_into else { break };
        let Some(r) = tx.ticket(next)? else { break };
        via.push(rec.number);
        rec = r;
    }
    Ok(rec)
}

/// Where `rec` points through earlier merges, in order.
pub(super) fn chain(tx: &Tx<'_>, rec: &TicketRecord) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    let mut n = rec.merged_into;
    while let Some(next) = n {
        if out.contains(&next) || out.len() >= MAX_HOPS {
            break;
        }
        out.push(next);
        n = tx.ticket(next)?.and_then(|r| r.merged_into);
    }
    Ok(out)
}

/// Merges ticket `from` into ticket `into` for `actor` (see
/// `triage::merge`); returns the survivor as saved.
pub(super) fn merge(
    rules: &Rules,
    tx: &mut Tx<'_>,
    from: u64,
    into: u64,
    actor: &ActorRef,
    now: DateTime<Utc>,
) -> Result<TicketRecord, DeskError> {
    let a = tx.ticket(from)?.ok_or_else(|| DeskError::NotFound(format!("ticket {from}")))?;
    let b = tx.ticket(into)?.ok_or_else(|| DeskError::invalid("into", format!("no ticket #{into}")))?;
    let b_chain = chain(tx, &b)?;
    let cfg = rules.cfg.clone();
    let actor = match actor {
        ActorRef::Agent(id) => Actor::Agent(
            cfg.agents
                .iter()
                .find(|a| &a.id == id)
                .ok_or_else(|| DeskError::invalid("actor", format!("unknown agent {id:?}")))?,
        ),
        ActorRef::Admin => Actor::Admin,
        ActorRef::System => Actor::System,
    };
    let ctx = rules.context(rules.mailbox(&b.mailbox), false);
    let out = Composer { ctx: &ctx, seed: format!("merge:{from}:{into}:{}", a.version), inbound_id: None, now };
    let decision = crate::triage::merge::merge(&a, &b, &b_chain, actor, &out, now).map_err(DeskError::Invalid)?;
    apply(tx, None, None, &decision, now)?;
    tracing::info!(from, into, by = actor.label(), "tickets merged");
    tx.ticket(into)?.ok_or_else(|| DeskError::NotFound(format!("ticket {into}")))
}
