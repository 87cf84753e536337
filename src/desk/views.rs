//! Queries: committed state as the API, the CLI and exports show it. The
//! same types cross the HTTP API, so a CLI prints the same whichever path
//! it took.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Desk, DeskError};
use crate::outbox::{OutKind, OutState, OutboxEntry};
use crate::record::TicketRecord;
use crate::store::{IngestRecord, QuarantineEntry, Records};
use crate::ticket::{Category, Priority, Status, Ticket};

/// Largest page a list returns.
pub const MAX_LIMIT: usize = 500;
pub const DEFAULT_LIMIT: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Sort {
    /// Newest first (`-number`, the default).
    #[default]
    #[serde(rename = "-number")]
    NumberDesc,
    #[serde(rename = "number")]
    NumberAsc,
    #[serde(rename = "-updatedAt")]
    UpdatedDesc,
    #[serde(rename = "updatedAt")]
    UpdatedAsc,
    #[serde(rename = "-createdAt")]
    CreatedDesc,
    #[serde(rename = "createdAt")]
    CreatedAsc,
    /// The earliest running response target first; tickets without one
    /// last (#19).
    #[serde(rename = "due")]
    DueAsc,
}

impl Sort {
    pub const NAMES: &'static str = "-number, number, -updatedAt, updatedAt, -createdAt, createdAt, due";

    pub fn parse(s: &str) -> Result<Sort, DeskError> {
        Ok(match s {
            "-number" => Sort::NumberDesc,
            "number" => Sort::NumberAsc,
            "-updatedAt" => Sort::UpdatedDesc,
            "updatedAt" => Sort::UpdatedAsc,
            "-createdAt" => Sort::CreatedDesc,
            "createdAt" => Sort::CreatedAsc,
            "due" => Sort::DueAsc,
            _ => {
                return Err(DeskError::invalid_query(
                    "sort",
                    format!("invalid sort {s:?}: expected one of {}", Sort::NAMES),
                ));
            }
        })
    }
}

/// Filters and paging of a ticket list; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketQuery {
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    pub category: Option<Category>,
    /// An agent id, or `none` for unassigned tickets.
    pub assigned_to: Option<String>,
    pub tag: Option<String>,
    /// A client id (`client_7`) or the client's address.
    pub client: Option<String>,
    /// Case-insensitive text in the title or the description.
    pub q: Option<String>,
    pub sort: Sort,
    pub limit: Option<usize>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Only tickets whose earliest running response target is overdue, or
    /// due soon (#19).
    pub due: Option<DueFilter>,
    /// The instant the due filter compares with (default: now).
    pub as_of: Option<DateTime<Utc>>,
}

/// The queue's "overdue" and "due soon" (#19): a ticket's earliest
/// response target whose clock runs (a pending ticket's is stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueFilter {
    /// Past due and unmet.
    Overdue,
    /// Not yet due, but within this.
    Within(chrono::TimeDelta),
}

impl DueFilter {
    /// "Due soon" when no window is given.
    pub const DEFAULT_WITHIN: chrono::TimeDelta = chrono::TimeDelta::hours(1);

    pub fn matches(self, due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        match (self, due) {
            (_, None) => false,
            (DueFilter::Overdue, Some(d)) => d <= now,
            (DueFilter::Within(w), Some(d)) => d > now && d <= now + w,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketPage {
    pub tickets: Vec<Ticket>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_cursor: Option<String>,
}

impl DeskError {
    fn invalid_query(field: &'static str, message: String) -> DeskError {
        DeskError::Invalid(vec![crate::triage::act::ActError { field, message }])
    }
}

impl Desk {
    /// One ticket in the public shape, by number.
    pub fn ticket(&self, n: u64) -> Result<Option<TicketRecord>, DeskError> {
        Ok(self.store().ticket(n)?)
    }

    /// The original mails of ticket `n`, unaltered, as an mboxrd file.
    pub fn raw_mbox(&self, n: u64) -> Result<Vec<u8>, DeskError> {
        let mut out = Vec::new();
        for rec in self.ticket_mails(n)? {
            out.extend(self.mbox_entry(n, &rec)?);
        }
        Ok(out)
    }

    /// The records of the mails that went into ticket `n`, in the order
    /// they came (the bytes are read one at a time by [`Desk::mbox_entry`]).
    pub fn ticket_mails(&self, n: u64) -> Result<Vec<IngestRecord>, DeskError> {
        Ok(self.store().ingest_records_for_ticket(n)?)
    }

    /// One mail of ticket `n` as an mboxrd entry (a placeholder where
    /// retention pruned it; empty where its bytes are gone).
    pub fn mbox_entry(&self, n: u64, rec: &IngestRecord) -> Result<Vec<u8>, DeskError> {
        let raw = match rec.pruned {
            Some(at) => super::retention::pruned_placeholder(n, rec, at),
            None => match self.store().raw(&rec.raw_sha256)? {
                Some(raw) => raw,
                None => return Ok(Vec::new()),
            },
        };
        Ok(crate::mail::mailbox::mboxrd_entry(rec.at, &raw))
    }

    pub fn quarantine(&self) -> Result<Vec<QuarantineView>, DeskError> {
        let store = self.store();
        Ok(store.quarantine_entries()?.into_iter().map(|q| QuarantineView::from(&q)).collect())
    }

    /// An entry and its raw mail.
    pub fn quarantine_entry(&self, id: u64) -> Result<Option<(QuarantineView, Vec<u8>)>, DeskError> {
        let store = self.store();
        let Some(q) = store.quarantined(id)? else { return Ok(None) };
        let raw = store.raw(&q.raw_sha256)?.unwrap_or_default();
        Ok(Some((QuarantineView::from(&q), raw)))
    }

    /// What waits to be sent, or (with `all`) everything ever queued.
    pub fn outbox(&self, all: bool) -> Result<Vec<OutboxView>, DeskError> {
        let store = self.store();
        let mut rows = store.pending_entries()?;
        if all {
            rows.extend(store.sent_entries()?);
            rows.sort_by_key(|(seq, _)| *seq);
        }
        Ok(rows.iter().map(|(seq, e)| OutboxView::from_entry(*seq, e)).collect())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineView {
    pub id: u64,
    pub reason: String,
    pub mailbox: String,
    pub uid: u32,
    #[serde(with = "crate::ticket::rfc3339")]
    pub at: DateTime<Utc>,
    pub raw_sha256: String,
}

impl From<&QuarantineEntry> for QuarantineView {
    fn from(q: &QuarantineEntry) -> Self {
        QuarantineView {
            id: q.id,
            reason: q.reason.clone(),
            mailbox: q.mailbox.clone(),
            uid: q.uid,
            at: q.at,
            raw_sha256: q.raw_sha256.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxView {
    pub seq: u64,
    pub ticket: u64,
    pub kind: OutKind,
    pub state: OutState,
    pub to: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub attempts: u32,
    #[serde(with = "crate::ticket::rfc3339")]
    pub next_attempt: DateTime<Utc>,
    pub last_error: Option<String>,
    #[serde(with = "crate::ticket::rfc3339")]
    pub created: DateTime<Utc>,
    pub refused: Vec<String>,
}

impl OutboxView {
    pub fn from_entry(seq: u64, e: &OutboxEntry) -> OutboxView {
        OutboxView {
            seq,
            ticket: e.mail.ticket,
            kind: e.mail.kind,
            state: e.state,
            to: e.mail.to.clone(),
            subject: e.mail.subject.clone(),
            message_id: e.mail.message_id.clone(),
            attempts: e.attempts,
            next_attempt: e.next_attempt,
            last_error: e.last_error.clone(),
            created: e.created,
            refused: e.failed_rcpts.clone(),
        }
    }
}
