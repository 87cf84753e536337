//! The console's pages and forms. Pages read committed state on the
//! blocking pool; forms change the desk only through `Desk::act` (and the
//! writer's quarantine and outbox jobs), exactly as the API does, and
//! answer with a redirect — or, when a change is refused, the page again
//! with the reason and the agent's text kept.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};

use super::Console;
use super::queue::{self, Assignee, Filter, MAX_BULK, Order, PAGE};
use super::session::{AdminUser, Fields, User, safe_next};
use super::views::{self, Chrome, Opt, Page};
use crate::desk::summary::{TicketSummary, client_number};
use crate::desk::views::DueFilter;
use crate::desk::{Desk, DeskError, RetryOutcome, Upload};
use crate::record::TicketRecord;
use crate::store::ClientInfo;
use crate::ticket::{Category, Priority, Status, ThreadType};
use crate::triage::act::Action;

/// An HTML page with the console's headers and a policy for `nonce`.
pub fn html(status: StatusCode, nonce: &str, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    super::guard::secure_page(r.headers_mut(), &super::guard::page_policy(nonce));
    r
}

/// A page that says why not.
pub fn refused(status: StatusCode, text: &str) -> Response {
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::UNAUTHORIZED => "Signed out",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Changed meanwhile",
        s if s.is_client_error() => "Not done",
        _ => "Something went wrong",
    };
    let c = Chrome {
        nonce: super::guard::nonce(),
        css: super::assets::css_url(),
        js: super::assets::js_url(),
        user: None,
        page: "message",
    };
    let p = views::Message { c, title, text };
    html(status, &p.c.nonce.clone(), p.render_page())
}

pub fn bad_token() -> Response {
    refused(
        StatusCode::FORBIDDEN,
        "This form is out of date or came from elsewhere (its security token does not match). Reload the page and try again.",
    )
}

fn failed(e: impl std::fmt::Display) -> Response {
    refused(StatusCode::SERVICE_UNAVAILABLE, &format!("The desk could not answer: {e}"))
}

async fn blocking<T: Send + 'static>(
    c: &Console,
    f: impl FnOnce(&Desk) -> Result<T, DeskError> + Send + 'static,
) -> Result<T, Response> {
    let desk = c.desk().clone();
    tokio::task::spawn_blocking(move || f(&desk)).await.map_err(failed)?.map_err(failed)
}

/// "2026-12-07 10:30 UTC".
pub fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "5 min", "3 h 20 min", "2 d 4 h".
pub fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds().max(0);
    match s {
        0..60 => "just now".into(),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// A due time as shown at `now` (see [`views::DueView`]).
pub fn due_view(now: DateTime<Utc>, due: DateTime<Utc>) -> views::DueView {
    let words = |secs: i64| match ago(now, now - chrono::TimeDelta::seconds(secs)) {
        w if w == "just now" => "under a minute".to_owned(),
        w => w,
    };
    let (rel, state) = if DueFilter::Overdue.matches(Some(due), now) {
        (format!("overdue {}", words((now - due).num_seconds())), "overdue")
    } else if DueFilter::Within(DueFilter::DEFAULT_WITHIN).matches(Some(due), now) {
        (format!("in {}", words((due - now).num_seconds())), "soon")
    } else {
        (format!("in {}", words((due - now).num_seconds())), "later")
    };
    views::DueView { when: stamp(due), iso: crate::ticket::rfc3339::format(&due), rel, state }
}

/// A ticket's due time as its page shows it: while the ticket is not at
/// work its clocks stand still (the due time moves later when it is back),
/// so it is neither overdue nor soon.
fn stopped_due_view(now: DateTime<Utc>, due: DateTime<Utc>, status: Status) -> views::DueView {
    let mut v = due_view(now, due);
    if !matches!(status, Status::Open | Status::InProgress) {
        (v.rel, v.state) = (format!("paused while {}", status_label(status)), "paused");
    }
    v
}

fn size(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

fn status_label(s: Status) -> &'static str {
    match s {
        Status::Open => "open",
        Status::Pending => "pending",
        Status::InProgress => "in progress",
        Status::Resolved => "resolved",
        Status::Closed => "closed",
    }
}

fn agent_name(c: &Console, id: &str) -> String {
    c.desk()
        .config()
        .agents
        .iter()
        .find(|a| a.id == id)
        .map(|a| if a.name.is_empty() { a.id.clone() } else { a.name.clone() })
        .unwrap_or_else(|| id.to_owned())
}

fn customer_name(info: Option<&ClientInfo>, address: &str) -> String {
    info.and_then(|i| i.name.clone()).unwrap_or_else(|| address.to_owned())
}

fn with_done(url: &str, done: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}done={done}")
}

fn idem() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

pub async fn to_queue() -> Redirect {
    Redirect::permanent("/desk/")
}

// ------------------------------------------------------------------ queue

fn vocab_opts<T: Copy + PartialEq>(
    all: &[T],
    name: impl Fn(T) -> &'static str,
    any: &str,
    chosen: Option<T>,
) -> Vec<Opt> {
    let mut v = vec![Opt::new("", any, chosen.is_none())];
    v.extend(all.iter().map(|x| Opt::new(name(*x), name(*x).replace('_', " "), chosen == Some(*x))));
    v
}

fn agent_opts(c: &Console, first: Vec<Opt>, chosen: Option<&str>) -> Vec<Opt> {
    let mut v = first;
    for a in &c.desk().config().agents {
        v.push(Opt::new(&a.id, agent_name(c, &a.id), chosen == Some(a.id.as_str())));
    }
    v
}

fn done_text(code: &str) -> Option<String> {
    let (what, n) = code.split_once('-').unwrap_or((code, ""));
    Some(match what {
        "reply" => "Reply sent: it is queued for the customer.".into(),
        "note" => "Internal note added.".into(),
        "fields" => "Saved.".into(),
        "tags" => "Tags changed.".into(),
        "nothing" => "Nothing to change.".into(),
        "bulk" => format!("Changed {} ticket(s).", n.parse::<usize>().ok()?),
        "retried" => match n.parse::<u64>() {
            Ok(t) => format!("Retried: the mail is now ticket #{t}."),
            Err(_) => "Retried.".into(),
        },
        "requarantined" => format!("Retried, and quarantined again (entry {}).", n.parse::<u64>().ok()?),
        "held" => format!("Retried, and held as spam (spam entry {}).", n.parse::<u64>().ok()?),
        "dropped" => "Dropped.".into(),
        "sent" => "Queued to be sent now.".into(),
        "ended" => format!("Ended {} session(s).", n.parse::<usize>().ok()?),
        "merged" => format!("Ticket #{} was merged into this one.", n.parse::<u64>().ok()?),
        "released" => match n.parse::<u64>() {
            Ok(t) => format!("Released: the mail is now ticket #{t}."),
            Err(_) => "Released.".into(),
        },
        "blocked" => "Added to the blocklist.".into(),
        "unblocked" => "Removed from the blocklist.".into(),
        _ => return None,
    })
}

struct QueueData {
    found: queue::Found,
    rows: Vec<(TicketSummary, Option<ClientInfo>)>,
}

async fn render_queue(c: &Console, user: &User, f: Filter, error: Option<String>, status: StatusCode) -> Response {
    let me = user.agent.clone();
    let filter = f.clone();
    let data = blocking(c, move |d| {
        let found = queue::run(d, &filter, me.as_deref(), Utc::now(), PAGE)?;
        let mut rows = Vec::with_capacity(found.numbers.len());
        for n in &found.numbers {
            if let Some(s) = d.summary(*n)? {
                let info = client_number(&s.client).map(|k| d.client_info(k)).transpose()?.flatten();
                rows.push((s, info));
            }
        }
        Ok(QueueData { found, rows })
    })
    .await;
    let data = match data {
        Ok(d) => d,
        Err(r) => return r,
    };
    let now = Utc::now();
    let rows = data
        .rows
        .into_iter()
        .map(|(s, info)| views::Row {
            number: s.number,
            version: s.version,
            customer: customer_name(info.as_ref(), &s.client_address),
            address: s.client_address.clone(),
            status: s.status.as_str(),
            status_label: status_label(s.status),
            priority: s.priority.as_str(),
            assignee: s.assigned_to.as_deref().map(|a| agent_name(c, a)).unwrap_or_default(),
            waiting: s.waiting_since.filter(|_| s.waiting_on_us()).map(|w| ago(now, w)).unwrap_or_default(),
            waiting_iso: s.waiting_since.map(|w| crate::ticket::rfc3339::format(&w)).unwrap_or_default(),
            waiting_on_us: s.waiting_on_us(),
            updated: ago(now, s.updated_at),
            updated_iso: crate::ticket::rfc3339::format(&s.updated_at),
            attachments: s.attachments,
            presence: c.presence.marks(s.number, user.label()),
            due: s.due.map(|d| due_view(now, d)),
            title: s.title,
            preview: s.preview,
            tags: s.tags,
        })
        .collect::<Vec<_>>();
    let counts = &data.found.counts;
    let mut views = Vec::new();
    let here_base = f.query(None);
    let mut view = |key: &'static str, label: &'static str, count: usize, change: &dyn Fn(&mut Filter)| {
        let mut v = Filter { order: f.order, ..Filter::default() };
        change(&mut v);
        let current = v.query(None) == here_base;
        views.push(views::ViewLink { key, label, href: v.href(None), count, current });
    };
    if let Some(me) = &user.agent {
        let me = me.clone();
        view("mine", "Mine", counts.mine, &move |v| v.assignee = Some(Assignee::Agent(me.clone())));
    }
    view("unassigned", "Unassigned", counts.unassigned, &|v| v.assignee = Some(Assignee::Nobody));
    view("open", "Open", counts.open, &|v| v.statuses = vec![Status::Open, Status::InProgress]);
    view("pending", "Pending", counts.pending, &|v| v.statuses = vec![Status::Pending]);
    view("resolved", "Resolved", counts.resolved, &|v| v.statuses = vec![Status::Resolved]);
    view("closed", "Closed", counts.closed, &|v| v.statuses = vec![Status::Closed]);
    view("overdue", "Overdue", counts.overdue, &|v| {
        v.due = Some(DueFilter::Overdue);
        v.any_status = true;
    });
    view("soon", "Due soon", counts.due_soon, &|v| {
        v.due = Some(DueFilter::Within(DueFilter::DEFAULT_WITHIN));
        v.any_status = true;
    });
    let status_choice = if f.any_status {
        "any"
    } else {
        match f.statuses.as_slice() {
            [] => "",
            [Status::Open, Status::InProgress] => "working",
            [s] => s.as_str(),
            _ => "?",
        }
    };
    let mut status_opts = vec![
        Opt::new("", "Being worked on", status_choice.is_empty()),
        Opt::new("working", "Open or in progress", status_choice == "working"),
    ];
    status_opts.extend(Status::ALL.iter().map(|s| Opt::new(s.as_str(), status_label(*s), status_choice == s.as_str())));
    status_opts.push(Opt::new("any", "Any status", status_choice == "any"));
    let assignee_choice = match &f.assignee {
        None => None,
        Some(Assignee::Nobody) => Some("none"),
        Some(Assignee::Agent(a)) => Some(a.as_str()),
    };
    let assignee_opts = agent_opts(
        c,
        vec![
            Opt::new("", "Anyone", assignee_choice.is_none()),
            Opt::new("none", "Nobody", assignee_choice == Some("none")),
        ],
        assignee_choice,
    );
    let shown = rows.len();
    let range = if data.found.total == 0 {
        "No tickets.".to_owned()
    } else {
        format!("{}–{} of {}", data.found.before + 1, data.found.before + shown, data.found.total)
    };
    let mut notices: Vec<String> = f.done.as_deref().and_then(done_text).into_iter().collect();
    if !f.ignored.is_empty() {
        notices.push(format!("Ignored what this page does not understand: {}.", f.ignored.join(", ")));
    }
    let keep = vec![Opt::new("", "(unchanged)", true)];
    let p = views::Queue {
        c: user.chrome(c).page("queue"),
        views,
        rows,
        q: f.q.clone().unwrap_or_default(),
        tag: f.tag.clone().unwrap_or_default(),
        client: f.client.clone().unwrap_or_default(),
        status_opts,
        priority_opts: vocab_opts(Priority::ALL, |p| p.as_str(), "Any priority", f.priority),
        category_opts: vocab_opts(Category::ALL, |x| x.as_str(), "Any category", f.category),
        assignee_opts,
        sort_opts: Order::ALL.iter().map(|(o, n, l)| Opt::new(*n, *l, *o == f.order)).collect(),
        bulk_assignee: agent_opts(c, [keep.clone(), vec![Opt::new("none", "Nobody", false)]].concat(), None),
        bulk_status: [keep.clone(), vocab_opts(Status::ALL, |s| s.as_str(), "", None).split_off(1)].concat(),
        bulk_priority: [keep.clone(), vocab_opts(Priority::ALL, |p| p.as_str(), "", None).split_off(1)].concat(),
        range,
        next_href: data.found.next.map(|k| f.href(Some(k))),
        first_href: f.cursor.map(|_| f.href(None)),
        here: f.href(f.cursor),
        notice: (!notices.is_empty()).then(|| notices.join(" ")),
        error,
        max_bulk: MAX_BULK,
    };
    html(status, &p.c.nonce.clone(), p.render_page())
}

/// `GET /desk/`: the queue; filters in the query string.
pub async fn queue(State(c): State<Console>, user: User, RawQuery(raw): RawQuery) -> Response {
    render_queue(&c, &user, Filter::parse(raw.as_deref()), None, StatusCode::OK).await
}

/// `POST /desk/bulk`: one change to up to [`MAX_BULK`] selected tickets,
/// each through the same rules as a change on its own.
pub async fn bulk(State(c): State<Console>, user: User, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    if !user.token_ok(f.get("csrf")) {
        return bad_token();
    }
    let back = safe_next(f.get("back"));
    let back_filter = Filter::parse(back.split_once('?').map(|(_, q)| q));
    let mut numbers: Vec<u64> = f.all("t").filter_map(|t| t.parse().ok()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let again = |msg: String| render_queue(&c, &user, back_filter.clone(), Some(msg), StatusCode::BAD_REQUEST);
    if numbers.is_empty() {
        return again("Select the tickets to change first.".into()).await;
    }
    if numbers.len() > MAX_BULK {
        return again(format!("At most {MAX_BULK} tickets at once; {} were selected.", numbers.len())).await;
    }
    let mut actions = Vec::new();
    match f.get("assignee").unwrap_or("") {
        "" => {}
        "none" => actions.push(Action::Assign(None)),
        a => actions.push(Action::Assign(Some(a.to_owned()))),
    }
    if let Some(s) = f.get("status").filter(|s| !s.is_empty()) {
        match s.parse() {
            Ok(s) => actions.push(Action::Status(s)),
            Err(e) => return again(format!("{e}")).await,
        }
    }
    if let Some(p) = f.get("priority").filter(|s| !s.is_empty()) {
        match p.parse() {
            Ok(p) => actions.push(Action::Priority(p)),
            Err(e) => return again(format!("{e}")).await,
        }
    }
    if let Some(t) = f.get("tag_add").map(str::trim).filter(|s| !s.is_empty()) {
        actions.push(Action::Tag(vec![t.to_owned()]));
    }
    if let Some(t) = f.get("tag_remove").map(str::trim).filter(|s| !s.is_empty()) {
        actions.push(Action::Untag(vec![t.to_owned()]));
    }
    if actions.is_empty() {
        return again("Choose what to change: an assignee, a status, a priority or a tag.".into()).await;
    }
    // Sent together, so the writer commits them together.
    let desk = c.desk().clone();
    let actor = user.actor();
    let results = futures::future::join_all(
        numbers.iter().map(|n| desk.act(*n, actor.clone(), actions.clone(), Vec::new(), None)),
    )
    .await;
    let mut problems = Vec::new();
    for (n, r) in numbers.iter().zip(results) {
        if let Err(e) = r {
            problems.push(format!("#{n}: {e}"));
        }
    }
    let changed = numbers.len() - problems.len();
    if problems.is_empty() {
        return Redirect::to(&with_done(&back, &format!("bulk-{changed}"))).into_response();
    }
    again(format!("Changed {changed} ticket(s); not changed: {}", problems.join("; "))).await
}

// ----------------------------------------------------------------- ticket

struct Loaded {
    rec: TicketRecord,
    client: Option<ClientInfo>,
}

async fn load(c: &Console, n: u64) -> Result<Loaded, Response> {
    let found = blocking(c, move |d| {
        let Some(rec) = d.ticket(n)? else { return Ok(None) };
        let client = client_number(&rec.ticket.client).map(|k| d.client_info(k)).transpose()?.flatten();
        Ok(Some(Loaded { rec, client }))
    })
    .await?;
    found.ok_or_else(|| refused(StatusCode::NOT_FOUND, &format!("There is no ticket #{n}.")))
}

fn number(s: &str) -> Option<u64> {
    crate::ticket::parse_ticket_ref(s)
}

fn no_ticket() -> Response {
    refused(StatusCode::NOT_FOUND, "There is no such ticket (numbers look like 42).")
}

#[derive(Default)]
struct Drafts {
    reply: String,
    note: String,
}

fn render_ticket(
    c: &Console,
    user: &User,
    l: Loaded,
    notice: Option<String>,
    error: Option<String>,
    drafts: Drafts,
    status: StatusCode,
) -> Response {
    let Loaded { rec, client } = l;
    let t = &rec.ticket;
    let now = Utc::now();
    let customer = customer_name(client.as_ref(), &rec.client_address);
    let entries = t
        .threads
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let (class, label) = match (e.kind, e.internal) {
                (_, true) => ("internal", "Internal note"),
                (ThreadType::User, _) => ("customer", "Customer"),
                (ThreadType::Agent, _) => ("agent", "Reply to customer"),
                (ThreadType::System, _) => ("system", "System"),
            };
            let author = match e.kind {
                ThreadType::User if e.author == t.client => customer.clone(),
                ThreadType::User => e.author.clone(),
                ThreadType::Agent if e.author == "admin" => "Admin".into(),
                ThreadType::Agent => agent_name(c, &e.author),
                ThreadType::System => "ticketd".into(),
            };
            views::EntryView {
                index,
                class,
                label,
                author,
                when: stamp(e.timestamp),
                iso: crate::ticket::rfc3339::format(&e.timestamp),
                text: views::breakable(&e.message),
                original: e.kind == ThreadType::User,
            }
        })
        .collect();
    let files = t
        .attachments
        .iter()
        .filter_map(|a| {
            let sha = a.sha256()?;
            let name: String = form_urlencoded::byte_serialize(a.filename.as_bytes()).collect();
            Some(views::FileView {
                name: a.filename.clone(),
                mime: a.mime_type.clone(),
                size: size(a.size),
                href: format!("/desk/files/{sha}/{}", name.replace('+', "%20")),
            })
        })
        .collect();
    let assignee_opts =
        agent_opts(c, vec![Opt::new("none", "Nobody", t.assigned_to.is_none())], t.assigned_to.as_deref());
    let p = views::TicketPage {
        c: user.chrome(c).page("ticket"),
        number: rec.number,
        version: rec.version,
        title: t.title.clone(),
        customer,
        address: rec.client_address.clone(),
        client: t.client.clone(),
        participants: t.participants.clone(),
        created: stamp(t.created_at),
        updated: stamp(t.updated_at),
        status_label: status_label(t.status),
        status: t.status.as_str(),
        priority: t.priority.as_str(),
        assignee: match &t.assigned_to {
            Some(a) => format!("assigned to {}", agent_name(c, a)),
            None => "unassigned".into(),
        },
        status_opts: Status::ALL.iter().map(|s| Opt::new(s.as_str(), status_label(*s), *s == t.status)).collect(),
        priority_opts: Priority::ALL.iter().map(|p| Opt::new(p.as_str(), p.as_str(), *p == t.priority)).collect(),
        category_opts: Category::ALL
            .iter()
            .map(|x| Opt::new(x.as_str(), x.as_str().replace('_', " "), *x == t.category))
            .collect(),
        assignee_opts,
        resolution: t.resolution.clone().unwrap_or_default(),
        tags: t.tags.clone(),
        entries,
        files,
        presence: c.presence.marks(rec.number, user.label()),
        first_response_due: t.first_response_due.map(|d| stopped_due_view(now, d, t.status)),
        resolution_due: t.resolution_due.map(|d| stopped_due_view(now, d, t.status)),
        merged_into: rec.merged_into,
        idem_merge: idem(),
        assigned_to_me: user.agent.is_some() && t.assigned_to == user.agent,
        me_agent: user.agent.clone(),
        idem_reply: idem(),
        idem_note: idem(),
        idem_fields: idem(),
        draft_reply: drafts.reply,
        draft_note: drafts.note,
        notice,
        error,
    };
    html(status, &p.c.nonce.clone(), p.render_page())
}

/// `GET /desk/tickets/{number}`.
pub async fn ticket(State(c): State<Console>, user: User, Path(n): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let Some(n) = number(&n) else { return no_ticket() };
    let l = match load(&c, n).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    c.presence.set(n, &user, Some(super::presence::Doing::Viewing), &c.hub);
    let done = raw
        .as_deref()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "done").and_then(|(_, v)| done_text(&v)));
    render_ticket(&c, &user, l, done, None, Drafts::default(), StatusCode::OK)
}

/// The ticket again, saying why a change was not made, the agent's text kept.
async fn not_done(c: &Console, user: &User, n: u64, e: DeskError, drafts: Drafts) -> Response {
    let (status, msg) = match &e {
        DeskError::Conflict { current } => (
            StatusCode::CONFLICT,
            format!(
                "Not saved: this ticket changed while you were working on it (it is now at version {current}). \
                 Below is the ticket as it is now; read what changed, then send again. Your text is kept{}.",
                if drafts.reply.is_empty() && drafts.note.is_empty() { "" } else { " in the form" }
            ),
        ),
        DeskError::Invalid(_) => (StatusCode::BAD_REQUEST, format!("Not saved: {e}")),
        DeskError::NotFound(_) => return refused(StatusCode::NOT_FOUND, &format!("There is no ticket #{n}.")),
        _ => (StatusCode::SERVICE_UNAVAILABLE, format!("Not saved: {e}")),
    };
    match load(c, n).await {
        Ok(l) => render_ticket(c, user, l, None, Some(msg), drafts, status),
        Err(r) => r,
    }
}

fn version_of(v: Option<&str>) -> Option<u64> {
    v.and_then(|v| v.trim().parse().ok())
}

const MAX_TEXT: usize = crate::api::wire::MAX_JSON_BYTES;

/// `POST /desk/tickets/{number}/reply` (multipart: `csrf` first, `version`,
/// `idem`, `text`, any number of `files`): relayed to the customer exactly
/// like an email answer.
pub async fn reply(State(c): State<Console>, user: User, Path(n): Path<String>, mut m: Multipart) -> Response {
    let Some(n) = number(&n) else { return no_ticket() };
    let per_file = c.desk().config().attachments.max_bytes;
    let mut token_ok = false;
    let (mut version, mut key, mut text) = (None, None, String::new());
    let mut uploads = Vec::new();
    loop {
        let field = match m.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                let status =
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE { e.status() } else { StatusCode::BAD_REQUEST };
                return refused(status, &format!("The form could not be read: {}", e.body_text()));
            }
        };
        let name = field.name().unwrap_or("").to_owned();
        if name != "csrf" && !token_ok {
            return bad_token();
        }
        match (name.as_str(), field.file_name().map(str::to_owned)) {
            ("files", Some(filename)) => {
                let mime = field.content_type().map(str::to_owned);
                let mut bytes = Vec::new();
                let mut field = field;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            if (bytes.len() + chunk.len()) as u64 > per_file {
                                let msg = format!("{filename:?} is larger than the limit of {}.", size(per_file));
                                return not_done(
                                    &c,
                                    &user,
                                    n,
                                    DeskError::invalid("attachments", msg),
                                    Drafts { reply: text, ..Drafts::default() },
                                )
                                .await;
                            }
                            bytes.extend_from_slice(&chunk);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            return refused(
                                StatusCode::BAD_REQUEST,
                                &format!("The upload broke off: {}", e.body_text()),
                            );
                        }
                    }
                }
                // A file input left empty still sends a part without a name.
                if filename.is_empty() && bytes.is_empty() {
                    continue;
                }
                if uploads.len() == crate::api::wire::MAX_FILES {
                    let msg = format!("At most {} files per reply.", crate::api::wire::MAX_FILES);
                    return not_done(
                        &c,
                        &user,
                        n,
                        DeskError::invalid("attachments", msg),
                        Drafts { reply: text, ..Drafts::default() },
                    )
                    .await;
                }
                let mime =
                    mime.filter(|t| t.len() <= 127 && t.contains('/') && t.bytes().all(|b| b.is_ascii_graphic()));
                uploads.push(Upload { filename: crate::text::clean_line(&filename), mime_type: mime, bytes });
            }
            (name, _) => {
                let value = match field.text().await {
                    Ok(v) => v,
                    Err(e) => {
                        return refused(
                            StatusCode::BAD_REQUEST,
                            &format!("The form could not be read: {}", e.body_text()),
                        );
                    }
                };
                match name {
                    "csrf" => token_ok = user.token_ok(Some(&value)),
                    "version" => version = version_of(Some(&value)),
                    "idem" => key = Some(value),
                    "text" => text = value,
                    _ => {}
                }
            }
        }
    }
    if !token_ok {
        return bad_token();
    }
    if let Err(e) = crate::api::wire::check_text("text", &text, true, MAX_TEXT) {
        return not_done(
            &c,
            &user,
            n,
            DeskError::invalid("text", e.body.message),
            Drafts { reply: text, ..Drafts::default() },
        )
        .await;
    }
    let desk = c.desk().clone();
    let actor = user.actor();
    let draft = text.clone();
    let (c2, u2) = (c.clone(), user.clone());
    let r = c
        .once
        .run(&user, key.as_deref(), || async move {
            let (c, user) = (c2, u2);
            let actions = vec![Action::Reply { text, attachments: Vec::new() }];
            match desk.act(n, actor, actions, uploads, version).await {
                Ok(_) => Ok(format!("/desk/tickets/{n}?done=reply")),
                Err(e) => Err(not_done(&c, &user, n, e, Drafts { reply: draft, ..Drafts::default() }).await),
            }
        })
        .await;
    match r {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(r) => r,
    }
}

/// `POST /desk/tickets/{number}/note`: internal, sent to no one.
pub async fn note(State(c): State<Console>, user: User, Path(n): Path<String>, body: Bytes) -> Response {
    let Some(n) = number(&n) else { return no_ticket() };
    let f = Fields::parse(&body);
    if !user.token_ok(f.get("csrf")) {
        return bad_token();
    }
    let text = f.get("text").unwrap_or("").to_owned();
    if let Err(e) = crate::api::wire::check_text("text", &text, true, MAX_TEXT) {
        return not_done(
            &c,
            &user,
            n,
            DeskError::invalid("text", e.body.message),
            Drafts { note: text, ..Drafts::default() },
        )
        .await;
    }
    let version = version_of(f.get("version"));
    let desk = c.desk().clone();
    let actor = user.actor();
    let draft = text.clone();
    let (c2, u2) = (c.clone(), user.clone());
    let r = c
        .once
        .run(&user, f.get("idem"), || async move {
            let (c, user) = (c2, u2);
            match desk.act(n, actor, vec![Action::Note { text }], Vec::new(), version).await {
                Ok(_) => Ok(format!("/desk/tickets/{n}?done=note")),
                Err(e) => Err(not_done(&c, &user, n, e, Drafts { note: draft, ..Drafts::default() }).await),
            }
        })
        .await;
    match r {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(r) => r,
    }
}

/// One select of the fields form: an action when it names another value
/// than the ticket has, nothing when it names the same (or is absent).
fn pick<T: std::str::FromStr + PartialEq>(
    v: Option<&str>,
    now: T,
    act: fn(T) -> Action,
    actions: &mut Vec<Action>,
) -> Result<(), String>
where
    T::Err: std::fmt::Display,
{
    let Some(v) = v else { return Ok(()) };
    let x = v.parse::<T>().map_err(|e| e.to_string())?;
    if x != now {
        actions.push(act(x));
    }
    Ok(())
}

/// `POST /desk/tickets/{number}/fields`: status, priority, category,
/// assignee and resolution, as seen at `version`; only what differs is
/// changed (`only=assignee`: just that one).
pub async fn fields(State(c): State<Console>, user: User, Path(n): Path<String>, body: Bytes) -> Response {
    let Some(n) = number(&n) else { return no_ticket() };
    let f = Fields::parse(&body);
    if !user.token_ok(f.get("csrf")) {
        return bad_token();
    }
    let Some(version) = version_of(f.get("version")) else {
        return refused(StatusCode::BAD_REQUEST, "The form does not say which version of the ticket it was based on.");
    };
    let l = match load(&c, n).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if l.rec.version != version {
        return not_done(&c, &user, n, DeskError::Conflict { current: l.rec.version }, Drafts::default()).await;
    }
    let t = &l.rec.ticket;
    let only = f.get("only");
    let wanted = |name: &str| only.is_none_or(|o| o == name);
    let mut actions = Vec::new();
    let bad = |e: String| DeskError::invalid("request", e);
    let picked = [
        pick(wanted("status").then(|| f.get("status")).flatten(), t.status, Action::Status, &mut actions),
        pick(wanted("priority").then(|| f.get("priority")).flatten(), t.priority, Action::Priority, &mut actions),
        pick(wanted("category").then(|| f.get("category")).flatten(), t.category, Action::Category, &mut actions),
    ];
    if let Some(e) = picked.into_iter().find_map(Result::err) {
        return not_done(&c, &user, n, bad(e), Drafts::default()).await;
    }
    if wanted("assignee")
        && let Some(v) = f.get("assignee")
    {
        let target = (v != "none" && !v.is_empty()).then(|| v.to_owned());
        if target != t.assigned_to {
            actions.push(Action::Assign(target));
        }
    }
    if wanted("resolution")
        && let Some(v) = f.get("resolution")
    {
        let v = v.replace("\r\n", "\n");
        let r = (!v.trim().is_empty()).then_some(v);
        if r != t.resolution {
            if let Some(text) = &r
                && let Err(e) =
                    crate::api::wire::check_text("resolution", text, true, crate::triage::act::MAX_RESOLUTION_CHARS)
            {
                return not_done(&c, &user, n, bad(e.body.message), Drafts::default()).await;
            }
            actions.push(Action::Resolution(r));
        }
    }
    if actions.is_empty() {
        return Redirect::to(&format!("/desk/tickets/{n}?done=nothing")).into_response();
    }
    let desk = c.desk().clone();
    let actor = user.actor();
    let (c2, u2) = (c.clone(), user.clone());
    let r = c
        .once
        .run(&user, f.get("idem"), || async move {
            let (c, user) = (c2, u2);
            match desk.act(n, actor, actions, Vec::new(), Some(version)).await {
                Ok(_) => Ok(format!("/desk/tickets/{n}?done=fields")),
                Err(e) => Err(not_done(&c, &user, n, e, Drafts::default()).await),
            }
        })
        .await;
    match r {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(r) => r,
    }
}

/// `POST /desk/tickets/{number}/tags`: `add=` and `remove=`, as changes
/// (never the whole list), so two agents never erase each other's tags.
pub async fn tags(State(c): State<Console>, user: User, Path(n): Path<String>, body: Bytes) -> Response {
    let Some(n) = number(&n) else { return no_ticket() };
    let f = Fields::parse(&body);
    if !user.token_ok(f.get("csrf")) {
        return bad_token();
    }
    let split = |name: &str| -> Vec<String> {
        f.all(name).flat_map(|v| v.split(',')).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
    };
    let (add, remove) = (split("add"), split("remove"));
    let mut actions = Vec::new();
    if !add.is_empty() {
        actions.push(Action::Tag(add));
    }
    if !remove.is_empty() {
        actions.push(Action::Untag(remove));
    }
    if actions.is_empty() {
        return Redirect::to(&format!("/desk/tickets/{n}?done=nothing")).into_response();
    }
    match c.desk().act(n, user.actor(), actions, Vec::new(), None).await {
        Ok(_) => Redirect::to(&format!("/desk/tickets/{n}?done=tags")).into_response(),
        Err(e) => not_done(&c, &user, n, e, Drafts::default()).await,
    }
}

/// `POST /desk/tickets/{number}/merge` (`into=42`, as seen at `version`):
/// through `Desk::merge`, the writer's merge that the API's
/// `POST /api/v1/tickets/{id}/merge` uses; then the ticket that stays.
pub async fn merge(State(c): State<Console>, user: User, Path(n): Path<String>, body: Bytes) -> Response {
    let Some(n) = number(&n) else { return no_ticket() };
    let f = Fields::parse(&body);
    if !user.token_ok(f.get("csrf")) {
        return bad_token();
    }
    let Some(into) = f.get("into").map(|v| v.trim().trim_start_matches('#')).and_then(number) else {
        let e = DeskError::invalid("into", "Name the ticket to merge into by its number, such as 42.");
        return not_done(&c, &user, n, e, Drafts::default()).await;
    };
    let Some(version) = version_of(f.get("version")) else {
        return refused(StatusCode::BAD_REQUEST, "The form does not say which version of the ticket it was based on.");
    };
    let current = match load(&c, n).await {
        Ok(l) => l.rec.version,
        Err(r) => return r,
    };
    if current != version {
        return not_done(&c, &user, n, DeskError::Conflict { current }, Drafts::default()).await;
    }
    let desk = c.desk().clone();
    let actor = user.actor();
    let (c2, u2) = (c.clone(), user.clone());
    let r = c
        .once
        .run(&user, f.get("idem"), || async move {
            let (c, user) = (c2, u2);
            match desk.merge(n, into, actor).await {
                Ok(kept) => Ok(format!("/desk/tickets/{}?done=merged-{n}", kept.number)),
                Err(e) => Err(not_done(&c, &user, n, e, Drafts::default()).await),
            }
        })
        .await;
    match r {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(r) => r,
    }
}

/// `GET /desk/files/{sha256}/{filename}`: an attachment for a signed-in
/// agent, served exactly as the API serves it (a download, sandboxed).
pub async fn file(State(c): State<Console>, _user: User, Path((sha, name)): Path<(String, String)>) -> Response {
    match crate::api::routes::get_attachment(State(c.app.clone()), Ok(Path((sha, name)))).await {
        Ok(r) => r,
        Err(e) => refused(e.status, &e.body.message),
    }
}

// ------------------------------------------------------------------ admin

/// The last failed mails the admin page lists.
const FAILED_SHOWN: usize = 50;
/// The newest held spam the admin page lists.
const SPAM_SHOWN: usize = 100;

fn spam_why(e: &crate::desk::spam::SpamView) -> String {
    let reason = crate::text::clean_line(&e.reason);
    match e.score {
        Some(s) => format!("{reason} (score {s:.1})"),
        None => reason,
    }
}

pub async fn admin(State(c): State<Console>, AdminUser(user): AdminUser, RawQuery(raw): RawQuery) -> Response {
    let done = raw
        .as_deref()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "done").and_then(|(_, v)| done_text(&v)));
    render_admin(&c, &user, done, None, StatusCode::OK).await
}

async fn render_admin(
    c: &Console,
    user: &User,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let ready = crate::api::probes::readiness(&c.app).await;
    let data = blocking(c, |d| {
        let quarantine = d.quarantine()?;
        let mut outbox = d.outbox(false)?;
        let mut failed: Vec<_> =
            d.outbox(true)?.into_iter().filter(|o| o.state == crate::outbox::OutState::Failed).collect();
        failed.reverse();
        failed.truncate(FAILED_SHOWN);
        outbox.extend(failed);
        let sessions = d.sessions()?;
        let stats = d.stats()?;
        let spam = d.spam()?;
        let blocklist = d.blocklist()?;
        Ok((quarantine, outbox, sessions, stats, spam, blocklist))
    })
    .await;
    let (quarantine, outbox, sessions, stats, mut spam, blocklist) = match data {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = Utc::now();
    let mailboxes = ready
        .mailboxes
        .iter()
        .map(|(name, m)| views::MailboxRow {
            name: name.clone(),
            up: m.up,
            state: m.state.clone(),
            since: m.since.map(|t| format!("{} ago", ago(now, t))).unwrap_or_default(),
            last_fetch: m.last_fetch.map(|t| format!("{} ago", ago(now, t))).unwrap_or_else(|| "never".into()),
            error: m.last_error.clone().unwrap_or_default(),
        })
        .collect();
    let idle = chrono::Duration::from_std(c.cfg.session_idle).unwrap_or(chrono::Duration::MAX);
    let max = chrono::Duration::from_std(c.cfg.session_max).unwrap_or(chrono::Duration::MAX);
    let mut by: BTreeMap<String, (usize, DateTime<Utc>)> = BTreeMap::new();
    for (_, s) in sessions.iter().filter(|(_, s)| s.live(now, idle, max)) {
        let e = by.entry(s.agent.clone().unwrap_or_default()).or_insert((0, s.last_seen));
        e.0 += 1;
        e.1 = e.1.max(s.last_seen);
    }
    let sessions = by
        .into_iter()
        .map(|(agent, (count, last))| views::SessionRow {
            name: if agent.is_empty() { "Admin".into() } else { agent_name(c, &agent) },
            agent,
            count,
            last_seen: format!("{} ago", ago(now, last)),
        })
        .collect();
    let mut kv = vec![("size on disk".to_owned(), size(stats.size_on_disk))];
    let by_status: Vec<String> = stats.tickets_by_status.iter().map(|(k, n)| format!("{k} {n}")).collect();
    kv.push(("tickets".into(), if by_status.is_empty() { "none".into() } else { by_status.join(", ") }));
    for (kind, b) in &stats.blobs {
        kv.push((format!("{kind} blobs"), format!("{} ({})", b.count, size(b.bytes))));
    }
    kv.push((
        "outbox".into(),
        format!("{} waiting, {} sent, {} failed", stats.outbox.pending, stats.outbox.sent, stats.outbox.failed),
    ));
    for (name, n) in &stats.tables {
        kv.push((format!("table {name}"), n.to_string()));
    }
    let spam_total = spam.len();
    spam.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
    spam.truncate(SPAM_SHOWN);
    let spam = spam
        .into_iter()
        .map(|e| views::SpamRow {
            id: e.id,
            at: stamp(e.at),
            from: crate::text::clean_line(e.from.as_deref().unwrap_or("(no sender)")),
            subject: crate::text::clean_line(&e.subject),
            why: spam_why(&e),
        })
        .collect();
    let blocklist = blocklist
        .into_iter()
        .map(|b| {
            let mut about = Vec::new();
            if let Some(by) = &b.by {
                about.push(format!("by {}", if by == "admin" { "Admin".to_owned() } else { agent_name(c, by) }));
            }
            if let Some(at) = b.at {
                about.push(stamp(at));
            }
            if let Some(t) = b.ticket {
                about.push(format!("from #{t}"));
            }
            if b.source == "config" {
                about.push("spam.block in the config".into());
            }
            views::BlockRow { runtime: b.source != "config", about: about.join(", "), entry: b.entry }
        })
        .collect();
    let p = views::Admin {
        c: user.chrome(c).page("admin"),
        spam,
        spam_total,
        blocklist,
        ready: ready.ready,
        problems: ready.problems.clone(),
        mailboxes,
        outbox_waiting: ready.outbox.waiting,
        quarantine: quarantine
            .into_iter()
            .map(|q| views::QuarantineRow { id: q.id, reason: q.reason, mailbox: q.mailbox, at: stamp(q.at) })
            .collect(),
        outbox: outbox
            .into_iter()
            .map(|o| views::OutboxRow {
                seq: o.seq,
                ticket: o.ticket,
                kind: serde_json::to_value(o.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                state: serde_json::to_value(o.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                waiting: o.state == crate::outbox::OutState::Queued,
                to: o.to.join(", "),
                subject: o.subject,
                attempts: o.attempts,
                next: if o.state == crate::outbox::OutState::Queued { ago(now, o.next_attempt) } else { String::new() },
                error: o.last_error.unwrap_or_default(),
            })
            .collect(),
        failed_shown: FAILED_SHOWN,
        sessions,
        stats: kv,
        notice,
        error,
    };
    html(status, &p.c.nonce.clone(), p.render_page())
}

/// An admin action's answer: back to the admin page.
async fn admin_done(c: &Console, user: &User, r: Result<String, DeskError>) -> Response {
    match r {
        Ok(code) => Redirect::to(&format!("/desk/admin?done={code}")).into_response(),
        Err(e) => {
            let status = match e {
                DeskError::NotFound(_) => StatusCode::NOT_FOUND,
                DeskError::Invalid(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            render_admin(c, user, None, Some(format!("Not done: {e}")), status).await
        }
    }
}

fn admin_form(user: &User, body: &Bytes) -> Option<Fields> {
    let f = Fields::parse(body);
    user.token_ok(f.get("csrf")).then_some(f)
}

fn no_entry() -> Response {
    refused(StatusCode::NOT_FOUND, "There is no such entry.")
}

/// The admin's action on one numbered entry (quarantine, outbox, spam):
/// the form's token checked, the number read, `act` done through the desk
/// as the admin; the answer goes back to the admin page with its `done=`
/// code, or says why it was not done.
async fn entry_action(
    c: Console,
    user: User,
    id: &str,
    body: &Bytes,
    act: impl AsyncFnOnce(crate::desk::Desk, u64, crate::desk::ActorRef) -> Result<String, DeskError>,
) -> Response {
    if admin_form(&user, body).is_none() {
        return bad_token();
    }
    let Ok(id) = id.parse::<u64>() else { return no_entry() };
    let r = act(c.desk().clone(), id, user.actor()).await;
    admin_done(&c, &user, r).await
}

/// The first 256 KiB of a held mail as its admin page shows them: the text
/// (control characters cleaned) in pieces that may break, whether it was
/// cut, and the whole size.
fn raw_shown(raw: &[u8]) -> (Vec<String>, bool, String) {
    const SHOWN: usize = 256 << 10;
    let text = crate::text::clean_text(&String::from_utf8_lossy(&raw[..raw.len().min(SHOWN)]));
    (views::breakable(&text), raw.len() > SHOWN, size(raw.len() as u64))
}

pub async fn quarantine_entry(
    State(c): State<Console>,
    AdminUser(user): AdminUser,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else { return no_entry() };
    let found = match blocking(&c, move |d| d.quarantine_entry(id)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some((q, raw)) = found else {
        return refused(StatusCode::NOT_FOUND, &format!("There is no quarantine entry {id}."));
    };
    let (raw, cut, size) = raw_shown(&raw);
    let p = views::QuarantineEntry {
        c: user.chrome(&c).page("admin"),
        id: q.id,
        reason: q.reason,
        mailbox: q.mailbox,
        at: stamp(q.at),
        raw,
        cut,
        size,
    };
    html(StatusCode::OK, &p.c.nonce.clone(), p.render_page())
}

/// The `done=` code of a mail taken in again (a quarantine retry, a spam
/// release): where it went.
fn outcome_code(verb: &str, o: RetryOutcome) -> String {
    match o {
        RetryOutcome::Ingested { ticket: Some(t) } => format!("{verb}-{t}"),
        RetryOutcome::Ingested { ticket: None } => verb.to_owned(),
        RetryOutcome::Quarantined { id, .. } => format!("requarantined-{id}"),
        RetryOutcome::Held { id, .. } => format!("held-{id}"),
    }
}

pub async fn quarantine_retry(
    State(c): State<Console>,
    AdminUser(user): AdminUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    entry_action(c, user, &id, &body, async |d, n, by| {
        d.quarantine_retry(n, by).await.map(|o| outcome_code("retried", o))
    })
    .await
}

pub async fn quarantine_drop(
    State(c): State<Console>,
    AdminUser(user): AdminUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    entry_action(c, user, &id, &body, async |d, n, by| d.quarantine_drop(n, by).await.map(|()| "dropped".to_owned()))
        .await
}

pub async fn outbox_retry(
    State(c): State<Console>,
    AdminUser(user): AdminUser,
    Path(seq): Path<String>,
    body: Bytes,
) -> Response {
    entry_action(c, user, &seq, &body, async |d, n, by| d.outbox_retry(n, by).await.map(|()| "sent".to_owned())).await
}

pub async fn outbox_drop(
    State(c): State<Console>,
    AdminUser(user): AdminUser,
    Path(seq): Path<String>,
    body: Bytes,
) -> Response {
    entry_action(c, user, &seq, &body, async |d, n, by| d.outbox_drop(n, by).await.map(|()| "dropped".to_owned())).await
}

/// `POST /desk/admin/sessions/end` (`agent=`): signs an agent out everywhere.
pub async fn end_sessions(State(c): State<Console>, AdminUser(user): AdminUser, body: Bytes) -> Response {
    let Some(f) = admin_form(&user, &body) else { return bad_token() };
    let Some(agent) = f.get("agent").filter(|a| c.desk().config().agents.iter().any(|x| x.id == *a)) else {
        return render_admin(&c, &user, None, Some("Name a configured agent.".into()), StatusCode::BAD_REQUEST).await;
    };
    let r = c
        .desk()
        .session_op(crate::desk::sessions::SessionOp::EndAgent { agent: agent.to_owned() })
        .await
        .map(|n| format!("ended-{n}"));
    admin_done(&c, &user, r).await
}

/// A held mail's page: who sent it, why it is held, its raw text.
pub async fn spam_entry(State(c): State<Console>, AdminUser(user): AdminUser, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else { return no_entry() };
    let found = match blocking(&c, move |d| d.spam_entry(id)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some((e, raw)) = found else {
        return refused(StatusCode::NOT_FOUND, &format!("There is no spam entry {id}."));
    };
    let (raw, cut, size) = raw_shown(&raw);
    let p = views::SpamEntryPage {
        c: user.chrome(&c).page("admin"),
        id: e.id,
        from: crate::text::clean_line(e.from.as_deref().unwrap_or("(no sender)")),
        subject: crate::text::clean_line(&e.subject),
        why: spam_why(&e),
        mailbox: e.mailbox.clone(),
        at: stamp(e.at),
        raw,
        cut,
        size,
    };
    html(StatusCode::OK, &p.c.nonce.clone(), p.render_page())
}

/// Releases a held mail: it is taken in as if it had just arrived
/// (`Desk::spam_release`, as `POST /api/v1/spam/{id}/release`).
pub async fn spam_release(
    State(c): State<Console>,
    AdminUser(user): AdminUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    entry_action(c, user, &id, &body, async |d, n, by| d.spam_release(n, by).await.map(|o| outcome_code("released", o)))
        .await
}

pub async fn spam_drop(
    State(c): State<Console>,
    AdminUser(user): AdminUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    entry_action(c, user, &id, &body, async |d, n, by| d.spam_drop(n, by).await.map(|()| "dropped".to_owned())).await
}

/// `POST /desk/admin/blocklist` (`entry=`) adds, `…/blocklist/remove`
/// removes: through `Desk::block`, as the API and the CLI do.
pub async fn block_add(State(c): State<Console>, AdminUser(user): AdminUser, body: Bytes) -> Response {
    block_change(c, user, body, true).await
}

pub async fn block_remove(State(c): State<Console>, AdminUser(user): AdminUser, body: Bytes) -> Response {
    block_change(c, user, body, false).await
}

async fn block_change(c: Console, user: User, body: Bytes, add: bool) -> Response {
    let Some(f) = admin_form(&user, &body) else { return bad_token() };
    let entry = match crate::spam::BlockEntry::parse(f.get("entry").unwrap_or("").trim()) {
        Ok(e) => e,
        Err(e) => {
            let msg = format!("Not done: {}", crate::text::clean_line(&e.to_string()));
            return render_admin(&c, &user, None, Some(msg), StatusCode::BAD_REQUEST).await;
        }
    };
    let r =
        c.desk().block(entry, add, user.actor()).await.map(|_| if add { "blocked" } else { "unblocked" }.to_owned());
    admin_done(&c, &user, r).await
}

/// `GET /desk/tickets/{number}/version`: `{"version": 7}`, so an open page
/// learns that it is stale without reading the whole ticket again.
pub async fn version(State(c): State<Console>, _user: User, Path(n): Path<String>) -> Response {
    let Some(n) = number(&n) else { return no_ticket() };
    match blocking(&c, move |d| d.summary(n)).await {
        Ok(Some(s)) => {
            let mut r = axum::Json(serde_json::json!({ "version": s.version })).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Ok(None) => no_ticket(),
        Err(r) => r,
    }
}
