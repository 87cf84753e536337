//! The pages' templates (askama: compiled in, every value HTML-escaped
//! unless a template says otherwise — none does) and what they show.

use askama::Template;

use super::Console;
use super::session::User;

/// What every page's frame needs.
pub struct Chrome {
    pub nonce: String,
    pub css: &'static str,
    pub js: &'static str,
    pub user: Option<UserBar>,
    /// Which part of the console this is: `queue`, `ticket`, `admin`, `login`.
    pub page: &'static str,
}

pub struct UserBar {
    pub name: String,
    pub label: String,
    pub admin: bool,
    pub csrf: String,
}

impl Chrome {
    pub fn new(_c: &Console, user: Option<&User>) -> Chrome {
        Chrome {
            nonce: super::guard::nonce(),
            css: super::assets::css_url(),
            js: super::assets::js_url(),
            user: user.map(|u| UserBar {
                name: u.name.clone(),
                label: u.label().to_owned(),
                admin: u.is_admin(),
                csrf: u.csrf.clone(),
            }),
            page: "",
        }
    }

    pub fn page(mut self, page: &'static str) -> Chrome {
        self.page = page;
        self
    }
}

/// Longest run without a break opportunity a page shows: a browser lays
/// out a megabyte-long word in minutes, the same text with a `<wbr>` every
/// so often in a blink.
pub const MAX_RUN: usize = 64;

/// `text` in pieces, no piece holding a run of more than [`MAX_RUN`]
/// non-space characters; templates join them with `<wbr>`. Ordinary text
/// is one piece.
pub fn breakable(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut run = 0;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            run = 0;
            continue;
        }
        if run == MAX_RUN {
            out.push(text[start..i].to_owned());
            start = i;
            run = 0;
        }
        run += 1;
    }
    out.push(text[start..].to_owned());
    out
}

/// Renders a page; a template error (a bug, not input) becomes a short
/// plain message instead of a panic.
pub trait Page: Template {
    fn render_page(&self) -> String {
        self.render().unwrap_or_else(|e| {
            tracing::error!(error = %e, "a console template failed to render");
            "<!doctype html><title>Error</title><p>This page could not be shown.</p>".to_owned()
        })
    }
}

impl<T: Template> Page for T {}

#[derive(Template)]
#[template(path = "login.html")]
pub struct Login<'a> {
    pub c: Chrome,
    pub next: String,
    pub login_token: String,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct Message<'a> {
    pub c: Chrome,
    pub title: &'a str,
    pub text: &'a str,
}

/// An `<option>`.
#[derive(Clone)]
pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

impl Opt {
    pub fn new(value: impl Into<String>, label: impl Into<String>, selected: bool) -> Opt {
        Opt { value: value.into(), label: label.into(), selected }
    }
}

pub struct ViewLink {
    pub key: &'static str,
    pub label: &'static str,
    pub href: String,
    pub count: usize,
    pub current: bool,
}

pub struct Mark {
    pub name: String,
    /// `viewing` or `replying`.
    pub state: &'static str,
}

pub struct Row {
    pub number: u64,
    pub version: u64,
    pub title: String,
    pub preview: String,
    pub customer: String,
    pub address: String,
    pub status: &'static str,
    pub status_label: &'static str,
    pub priority: &'static str,
    pub assignee: String,
    pub tags: Vec<String>,
    pub waiting: String,
    pub waiting_iso: String,
    pub waiting_on_us: bool,
    pub updated: String,
    pub updated_iso: String,
    pub attachments: u32,
    pub presence: Vec<Mark>,
    /// The earliest running response target (#19), if any.
    pub due: Option<DueView>,
}

/// A due time as shown: when, how far off, and whether it is overdue or
/// due soon (the API's `due=overdue|soon`).
pub struct DueView {
    /// "2026-12-07 10:30 UTC".
    pub when: String,
    pub iso: String,
    /// "overdue 2 h 5 min", "in 40 min", "paused while pending".
    pub rel: String,
    /// `overdue`, `soon`, `later` or `paused`.
    pub state: &'static str,
}

#[derive(Template)]
#[template(path = "queue.html")]
pub struct Queue {
    pub c: Chrome,
    pub views: Vec<ViewLink>,
    pub rows: Vec<Row>,
    pub q: String,
    pub tag: String,
    pub client: String,
    pub status_opts: Vec<Opt>,
    pub priority_opts: Vec<Opt>,
    pub category_opts: Vec<Opt>,
    pub assignee_opts: Vec<Opt>,
    pub sort_opts: Vec<Opt>,
    pub bulk_assignee: Vec<Opt>,
    pub bulk_status: Vec<Opt>,
    pub bulk_priority: Vec<Opt>,
    pub range: String,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
    pub here: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub max_bulk: usize,
}

pub struct EntryView {
    pub index: usize,
    /// `customer`, `agent`, `system` or `internal`.
    pub class: &'static str,
    pub label: &'static str,
    pub author: String,
    pub when: String,
    pub iso: String,
    /// The text, in [`breakable`] pieces.
    pub text: Vec<String>,
    /// A customer's mail whose original can be shown.
    pub original: bool,
}

pub struct FileView {
    pub name: String,
    pub mime: String,
    pub size: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "ticket.html")]
pub struct TicketPage {
    pub c: Chrome,
    pub number: u64,
    pub version: u64,
    pub title: String,
    pub customer: String,
    pub address: String,
    pub client: String,
    pub participants: Vec<String>,
    pub created: String,
    pub updated: String,
    pub status_label: &'static str,
    pub status: &'static str,
    pub priority: &'static str,
    pub assignee: String,
    pub status_opts: Vec<Opt>,
    pub priority_opts: Vec<Opt>,
    pub category_opts: Vec<Opt>,
    pub assignee_opts: Vec<Opt>,
    pub resolution: String,
    pub tags: Vec<String>,
    pub entries: Vec<EntryView>,
    pub files: Vec<FileView>,
    pub presence: Vec<Mark>,
    /// The first agent answer is due then (#19; none when met or no
    /// target applies).
    pub first_response_due: Option<DueView>,
    pub resolution_due: Option<DueView>,
    /// Merged into that ticket (#19): this one is closed, its mail goes there.
    pub merged_into: Option<u64>,
    pub idem_merge: String,
    pub me_agent: Option<String>,
    pub assigned_to_me: bool,
    pub idem_reply: String,
    pub idem_note: String,
    pub idem_fields: String,
    pub draft_reply: String,
    pub draft_note: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "original.html")]
pub struct Original {
    pub c: Chrome,
    pub number: u64,
    pub index: usize,
    pub title: String,
    pub html: bool,
    pub blocked: usize,
    pub note: Option<String>,
}

pub struct MailboxRow {
    pub name: String,
    pub up: bool,
    pub state: String,
    pub since: String,
    pub last_fetch: String,
    pub error: String,
}

pub struct QuarantineRow {
    pub id: u64,
    pub reason: String,
    pub mailbox: String,
    pub at: String,
}

pub struct OutboxRow {
    pub seq: u64,
    pub ticket: u64,
    pub kind: String,
    pub state: String,
    pub to: String,
    pub subject: String,
    pub attempts: u32,
    pub next: String,
    pub error: String,
    pub waiting: bool,
}

pub struct SpamRow {
    pub id: u64,
    pub at: String,
    pub from: String,
    pub subject: String,
    /// Why it is held, with the score when there is one.
    pub why: String,
}

pub struct BlockRow {
    pub entry: String,
    /// Added at run time (and so removable here); else from `spam.block`.
    pub runtime: bool,
    /// "by agent_alice, 2026-12-07 10:30 UTC, from #12".
    pub about: String,
}

pub struct SessionRow {
    pub agent: String,
    pub name: String,
    pub count: usize,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
pub struct Admin {
    pub c: Chrome,
    pub ready: bool,
    pub problems: Vec<String>,
    pub mailboxes: Vec<MailboxRow>,
    pub outbox_waiting: u64,
    pub quarantine: Vec<QuarantineRow>,
    pub outbox: Vec<OutboxRow>,
    pub failed_shown: usize,
    pub sessions: Vec<SessionRow>,
    pub stats: Vec<(String, String)>,
    pub spam: Vec<SpamRow>,
    /// Entries held in all (the page shows the newest).
    pub spam_total: usize,
    pub blocklist: Vec<BlockRow>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "spam.html")]
pub struct SpamEntryPage {
    pub c: Chrome,
    pub id: u64,
    pub from: String,
    pub subject: String,
    pub why: String,
    pub mailbox: String,
    pub at: String,
    /// In [`breakable`] pieces.
    pub raw: Vec<String>,
    pub cut: bool,
    pub size: String,
}

#[derive(Template)]
#[template(path = "quarantine.html")]
pub struct QuarantineEntry {
    pub c: Chrome,
    pub id: u64,
    pub reason: String,
    pub mailbox: String,
    pub at: String,
    /// In [`breakable`] pieces.
    pub raw: Vec<String>,
    pub cut: bool,
    pub size: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_runs_get_break_points_and_nothing_is_lost() {
        let text = format!("short words {} end é{}", "A".repeat(200), "é".repeat(70));
        let pieces = super::breakable(&text);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| p.split_whitespace().all(|w| w.chars().count() <= super::MAX_RUN)));
        assert_eq!(super::breakable("plain text, as usual").len(), 1);
        assert_eq!(super::breakable(""), vec![String::new()]);
    }
}
