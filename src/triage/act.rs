//! `act()`: the one set of rules for changing a ticket, whoever asks — an
//! agent's `#commands` by email, an API `PATCH`, a CLI `tickets update`, a
//! reply or note from any channel, a delivery outcome reported by the
//! sender. Each change gets the same `system` entry wording, the same
//! lifecycle (`resolvedAt`, first-reply assignment, open → in_progress) and
//! the same customer notices. Pure: the record, the actor, the actions and
//! the time go in; the new record and the mail to send come out.

use chrono::{DateTime, Utc};

use super::outgoing::Composer;
use super::{Decision, Effect, Outcome};
use crate::config::Agent;
use crate::outbox::{OutAttachment, OutMail};
use crate::record::TicketRecord;
use crate::ticket::{Attachment, Category, Priority, Status, ThreadType};

pub use crate::ticket::{MAX_TAG_LEN, MAX_TAGS};
/// A resolution is a summary, not a document.
pub const MAX_RESOLUTION_CHARS: usize = 4000;

#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// A configured agent (proven by mail, or by their own API token).
    Agent(&'a Agent),
    /// The admin token or the local CLI.
    Admin,
    /// ticketd itself (delivery outcomes, quarantine).
    System,
}

impl Actor<'_> {
    pub fn label(&self) -> &str {
        match self {
            Actor::Agent(a) => &a.id,
            Actor::Admin => "admin",
            Actor::System => "system",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Status(Status),
    Priority(Priority),
    Category(Category),
    /// `None` unassigns.
    Assign(Option<String>),
    Tag(Vec<String>),
    Untag(Vec<String>),
    /// The full tag list (the API's `tags`): the difference is applied.
    SetTags(Vec<String>),
    /// `None` clears it.
    Resolution(Option<String>),
    /// An answer to the customer: stored as an `agent` entry and relayed to
    /// the client and participants.
    Reply {
        text: String,
        attachments: Vec<(Attachment, OutAttachment)>,
    },
    /// Internal: stored, marked internal, sent to no one.
    Note {
        text: String,
    },
    /// A `system` entry (e.g. "Mail to x could not be delivered: …").
    System(String),
    /// Block the ticket's sender (`#block`, the API): their later mail is
    /// held at the door; the ticket is closed and tagged `spam`.
    BlockSender,
}

/// Why an action was refused; `field` names the API field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ActError {
    pub field: &'static str,
    pub message: String,
}

/// What [`act`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acted {
    pub rec: TicketRecord,
    /// The system entries written, in order ("status open → resolved by …").
    pub changes: Vec<String>,
    /// Mail to queue (relay, resolved notice).
    pub mails: Vec<OutMail>,
    /// Blocklist entries to add, and by whom.
    pub blocks: Vec<(crate::spam::BlockEntry, String)>,
}

/// Text from a person (a reply, a note, a resolution): any length up to
/// `max`, line breaks and tabs allowed where `multiline`, and no other
/// control or bidi-format character — refused, named, on every channel.
fn check_text(field: &'static str, s: &str, multiline: bool, max_chars: usize) -> Result<(), ActError> {
    let bad = s
        .chars()
        .find(|c| crate::text::is_format(*c) || (c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'))));
    if let Some(c) = bad {
        return Err(ActError { field, message: format!("{field} contains the control character U+{:04X}", c as u32) });
    }
    if s.chars().count() > max_chars {
        return Err(ActError { field, message: format!("{field} is longer than {max_chars} characters") });
    }
    Ok(())
}

/// A reply or a note: a generous bound (a mail body is cut far below it).
pub const MAX_TEXT_CHARS: usize = 1 << 20;

fn valid_tag(t: &str) -> Result<String, ActError> {
    crate::ticket::parse_tag(t).map_err(|e| ActError { field: "tags", message: e.0 })
}

fn join(v: &[String]) -> String {
    v.join(", ")
}

impl Acted {
    /// The decision to record: the ticket saved, the mail queued and its
    /// Message-IDs made to lead back to the ticket — the same effects
    /// `decide` hands the desk for mail.
    pub fn into_decision(self) -> Decision {
        let ticket = self.rec.number;
        let mut effects = Vec::with_capacity(1 + 2 * self.mails.len());
        effects.push(Effect::SaveTicket(Box::new(self.rec)));
        for m in self.mails {
            effects.push(Effect::IndexMessageId { id: crate::mail::normalise_id(&m.message_id), ticket });
            effects.push(Effect::Send(Box::new(m)));
        }
        for (entry, by) in self.blocks {
            effects.push(Effect::Block { entry, by, ticket: Some(ticket) });
        }
        Decision { outcome: Outcome::Acted { ticket, changes: self.changes }, effects }
    }
}

/// Applies `actions` in order and returns what to record, as
/// [`super::decide`] does for mail. Any invalid action refuses the whole
/// call (nothing changes) with every problem listed.
pub fn act(
    rec: &TicketRecord,
    actor: Actor<'_>,
    actions: &[Action],
    out: &Composer<'_>,
    now: DateTime<Utc>,
) -> Result<Decision, Vec<ActError>> {
    let mut d = changes(rec, actor, actions, out, now).map(Acted::into_decision)?;
    super::timers::settle_decision(&mut d, &[rec], &out.ctx.cfg.sla, now);
    Ok(d)
}

/// [`act`], with its parts apart (an agent's mail reply builds on them).
pub(super) fn changes(
    rec: &TicketRecord,
    actor: Actor<'_>,
    actions: &[Action],
    out: &Composer<'_>,
    now: DateTime<Utc>,
) -> Result<Acted, Vec<ActError>> {
    let cfg = out.ctx.cfg;
    let was = rec.ticket.status;
    let rec_merged = rec.merged_into;
    let mut rec = rec.clone();
    let who = actor.label().to_owned();
    let mut changes: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    let mut status_set = false;
    let mut assigned = false;
    let mut replies: Vec<(String, Vec<OutAttachment>)> = Vec::new();
    let mut blocks = Vec::new();
    for action in actions {
        let t = &mut rec.ticket;
        let mut change = |c: String, t: &mut crate::ticket::Ticket| {
            t.push_thread("system", ThreadType::System, c.clone(), now);
            changes.push(c);
        };
        match action {
            Action::Status(s) if *s != Status::Closed && rec_merged.is_some() => {
                let into = rec_merged.unwrap_or_default();
                errors.push(ActError {
                    field: "status",
                    message: format!("this ticket was merged into #{into}: work on #{into} (a merge is not undone)"),
                });
            }
            Action::Status(s) => {
                status_set = true;
                if *s != t.status {
                    let old = t.status;
                    t.set_status(*s, now);
                    change(format!("status {old} → {s} by {who}"), t);
                }
            }
            Action::Priority(p) if *p != t.priority => {
                let old = std::mem::replace(&mut t.priority, *p);
                change(format!("priority {old} → {p} by {who}"), t);
            }
            Action::Category(c) if *c != t.category => {
                let old = std::mem::replace(&mut t.category, *c);
                change(format!("category {old} → {c} by {who}"), t);
            }
            Action::Priority(_) | Action::Category(_) => {}
            Action::Assign(target) => {
                assigned = true;
                if let Some(id) = target
                    && !cfg.agents.iter().any(|a| &a.id == id)
                {
                    errors.push(ActError {
                        field: "assignedTo",
                        message: format!(
                            "unknown agent {id:?}: expected one of {}",
                            cfg.agents.iter().map(|a| a.id.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    });
                    continue;
                }
                if t.assigned_to != *target {
                    let old = std::mem::replace(&mut t.assigned_to, target.clone());
                    let c = format!(
                        "assigned {} → {} by {who}",
                        old.as_deref().unwrap_or("nobody"),
                        target.as_deref().unwrap_or("nobody")
                    );
                    change(c, t);
                }
            }
            Action::Tag(tags) | Action::Untag(tags) | Action::SetTags(tags) => {
                let mut clean = Vec::new();
                for tag in tags {
                    match valid_tag(tag) {
                        Ok(x) if !clean.contains(&x) => clean.push(x),
                        Ok(_) => {}
                        Err(e) => errors.push(e),
                    }
                }
                let (add, remove): (Vec<String>, Vec<String>) = match action {
                    Action::Tag(_) => (clean.iter().filter(|x| !t.tags.contains(x)).cloned().collect(), Vec::new()),
                    Action::Untag(_) => (Vec::new(), clean.iter().filter(|x| t.tags.contains(x)).cloned().collect()),
                    _ => (
                        clean.iter().filter(|x| !t.tags.contains(x)).cloned().collect(),
                        t.tags.iter().filter(|x| !clean.contains(x)).cloned().collect(),
                    ),
                };
                if t.tags.len() + add.len() - remove.len() > MAX_TAGS {
                    errors.push(ActError { field: "tags", message: format!("a ticket has at most {MAX_TAGS} tags") });
                    continue;
                }
                t.tags.retain(|x| !remove.contains(x));
                t.tags.extend(add.iter().cloned());
                if !add.is_empty() {
                    change(format!("tagged {} by {who}", join(&add)), t);
                }
                if !remove.is_empty() {
                    change(format!("untagged {} by {who}", join(&remove)), t);
                }
            }
            Action::Resolution(r) => {
                if let Some(Err(e)) = r.as_deref().map(|r| check_text("resolution", r, true, MAX_RESOLUTION_CHARS)) {
                    errors.push(e);
                    continue;
                }
                let r = r.as_deref().map(crate::text::clean_text).filter(|r| !r.trim().is_empty());
                if t.resolution != r {
                    t.resolution = r.clone();
                    match r {
                        Some(r) => change(format!("resolution set by {who}: {r}"), t),
                        None => change(format!("resolution cleared by {who}"), t),
                    }
                }
            }
            Action::Reply { text, attachments } => {
                if let Err(e) = check_text("text", text, true, MAX_TEXT_CHARS) {
                    errors.push(e);
                    continue;
                }
                if text.trim().is_empty() && attachments.is_empty() {
                    errors.push(ActError { field: "text", message: "a reply needs text or attachments".into() });
                    continue;
                }
                let body = match actor {
                    // The agent's own address never reaches the customer.
                    Actor::Agent(a) => redact(text, &a.email),
                    _ => text.clone(),
                };
                t.attachments.extend(attachments.iter().map(|(a, _)| a.clone()));
                replies.push((body, attachments.iter().map(|(_, o)| o.clone()).collect()));
            }
            Action::Note { text } => {
                if let Err(e) = check_text("text", text, true, MAX_TEXT_CHARS) {
                    errors.push(e);
                    continue;
                }
                if text.trim().is_empty() {
                    errors.push(ActError { field: "text", message: "a note needs text".into() });
                    continue;
                }
                t.push_internal(&who, ThreadType::Agent, text.clone(), now);
            }
            Action::System(text) => t.push_thread("system", ThreadType::System, text.clone(), now),
            Action::BlockSender => {
                let address = rec.client_address.clone();
                let ours = cfg.mailboxes.iter().any(|m| m.address.eq_ignore_ascii_case(&address));
                if ours || cfg.agent_by_email(&address).is_some() {
                    let whose = if ours { "a support address" } else { "an agent's address" };
                    errors.push(ActError { field: "block", message: format!("{address} is {whose}: not blocked") });
                    continue;
                }
                let entry = match crate::spam::BlockEntry::parse(&address) {
                    Ok(e) => e,
                    Err(e) => {
                        errors.push(ActError { field: "block", message: e.to_string() });
                        continue;
                    }
                };
                status_set = true;
                if t.status != Status::Closed {
                    let old = t.status;
                    t.set_status(Status::Closed, now);
                    change(format!("status {old} → closed by {who}"), t);
                }
                if !t.tags.iter().any(|x| x == "spam") {
                    if t.tags.len() >= MAX_TAGS {
                        errors
                            .push(ActError { field: "tags", message: format!("a ticket has at most {MAX_TAGS} tags") });
                        continue;
                    }
                    t.tags.push("spam".into());
                    change(format!("tagged spam by {who}"), t);
                }
                change(format!("sender {entry} blocked by {who}: their mail is held as spam from now on"), t);
                blocks.push((entry, who.clone()));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !replies.is_empty() {
        if let Actor::Agent(a) = actor
            && !assigned
            && rec.ticket.assigned_to.is_none()
        {
            rec.ticket.assigned_to = Some(a.id.clone());
            let c = format!("assigned nobody → {} (first agent reply)", a.id);
            rec.ticket.push_thread("system", ThreadType::System, c.clone(), now);
            changes.push(c);
        }
        if !status_set && rec.ticket.status == Status::Open {
            rec.ticket.set_status(Status::InProgress, now);
            let c = format!("status open → in_progress by {who}");
            rec.ticket.push_thread("system", ThreadType::System, c.clone(), now);
            changes.push(c);
        }
    }
    // The answer comes after the changes it brought about, as a reader
    // expects: "assigned …", "status open → in_progress", then the text.
    let mut mails = Vec::new();
    for (i, (body, files)) in replies.into_iter().enumerate() {
        let shown = if body.trim().is_empty() { "(attachments only)".to_owned() } else { body.clone() };
        rec.ticket.push_thread(&who, ThreadType::Agent, shown, now);
        mails.push(out.relay(&rec, body, files, i));
    }
    if status_set && rec.ticket.status == Status::Resolved && was != Status::Resolved {
        mails.push(out.resolved_notice(&rec));
    }
    for m in &mails {
        super::push_thread_id(&mut rec, &m.message_id);
    }
    Ok(Acted { rec, changes, mails, blocks })
}

/// Removes `agent_email` wherever it appears in `text`.
pub fn redact(text: &str, agent_email: &str) -> String {
    let re = regex::RegexBuilder::new(&regex::escape(agent_email)).case_insensitive(true).build();
    match re {
        Ok(re) => re.replace_all(text, "[address removed]").into_owned(),
        Err(_) => text.to_owned(),
    }
}
