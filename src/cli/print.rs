//! How the CLI shows things: one line per outbox or quarantine entry, a
//! ticket as text. Everything from customer mail is cleaned of control
//! characters and bidi overrides first.

use crate::desk::views::{OutboxView, QuarantineView};
use crate::text::{clean_line, clean_text};
use crate::ticket::{ThreadType, Ticket};

pub(super) fn outbox_line(v: &OutboxView) -> String {
    clean_line(&format!(
        "{:<6} ticket {:<5} {:<13} {:<7} attempts {:<3} to {} {}",
        v.seq,
        v.ticket,
        format!("{:?}", v.kind),
        format!("{:?}", v.state).to_lowercase(),
        v.attempts,
        v.to.join(","),
        v.last_error.as_deref().map(|x| format!("({x})")).unwrap_or_default()
    ))
}

pub(super) fn quarantine_line(q: &QuarantineView) -> String {
    clean_line(&format!(
        "{:<5} {}  {}/uid {}  {}",
        q.id,
        crate::ticket::rfc3339::format(&q.at),
        q.mailbox,
        q.uid,
        q.reason
    ))
}

/// A ticket for a person: everything from outside cleaned of control
/// characters, so no mail can drive the admin's terminal.
pub(super) fn render_ticket(t: &Ticket, client: Option<&crate::desk::summary::ClientView>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let c = |x: &str| clean_line(x);
    let _ = writeln!(s, "{}  {}", t.id, c(&t.title));
    let _ = writeln!(
        s,
        "status {}  priority {}  category {}  assigned {}",
        t.status,
        t.priority,
        t.category,
        t.assigned_to.as_deref().unwrap_or("nobody")
    );
    match client {
        Some(cv) => match cv.name.as_deref().map(c).filter(|n| !n.is_empty()) {
            Some(name) => {
                let _ = writeln!(s, "customer {name} <{}> ({})", c(&cv.address), t.client);
            }
            None => {
                let _ = writeln!(s, "customer {} ({})", c(&cv.address), t.client);
            }
        },
        None => {
            let _ = writeln!(s, "customer {} (address unknown)", t.client);
        }
    }
    if !t.participants.is_empty() {
        let _ = writeln!(s, "participants {}", c(&t.participants.join(", ")));
    }
    if !t.tags.is_empty() {
        let _ = writeln!(s, "tags {}", c(&t.tags.join(", ")));
    }
    if let Some(r) = &t.resolution {
        let _ = writeln!(s, "resolution {}", c(r));
    }
    let fmt = crate::ticket::rfc3339::format;
    let _ = writeln!(s, "created {}  updated {}", fmt(&t.created_at), fmt(&t.updated_at));
    let due = [("first response due", t.first_response_due), ("resolution due", t.resolution_due)];
    let due: Vec<String> = due.iter().filter_map(|(k, v)| v.map(|v| format!("{k} {}", fmt(&v)))).collect();
    if !due.is_empty() {
        let _ = writeln!(s, "{}", due.join("  "));
    }
    if let Some(m) = &t.merged_into {
        let _ = writeln!(s, "merged into {}", c(m));
    }
    for a in &t.attachments {
        let _ = writeln!(s, "attachment {} ({} bytes, {}) {}", c(&a.filename), a.size, c(&a.mime_type), c(&a.url));
    }
    for e in &t.threads {
        let kind = match e.kind {
            ThreadType::User => "customer",
            ThreadType::Agent if e.internal => "internal note",
            ThreadType::Agent => "agent",
            ThreadType::System if e.internal => "system (internal)",
            ThreadType::System => "system",
        };
        let _ = writeln!(s, "\n--- {} · {} · {}", fmt(&e.timestamp), c(&e.author), kind);
        for line in clean_text(&e.message).lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    s
}
