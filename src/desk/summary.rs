//! A compact summary of every ticket, kept by the writer beside the ticket
//! in the same commit (`apply::save_ticket`): what a queue row shows and
//! what the console filters and sorts on — including when the customer
//! started waiting, which needs the threads — so a queue of ten thousand
//! tickets is one scan of small records, never a parse of every thread.
//! Clients get a record of their own ([`ClientInfo`]): the address and the
//! name of their latest mail, so a customer is shown as a person.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::tx::Tx;
use super::{Desk, DeskError};
use crate::record::TicketRecord;
use crate::store::{ClientInfo, Get, Records, Scan, StoreError, Table, be, json, parse};
use crate::ticket::{Category, Priority, Status, ThreadType};

/// Lower-cased description kept for text search; a longer one is searched
/// in the ticket itself (see [`TicketSummary::text_whole`]).
pub const SEARCH_PREFIX_BYTES: usize = 4096;
/// Characters of the one-line preview.
pub const PREVIEW_CHARS: usize = 160;
/// Characters of a client's display name.
pub const MAX_CLIENT_NAME_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSummary {
    pub number: u64,
    pub title: String,
    /// The latest message a customer or an agent wrote (not internal), on
    /// one line.
    pub preview: String,
    pub status: Status,
    pub priority: Priority,
    pub category: Category,
    /// `client_7`.
    pub client: String,
    pub client_address: String,
    #[serde(default)]
    pub assigned_to: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(with = "crate::ticket::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::ticket::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// The customer's oldest mail that no agent answered since (an
    /// internal note is no answer); none when the last word was ours.
    #[serde(with = "crate::ticket::rfc3339_opt", default)]
    pub waiting_since: Option<DateTime<Utc>>,
    pub attachments: u32,
    pub entries: u32,
    pub version: u64,
    /// Lower-cased title, a line break, and the lower-cased description's
    /// first [`SEARCH_PREFIX_BYTES`].
    pub text: String,
    /// `text` holds the whole description.
    pub text_whole: bool,
    /// The earliest due instant of a response target whose clock runs
    /// (#19): what the API's `?due=overdue|soon` looks at.
    #[serde(with = "crate::ticket::rfc3339_opt", default)]
    pub due: Option<DateTime<Utc>>,
    /// Merged into that ticket (#19).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<u64>,
}

impl TicketSummary {
    /// Waiting on us: the customer wrote last and the ticket is being worked.
    pub fn waiting_on_us(&self) -> bool {
        waiting_on_us(self.waiting_since, self.status)
    }
}

fn waiting_on_us(waiting_since: Option<DateTime<Utc>>, status: Status) -> bool {
    waiting_since.is_some() && matches!(status, Status::Open | Status::InProgress)
}

fn one_line(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    for word in s.split_whitespace() {
        if n > 0 {
            out.push(' ');
            n += 1;
        }
        for c in word.chars() {
            if n >= max {
                out.push('…');
                return out;
            }
            out.push(c);
            n += 1;
        }
    }
    out
}

fn prefix_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The summary of a ticket as saved (its `version` is the saved one).
pub fn of(rec: &TicketRecord) -> TicketSummary {
    let t = &rec.ticket;
    let mut waiting_since = None;
    let mut latest = None;
    for e in &t.threads {
        if e.internal {
            continue;
        }
        match e.kind {
            ThreadType::User => {
                waiting_since.get_or_insert(e.timestamp);
                latest = Some(e);
            }
            ThreadType::Agent => {
                waiting_since = None;
                latest = Some(e);
            }
            ThreadType::System => {}
        }
    }
    let preview = match latest {
        Some(e) => one_line(&e.message, PREVIEW_CHARS),
        None => one_line(&t.description, PREVIEW_CHARS),
    };
    let desc = prefix_at_char(&t.description, SEARCH_PREFIX_BYTES);
    TicketSummary {
        number: rec.number,
        title: t.title.clone(),
        preview,
        status: t.status,
        priority: t.priority,
        category: t.category,
        client: t.client.clone(),
        client_address: rec.client_address.clone(),
        assigned_to: t.assigned_to.clone(),
        tags: t.tags.clone(),
        created_at: t.created_at,
        updated_at: t.updated_at,
        waiting_since,
        attachments: t.attachments.len().min(u32::MAX as usize) as u32,
        entries: t.threads.len().min(u32::MAX as usize) as u32,
        version: rec.version,
        text: format!("{}\n{}", t.title.to_lowercase(), desc.to_lowercase()),
        text_whole: desc.len() == t.description.len(),
        due: rec.timers.due,
        merged_into: rec.merged_into,
    }
}

/// Writes the summary of `rec` as saved.
pub(super) fn put(tx: &mut Tx<'_>, rec: &TicketRecord) {
    tx.put(Table::Summaries, be(rec.number), json(&of(rec)));
}

/// The number behind `client_7` (or a bare `7`).
pub fn client_number(id: &str) -> Option<u64> {
    id.strip_prefix("client_").unwrap_or(id).parse().ok()
}

fn clean_name(name: &str) -> Option<String> {
    let n = crate::text::clean_line(name);
    let n = n.trim().trim_matches('"').trim();
    (!n.is_empty()).then(|| crate::text::truncate_chars(n, MAX_CLIENT_NAME_CHARS))
}

/// Records who client `number` is: the address, and the display name of
/// their latest mail when it has one. Writes only what changed.
pub(super) fn record_client(tx: &mut Tx<'_>, number: u64, address: &str, name: Option<&str>) -> Result<(), StoreError> {
    let name = name.and_then(clean_name);
    let old = tx.client_info(number)?;
    let new =
        ClientInfo { address: address.to_owned(), name: name.or_else(|| old.as_ref().and_then(|o| o.name.clone())) };
    if old.as_ref() != Some(&new) {
        tx.put(Table::ClientInfo, be(number), json(&new));
    }
    Ok(())
}

/// A client as the API and the console show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    #[serde(rename = "_id")]
    pub id: String,
    pub address: String,
    /// The display name of their latest mail, if it had one.
    pub name: Option<String>,
    /// Newest first.
    pub tickets: Vec<ClientTicket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTicket {
    #[serde(rename = "_id")]
    pub id: String,
    pub number: u64,
    pub title: String,
    pub status: Status,
    #[serde(with = "crate::ticket::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// Just what a scan of the summaries looks at, borrowed from the stored
/// bytes (the big `text` is only read when a search asks for it).
#[derive(Debug, Deserialize)]
pub struct SummaryHead<'a> {
    pub number: u64,
    pub status: Status,
    pub priority: Priority,
    pub category: Category,
    #[serde(borrow)]
    pub client: Cow<'a, str>,
    #[serde(borrow)]
    pub client_address: Cow<'a, str>,
    #[serde(borrow, default)]
    pub assigned_to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tags: Vec<Cow<'a, str>>,
    #[serde(with = "crate::ticket::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::ticket::rfc3339")]
    pub updated_at: DateTime<Utc>,
    #[serde(with = "crate::ticket::rfc3339_opt", default)]
    pub waiting_since: Option<DateTime<Utc>>,
    #[serde(borrow)]
    pub text: Cow<'a, str>,
    pub text_whole: bool,
    #[serde(borrow)]
    pub title: Cow<'a, str>,
    #[serde(with = "crate::ticket::rfc3339_opt", default)]
    pub due: Option<DateTime<Utc>>,
}

impl SummaryHead<'_> {
    /// As [`TicketSummary::waiting_on_us`].
    pub fn waiting_on_us(&self) -> bool {
        waiting_on_us(self.waiting_since, self.status)
    }
}

pub fn head(v: &[u8]) -> Result<SummaryHead<'_>, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt { table: Table::Summaries.name(), detail: e.to_string() })
}

impl Desk {
    /// Visits every ticket's stored summary, in number order. Runs on the
    /// caller's thread: call it from the blocking pool.
    pub fn scan_summaries(
        &self,
        mut visit: impl FnMut(SummaryHead<'_>) -> Result<(), DeskError>,
    ) -> Result<(), DeskError> {
        for item in self.store().backend().scan(Table::Summaries, Scan::default()) {
            let (_, v) = item?;
            visit(head(&v)?)?;
        }
        Ok(())
    }

    pub fn summary(&self, n: u64) -> Result<Option<TicketSummary>, DeskError> {
        let v = self.store().get(Table::Summaries, &be(n))?;
        Ok(v.map(|v| parse(Table::Summaries, &v)).transpose()?)
    }

    /// Whether the description of ticket `n` holds `needle` (lower-cased),
    /// for a summary whose search text is only a prefix. The stored bytes
    /// are looked at first (`query::Prefilter`, never a false "no").
    pub(crate) fn description_contains(
        &self,
        n: u64,
        needle_lower: &str,
        pre: Option<&super::query::Prefilter>,
    ) -> Result<bool, DeskError> {
        let Some(raw) = self.store().get(Table::Tickets, &be(n))? else { return Ok(false) };
        if pre.is_some_and(|p| !p.may_match(&raw)) {
            return Ok(false);
        }
        let rec: TicketRecord = parse(Table::Tickets, &raw)?;
        Ok(rec.ticket.description.to_lowercase().contains(needle_lower))
    }

    pub fn client_info(&self, n: u64) -> Result<Option<ClientInfo>, DeskError> {
        Ok(self.store().client_info(n)?)
    }

    /// Every client's info by number (for a search by customer name).
    pub fn clients(&self) -> Result<std::collections::HashMap<u64, ClientInfo>, DeskError> {
        let mut out = std::collections::HashMap::new();
        for item in self.store().backend().scan(Table::ClientInfo, Scan::default()) {
            let (k, v) = item?;
            if let Some(n) = crate::store::from_be(&k) {
                out.insert(n, parse(Table::ClientInfo, &v)?);
            }
        }
        Ok(out)
    }

    /// A client and their tickets, newest first; None if unknown.
    pub fn client(&self, n: u64) -> Result<Option<ClientView>, DeskError> {
        let Some(info) = self.client_info(n)? else { return Ok(None) };
        let id = crate::ticket::client_id(n);
        let mut numbers = Vec::new();
        self.scan_summaries(|h| {
            if h.client == id {
                numbers.push(h.number);
            }
            Ok(())
        })?;
        let mut tickets = Vec::new();
        for number in numbers.into_iter().rev() {
            if let Some(s) = self.summary(number)? {
                tickets.push(ClientTicket {
                    id: crate::ticket::ticket_id(number),
                    number,
                    title: s.title,
                    status: s.status,
                    updated_at: s.updated_at,
                });
            }
        }
        Ok(Some(ClientView { id, address: info.address, name: info.name, tickets }))
    }
}

/// For older stores: every ticket's summary and every client's info, once.
pub(super) fn build(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    use crate::store::keys;
    if tx.get(Table::Meta, keys::SUMMARY_INDEX)?.is_some() {
        return Ok(());
    }
    let store = tx.store();
    for rec in store.tickets_from(None, false) {
        put(tx, &rec?);
    }
    for item in store.backend().scan(Table::Clients, Scan::default()) {
        let (address, id) = item?;
        let (Ok(address), Some(n)) = (String::from_utf8(address), client_number(&String::from_utf8_lossy(&id))) else {
            continue;
        };
        if tx.client_info(n)?.is_none() {
            record_client(tx, n, &address, None)?;
        }
    }
    tx.put(Table::Meta, keys::SUMMARY_INDEX, vec![1]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::{ThreadEntry, Ticket};

    fn at(m: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + m * 60, 0).unwrap()
    }

    fn entry(kind: ThreadType, m: i64, text: &str, internal: bool) -> ThreadEntry {
        ThreadEntry { author: "x".into(), message: text.into(), timestamp: at(m), kind, internal }
    }

    fn rec(threads: Vec<ThreadEntry>) -> TicketRecord {
        TicketRecord {
            ticket: Ticket {
                id: "support_ticket_3".into(),
                title: "Printer ON fire".into(),
                description: "It smokes. ".repeat(1000),
                status: Status::Open,
                priority: Priority::High,
                category: Category::Technical,
                client: "client_2".into(),
                assigned_to: None,
                threads,
                attachments: vec![],
                tags: vec!["printer".into()],
                resolution: None,
                created_at: at(0),
                updated_at: at(9),
                resolved_at: None,
                number: Some(3),
                participants: vec![],
                first_response_due: None,
                resolution_due: None,
                merged_into: None,
            },
            number: 3,
            client_address: "carla@example.test".into(),
            mailbox: "support".into(),
            thread_ids: vec![],
            version: 4,
            timers: Default::default(),
            merged_into: None,
        }
    }

    #[test]
    fn waiting_since_is_the_oldest_unanswered_customer_mail() {
        use ThreadType::*;
        let s = of(&rec(vec![entry(User, 0, "help", false), entry(User, 2, "again\n  please", false)]));
        assert_eq!(s.waiting_since, Some(at(0)));
        assert_eq!(s.preview, "again please");
        assert!(s.waiting_on_us());
        let s = of(&rec(vec![
            entry(User, 0, "help", false),
            entry(Agent, 1, "on it", false),
            entry(Agent, 2, "internal", true),
            entry(System, 3, "status", false),
        ]));
        assert_eq!((s.waiting_since, s.preview.as_str()), (None, "on it"), "a note is no answer, a reply is");
        let s = of(&rec(vec![entry(User, 0, "a", false), entry(Agent, 1, "b", false), entry(User, 5, "c", false)]));
        assert_eq!(s.waiting_since, Some(at(5)));
        assert!(s.text.starts_with("printer on fire\nit smokes."));
        assert!(!s.text_whole && s.text.len() <= SEARCH_PREFIX_BYTES + 20);
        assert_eq!(one_line(&"é".repeat(300), 5), "ééééé…");
        let bytes = json(&s);
        let h = head(&bytes).unwrap();
        assert_eq!((h.number, h.waiting_since, h.tags.len()), (3, Some(at(5)), 1));
    }
}
