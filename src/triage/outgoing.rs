//! Composing the mail ticketd sends about a ticket: subjects, threading
//! headers, deterministic Message-IDs and template bodies. Shared by the
//! mail rules ([`super::decide`]) and the action rules ([`super::act`]).

use super::Context;
use super::identity;
use crate::config::{Agent, Config, MailboxConfig};
use crate::outbox::templates::render;
use crate::outbox::{OutAttachment, OutKind, OutMail};
use crate::record::TicketRecord;

/// Notifications carry at most this much of the customer's text; the rest
/// is on the ticket.
pub const NOTIFY_EXCERPT_BYTES: usize = 64 << 10;

/// Subject titles longer than this are cut (the ticket keeps the whole).
pub const SUBJECT_TITLE_CHARS: usize = 160;

pub struct Composer<'a> {
    pub ctx: &'a Context<'a>,
    /// Makes the Message-IDs of one change deterministic: the inbound mail's
    /// dedupe key, or the API change's ticket and version.
    pub seed: String,
    /// The mail being answered, if any (In-Reply-To of acks, notifications).
    pub inbound_id: Option<String>,
    /// When: notifications' proofs are dated.
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Composer<'_> {
    fn mailbox_for<'m>(&'m self, rec: &TicketRecord) -> &'m MailboxConfig {
        self.ctx.cfg.mailbox(&rec.mailbox).unwrap_or(self.ctx.mailbox)
    }

    pub fn subject(&self, rec: &TicketRecord) -> String {
        let title = crate::text::truncate_chars(&crate::text::clean_line(&rec.ticket.title), SUBJECT_TITLE_CHARS);
        format!("{} {title}", self.ctx.tokens.token(rec.number))
    }

    /// The root and the newest ids keep threading intact without letting
    /// the header grow without bound.
    pub fn references(&self, rec: &TicketRecord) -> Vec<String> {
        let ids = &rec.thread_ids;
        if ids.len() <= 10 {
            return ids.clone();
        }
        let mut out = vec![ids[0].clone()];
        out.extend(ids[ids.len() - 9..].iter().cloned());
        out
    }

    fn vars<'v>(&self, rec: &'v TicketRecord, extra: &[(&'v str, &'v str)]) -> Vec<(&'v str, String)> {
        let cfg = self.ctx.cfg;
        let mut v: Vec<(&str, String)> = vec![
            ("number", rec.number.to_string()),
            ("ticket_id", rec.ticket.id.clone()),
            ("title", crate::text::clean_line(&rec.ticket.title)),
            ("tag", cfg.desk.subject_tag.clone()),
            ("display_name", cfg.desk.display_name.clone()),
            ("status", rec.ticket.status.to_string()),
            ("priority", rec.ticket.priority.to_string()),
            ("category", rec.ticket.category.to_string()),
            ("customer", rec.client_address.clone()),
            ("resolution", rec.ticket.resolution.clone().unwrap_or_default()),
        ];
        v.extend(extra.iter().map(|(k, val)| (*k, (*val).to_owned())));
        v
    }

    pub fn render(&self, template: &str, rec: &TicketRecord, extra: &[(&str, &str)]) -> String {
        let vars = self.vars(rec, extra);
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        render(template, &refs)
    }

    pub fn mail_to(&self, rec: &TicketRecord, kind: OutKind, to: Vec<String>, body: String, n: usize) -> OutMail {
        let mb = self.mailbox_for(rec);
        let tag = identity::tag(&self.seed, kind.code(), n);
        let mut references = self.references(rec);
        if let Some(id) = &self.inbound_id
            && !references.contains(id)
        {
            references.push(id.clone());
        }
        OutMail {
            ticket: rec.number,
            kind,
            from_address: mb.address.clone(),
            from_name: mb.display_name.clone().unwrap_or_else(|| self.ctx.cfg.desk.display_name.clone()),
            to,
            subject: self.subject(rec),
            body,
            message_id: identity::message_id(
                self.ctx.secret,
                identity::IdKind::of(kind),
                rec.number,
                tag,
                self.now,
                "",
                &self.ctx.cfg.desk.message_id_domain,
            ),
            in_reply_to: self.inbound_id.clone(),
            references,
            attachments: Vec::new(),
            internal_lines: Vec::new(),
        }
    }

    /// Threaded into the customer's conversation, not the agent's: an
    /// answer to the customer's latest mail, `Re:` like any reply.
    fn to_customer(&self, rec: &TicketRecord, mut m: OutMail) -> OutMail {
        let domain = &self.ctx.cfg.desk.message_id_domain;
        m.in_reply_to = rec.thread_ids.iter().rev().find(|id| !identity::is_our_id(id, domain)).cloned();
        m.references = self.references(rec);
        m.subject = format!("Re: {}", m.subject);
        m
    }

    pub fn relay(&self, rec: &TicketRecord, body: String, files: Vec<OutAttachment>, n: usize) -> OutMail {
        let mut to = vec![rec.client_address.clone()];
        to.extend(rec.ticket.participants.iter().cloned());
        let mut m = self.to_customer(rec, self.mail_to(rec, OutKind::Relay, to, body, n));
        m.attachments = files;
        m
    }

    pub fn resolved_notice(&self, rec: &TicketRecord) -> OutMail {
        let body = self.render(&self.ctx.templates.resolved, rec, &[]);
        self.to_customer(rec, self.mail_to(rec, OutKind::Resolved, vec![rec.client_address.clone()], body, 1))
    }

    /// "We are waiting for you" to the customer of a ticket pending too
    /// long (#19), threaded like the resolved notice.
    pub fn pending_reminder(&self, rec: &TicketRecord, next_step: &str) -> OutMail {
        let body = self.render(&self.ctx.templates.pending_reminder, rec, &[("next_step", next_step)]);
        self.to_customer(rec, self.mail_to(rec, OutKind::Reminder, vec![rec.client_address.clone()], body, 0))
    }

    /// A response target about to pass or passed (#19): the notification
    /// of [`Composer::notify_agents`] (same recipients, same agent-only
    /// id, so the agent can act on the ticket by answering it), as its own
    /// kind, the subject saying what happened.
    pub fn escalation(&self, rec: &TicketRecord, headline: &str, message: &str) -> Vec<(String, OutMail)> {
        let mut out = self.notify_agents(rec, headline, message);
        for (_, m) in &mut out {
            m.kind = OutKind::Escalation;
            m.subject = format!("{headline}: {}", m.subject);
        }
        out
    }

    /// Notifications to agents: the assignee if there is one, else everyone,
    /// with the agent each is for. Each carries the agent-only Message-ID
    /// that proves a reply.
    pub fn notify_agents(&self, rec: &TicketRecord, event: &str, message: &str) -> Vec<(String, OutMail)> {
        let cfg = self.ctx.cfg;
        let agents = notified(cfg, rec);
        let (excerpt, cut) = excerpt(message, NOTIFY_EXCERPT_BYTES);
        let message = if cut {
            format!("{excerpt}\n\n[… the message is longer; the full text is on ticket #{}]", rec.number)
        } else {
            excerpt
        };
        let body = self.render(&self.ctx.templates.agent_notify, rec, &[("event", event), ("message", &message)]);
        // Everything the template says around the customer's words is internal.
        let frame = self.render(&self.ctx.templates.agent_notify, rec, &[("event", event), ("message", "")]);
        let internal: Vec<String> = frame
            .lines()
            .map(str::trim)
            .filter(|l| l.chars().filter(|c| c.is_alphanumeric()).count() >= 8)
            .map(str::to_owned)
            .collect();
        let mut out = Vec::new();
        for (n, agent) in agents.into_iter().enumerate() {
            let mut m = self.mail_to(rec, OutKind::AgentNotify, vec![agent.email.clone()], body.clone(), n);
            let tag = identity::tag(&self.seed, OutKind::AgentNotify.code(), n);
            m.message_id = identity::agent_message_id(
                self.ctx.secret,
                rec.number,
                &agent.id,
                tag,
                self.now,
                &cfg.desk.message_id_domain,
            );
            m.internal_lines = internal.clone();
            out.push((agent.id.clone(), m));
        }
        out
    }
}

/// The notifications held back for an agent past their hourly limit, as
/// one mail. About no single ticket (ticket 0); from the first mailbox.
pub fn digest(
    ctx: &Context<'_>,
    agent: &Agent,
    lines: &[String],
    more: u32,
    seed: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> OutMail {
    let cfg = ctx.cfg;
    let held = lines.len() as u64 + u64::from(more);
    let mut body = format!(
        "You were sent {} notifications in the last hour, the most an agent gets an hour \
(desk.notifications_per_agent_per_hour); these {held} were held back:\n\n",
        cfg.desk.notifications_per_agent_per_hour
    );
    for l in lines {
        body.push_str(&format!("  {l}\n"));
    }
    if more > 0 {
        body.push_str(&format!("  … and {more} more\n"));
    }
    body.push_str(
        "\nEach ticket has the whole story. Answer a customer from a ticket's own notification or the console.\n",
    );
    let tag = identity::tag(seed, OutKind::Digest.code(), 0);
    OutMail {
        ticket: 0,
        kind: OutKind::Digest,
        from_address: ctx.mailbox.address.clone(),
        from_name: ctx.mailbox.display_name.clone().unwrap_or_else(|| cfg.desk.display_name.clone()),
        to: vec![agent.email.clone()],
        subject: format!("[{}] {held} notifications held back", cfg.desk.subject_tag),
        body,
        message_id: identity::message_id(
            ctx.secret,
            identity::IdKind::Notice,
            0,
            tag,
            now,
            "",
            &cfg.desk.message_id_domain,
        ),
        in_reply_to: None,
        references: Vec::new(),
        attachments: Vec::new(),
        internal_lines: Vec::new(),
    }
}

/// At most `max_bytes` of `text`, cut at a line (else char) boundary; the
/// bool says whether anything was cut.
pub fn excerpt(text: &str, max_bytes: usize) -> (String, bool) {
    if text.len() <= max_bytes {
        return (text.to_owned(), false);
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = &text[..cut];
    let head = match head.rfind('\n') {
        Some(i) if i > max_bytes / 2 => &head[..i],
        _ => head,
    };
    (head.trim_end().to_owned(), true)
}

/// Who hears about `rec`: its assignee, or every agent while nobody is
/// assigned — or while the assignee is no agent of the config any more
/// (removed since), so a notice never goes to nobody.
pub fn notified<'c>(cfg: &'c Config, rec: &TicketRecord) -> Vec<&'c Agent> {
    let assignee = rec.ticket.assigned_to.as_ref().and_then(|id| cfg.agents.iter().find(|a| &a.id == id));
    match assignee {
        Some(a) => vec![a],
        None => cfg.agents.iter().collect(),
    }
}
