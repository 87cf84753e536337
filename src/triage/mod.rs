//! The pure core: `decide(mail, snapshot, context, now) -> Decision`.
//! No I/O, no clock, no randomness: everything it needs arrives as
//! arguments, and everything it wants done leaves as [`Effect`]s that the
//! store applies in one transaction.

pub mod commands;
pub mod identity;
pub mod token;

use chrono::{DateTime, Utc};

use crate::config::{Agent, Config, MailboxConfig};
use crate::mail::{InboundMail, MailAddress, normalise_id, quote};
use crate::outbound::templates::{Templates, render};
use crate::outbound::{OutAttachment, OutKind, OutMail};
use crate::ticket::{Attachment, Status, ThreadType, Ticket, TicketRecord, client_id, ticket_id};
use commands::Command;
use token::TokenMatcher;

/// What the store knows that bears on one mail, looked up by the shell
/// before calling [`decide`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The dedupe key (Message-ID, or SHA-256 of the raw bytes) was seen in this mailbox.
    pub duplicate: bool,
    /// The ticket one of In-Reply-To/References (or a bounce's original
    /// Message-ID) belongs to.
    pub by_thread: Option<TicketRecord>,
    /// The ticket the subject token names.
    pub by_token: Option<TicketRecord>,
    /// The sender's client id, if the address is known.
    pub sender_client: Option<String>,
    pub next_client: u64,
    pub next_ticket: u64,
    /// Acknowledgements sent to this sender in the last hour.
    pub acks_last_hour: u32,
}

pub struct Context<'a> {
    pub cfg: &'a Config,
    pub mailbox: &'a MailboxConfig,
    pub secret: &'a [u8],
    pub templates: &'a Templates,
    pub tokens: &'a TokenMatcher,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    CreateClient {
        address: String,
        number: u64,
    },
    /// Create or replace the whole record.
    SaveTicket(Box<TicketRecord>),
    /// Make a Message-ID lead to a ticket.
    IndexMessageId {
        id: String,
        ticket: u64,
    },
    /// Write `mail.attachments[index]` to the content-addressed store.
    WriteAttachment {
        index: usize,
    },
    Send(Box<OutMail>),
    CountAck {
        sender: String,
    },
    MarkSentFailed {
        message_id: String,
        reason: String,
    },
    Quarantine {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Duplicate,
    /// Our own mail came back (a loop, or a copy in the support mailbox).
    OwnMail,
    Created {
        ticket: u64,
        follow_up_of: Option<u64>,
    },
    Replied {
        ticket: u64,
        agent: Option<String>,
    },
    /// An agent's commands failed; nothing changed.
    Rejected {
        ticket: u64,
    },
    Bounce {
        ticket: u64,
    },
    Quarantined,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub effects: Vec<Effect>,
}

impl Decision {
    fn only(outcome: Outcome) -> Decision {
        Decision { outcome, effects: Vec::new() }
    }

    pub fn outbox(&self) -> impl Iterator<Item = &OutMail> {
        self.effects.iter().filter_map(|e| match e {
            Effect::Send(m) => Some(m.as_ref()),
            _ => None,
        })
    }

    pub fn saved(&self) -> Option<&TicketRecord> {
        self.effects.iter().rev().find_map(|e| match e {
            Effect::SaveTicket(t) => Some(t.as_ref()),
            _ => None,
        })
    }
}

pub fn decide(mail: &InboundMail, snap: &Snapshot, ctx: &Context<'_>, now: DateTime<Utc>) -> Decision {
    if snap.duplicate {
        return Decision::only(Outcome::Duplicate);
    }
    let domain = &ctx.cfg.desk.message_id_domain;
    if mail.message_id.as_deref().is_some_and(|id| identity::is_our_id(id, domain)) {
        return Decision::only(Outcome::OwnMail);
    }
    let Some(from) = mail.from.clone() else {
        return quarantine("no usable From address");
    };
    if let Some(report) = &mail.report {
        return match &snap.by_thread {
            Some(rec) => bounce(mail, report, rec, now),
            None => quarantine("delivery report that references no mail of ours"),
        };
    }

    let d = Decider { mail, snap, ctx, now, from, effects: Vec::new() };
    let automatic = mail.auto.is_automatic() || ctx.cfg.mailboxes.iter().any(|m| m.address == d.from.address);

    let token_ok = |rec: &TicketRecord| {
        rec.client_address == d.from.address
            || rec.ticket.participants.contains(&d.from.address)
            || identity::proven_agent(mail, Some(rec.number), ctx.cfg, ctx.secret).is_some()
    };
    let target = snap.by_thread.as_ref().or(snap.by_token.as_ref().filter(|r| token_ok(r)));
    let Some(rec) = target else {
        return d.new_ticket(automatic, None);
    };
    if let Some(agent) = identity::proven_agent(mail, Some(rec.number), ctx.cfg, ctx.secret) {
        return d.agent_reply(rec, agent);
    }
    if rec.ticket.status == Status::Closed && !automatic {
        return d.new_ticket(false, Some(rec));
    }
    d.user_reply(rec, automatic)
}

fn quarantine(reason: &str) -> Decision {
    Decision { outcome: Outcome::Quarantined, effects: vec![Effect::Quarantine { reason: reason.to_owned() }] }
}

fn bounce(
    mail: &InboundMail,
    report: &crate::mail::DeliveryReport,
    rec: &TicketRecord,
    now: DateTime<Utc>,
) -> Decision {
    let mut rec = rec.clone();
    rec.ticket.push_thread("system", ThreadType::System, report.summary(), now);
    let mut effects = vec![Effect::SaveTicket(Box::new(rec.clone()))];
    if let Some(orig) = &report.original_message_id
        && report.is_failure()
    {
        effects.push(Effect::MarkSentFailed { message_id: normalise_id(orig), reason: report.summary() });
    }
    if let Some(id) = &mail.message_id {
        effects.push(Effect::IndexMessageId { id: normalise_id(id), ticket: rec.number });
    }
    Decision { outcome: Outcome::Bounce { ticket: rec.number }, effects }
}

struct Decider<'a> {
    mail: &'a InboundMail,
    snap: &'a Snapshot,
    ctx: &'a Context<'a>,
    now: DateTime<Utc>,
    from: MailAddress,
    effects: Vec<Effect>,
}

impl Decider<'_> {
    /// The sender's client id, creating the client on first contact.
    fn sender_client(&mut self) -> String {
        if let Some(id) = &self.snap.sender_client {
            return id.clone();
        }
        let number = self.snap.next_client;
        self.effects.push(Effect::CreateClient { address: self.from.address.clone(), number });
        client_id(number)
    }

    fn seed(&self) -> String {
        self.mail.dedupe_key()
    }

    fn mailbox_for<'m>(&'m self, rec: &TicketRecord) -> &'m MailboxConfig {
        self.ctx.cfg.mailbox(&rec.mailbox).unwrap_or(self.ctx.mailbox)
    }

    fn is_ours(&self, addr: &str) -> bool {
        self.ctx.cfg.mailboxes.iter().any(|m| m.address == addr)
    }

    /// To/Cc addresses that become participants: not ours, not an agent,
    /// not the client, not already listed.
    fn add_participants(&self, t: &mut Ticket, client_address: &str) {
        for addr in self.mail.to.iter().chain(&self.mail.cc) {
            if addr == client_address
                || addr == &self.from.address
                || self.is_ours(addr)
                || self.ctx.cfg.agent_by_email(addr).is_some()
                || t.participants.contains(addr)
            {
                continue;
            }
            t.participants.push(addr.clone());
        }
    }

    /// Stores attachments within the size limit; a system entry for each
    /// one over it.
    fn attach(&mut self, t: &mut Ticket) -> Vec<OutAttachment> {
        let mut out = Vec::new();
        let max = self.ctx.cfg.attachments.max_bytes;
        for (index, a) in self.mail.attachments.iter().enumerate() {
            if a.bytes.len() as u64 > max {
                t.push_thread(
                    "system",
                    ThreadType::System,
                    format!(
                        "Attachment {:?} ({} bytes) was not stored: over the {max}-byte limit.",
                        a.filename,
                        a.bytes.len()
                    ),
                    self.now,
                );
                continue;
            }
            self.effects.push(Effect::WriteAttachment { index });
            t.attachments.push(Attachment {
                filename: a.filename.clone(),
                url: attachment_url(&self.ctx.cfg.attachments.base_url, &a.sha256, &a.filename),
                size: a.bytes.len() as u64,
                mime_type: a.mime_type.clone(),
            });
            out.push(OutAttachment {
                filename: a.filename.clone(),
                mime_type: a.mime_type.clone(),
                sha256: a.sha256.clone(),
            });
        }
        out
    }

    fn index_inbound(&mut self, ticket: u64) {
        if let Some(id) = &self.mail.message_id {
            self.effects.push(Effect::IndexMessageId { id: normalise_id(id), ticket });
        }
    }

    fn send(&mut self, m: OutMail) {
        self.effects.push(Effect::IndexMessageId { id: normalise_id(&m.message_id), ticket: m.ticket });
        self.effects.push(Effect::Send(Box::new(m)));
    }

    fn subject(&self, rec: &TicketRecord) -> String {
        format!("{} {}", self.ctx.tokens.token(rec.number), rec.ticket.title)
    }

    fn references(&self, rec: &TicketRecord) -> Vec<String> {
        // The root and the newest ids keep threading intact without letting
        // the header grow without bound.
        let ids = &rec.thread_ids;
        if ids.len() <= 10 {
            return ids.clone();
        }
        let mut out = vec![ids[0].clone()];
        out.extend(ids[ids.len() - 9..].iter().cloned());
        out
    }

    fn vars<'v>(&self, rec: &'v TicketRecord, extra: &[(&'v str, &'v str)]) -> Vec<(&'v str, String)> {
        let mut v: Vec<(&str, String)> = vec![
            ("number", rec.number.to_string()),
            ("ticket_id", rec.ticket.id.clone()),
            ("title", rec.ticket.title.clone()),
            ("tag", self.ctx.cfg.desk.subject_tag.clone()),
            ("display_name", self.ctx.cfg.desk.display_name.clone()),
            ("status", rec.ticket.status.to_string()),
            ("priority", rec.ticket.priority.to_string()),
            ("category", rec.ticket.category.to_string()),
            ("customer", rec.client_address.clone()),
            ("resolution", rec.ticket.resolution.clone().unwrap_or_default()),
        ];
        v.extend(extra.iter().map(|(k, val)| (*k, (*val).to_owned())));
        v
    }

    fn render(&self, template: &str, rec: &TicketRecord, extra: &[(&str, &str)]) -> String {
        let vars = self.vars(rec, extra);
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        render(template, &refs)
    }

    fn mail_to(&self, rec: &TicketRecord, kind: OutKind, to: Vec<String>, body: String, n: usize) -> OutMail {
        let mb = self.mailbox_for(rec);
        let tag = identity::tag(&self.seed(), &format!("{kind:?}"), n);
        let kind_code = match kind {
            OutKind::Ack => "ack",
            OutKind::AgentNotify => "notify",
            OutKind::Relay => "r",
            OutKind::Resolved => "resolved",
            OutKind::CommandError => "err",
            OutKind::Receipt => "receipt",
        };
        OutMail {
            ticket: rec.number,
            kind,
            from_address: mb.address.clone(),
            from_name: mb.display_name.clone().unwrap_or_else(|| self.ctx.cfg.desk.display_name.clone()),
            to,
            subject: self.subject(rec),
            body,
            message_id: identity::message_id(rec.number, kind_code, &tag, &self.ctx.cfg.desk.message_id_domain),
            in_reply_to: self.mail.message_id.clone(),
            references: {
                let mut r = self.references(rec);
                if let Some(id) = &self.mail.message_id
                    && !r.contains(id)
                {
                    r.push(id.clone());
                }
                r
            },
            attachments: Vec::new(),
        }
    }

    /// Notifications to agents: the assignee if there is one, else everyone.
    fn notify_agents(&mut self, rec: &TicketRecord, event: &str, message: &str) {
        let agents: Vec<&Agent> = match &rec.ticket.assigned_to {
            Some(id) => self.ctx.cfg.agents.iter().filter(|a| &a.id == id).collect(),
            None => self.ctx.cfg.agents.iter().collect(),
        };
        let body = self.render(&self.ctx.templates.agent_notify, rec, &[("event", event), ("message", message)]);
        for (n, agent) in agents.into_iter().enumerate() {
            let mut m = self.mail_to(rec, OutKind::AgentNotify, vec![agent.email.clone()], body.clone(), n);
            let tag = identity::tag(&self.seed(), "notify", n);
            m.message_id = identity::agent_message_id(
                self.ctx.secret,
                rec.number,
                &agent.id,
                &tag,
                &self.ctx.cfg.desk.message_id_domain,
            );
            self.send(m);
        }
    }

    fn apply_rules(&self, t: &mut Ticket) {
        for rule in &self.ctx.cfg.rules {
            let hit = rule.subject.as_ref().is_some_and(|r| r.is_match(&self.mail.subject))
                || rule.body.as_ref().is_some_and(|r| r.is_match(&self.mail.body));
            if !hit {
                continue;
            }
            if let Some(p) = rule.priority {
                t.priority = p;
            }
            if let Some(c) = rule.category {
                t.category = c;
            }
            for tag in &rule.tags {
                if !t.tags.contains(tag) {
                    t.tags.push(tag.clone());
                }
            }
        }
    }

    fn new_ticket(mut self, automatic: bool, follow_up_of: Option<&TicketRecord>) -> Decision {
        let number = self.snap.next_ticket;
        let client = self.sender_client();
        let mb = self.ctx.mailbox;
        let mut title = self.ctx.tokens.clean_title(&self.mail.subject);
        if title.is_empty() {
            title = self.mail.body.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(no subject)").to_owned();
            title = truncate_chars(&title, 120);
        }
        let text = match follow_up_of {
            Some(_) => quote::strip_quoted(&self.mail.body),
            None => self.mail.body.clone(),
        };
        let mut t = Ticket {
            id: ticket_id(number),
            title,
            description: text.clone(),
            status: Status::Open,
            priority: mb.priority,
            category: mb.category,
            client: client.clone(),
            assigned_to: None,
            threads: Vec::new(),
            attachments: Vec::new(),
            tags: mb.tags.clone(),
            resolution: None,
            created_at: self.now,
            updated_at: self.now,
            resolved_at: None,
            number: Some(number),
            participants: Vec::new(),
        };
        if let Some(old) = follow_up_of {
            t.push_thread(
                "system",
                ThreadType::System,
                format!("Follow-up to {} (closed), opened by a new reply from {client}.", old.ticket.id),
                self.now,
            );
            t.tags.push("follow-up".into());
            t.priority = old.ticket.priority;
            t.category = old.ticket.category;
        }
        self.apply_rules(&mut t);
        t.push_thread(&client, ThreadType::User, non_empty(&text, &self.mail.attachments), self.now);
        self.attach(&mut t);
        self.add_participants(&mut t, &self.from.address.clone());
        let rec = TicketRecord {
            ticket: t,
            number,
            client_address: self.from.address.clone(),
            mailbox: self.ctx.mailbox.name.clone(),
            thread_ids: self.mail.message_id.iter().cloned().collect(),
            internal: Vec::new(),
        };
        self.index_inbound(number);
        if !automatic && self.snap.acks_last_hour < self.ctx.cfg.desk.acks_per_sender_per_hour {
            let body = self.render(&self.ctx.templates.ack, &rec, &[]);
            let ack = self.mail_to(&rec, OutKind::Ack, vec![self.from.address.clone()], body, 0);
            self.send(ack);
            self.effects.push(Effect::CountAck { sender: self.from.address.clone() });
        }
        let event = if follow_up_of.is_some() { "Follow-up ticket" } else { "New ticket" };
        self.notify_agents(&rec, event, &text);
        self.effects.insert(0, Effect::SaveTicket(Box::new(rec)));
        Decision {
            outcome: Outcome::Created { ticket: number, follow_up_of: follow_up_of.map(|r| r.number) },
            effects: self.effects,
        }
    }

    fn user_reply(mut self, rec: &TicketRecord, automatic: bool) -> Decision {
        let mut rec = rec.clone();
        let author = self.sender_client();
        let text = quote::strip_quoted(&self.mail.body);
        if !automatic && matches!(rec.ticket.status, Status::Pending | Status::Resolved) {
            let old = rec.ticket.status;
            rec.ticket.set_status(Status::Open, self.now);
            rec.ticket.push_thread(
                "system",
                ThreadType::System,
                format!("status {old} → open by {author} (customer replied)"),
                self.now,
            );
        }
        rec.ticket.push_thread(&author, ThreadType::User, non_empty(&text, &self.mail.attachments), self.now);
        self.attach(&mut rec.ticket);
        let client_address = rec.client_address.clone();
        self.add_participants(&mut rec.ticket, &client_address);
        if let Some(id) = &self.mail.message_id
            && !rec.thread_ids.contains(id)
        {
            rec.thread_ids.push(id.clone());
        }
        self.index_inbound(rec.number);
        if !automatic {
            self.notify_agents(&rec, "Customer reply", &text);
        }
        self.effects.insert(0, Effect::SaveTicket(Box::new(rec.clone())));
        Decision { outcome: Outcome::Replied { ticket: rec.number, agent: None }, effects: self.effects }
    }

    fn agent_reply(mut self, rec: &TicketRecord, agent: &Agent) -> Decision {
        let text = quote::strip_quoted(&self.mail.body);
        let parsed = commands::parse(&text, &agent.id, self.ctx.cfg);
        if !parsed.errors.is_empty() {
            let errors = parsed
                .errors
                .iter()
                .map(|e| format!("line {}: {}\n  {}", e.line, e.text, e.why))
                .collect::<Vec<_>>()
                .join("\n");
            let body = self.render(&self.ctx.templates.command_error, rec, &[("errors", &errors)]);
            let mut m = self.mail_to(rec, OutKind::CommandError, vec![agent.email.clone()], body, 0);
            m.subject = format!("Not applied: {}", m.subject);
            self.send(m);
            self.index_inbound(rec.number);
            return Decision { outcome: Outcome::Rejected { ticket: rec.number }, effects: self.effects };
        }
        let was = rec.ticket.status;
        let mut rec = rec.clone();
        let now = self.now;
        let who = agent.id.as_str();
        let mut changes = Vec::new();
        let mut status_set = false;
        let mut assigned = false;
        let mut note = false;
        for cmd in &parsed.commands {
            let t = &mut rec.ticket;
            let change = match cmd {
                Command::Status(s) if *s != t.status => {
                    let old = t.status;
                    t.set_status(*s, now);
                    status_set = true;
                    Some(format!("status {old} → {s} by {who}"))
                }
                Command::Status(_) => {
                    status_set = true;
                    None
                }
                Command::Priority(p) if *p != t.priority => {
                    let old = std::mem::replace(&mut t.priority, *p);
                    Some(format!("priority {old} → {p} by {who}"))
                }
                Command::Category(c) if *c != t.category => {
                    let old = std::mem::replace(&mut t.category, *c);
                    Some(format!("category {old} → {c} by {who}"))
                }
                Command::Assign(id) => {
                    assigned = true;
                    (t.assigned_to.as_deref() != Some(id)).then(|| {
                        let old = t.assigned_to.replace(id.clone());
                        format!("assigned {} → {id} by {who}", old.as_deref().unwrap_or("nobody"))
                    })
                }
                Command::Tag(tags) => {
                    let new: Vec<&String> = tags.iter().filter(|x| !t.tags.contains(x)).collect();
                    t.tags.extend(new.iter().map(|s| (*s).clone()));
                    (!new.is_empty()).then(|| format!("tagged {} by {who}", join(&new)))
                }
                Command::Untag(tags) => {
                    let gone: Vec<&String> = tags.iter().filter(|x| t.tags.contains(x)).collect();
                    t.tags.retain(|x| !tags.contains(x));
                    (!gone.is_empty()).then(|| format!("untagged {} by {who}", join(&gone)))
                }
                Command::Resolution(r) => {
                    t.resolution = Some(r.clone());
                    Some(format!("resolution set by {who}: {r}"))
                }
                Command::Note => {
                    note = true;
                    None
                }
                Command::Priority(_) | Command::Category(_) => None,
            };
            if let Some(c) = change {
                t.push_thread("system", ThreadType::System, c.clone(), now);
                changes.push(c);
            }
        }
        if !assigned && rec.ticket.assigned_to.is_none() {
            rec.ticket.assigned_to = Some(who.to_owned());
            let c = format!("assigned nobody → {who} (first agent reply)");
            rec.ticket.push_thread("system", ThreadType::System, c.clone(), now);
            changes.push(c);
        }
        let has_text = !parsed.rest.is_empty() || !self.mail.attachments.is_empty();
        if !status_set && !note && has_text && rec.ticket.status == Status::Open {
            rec.ticket.set_status(Status::InProgress, now);
            let c = format!("status open → in_progress by {who}");
            rec.ticket.push_thread("system", ThreadType::System, c.clone(), now);
            changes.push(c);
        }
        let mut files = Vec::new();
        if has_text {
            rec.ticket.push_thread(who, ThreadType::Agent, non_empty(&parsed.rest, &self.mail.attachments), now);
            if note {
                rec.internal.push(rec.ticket.threads.len() - 1);
            }
            files = self.attach(&mut rec.ticket);
        }
        self.index_inbound(rec.number);
        if has_text && !note {
            let mut to = vec![rec.client_address.clone()];
            to.extend(rec.ticket.participants.iter().cloned());
            let body = redact(&parsed.rest, &agent.email);
            let mut m = self.mail_to(&rec, OutKind::Relay, to, body, 0);
            // Thread into the customer's conversation, not the agent's.
            m.in_reply_to = rec.thread_ids.last().cloned();
            m.references = self.references(&rec);
            m.attachments = files;
            self.send(m);
        }
        if status_set && rec.ticket.status == Status::Resolved && was != Status::Resolved {
            let body = self.render(&self.ctx.templates.resolved, &rec, &[]);
            let mut m = self.mail_to(&rec, OutKind::Resolved, vec![rec.client_address.clone()], body, 1);
            m.in_reply_to = rec.thread_ids.last().cloned();
            m.references = self.references(&rec);
            self.send(m);
        }
        if self.ctx.cfg.desk.send_receipts && !changes.is_empty() {
            let body = self.render(&self.ctx.templates.receipt, &rec, &[("changes", &changes.join("\n"))]);
            let m = self.mail_to(&rec, OutKind::Receipt, vec![agent.email.clone()], body, 2);
            self.send(m);
        }
        self.effects.insert(0, Effect::SaveTicket(Box::new(rec.clone())));
        Decision {
            outcome: Outcome::Replied { ticket: rec.number, agent: Some(who.to_owned()) },
            effects: self.effects,
        }
    }
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn non_empty(text: &str, attachments: &[crate::mail::InboundAttachment]) -> String {
    if !text.trim().is_empty() {
        text.to_owned()
    } else if attachments.is_empty() {
        "(empty message)".into()
    } else {
        "(attachments only)".into()
    }
}

fn truncate_chars(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The agent's own address never reaches the customer.
fn redact(text: &str, agent_email: &str) -> String {
    let re = regex::RegexBuilder::new(&regex::escape(agent_email)).case_insensitive(true).build();
    match re {
        Ok(re) => re.replace_all(text, "[address removed]").into_owned(),
        Err(_) => text.to_owned(),
    }
}

/// `<base>/<sha256>/<filename>` with the filename percent-encoded.
pub fn attachment_url(base: &str, sha256: &str, filename: &str) -> String {
    let mut enc = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/{sha256}/{enc}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests;
