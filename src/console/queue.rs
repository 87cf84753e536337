//! The queue: which tickets a filter shows, in which order, one page at a
//! time, and how many each ready view holds — all from one scan of the
//! ticket summaries (`desk::summary`), never of the tickets themselves.
//!
//! Filters live in the URL, so a bookmark is a saved view. The default
//! shows the tickets being worked (open, in progress, pending), those
//! waiting on us first, the one waiting longest at the top.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::session::urlencode;
use crate::desk::summary::{SummaryHead, client_number};
use crate::desk::views::DueFilter;
use crate::desk::{Desk, DeskError};
use crate::store::ClientInfo;
use crate::ticket::{Category, Priority, Status};

/// Rows a page shows.
pub const PAGE: usize = 50;
/// Tickets one bulk change may touch.
pub const MAX_BULK: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    Nobody,
    Agent(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Waiting on us first, longest waiting at the top; then the rest,
    /// most recently updated first.
    #[default]
    Waiting,
    Updated,
    Newest,
    Oldest,
    /// Urgent first; within a priority as `Waiting`.
    Priority,
    /// The earliest running response target first (#19); tickets without
    /// one after, as `Waiting`.
    Due,
}

impl Order {
    pub const ALL: [(Order, &'static str, &'static str); 6] = [
        (Order::Waiting, "waiting", "Waiting longest"),
        (Order::Due, "due", "Due first"),
        (Order::Priority, "priority", "Priority"),
        (Order::Updated, "updated", "Recently updated"),
        (Order::Newest, "newest", "Newest"),
        (Order::Oldest, "oldest", "Oldest"),
    ];

    pub fn name(self) -> &'static str {
        Order::ALL.iter().find(|(o, _, _)| *o == self).map(|(_, n, _)| *n).unwrap_or("waiting")
    }
}

/// The queue's filters, as the URL says them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Empty: the tickets being worked (open, in progress, pending).
    pub statuses: Vec<Status>,
    /// `status=any`: every status.
    pub any_status: bool,
    pub priority: Option<Priority>,
    pub category: Option<Category>,
    pub assignee: Option<Assignee>,
    pub tag: Option<String>,
    /// A client id (`client_7`).
    pub client: Option<String>,
    /// As typed; matched lower-cased.
    pub q: Option<String>,
    /// Overdue, or due within a window: the API's `due=overdue|soon` (and
    /// `within=`), on the same due time.
    pub due: Option<DueFilter>,
    pub order: Order,
    pub cursor: Option<Key>,
    /// Parameters that were not understood (shown, then ignored).
    pub ignored: Vec<String>,
    /// What the last action did (`done=`, after a redirect): not a filter.
    pub done: Option<String>,
}

/// Where a row stands in its order.
pub type Key = (i64, i64, u64);

const ACTIVE: [Status; 3] = [Status::Open, Status::InProgress, Status::Pending];

/// A "due soon" window as the API takes it (`2h`, `30m`), at most a year,
/// in whole minutes.
fn within(v: &str) -> Option<TimeDelta> {
    let d = humantime::parse_duration(v).ok()?;
    let m = i64::try_from(d.as_secs() / 60).ok()?;
    (1..=366 * 24 * 60).contains(&m).then(|| TimeDelta::minutes(m))
}

fn parse_key(s: &str) -> Option<Key> {
    let mut it = s.split('.');
    let k = (it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    it.next().is_none().then_some(k)
}

impl Filter {
    /// Reads a query string. Nothing in it is an error: what is not
    /// understood is named in `ignored` and left out.
    pub fn parse(raw: Option<&str>) -> Filter {
        let mut f = Filter::default();
        let mut within_given = None;
        let raw = raw.unwrap_or("");
        if raw.len() > crate::api::wire::MAX_QUERY_BYTES {
            f.ignored.push("the whole query (too long)".into());
            return f;
        }
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            let v = v.trim();
            let clean = crate::text::clean_line(v);
            if clean != v || v.chars().count() > crate::api::wire::MAX_SEARCH_CHARS {
                f.ignored.push(k.into_owned());
                continue;
            }
            let ok = match k.as_ref() {
                _ if v.is_empty() => true,
                "status" if v == "any" => {
                    f.any_status = true;
                    true
                }
                "status" if v == "working" => {
                    f.statuses.extend([Status::Open, Status::InProgress]);
                    true
                }
                "done" => {
                    f.done = Some(v.to_owned());
                    true
                }
                "status" => v.parse().map(|s| f.statuses.push(s)).is_ok(),
                "priority" => v.parse().map(|p| f.priority = Some(p)).is_ok(),
                "category" => v.parse().map(|c| f.category = Some(c)).is_ok(),
                "assignee" if v == "none" => {
                    f.assignee = Some(Assignee::Nobody);
                    true
                }
                "assignee" => {
                    f.assignee = Some(Assignee::Agent(v.to_owned()));
                    true
                }
                "tag" => crate::ticket::parse_tag(v).map(|t| f.tag = Some(t)).is_ok(),
                "client" => client_number(v).map(|n| f.client = Some(crate::ticket::client_id(n))).is_some(),
                "q" => {
                    f.q = Some(v.to_owned());
                    true
                }
                "sort" => match Order::ALL.iter().find(|(_, n, _)| *n == v) {
                    Some((o, _, _)) => {
                        f.order = *o;
                        true
                    }
                    None => false,
                },
                "due" => match v {
                    "overdue" => {
                        f.due = Some(DueFilter::Overdue);
                        true
                    }
                    "soon" => {
                        let w = match f.due {
                            Some(DueFilter::Within(w)) => w,
                            _ => DueFilter::DEFAULT_WITHIN,
                        };
                        f.due = Some(DueFilter::Within(w));
                        true
                    }
                    _ => false,
                },
                "within" => match within(v) {
                    Some(w) => {
                        within_given = Some(w);
                        true
                    }
                    None => false,
                },
                "cursor" => parse_key(v).map(|c| f.cursor = Some(c)).is_some(),
                _ => false,
            };
            if !ok {
                f.ignored.push(crate::text::truncate_chars(&k, 40));
            }
        }
        match (within_given, f.due) {
            (Some(w), Some(DueFilter::Within(_))) => f.due = Some(DueFilter::Within(w)),
            (Some(_), _) => f.ignored.push("within (it goes with due=soon)".into()),
            _ => {}
        }
        if f.any_status {
            f.statuses.clear();
        }
        f.statuses.sort();
        f.statuses.dedup();
        f
    }

    /// The query string of this filter (`cursor` as given), defaults left out.
    pub fn query(&self, cursor: Option<Key>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if self.any_status {
            s.append_pair("status", "any");
        }
        if self.statuses == [Status::Open, Status::InProgress] {
            s.append_pair("status", "working");
        } else {
            for st in &self.statuses {
                s.append_pair("status", st.as_str());
            }
        }
        if let Some(p) = self.priority {
            s.append_pair("priority", p.as_str());
        }
        if let Some(c) = self.category {
            s.append_pair("category", c.as_str());
        }
        match &self.assignee {
            Some(Assignee::Nobody) => {
                s.append_pair("assignee", "none");
            }
            Some(Assignee::Agent(a)) => {
                s.append_pair("assignee", a);
            }
            None => {}
        }
        for (k, v) in [("tag", &self.tag), ("client", &self.client), ("q", &self.q)] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        match self.due {
            Some(DueFilter::Overdue) => {
                s.append_pair("due", "overdue");
            }
            Some(DueFilter::Within(w)) => {
                s.append_pair("due", "soon");
                if w != DueFilter::DEFAULT_WITHIN {
                    s.append_pair("within", &format!("{}m", w.num_minutes()));
                }
            }
            None => {}
        }
        if self.order != Order::Waiting {
            s.append_pair("sort", self.order.name());
        }
        if let Some((a, b, n)) = cursor {
            s.append_pair("cursor", &format!("{a}.{b}.{n}"));
        }
        s.finish()
    }

    pub fn href(&self, cursor: Option<Key>) -> String {
        let q = self.query(cursor);
        if q.is_empty() { "/desk/".to_owned() } else { format!("/desk/?{q}") }
    }

    fn status_ok(&self, s: Status) -> bool {
        if self.any_status {
            return true;
        }
        if self.statuses.is_empty() {
            return ACTIVE.contains(&s);
        }
        self.statuses.contains(&s)
    }
}

/// How many tickets each ready view holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub mine: usize,
    pub unassigned: usize,
    pub open: usize,
    pub pending: usize,
    pub resolved: usize,
    pub closed: usize,
    /// Past a running response target (#19).
    pub overdue: usize,
    /// Due within [`DueFilter::DEFAULT_WITHIN`].
    pub due_soon: usize,
}

pub struct Found {
    /// The page's tickets, in order.
    pub numbers: Vec<u64>,
    pub next: Option<Key>,
    /// Tickets the filter matches in all.
    pub total: usize,
    /// How many come before this page.
    pub before: usize,
    pub counts: Counts,
}

fn rank(p: Priority) -> i64 {
    match p {
        Priority::Urgent => 0,
        Priority::High => 1,
        Priority::Medium => 2,
        Priority::Low => 3,
    }
}

fn key(order: Order, h: &SummaryHead<'_>) -> Key {
    let waiting = || match (h.waiting_on_us(), h.waiting_since) {
        (true, Some(w)) => (0, w.timestamp()),
        _ => (1, -h.updated_at.timestamp()),
    };
    let n = h.number;
    match order {
        Order::Waiting => {
            let (g, t) = waiting();
            (g, t, n)
        }
        Order::Priority => {
            let (g, t) = waiting();
            (rank(h.priority) * 2 + g, t, n)
        }
        Order::Due => match h.due {
            Some(d) => (0, d.timestamp(), n),
            None => {
                let (g, t) = waiting();
                (1 + g, t, n)
            }
        },
        Order::Updated => (0, -h.updated_at.timestamp(), n),
        Order::Newest => (0, -(n as i64), n),
        Order::Oldest => (0, h.created_at.timestamp(), n),
    }
}

/// Runs `f` over every summary; `me` is the agent asking (for "Mine"),
/// `now` the instant due times are compared with. Runs on the caller's
/// thread: call it from the blocking pool.
pub fn run(desk: &Desk, f: &Filter, me: Option<&str>, now: DateTime<Utc>, limit: usize) -> Result<Found, DeskError> {
    let q = f.q.as_deref().map(str::to_lowercase).filter(|q| !q.is_empty());
    // A search looks at names too: all clients at once, only then.
    let names: HashMap<u64, ClientInfo> = if q.is_some() { desk.clients()? } else { HashMap::new() };
    let pre = q.as_deref().and_then(crate::desk::query::Prefilter::new);
    let mut counts = Counts::default();
    let mut keys: Vec<Key> = Vec::new();
    desk.scan_summaries(|h| {
        let active = ACTIVE.contains(&h.status);
        let mine = me.is_some_and(|m| h.assigned_to.as_deref() == Some(m));
        counts.mine += usize::from(active && mine);
        counts.unassigned += usize::from(active && h.assigned_to.is_none());
        match h.status {
            Status::Open | Status::InProgress => counts.open += 1,
            Status::Pending => counts.pending += 1,
            Status::Resolved => counts.resolved += 1,
            Status::Closed => counts.closed += 1,
        }
        counts.overdue += usize::from(DueFilter::Overdue.matches(h.due, now));
        counts.due_soon += usize::from(DueFilter::Within(DueFilter::DEFAULT_WITHIN).matches(h.due, now));
        let fields = f.status_ok(h.status)
            && f.due.is_none_or(|d| d.matches(h.due, now))
            && f.priority.is_none_or(|p| p == h.priority)
            && f.category.is_none_or(|c| c == h.category)
            && f.assignee.as_ref().is_none_or(|a| match a {
                Assignee::Nobody => h.assigned_to.is_none(),
                Assignee::Agent(id) => h.assigned_to.as_deref() == Some(id.as_str()),
            })
            && f.tag.as_deref().is_none_or(|t| h.tags.iter().any(|x| x == t))
            && f.client.as_deref().is_none_or(|c| h.client == c);
        if !fields {
            return Ok(());
        }
        if let Some(q) = q.as_deref() {
            let by_name = || {
                client_number(&h.client)
                    .and_then(|n| names.get(&n))
                    .and_then(|c| c.name.as_deref())
                    .is_some_and(|name| name.to_lowercase().contains(q))
            };
            let hit = h.text.contains(q)
                || h.client_address.contains(q)
                || h.tags.iter().any(|t| t.contains(q))
                || by_name()
                || (!h.text_whole && desk.description_contains(h.number, q, pre.as_ref())?);
            if !hit {
                return Ok(());
            }
        }
        keys.push(key(f.order, &h));
        Ok(())
    })?;
    keys.sort_unstable();
    let total = keys.len();
    let before = match f.cursor {
        None => 0,
        Some(c) => keys.partition_point(|k| *k <= c),
    };
    let page = &keys[before..(before + limit).min(total)];
    let next = (before + page.len() < total).then(|| page.last().copied()).flatten();
    Ok(Found { numbers: page.iter().map(|k| k.2).collect(), next, total, before, counts })
}

/// The link to `base` changed by `change`, from its first page.
pub fn link(base: &Filter, change: impl FnOnce(&mut Filter)) -> String {
    let mut f = base.clone();
    f.cursor = None;
    change(&mut f);
    f.href(None)
}

/// A client filter's link for a customer.
pub fn client_href(client: &str) -> String {
    format!("/desk/?client={}&status=any", urlencode(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_through_the_url_and_junk_is_ignored() {
        let f = Filter::parse(Some(
            "status=open&status=pending&priority=high&assignee=none&tag=VIP&q=dark%20mode&sort=updated&cursor=1.-5.7&colour=red&category=wip",
        ));
        assert_eq!(f.statuses, vec![Status::Open, Status::Pending]);
        assert_eq!(
            (f.priority, f.assignee.clone(), f.tag.as_deref()),
            (Some(Priority::High), Some(Assignee::Nobody), Some("vip"))
        );
        assert_eq!((f.q.as_deref(), f.order, f.cursor), (Some("dark mode"), Order::Updated, Some((1, -5, 7))));
        assert_eq!(f.ignored, vec!["colour".to_owned(), "category".to_owned()]);
        let again = Filter::parse(Some(&f.query(f.cursor)));
        assert_eq!(Filter { ignored: vec![], ..f.clone() }, again);
        assert_eq!(Filter::parse(Some("q=%1b%5b31m")).ignored, vec!["q".to_owned()], "control characters");
        assert_eq!(Filter::parse(None).href(None), "/desk/");
        assert!(Filter::parse(Some("status=any&status=open")).status_ok(Status::Closed));
        assert!(!Filter::parse(None).status_ok(Status::Resolved), "the default shows what is being worked");
    }
}
