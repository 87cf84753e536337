//! Turning a [`Decision`]'s effects into writes of the writer's [`Tx`].
//! The rules decided what; this only records it, checking that the
//! counters and ticket versions the decision was based on still hold (a
//! stale write is refused, never applied).

use chrono::{DateTime, Utc};

use super::tx::Tx;
use crate::mail::{InboundMail, normalise_id};
use crate::outbox::{Delivery, OutboxEntry};
use crate::record::TicketRecord;
use crate::store::{
    AttachmentIndex, BlobKind, Cursor, IngestRecord, QuarantineEntry, Records, StoreError, Table, be, json, keys,
};
use crate::ticket::client_id;
use crate::triage::{Decision, Effect, Outcome};

/// Where one inbound message came from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub mailbox: &'a str,
    pub uid_validity: u32,
    pub uid: u32,
    pub raw: &'a [u8],
    pub raw_sha256: String,
    pub dedupe_key: String,
    pub content_sha256: Option<String>,
    /// Moves the mailbox's UID cursor (not for a quarantine retry).
    pub advance_cursor: bool,
    /// Handled in careful mode: the commit also clears the in-hand marker.
    pub clear_in_hand: bool,
}

fn conflict(what: impl Into<String>) -> StoreError {
    StoreError::Conflict { what: what.into() }
}

/// The next value of a counter, reserving it.
pub fn take_counter(tx: &mut Tx<'_>, key: &[u8]) -> Result<u64, StoreError> {
    let n = tx.counter(key)?;
    tx.put(Table::Meta, key, be(n + 1).to_vec());
    Ok(n)
}

/// Saves `rec`, which was decided on top of version `rec.version`: the
/// stored record must still be that version (or absent, for a new ticket
/// whose number must be the next one).
pub fn save_ticket(tx: &mut Tx<'_>, rec: &TicketRecord) -> Result<TicketRecord, StoreError> {
    let mut rec = rec.clone();
    let current = tx.ticket(rec.number)?;
    match &current {
        Some(current) if current.version != rec.version => {
            return Err(conflict(format!(
                "ticket {} (version {} decided on, {} stored)",
                rec.number, rec.version, current.version
            )));
        }
        Some(_) => {}
        None => {
            if take_counter(tx, keys::NEXT_TICKET)? != rec.number {
                return Err(conflict(format!("ticket number {}", rec.number)));
            }
        }
    }
    index_attachments(tx, &rec)?;
    index_timers(tx, current.as_ref(), &rec);
    rec.version += 1;
    tx.put(Table::Tickets, be(rec.number), json(&rec));
    super::summary::put(tx, &rec);
    Ok(rec)
}

/// Keeps the clock's indexes (`Table::Timers`) in step with the ticket's
/// `timers` as saved, in the same commit as the record, writing only what
/// changed.
///
/// A new wake instant is filed in the commit's wake bucket ([`Tx::wake`]);
/// the old one is left to go stale (the clock reads the record and drops
/// it). A due time gets a key of its own under `d` only while no wake comes
/// before it (a breached target's ticket waiting on a later instant): a
/// ticket whose wake comes first is found by the clock, and counted as
/// overdue, through its wake. So a new ticket adds nothing but its entry in
/// a bucket the whole commit shares (#19: a key per ticket showed as ~3%
/// of ingest).
pub fn index_timers(tx: &mut Tx<'_>, old: Option<&TicketRecord>, new: &TicketRecord) {
    let n = new.number;
    let is = Indexed::of(new);
    let was = old.map(Indexed::of).unwrap_or_default();
    if let Some(w) = is.wake
        && was.wake != is.wake
    {
        tx.wake(w, n);
    }
    if was.due != is.due || was.covered != is.covered {
        // Deleted even when it was covered: a store from before wake keys
        // carried due times has a `d` key for every due time.
        if let Some(d) = was.due {
            tx.delete(Table::Timers, keys::due_index(d, n));
        }
        if let (Some(d), false) = (is.due, is.covered) {
            tx.put(Table::Timers, keys::due_index(d, n), Vec::new());
        }
    }
}

/// A ticket's place in the clock's indexes: its wake instant, its earliest
/// running due time, and whether the wake comes no later than that
/// (`covered`: no `d` key).
#[derive(Debug, Default, PartialEq, Eq)]
struct Indexed {
    wake: Option<i64>,
    due: Option<i64>,
    covered: bool,
}

impl Indexed {
    fn of(rec: &TicketRecord) -> Indexed {
        let wake = rec.timers.wake.map(|t| t.timestamp());
        let due = rec.timers.due.map(|t| t.timestamp());
        Indexed { wake, due, covered: covered(wake, due) }
    }
}

/// Whether a ticket with this wake and due time is found through its wake
/// (no `d` key): the wake comes no later than the due time.
pub fn covered(wake: Option<i64>, due: Option<i64>) -> bool {
    matches!((wake, due), (Some(w), Some(d)) if w <= d)
}

/// Records every attachment of `rec` the download index does not know yet.
pub fn index_attachments(tx: &mut Tx<'_>, rec: &TicketRecord) -> Result<(), StoreError> {
    for a in &rec.ticket.attachments {
        let Some(sha) = a.sha256() else { continue };
        if tx.attachment_index(sha, &a.filename)?.is_none() {
            let entry = AttachmentIndex { mime_type: a.mime_type.clone(), size: a.size, ticket: rec.number };
            tx.put(Table::Attachments, keys::attachment(sha, &a.filename), json(&entry));
        }
    }
    Ok(())
}

/// Writes a pending outbox entry and keeps the sender's schedule
/// (`OutboxDue`, `OutboxTickets`) in step with it.
pub fn put_pending(tx: &mut Tx<'_>, seq: u64, entry: &OutboxEntry) -> Result<(), StoreError> {
    if let Some(old) = tx.outbox_entry(seq)? {
        tx.delete(Table::OutboxDue, keys::due(old.next_attempt.timestamp(), seq));
    }
    tx.put(Table::OutboxDue, keys::due(entry.next_attempt.timestamp(), seq), Vec::new());
    tx.put(Table::OutboxTickets, keys::ticket_seq(entry.mail.ticket, seq), Vec::new());
    tx.put(Table::Outbox, be(seq), json(entry));
    Ok(())
}

/// Takes an entry out of the pending outbox (it was sent, failed or dropped).
pub fn remove_pending(tx: &mut Tx<'_>, seq: u64) -> Result<(), StoreError> {
    if let Some(old) = tx.outbox_entry(seq)? {
        tx.delete(Table::OutboxDue, keys::due(old.next_attempt.timestamp(), seq));
        tx.delete(Table::OutboxTickets, keys::ticket_seq(old.mail.ticket, seq));
    }
    tx.delete(Table::Outbox, be(seq));
    Ok(())
}

pub fn queue_mail(tx: &mut Tx<'_>, mail: &crate::outbox::OutMail, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let seq = take_counter(tx, keys::NEXT_OUTBOX)?;
    let entry = OutboxEntry::queued(mail.clone(), now);
    put_pending(tx, seq, &entry)?;
    tx.put(Table::OutboxIds, normalise_id(&mail.message_id).into_bytes(), be(seq).to_vec());
    Ok(seq)
}

/// Stores an entry where it now belongs: waiting (with its place in the
/// sender's schedule) or finished.
pub fn store_entry(
    tx: &mut Tx<'_>,
    seq: u64,
    e: &OutboxEntry,
    was_finished: bool,
    finished: bool,
) -> Result<(), StoreError> {
    match (was_finished, finished) {
        (false, false) => put_pending(tx, seq, e),
        (false, true) => {
            remove_pending(tx, seq)?;
            tx.put(Table::Sent, be(seq), json(e));
            Ok(())
        }
        (true, true) => {
            tx.put(Table::Sent, be(seq), json(e));
            Ok(())
        }
        (true, false) => {
            tx.delete(Table::Sent, be(seq));
            put_pending(tx, seq, e)
        }
    }
}

/// Records a report on outbox entry `seq` by the entry's own rules; returns
/// the note its ticket gets, if any.
pub fn record_delivery(
    tx: &mut Tx<'_>,
    seq: u64,
    report: Delivery,
    now: DateTime<Utc>,
) -> Result<Option<(u64, String)>, StoreError> {
    let (mut e, finished) = match tx.outbox_entry(seq)? {
        Some(e) => (e, false),
        None => match tx.sent_entry(seq)? {
            Some(e) => (e, true),
            None => return Ok(None),
        },
    };
    let r = e.record(report, finished, now);
    store_entry(tx, seq, &e, finished, r.finished)?;
    Ok(r.note.map(|n| (e.mail.ticket, n)))
}

/// Applies every effect; returns the outbox sequences queued.
pub fn apply(
    tx: &mut Tx<'_>,
    origin: Option<&Origin<'_>>,
    mail: Option<&InboundMail>,
    decision: &Decision,
    now: DateTime<Utc>,
) -> Result<Vec<u64>, StoreError> {
    if let Some(o) = origin {
        if o.advance_cursor {
            let mut cursor = match tx.cursor(o.mailbox)? {
                Some(c) if c.uid_validity == o.uid_validity => c,
                _ => Cursor { uid_validity: o.uid_validity, last_uid: 0, acked_uid: Some(0), ..Default::default() },
            };
            cursor.last_uid = cursor.last_uid.max(o.uid);
            tx.put(Table::Cursors, o.mailbox.as_bytes(), json(&cursor));
        }
        if o.clear_in_hand {
            tx.delete(Table::Meta, keys::in_hand(o.mailbox));
        }
        if decision.outcome == Outcome::Duplicate {
            // Already ingested: only the cursor moves; the first copy's
            // record (and its ticket link) stays.
            return Ok(Vec::new());
        }
    }
    if let Some(mail) = mail {
        for e in &decision.effects {
            if let Effect::WriteAttachment { index } = e
                && let Some(a) = mail.attachments.get(*index)
            {
                tx.put_blob(BlobKind::Attachment, &a.sha256, &a.bytes);
            }
        }
    }
    let mut queued = Vec::new();
    let mut ticket_no = None;
    let mut quarantined = None;
    let sender = mail.and_then(|m| m.from.as_ref());
    let name_of = |address: &str| sender.filter(|f| f.address == address).and_then(|f| f.name.as_deref());
    let mut held = None;
    for effect in &decision.effects {
        match effect {
            Effect::CreateClient { address, number } => {
                if take_counter(tx, keys::NEXT_CLIENT)? != *number {
                    return Err(conflict(format!("client number {number}")));
                }
                tx.put(Table::Clients, address.as_bytes(), client_id(*number).into_bytes());
                super::summary::record_client(tx, *number, address, name_of(address))?;
            }
            Effect::SaveTicket(rec) => {
                save_ticket(tx, rec)?;
                ticket_no = Some(rec.number);
                // The name the client writes under now.
                if let (Some(name), Some(n)) =
                    (name_of(&rec.client_address), super::summary::client_number(&rec.ticket.client))
                {
                    super::summary::record_client(tx, n, &rec.client_address, Some(name))?;
                }
            }
            Effect::IndexMessageId { id, ticket } => {
                tx.put(Table::MessageIds, normalise_id(id).into_bytes(), be(*ticket).to_vec());
                ticket_no = ticket_no.or(Some(*ticket));
            }
            Effect::WriteAttachment { .. } => {}
            Effect::Warn(w) => tracing::warn!("{w}"),
            Effect::Send(mail) => queued.push(queue_mail(tx, mail, now)?),
            Effect::CountAck { sender } => count(tx, sender, now)?,
            Effect::CountNotify { ticket } => count(tx, &crate::triage::notify_key(*ticket), now)?,
            Effect::CountAgentNotify { agent } => count(tx, &crate::triage::agent_notify_key(agent), now)?,
            Effect::HoldForDigest { agent, line } => {
                let mut held = tx.held_digest(agent)?.unwrap_or_default();
                held.hold(line.clone(), now);
                tx.put(Table::Digests, agent.as_bytes(), json(&held));
            }
            Effect::MarkSentFailed { message_id, recipient, reason } => {
                if let Some(seq) = tx.outbox_seq(message_id)? {
                    let report = Delivery::Bounced { rcpt: recipient.clone(), reason: reason.clone() };
                    record_delivery(tx, seq, report, now)?;
                }
            }
            Effect::Quarantine { reason } => {
                let id = take_counter(tx, keys::NEXT_QUARANTINE)?;
                let (mailbox, uid, raw_sha256, ingest_key) = match origin {
                    Some(o) => {
                        (o.mailbox.to_owned(), o.uid, o.raw_sha256.clone(), Some(o.dedupe_key.clone().into_bytes()))
                    }
                    None => (String::new(), 0, String::new(), None),
                };
                let q = QuarantineEntry { id, reason: reason.clone(), mailbox, uid, raw_sha256, at: now, ingest_key };
                tx.put(Table::Quarantine, be(id), json(&q));
                quarantined = Some(id);
            }
            Effect::Hold(h) => held = Some(super::spam::hold(tx, origin, mail, h, now)?),
            Effect::Block { entry, by, ticket } => {
                super::spam::put_block(tx, entry, by, *ticket, now)?;
            }
            Effect::AckRefused(r) => tracing::info!(reason = r.code(), "no acknowledgement sent"),
        }
    }
    if let Some(o) = origin {
        tx.put_blob(BlobKind::Raw, &o.raw_sha256, o.raw);
        let rec = IngestRecord {
            raw_sha256: o.raw_sha256.clone(),
            ticket: if quarantined.is_some() || held.is_some() { None } else { ticket_no },
            uid_validity: o.uid_validity,
            uid: o.uid,
            at: now,
            content_sha256: o.content_sha256.clone(),
            pruned: None,
        };
        tx.put(Table::Ingested, o.dedupe_key.as_bytes(), json(&rec));
    }
    Ok(queued)
}

fn count(tx: &mut Tx<'_>, key: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    let mut v = tx.recent(key)?;
    v.add(now);
    tx.put(Table::Acks, key.as_bytes(), json(&v));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Scan, Store};
    use crate::triage::timers::tests::{World, at};

    fn index(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        store.backend().scan(Table::Timers, Scan::default()).map(|r| r.unwrap()).collect()
    }

    fn save(store: &Store, c: &crate::store::Committer, old: Option<&TicketRecord>, new: &TicketRecord) {
        let mut tx = Tx::new(store);
        index_timers(&mut tx, old, new);
        c.commit(tx.into_writes()).unwrap();
    }

    /// The wake index as the clock reads it: every entry of every bucket.
    fn wakes(store: &Store) -> Vec<(i64, u64)> {
        let mut all: Vec<_> =
            store.wake_buckets(i64::MAX, usize::MAX).unwrap().into_iter().flat_map(|(_, e)| e).collect();
        all.sort_unstable();
        all
    }

    fn dues(store: &Store) -> Vec<Vec<u8>> {
        index(store).into_iter().filter(|(k, _)| k[0] == keys::DUE).map(|(k, _)| k).collect()
    }

    #[test]
    fn a_commit_files_its_wakes_in_one_bucket_and_a_due_time_is_keyed_only_when_no_wake_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(&dir.path().join("db"), &dir.path().join("a"), 8 << 20).unwrap();
        let c = store.take_committer().unwrap();
        let new = World::new().ticket("Site is down");
        let (wake, due) = (new.timers.wake.unwrap().timestamp(), new.timers.due.unwrap().timestamp());
        assert!(wake <= due);

        // Three new tickets in one commit: one key, no `d` key.
        let mut tx = Tx::new(&store);
        for n in 1..=3 {
            index_timers(&mut tx, None, &TicketRecord { number: n, ..new.clone() });
        }
        // A part of the commit rolled back takes its wakes with it.
        let sp = tx.savepoint();
        index_timers(&mut tx, None, &TicketRecord { number: 4, ..new.clone() });
        tx.rollback(sp);
        c.commit(tx.into_writes()).unwrap();
        assert_eq!(index(&store).len(), 1, "{:?}", index(&store));
        assert_eq!(wakes(&store), vec![(wake, 1), (wake, 2), (wake, 3)]);
        assert_eq!(store.first_timer(keys::WAKE).unwrap(), Some(wake));

        // Breached, waiting on a later instant: a new entry, and the due
        // time its own key; the old entry stays (stale: the clock drops it).
        let mut breached = new.clone();
        breached.timers.wake = Some(at(24 * 60));
        save(&store, &c, Some(&new), &breached);
        let later = at(24 * 60).timestamp();
        assert_eq!(wakes(&store), vec![(wake, 1), (wake, 2), (wake, 3), (later, 1)]);
        assert_eq!(dues(&store), vec![keys::due_index(due, 1)]);
        assert_eq!(store.dues_until(due).unwrap(), vec![1]);
        assert_eq!(store.dues_until(due - 1).unwrap(), Vec::<u64>::new());

        // Covered again: the `d` key goes. A save that moves nothing writes
        // nothing.
        save(&store, &c, Some(&breached), &new);
        assert!(dues(&store).is_empty());
        let before = index(&store);
        let mut tx = Tx::new(&store);
        index_timers(&mut tx, Some(&new), &new);
        assert!(tx.is_empty());
        assert_eq!(index(&store), before);
    }

    #[test]
    fn wake_keys_of_one_ticket_each_as_written_before_buckets_read_as_one_entry_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(&dir.path().join("db"), &dir.path().join("a"), 8 << 20).unwrap();
        let c = store.take_committer().unwrap();
        let new = World::new().ticket("Site is down");
        let (wake, due) = (new.timers.wake.unwrap().timestamp(), new.timers.due.unwrap().timestamp());
        let old = |at: i64, n: u64| {
            let mut k = vec![keys::WAKE];
            k.extend_from_slice(&keys::due(at, n));
            k
        };
        let mut w = crate::store::WriteSet::default();
        // Its value carried the due time, or was empty beside a `d` key.
        w.put(Table::Timers, old(wake, 1), due.to_be_bytes().to_vec());
        w.put(Table::Timers, old(wake, 2), Vec::new());
        w.put(Table::Timers, keys::due_index(due, 2), Vec::new());
        c.commit(w).unwrap();
        assert_eq!(wakes(&store), vec![(wake, 1), (wake, 2)]);
        assert_eq!(store.wake_buckets(wake, 1).unwrap().len(), 1, "stops once the limit is reached");

        // Ticket 2's due time moves on: its old `d` key goes although it
        // was covered. (Until then it names the ticket's real due time, so
        // it counts what the wake entry would: the count is of tickets.)
        let mut moved = TicketRecord { number: 2, ..new.clone() };
        moved.timers.wake = Some(at(30));
        moved.timers.due = Some(at(48 * 60));
        save(&store, &c, Some(&TicketRecord { number: 2, ..new.clone() }), &moved);
        assert!(dues(&store).is_empty());
        assert_eq!(wakes(&store), vec![(at(30).timestamp(), 2), (wake, 1), (wake, 2)]);
    }
}
