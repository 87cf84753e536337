//! Merging ticket A into ticket B (#19): the customer wrote a new mail
//! instead of a reply, and the desk wants one conversation. Whoever asks
//! (an agent's `#merge 42`, the API, the CLI), these rules decide:
//!
//! - B gains A's thread entries, sorted into its own by time (B's first at
//!   equal times), A's attachments and tags, A's participants, and A's
//!   customer as a participant when B's customer is someone else; B gets a
//!   `system` entry naming A.
//! - A keeps its own conversation, is closed (the usual status entry) and
//!   points at B (`mergedInto`), with a `system` entry naming B. Mail that
//!   finds A later (its subject token, its Message-IDs, an agent's answer
//!   to one of its notifications) is taken to B by the desk, which follows
//!   the pointer.
//! - Refused, with the reason on the `into` field: a ticket into itself,
//!   a ticket already merged, a merge whose pointers would run in a circle,
//!   a target that was itself merged (name the survivor instead), a closed
//!   target (reopen it first, or merge the other way).
//! - Nothing is mailed: A's customer hears from B's next answer. The
//!   merged entries meet no response target of B (they were answers on
//!   another ticket); A's clocks stop as it closes.
//!
//! Undo is a non-goal: A keeps its own copy of everything it had and the
//! entries B gained say where they came from only by their authors and
//! times, so a wrong merge is repaired by hand (reopening A is refused
//! while it points at B; answer on B, or split the work by opening a new
//! ticket). Zendesk and RT do not undo a merge either.

use chrono::{DateTime, Utc};

use super::act::{self, ActError, Action, Actor};
use super::outgoing::Composer;
use super::{Decision, Effect, MAX_PARTICIPANTS, Outcome};
use crate::record::TicketRecord;
use crate::ticket::{MAX_TAGS, Status, ThreadType, ticket_id};

/// What a merge decided: A closed and pointing at B, B with A's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub from: TicketRecord,
    pub into: TicketRecord,
    /// The system entries written (A's, then B's).
    pub changes: Vec<String>,
}

fn refused(message: String) -> Vec<ActError> {
    vec![ActError { field: "into", message }]
}

/// Merges `a` into `b`. `b_chain` are the tickets `b` points to through
/// earlier merges, in order (empty when `b` was never merged).
pub fn merged(
    a: &TicketRecord,
    b: &TicketRecord,
    b_chain: &[u64],
    actor: Actor<'_>,
    out: &Composer<'_>,
    now: DateTime<Utc>,
) -> Result<Merged, Vec<ActError>> {
    let (na, nb) = (a.number, b.number);
    if na == nb {
        return Err(refused(format!("#{na} cannot be merged into itself")));
    }
    if let Some(x) = a.merged_into {
        return Err(refused(format!("#{na} was merged into #{x} already")));
    }
    if let Some(at) = b_chain.iter().position(|n| *n == na) {
        let path: Vec<String> =
            std::iter::once(nb).chain(b_chain[..=at].iter().copied()).map(|n| format!("#{n}")).collect();
        return Err(refused(format!(
            "merging #{na} into #{nb} would make a merge cycle: {} through earlier merges",
            path.join(" → ")
        )));
    }
    if let Some(x) = b_chain.last().copied().or(b.merged_into) {
        return Err(refused(format!("#{nb} was merged into #{x}: merge into #{x} instead")));
    }
    if b.ticket.status == Status::Closed {
        return Err(refused(format!("#{nb} is closed: reopen it first, or merge #{nb} into #{na}")));
    }
    let who = actor.label().to_owned();

    let mut into = b.clone();
    let t = &mut into.ticket;
    let moved = a.ticket.threads.len();
    t.threads.extend(a.ticket.threads.iter().cloned());
    // Stable: at equal times B's own entries stay first.
    t.threads.sort_by_key(|e| e.timestamp);
    let mut files = 0;
    for f in &a.ticket.attachments {
        if !t.attachments.iter().any(|x| x.url == f.url) {
            t.attachments.push(f.clone());
            files += 1;
        }
    }
    let mut notes = Vec::new();
    let mut left_out = Vec::new();
    for tag in &a.ticket.tags {
        if t.tags.contains(tag) {
            continue;
        }
        if t.tags.len() >= MAX_TAGS {
            left_out.push(tag.clone());
            continue;
        }
        t.tags.push(tag.clone());
    }
    if !left_out.is_empty() {
        notes.push(format!("tags of #{na} not added (a ticket has at most {MAX_TAGS}): {}", left_out.join(", ")));
    }
    let mut people: Vec<&String> = a.ticket.participants.iter().collect();
    if a.client_address != into.client_address {
        people.insert(0, &a.client_address);
    }
    let mut added = Vec::new();
    let mut skipped = 0;
    for p in people {
        if *p == into.client_address || t.participants.contains(p) {
            continue;
        }
        if t.participants.len() >= MAX_PARTICIPANTS {
            skipped += 1;
            continue;
        }
        t.participants.push(p.clone());
        added.push(p.clone());
    }
    if skipped > 0 {
        notes.push(format!("{skipped} participant(s) of #{na} not added (at most {MAX_PARTICIPANTS})"));
    }
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut what = vec![plural(moved, "entry", "entries"), plural(files, "attachment", "attachments")];
    if !added.is_empty() {
        what.push(format!("participants added: {}", added.join(", ")));
    }
    let entry = format!("{} merged into this ticket by {who} ({})", a.ticket.id, what.join("; "));
    t.push_thread("system", ThreadType::System, entry.clone(), now);
    for n in &notes {
        t.push_thread("system", ThreadType::System, n.clone(), now);
    }

    let why = format!("merged into {} by {who}: mail about this ticket now goes there", ticket_id(nb));
    let acted = act::changes(a, actor, &[Action::System(why.clone()), Action::Status(Status::Closed)], out, now)?;
    let mut from = acted.rec;
    from.merged_into = Some(nb);
    from.ticket.merged_into = Some(ticket_id(nb));

    let cfg = &out.ctx.cfg.sla;
    super::timers::settle(Some(a), &mut from, cfg, now);
    super::timers::settle(Some(b), &mut into, cfg, now);
    let mut changes = vec![why];
    changes.extend(acted.changes);
    changes.push(entry);
    changes.extend(notes);
    Ok(Merged { from, into, changes })
}

/// [`merged`] as the decision `desk::apply` records.
pub fn merge(
    a: &TicketRecord,
    b: &TicketRecord,
    b_chain: &[u64],
    actor: Actor<'_>,
    out: &Composer<'_>,
    now: DateTime<Utc>,
) -> Result<Decision, Vec<ActError>> {
    let m = merged(a, b, b_chain, actor, out, now)?;
    let ticket = m.into.number;
    Ok(Decision {
        outcome: Outcome::Acted { ticket, changes: m.changes },
        effects: vec![Effect::SaveTicket(Box::new(m.from)), Effect::SaveTicket(Box::new(m.into))],
    })
}

#[cfg(test)]
mod tests;
