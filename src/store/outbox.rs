//! The durable outbox: pending mail in `outbox`, finished mail in `sent`.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sled::Transactional;

use super::{StoreError, Trees, be, flatten, from_be, json, parse, tx_parse};
use crate::outbound::{OutState, OutboxEntry};
use crate::ticket::{ThreadType, TicketRecord};

impl Trees {
    /// Entries that may be sent now, oldest first, at most one per ticket:
    /// a ticket's later mail waits while an earlier one is retrying, so the
    /// customer never reads an answer before the question's acknowledgement.
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let mut blocked = HashSet::new();
        let mut out = Vec::new();
        for item in self.outbox.iter() {
            let (k, v) = item?;
            let seq = from_be(&k).ok_or(StoreError::Corrupt { tree: "outbox", detail: "bad key".into() })?;
            let e: OutboxEntry = parse("outbox", &v)?;
            if !blocked.insert(e.mail.ticket) {
                continue;
            }
            if e.next_attempt <= now {
                out.push((seq, e));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// When the earliest waiting entry becomes due.
    pub fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut min: Option<DateTime<Utc>> = None;
        for item in self.outbox.iter() {
            let (_, v) = item?;
            let e: OutboxEntry = parse("outbox", &v)?;
            min = Some(min.map_or(e.next_attempt, |m| m.min(e.next_attempt)));
        }
        Ok(min)
    }

    pub fn pending_count(&self) -> usize {
        self.outbox.len()
    }

    pub fn sent_entries(&self) -> impl Iterator<Item = Result<(u64, OutboxEntry), StoreError>> + '_ {
        self.sent.iter().map(|r| {
            let (k, v) = r?;
            Ok((from_be(&k).unwrap_or(0), parse("sent", &v)?))
        })
    }

    pub fn pending_entries(&self) -> impl Iterator<Item = Result<(u64, OutboxEntry), StoreError>> + '_ {
        self.outbox.iter().map(|r| {
            let (k, v) = r?;
            Ok((from_be(&k).unwrap_or(0), parse("outbox", &v)?))
        })
    }

    pub fn mark_sent(&self, seq: u64, now: DateTime<Utc>) -> Result<(), StoreError> {
        let r = (&self.outbox, &self.sent).transaction(|(outbox, sent)| {
            if let Some(b) = outbox.remove(&be(seq))? {
                let mut e: OutboxEntry = tx_parse("outbox", &b)?;
                // Every recipient refused: nothing went out.
                let all_refused = !e.mail.to.is_empty() && e.failed_rcpts.len() >= e.mail.to.len();
                e.state = if all_refused { OutState::Failed } else { OutState::Sent };
                e.attempts += 1;
                e.next_attempt = now;
                sent.insert(&be(seq), json(&e))?;
            }
            Ok(())
        });
        flatten(r)
    }

    /// One recipient handled. A refusal (`Some(error)`) adds a `system`
    /// entry to the ticket naming the address.
    pub fn record_rcpt(
        &self,
        seq: u64,
        rcpt: &str,
        refused: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let r = (&self.outbox, &self.tickets).transaction(|(outbox, tickets)| {
            let Some(b) = outbox.get(be(seq))? else { return Ok(()) };
            let mut e: OutboxEntry = tx_parse("outbox", &b)?;
            if !e.done_rcpts.iter().any(|r| r == rcpt) {
                e.done_rcpts.push(rcpt.to_owned());
            }
            if let Some(error) = refused {
                e.failed_rcpts.push(rcpt.to_owned());
                e.last_error = Some(error.to_owned());
                if let Some(t) = tickets.get(be(e.mail.ticket))? {
                    let mut rec: TicketRecord = tx_parse("tickets", &t)?;
                    rec.ticket.push_thread(
                        "system",
                        ThreadType::System,
                        format!("Mail to {rcpt} could not be delivered: {error}"),
                        now,
                    );
                    tickets.insert(&be(e.mail.ticket), json(&rec))?;
                }
            }
            outbox.insert(&be(seq), json(&e))?;
            Ok(())
        });
        flatten(r)
    }

    pub fn mark_retry(&self, seq: u64, error: &str, next: DateTime<Utc>) -> Result<(), StoreError> {
        let r = self.outbox.transaction(|outbox| {
            if let Some(b) = outbox.get(be(seq))? {
                let mut e: OutboxEntry = tx_parse("outbox", &b)?;
                e.attempts += 1;
                e.last_error = Some(error.to_owned());
                e.next_attempt = next;
                outbox.insert(&be(seq), json(&e))?;
            }
            Ok(())
        });
        flatten(r)
    }

    /// A permanent failure: the mail leaves the queue and the ticket gets a
    /// `system` entry saying what went wrong.
    pub fn mark_failed(&self, seq: u64, error: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let r = (&self.outbox, &self.sent, &self.tickets).transaction(|(outbox, sent, tickets)| {
            let Some(b) = outbox.remove(&be(seq))? else { return Ok(()) };
            let mut e: OutboxEntry = tx_parse("outbox", &b)?;
            e.state = OutState::Failed;
            e.attempts += 1;
            e.last_error = Some(error.to_owned());
            sent.insert(&be(seq), json(&e))?;
            if let Some(t) = tickets.get(be(e.mail.ticket))? {
                let mut rec: TicketRecord = tx_parse("tickets", &t)?;
                rec.ticket.push_thread(
                    "system",
                    ThreadType::System,
                    format!("Mail to {} could not be delivered: {error}", e.mail.to.join(", ")),
                    now,
                );
                tickets.insert(&be(e.mail.ticket), json(&rec))?;
            }
            Ok(())
        });
        flatten(r)
    }
}
