//! How a ticket list is read. A list looks at many tickets and shows few,
//! so each stored record is first read as a [`Head`] — only what the
//! filters and the sort look at, text borrowed from the stored bytes,
//! threads and attachments skipped unparsed — and whole records are parsed
//! only for the page returned. Number order stops as soon as the page is
//! full; the other orders keep a (time, number) pair per match, sort those,
//! and read the page's records by number.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::views::{DEFAULT_LIMIT, MAX_LIMIT, Sort, TicketPage, TicketQuery};
use super::{Desk, DeskError};
use crate::record::TicketRecord;
use crate::store::{Records, Scan, StoreError, Table, be, parse};
use crate::ticket::{Category, Priority, Status};

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    ticket: HeadTicket<'a>,
    number: u64,
    #[serde(borrow)]
    client_address: Cow<'a, str>,
    #[serde(default)]
    timers: HeadTimers,
}

/// Of a record's time bookkeeping, what the queue looks at (#19).
#[derive(Deserialize, Default)]
struct HeadTimers {
    #[serde(default, with = "crate::sla::record::instant::opt")]
    due: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeadTicket<'a> {
    #[serde(borrow)]
    title: Cow<'a, str>,
    #[serde(borrow)]
    description: Cow<'a, str>,
    status: Status,
    priority: Priority,
    category: Category,
    #[serde(borrow)]
    client: Cow<'a, str>,
    #[serde(borrow)]
    assigned_to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tags: Vec<Cow<'a, str>>,
    #[serde(with = "crate::ticket::rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(with = "crate::ticket::rfc3339")]
    updated_at: DateTime<Utc>,
}

fn head(v: &[u8]) -> Result<Head<'_>, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt { table: Table::Tickets.name(), detail: e.to_string() })
}

impl TicketQuery {
    fn matches(&self, h: &Head<'_>, q_lower: Option<&str>, now: DateTime<Utc>) -> bool {
        let t = &h.ticket;
        if self.due.is_some_and(|f| !f.matches(h.timers.due, now)) {
            return false;
        }
        self.status.is_none_or(|s| t.status == s)
            && self.priority.is_none_or(|p| t.priority == p)
            && self.category.is_none_or(|c| t.category == c)
            && self.assigned_to.as_deref().is_none_or(|a| match a {
                "none" => t.assigned_to.is_none(),
                a => t.assigned_to.as_deref() == Some(a),
            })
            && self.tag.as_deref().is_none_or(|tag| t.tags.iter().any(|x| x == tag))
            && self.client.as_deref().is_none_or(|c| t.client == c || h.client_address.eq_ignore_ascii_case(c))
            && q_lower.is_none_or(|q| contains_lower(&t.title, q) || contains_lower(&t.description, q))
    }
}

/// `text.to_lowercase().contains(q)` for a lower-cased `q`, without the
/// copy when `text` is ASCII (where both lower-casings agree).
fn contains_lower(text: &str, q: &str) -> bool {
    if !text.is_ascii() {
        return text.to_lowercase().contains(q);
    }
    let (t, q) = (text.as_bytes(), q.as_bytes());
    q.is_empty() || t.windows(q.len()).any(|w| w.iter().zip(q).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// A test on a record's stored bytes that rules a text search out before
/// any parsing. Exact, never a false "no": JSON (as serde_json writes it)
/// keeps every character of a string except `"`, `\\` and controls, so an
/// ASCII query free of those that occurs in the title or description,
/// ignoring ASCII case, occurs in the stored bytes too — unless the text
/// holds one of the two characters whose lower case is ASCII, and then
/// the record is parsed anyway.
pub(crate) struct Prefilter(regex::bytes::Regex);

/// UTF-8 of U+0130 (İ, lower case "i̇") and U+212A (KELVIN SIGN, "k").
const LOWERS_TO_ASCII: [&[u8]; 2] = [b"\xC4\xB0", b"\xE2\x84\xAA"];

impl Prefilter {
    pub(crate) fn new(q_lower: &str) -> Option<Prefilter> {
        let plain =
            !q_lower.is_empty() && q_lower.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if !plain {
            return None;
        }
        let re = regex::bytes::RegexBuilder::new(&regex::escape(q_lower)).case_insensitive(true).unicode(false).build();
        re.ok().map(Prefilter)
    }

    pub(crate) fn may_match(&self, raw: &[u8]) -> bool {
        self.0.is_match(raw) || LOWERS_TO_ASCII.iter().any(|c| memchr::memmem::find(raw, c).is_some())
    }
}

fn sort_key(s: Sort, h: &Head<'_>) -> DateTime<Utc> {
    match s {
        Sort::UpdatedAsc | Sort::UpdatedDesc => h.ticket.updated_at,
        Sort::DueAsc => h.timers.due.unwrap_or(DateTime::<Utc>::MAX_UTC),
        _ => h.ticket.created_at,
    }
}

fn bad_cursor() -> DeskError {
    DeskError::invalid("cursor", "invalid cursor: pass the next_cursor of a previous page")
}

impl Desk {
    /// One page of tickets, filtered and sorted as `q` asks.
    pub fn list(&self, q: &TicketQuery) -> Result<TicketPage, DeskError> {
        list(self, q)
    }
}

fn list(desk: &Desk, q: &TicketQuery) -> Result<TicketPage, DeskError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let text = q.q.as_deref().map(str::to_lowercase).filter(|s| !s.is_empty());
    let text = text.as_deref();
    let store = desk.store();
    let pre = text.and_then(Prefilter::new);
    let skip = |v: &[u8]| pre.as_ref().is_some_and(|p| !p.may_match(v));
    let now = q.as_of.unwrap_or_else(Utc::now);
    match q.sort {
        Sort::NumberDesc | Sort::NumberAsc => {
            let after = q.cursor.as_deref().map(|c| c.parse::<u64>().map_err(|_| bad_cursor())).transpose()?;
            let scan =
                Scan { prefix: Vec::new(), after: after.map(|n| be(n).to_vec()), reverse: q.sort == Sort::NumberDesc };
            let mut tickets: Vec<TicketRecord> = Vec::new();
            let mut more = false;
            for item in store.backend().scan(Table::Tickets, scan) {
                let (_, v) = item?;
                if skip(&v) || !q.matches(&head(&v)?, text, now) {
                    continue;
                }
                if tickets.len() == limit {
                    more = true;
                    break;
                }
                tickets.push(parse(Table::Tickets, &v)?);
            }
            let next_cursor = if more { tickets.last().map(|r| r.number.to_string()) } else { None };
            Ok(TicketPage { tickets: tickets.into_iter().map(|r| r.ticket).collect(), next_cursor })
        }
        sort => {
            let after = match q.cursor.as_deref() {
                None => None,
                Some(c) => {
                    let (ts, n) = c.rsplit_once('_').ok_or_else(bad_cursor)?;
                    let ts = ts.parse::<i64>().map_err(|_| bad_cursor())?;
                    Some((ts, n.parse::<u64>().map_err(|_| bad_cursor())?))
                }
            };
            let desc = matches!(sort, Sort::UpdatedDesc | Sort::CreatedDesc);
            let mut keys: Vec<(i64, u64)> = Vec::new();
            for item in store.backend().scan(Table::Tickets, Scan::default()) {
                let (_, v) = item?;
                if skip(&v) {
                    continue;
                }
                let h = head(&v)?;
                if q.matches(&h, text, now) {
                    keys.push((sort_key(sort, &h).timestamp(), h.number));
                }
            }
            keys.sort_unstable_by(|a, b| if desc { b.cmp(a) } else { a.cmp(b) });
            let start = match after {
                None => 0,
                Some(k) => keys.iter().position(|x| if desc { *x < k } else { *x > k }).unwrap_or(keys.len()),
            };
            let page: Vec<(i64, u64)> = keys.into_iter().skip(start).take(limit + 1).collect();
            let more = page.len() > limit;
            let page = &page[..page.len().min(limit)];
            let mut tickets = Vec::with_capacity(page.len());
            for (_, n) in page {
                // Read after the scan: a ticket changed meanwhile shows as it is now.
                if let Some(rec) = store.ticket(*n)? {
                    tickets.push(rec.ticket);
                }
            }
            let next_cursor = if more { page.last().map(|(ts, n)| format!("{ts}_{n}")) } else { None };
            Ok(TicketPage { tickets, next_cursor })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_reads_a_stored_record_and_skips_the_rest() {
        let rec = serde_json::json!({
            "ticket": {"_id": "support_ticket_3", "title": "Printer \"on\" fire", "description": "It smokes",
                "status": "open", "priority": "high", "category": "technical", "client": "client_1",
                "assignedTo": null, "threads": [{"author": "client_1", "message": "x", "timestamp": "2024-01-15T10:30:00Z", "type": "user"}],
                "attachments": [], "tags": ["printer"], "resolution": null,
                "createdAt": "2024-01-15T10:30:00Z", "updatedAt": "2024-01-15T11:00:00Z", "resolvedAt": null, "number": 3},
            "number": 3, "client_address": "carla@example.com", "mailbox": "support", "thread_ids": [], "version": 4
        });
        let bytes = serde_json::to_vec(&rec).unwrap();
        let h = head(&bytes).unwrap();
        assert_eq!((h.number, h.ticket.title.as_ref(), h.ticket.priority), (3, "Printer \"on\" fire", Priority::High));
        let q = TicketQuery {
            tag: Some("printer".into()),
            client: Some("Carla@Example.com".into()),
            ..TicketQuery::default()
        };
        let now = Utc::now();
        assert!(q.matches(&h, Some("on\" fire"), now));
        assert!(!q.matches(&h, Some("paper"), now));
        assert!(
            !TicketQuery { assigned_to: Some("agent_alice".into()), ..TicketQuery::default() }.matches(&h, None, now)
        );
        assert!(contains_lower("Printer ON Fire", "on fire"));
        assert!(contains_lower("Temperature 300 \u{212A}", "300 k"), "non-ASCII text lower-cases as before");
        assert!(!contains_lower("Printer", "printers"));
        assert!(!contains_lower("ascii only", "é"));
    }

    #[test]
    fn the_text_prefilter_never_rules_out_a_match() {
        // The only characters outside ASCII whose lower case holds ASCII.
        let lowers_to_ascii: Vec<char> =
            ('\u{80}'..=char::MAX).filter(|c| c.to_lowercase().any(|l| l.is_ascii())).collect();
        assert_eq!(lowers_to_ascii, ['\u{130}', '\u{212A}']);
        for c in lowers_to_ascii {
            assert!(LOWERS_TO_ASCII.contains(&c.to_string().as_bytes()));
        }
        let stored = |title: &str| serde_json::to_vec(&serde_json::json!({"title": title})).unwrap();
        let p = Prefilter::new("300 k").unwrap();
        assert!(p.may_match(&stored("Oven at 300 K")));
        assert!(p.may_match(&stored("Oven at 300 \u{212A}")), "KELVIN SIGN lower-cases to k");
        assert!(!p.may_match(&stored("Oven at 200 K")));
        assert!(Prefilter::new("say \"hi\"").is_none(), "quotes are escaped in JSON");
        assert!(Prefilter::new("café").is_none());
    }
}
