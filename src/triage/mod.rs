//! The pure core: `decide(mail, snapshot, context, now) -> Decision` for
//! mail, [`act::act`] for changes to a ticket from any channel. No I/O, no
//! clock, no randomness: everything they need arrives as arguments, and
//! everything they want done leaves as [`Effect`]s that the desk's writer
//! commits together.

pub mod act;
pub mod commands;
pub mod door;
pub mod identity;
pub mod merge;
pub mod outgoing;
pub mod thread;
pub mod timers;
pub mod token;

use chrono::{DateTime, Utc};

use crate::config::{Agent, Config, MailboxConfig};
use crate::mail::{InboundMail, MailAddress, normalise_id, parent, quote};
use crate::outbox::templates::Templates;
use crate::outbox::{OutAttachment, OutKind, OutMail};
use crate::record::TicketRecord;
use crate::ticket::{Attachment, Status, ThreadType, Ticket, client_id, ticket_id};
use act::{Action, Actor};
use commands::Command;
use outgoing::Composer;
use token::TokenMatcher;

/// Most participants one ticket keeps (To/Cc of its mail); more are named
/// in a system entry, not stored.
pub const MAX_PARTICIPANTS: usize = 100;
/// Titles longer than this are cut; the description keeps the whole subject.
pub const MAX_TITLE_CHARS: usize = 200;

/// What the store knows that bears on one mail, looked up by the shell
/// before calling [`decide`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The dedupe key was seen before (this mail was ingested already).
    pub duplicate: bool,
    /// The key this mail is (or will be) recorded under: its Message-ID,
    /// told apart by content when another mail reused that id. Seeds the
    /// Message-IDs of the mail ticketd sends about it, so two different
    /// mails never give two notifications one Message-ID.
    pub dedupe_key: String,
    /// The ticket one of In-Reply-To/References (or a bounce's original
    /// Message-ID) belongs to.
    pub by_thread: Option<TicketRecord>,
    /// The ticket the subject token names.
    pub by_token: Option<TicketRecord>,
    /// The sender's client id, if the address is known.
    pub sender_client: Option<String>,
    pub next_client: u64,
    pub next_ticket: u64,
    /// Acknowledgements sent to this sender (without `+detail`) in the last hour.
    pub acks_last_hour: u32,
    /// Agent notifications about the ticket this mail joins, last hour.
    pub notifies_last_hour: u32,
    /// Notifications each agent got in the last hour (all tickets).
    pub agent_notifies_last_hour: Vec<(String, u32)>,
    /// The Message-ID is one of ours: a mail ticketd generated came back.
    pub own_mail: bool,
    /// The mail of ours this one answers (In-Reply-To, else the newest of
    /// References that is ours): its exact text is cut out of the reply.
    pub parent_mail: Option<Box<OutMail>>,
    /// The mail of ours a delivery report says failed.
    pub bounced_mail: Option<Box<OutMail>>,
    /// What rspamd said when ticketd asked it (`spam.rspamd_url`); None:
    /// not asked.
    pub scan: Option<crate::spam::ScanResult>,
    /// The blocklist entry (config or run time) that names the sender.
    pub blocked: Option<crate::spam::BlockEntry>,
    /// A person released this mail from the spam list: the door lets it in.
    pub released: bool,
    /// Tickets merged away that the lookup passed through to reach
    /// `by_thread`/`by_token` (their survivor): an agent's proof naming one
    /// of them counts for the survivor.
    pub merged_via: Vec<u64>,
    /// The ticket an agent's `#merge N` names, as stored (not followed).
    pub merge_into: Option<Box<TicketRecord>>,
    /// Where `merge_into` points through earlier merges, in order.
    pub merge_chain: Vec<u64>,
}

pub struct Context<'a> {
    pub cfg: &'a Config,
    pub mailbox: &'a MailboxConfig,
    pub secret: &'a [u8],
    pub templates: &'a Templates,
    pub tokens: &'a TokenMatcher,
    /// History, not live mail (`initial = "import"`, `ticketd import`):
    /// tickets get their original dates and the tag `imported`; nobody is
    /// acknowledged or notified.
    pub quiet: bool,
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
    /// One more agent notification about this ticket.
    CountNotify {
        ticket: u64,
    },
    /// One more notification to this agent.
    CountAgentNotify {
        agent: String,
    },
    /// The agent is past their hourly limit: this notification waits for
    /// their digest, as one line.
    HoldForDigest {
        agent: String,
        line: String,
    },
    /// A delivery report: our mail `message_id` failed for `recipient`.
    MarkSentFailed {
        message_id: String,
        recipient: String,
        reason: String,
    },
    Quarantine {
        reason: String,
    },
    /// Something an operator should know (logged at WARN).
    Warn(String),
    /// Keep the mail for review instead of the desk (see [`door`]).
    Hold(Box<door::Hold>),
    /// Put an entry on the run-time blocklist.
    Block {
        entry: crate::spam::BlockEntry,
        by: String,
        ticket: Option<u64>,
    },
    /// An acknowledgement the mail would have had was not sent (counted).
    AckRefused(door::AckRefusal),
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
    /// A change from the API, the CLI or the system (not from mail), with
    /// the system entries it wrote.
    Acted {
        ticket: u64,
        changes: Vec<String>,
    },
    /// Spam or a blocked sender, kept for review (see [`door`]).
    Held {
        source: door::HoldSource,
    },
}

impl Outcome {
    /// A stable name for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Duplicate => "duplicate",
            Outcome::OwnMail => "own_mail",
            Outcome::Created { .. } => "created",
            Outcome::Replied { .. } => "replied",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Bounce { .. } => "bounce",
            Outcome::Quarantined => "quarantined",
            Outcome::Acted { .. } => "acted",
            Outcome::Held { .. } => "held",
        }
    }
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

    /// Kept raw with the reason, to be looked at (and retried) by a person:
    /// the one way a quarantine is decided.
    pub fn quarantine(reason: impl Into<String>) -> Decision {
        Decision { outcome: Outcome::Quarantined, effects: vec![Effect::Quarantine { reason: reason.into() }] }
    }

    /// A copy of a mail already handled: nothing to do beyond moving on.
    pub fn duplicate() -> Decision {
        Decision::only(Outcome::Duplicate)
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

/// The key acknowledgements are counted under: `customer+7@x` and
/// `customer@x` are one person.
pub fn ack_key(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{}@{domain}", local.split('+').next().unwrap_or(local)),
        None => address.to_owned(),
    }
}

/// Notification-limit key of a ticket (kept beside the ack counts).
pub fn notify_key(ticket: u64) -> String {
    format!("notify:{ticket}")
}

/// Notification-limit key of an agent.
pub fn agent_notify_key(agent: &str) -> String {
    format!("agent:{agent}")
}

pub fn decide(mail: &InboundMail, snap: &Snapshot, ctx: &Context<'_>, now: DateTime<Utc>) -> Decision {
    let mut d = decide_mail(mail, snap, ctx, now);
    let known: Vec<&TicketRecord> =
        [snap.by_thread.as_ref(), snap.by_token.as_ref(), snap.merge_into.as_deref()].into_iter().flatten().collect();
    timers::settle_decision(&mut d, &known, &ctx.cfg.sla, now);
    d
}

/// An agent proven for `rec`, or for a ticket merged into it on the way
/// there (their notifications name the old ticket).
fn proven_for<'c>(
    mail: &InboundMail,
    rec: &TicketRecord,
    snap: &Snapshot,
    ctx: &Context<'c>,
    now: DateTime<Utc>,
) -> Option<(&'c Agent, identity::Proof)> {
    std::iter::once(rec.number)
        .chain(snap.merged_via.iter().copied())
        .find_map(|n| identity::proven_agent(mail, Some(n), ctx.cfg, ctx.secret, now))
}

fn decide_mail(mail: &InboundMail, snap: &Snapshot, ctx: &Context<'_>, now: DateTime<Utc>) -> Decision {
    if snap.duplicate {
        return Decision::duplicate();
    }
    // Only a Message-ID we really generated is our mail; a look-alike from
    // outside is ordinary mail.
    if snap.own_mail {
        return Decision::only(Outcome::OwnMail);
    }
    let Some(from) = mail.from.clone() else {
        let why = mail.from_problem.as_deref().unwrap_or("no usable From address");
        return Decision::quarantine(format!("no usable sender: {why}"));
    };
    if let Some(report) = &mail.report {
        // Believed only when it looks like a real one: from a mail system
        // (null return path, MAILER-DAEMON/postmaster) about a mail we sent
        // to the very recipient it names. Anything else is ordinary mail:
        // nobody writes "system" entries by sending a multipart/report.
        if thread::from_mail_system(mail) {
            let ours = snap.bounced_mail.as_deref();
            let names_rcpt = |m: &OutMail| {
                report.final_recipient.as_deref().is_some_and(|r| m.to.iter().any(|t| t.eq_ignore_ascii_case(r)))
            };
            // And it names a Message-ID only a receiver of that mail knows
            // (the MAC under our secret), not one computed from the outside.
            // The ticket's own mail, or mail of a ticket merged into it.
            let mine = |rec: &TicketRecord, n: u64| n == rec.number || snap.merged_via.contains(&n);
            let proves = |rec: &TicketRecord| {
                report
                    .original_message_id
                    .as_deref()
                    .and_then(|id| identity::verify_ours(ctx.secret, id, ctx.cfg.agents.iter().map(|a| a.id.as_str())))
                    .is_some_and(|(n, _)| mine(rec, n))
            };
            return match (&snap.by_thread, ours) {
                (Some(rec), Some(m)) if mine(rec, m.ticket) && names_rcpt(m) && proves(rec) => {
                    bounce(mail, report, rec, now)
                }
                _ => Decision::quarantine("delivery report that references no mail of ours to that recipient"),
            };
        }
    }

    let out = Composer { ctx, seed: snap.dedupe_key.clone(), inbound_id: mail.message_id.clone(), now };
    let d = Decider { mail, snap, ctx, now, from, out, effects: Vec::new() };
    let automatic = mail.auto.is_automatic() || ctx.cfg.mailboxes.iter().any(|m| m.address == d.from.address);

    let token_ok = |rec: &TicketRecord| {
        rec.client_address == d.from.address
            || rec.ticket.participants.contains(&d.from.address)
            || proven_for(mail, rec, snap, ctx, now).is_some()
    };
    let target = snap.by_thread.as_ref().or(snap.by_token.as_ref().filter(|r| token_ok(r)));
    // Threading first, then the verdict: who writes to which ticket decides
    // how much a spam verdict counts.
    let mut d = d;
    let agent = target.and_then(|rec| proven_for(mail, rec, snap, ctx, now)).map(|(a, _)| a.id.as_str());
    match door::judge(mail, snap, ctx, target, &d.from, agent) {
        door::Door::Hold(held) => return held,
        door::Door::Pass(notes) => d.effects.extend(notes),
    }
    let Some(rec) = target else {
        return d.new_ticket(automatic, None);
    };
    if let Some((agent, proof)) = proven_for(mail, rec, snap, ctx, now) {
        if proof == identity::Proof::Notification {
            // The proof travels in References: whoever else got this mail
            // now holds it too.
            let outsiders: Vec<&String> = mail
                .to
                .iter()
                .chain(&mail.cc)
                .filter(|a| ctx.cfg.agent_by_email(a).is_none() && !ctx.cfg.mailboxes.iter().any(|m| &m.address == *a))
                .collect();
            if !outsiders.is_empty() {
                d.effects.push(Effect::Warn(format!(
                    "{} answered ticket #{} quoting an agent-only notification id with non-agents in To/Cc ({}); they can now act as {} until the id expires",
                    agent.id,
                    rec.number,
                    outsiders.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    agent.id
                )));
            }
        }
        if automatic {
            return d.agent_auto_reply(rec, agent);
        }
        return d.agent_reply(rec, agent);
    }
    if rec.ticket.status == Status::Closed && !automatic {
        return d.new_ticket(false, Some(rec));
    }
    d.user_reply(rec, automatic)
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
    if let (Some(orig), Some(rcpt)) = (&report.original_message_id, &report.final_recipient)
        && report.is_failure()
    {
        effects.push(Effect::MarkSentFailed {
            message_id: normalise_id(orig),
            recipient: rcpt.clone(),
            reason: report.summary(),
        });
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
    out: Composer<'a>,
    effects: Vec<Effect>,
}

impl Decider<'_> {
    /// What the writer newly wrote: our own mail it quotes is found by its
    /// exact text whatever the quoting; other quotes by their shape.
    fn reply_text(&self) -> String {
        if let Some(p) = &self.snap.parent_mail
            && let Some(t) = parent::cut_parent(&self.mail.body, &p.body)
        {
            return t;
        }
        quote::strip_quoted(&self.mail.body)
    }

    /// Lines of an internal notification still present in `text`.
    fn leaked_lines(&self, text: &str) -> Vec<String> {
        let Some(p) = &self.snap.parent_mail else { return Vec::new() };
        let needles: Vec<&str> = p.internal_lines.iter().map(String::as_str).collect();
        parent::contains_lines(text, &needles).into_iter().filter_map(|i| p.internal_lines.get(i).cloned()).collect()
    }

    /// The sender's client id, creating the client on first contact.
    fn sender_client(&mut self) -> String {
        if let Some(id) = &self.snap.sender_client {
            return id.clone();
        }
        let number = self.snap.next_client;
        self.effects.push(Effect::CreateClient { address: self.from.address.clone(), number });
        client_id(number)
    }

    fn is_ours(&self, addr: &str) -> bool {
        self.ctx.cfg.mailboxes.iter().any(|m| m.address == addr)
    }

    /// To/Cc addresses that become participants: not ours, not an agent,
    /// not the client, not already listed; at most [`MAX_PARTICIPANTS`].
    fn add_participants(&self, t: &mut Ticket, client_address: &str) {
        let mut left_out = 0;
        for addr in self.mail.to.iter().chain(&self.mail.cc) {
            if addr == client_address
                || addr == &self.from.address
                || self.is_ours(addr)
                || self.ctx.cfg.agent_by_email(addr).is_some()
                || t.participants.contains(addr)
            {
                continue;
            }
            if t.participants.len() >= MAX_PARTICIPANTS {
                left_out += 1;
                continue;
            }
            t.participants.push(addr.clone());
        }
        if left_out > 0 {
            t.push_thread(
                "system",
                ThreadType::System,
                format!(
                    "{left_out} more address(es) in To/Cc were not added as participants (at most {MAX_PARTICIPANTS})."
                ),
                self.now,
            );
        }
    }

    /// What reading the mail had to cut or guess, said on the ticket.
    fn note_what_was_cut(&self, t: &mut Ticket) {
        for n in &self.mail.notes {
            t.push_thread("system", ThreadType::System, n.clone(), self.now);
        }
    }

    /// Stores attachments within the size limit; a system entry for each
    /// one over it.
    fn attach(&mut self, t: &mut Ticket) -> Vec<OutAttachment> {
        let (files, notes) = self.attachments();
        for n in notes {
            t.push_thread("system", ThreadType::System, n, self.now);
        }
        t.attachments.extend(files.iter().map(|(a, _)| a.clone()));
        files.into_iter().map(|(_, o)| o).collect()
    }

    /// The mail's attachments as ticket entries and outgoing references,
    /// plus a note for each one refused; queues the writes.
    fn attachments(&mut self) -> (Vec<(Attachment, OutAttachment)>, Vec<String>) {
        let mut files = Vec::new();
        let mut notes = Vec::new();
        let max = self.ctx.cfg.attachments.max_bytes;
        for (index, a) in self.mail.attachments.iter().enumerate() {
            if a.bytes.len() as u64 > max {
                notes.push(format!(
                    "Attachment {:?} ({} bytes) was not stored: over the {max}-byte limit.",
                    a.filename,
                    a.bytes.len()
                ));
                continue;
            }
            self.effects.push(Effect::WriteAttachment { index });
            files.push((
                Attachment {
                    filename: a.filename.clone(),
                    url: attachment_url(&self.ctx.cfg.attachments.base_url, &a.sha256, &a.filename),
                    size: a.bytes.len() as u64,
                    mime_type: a.mime_type.clone(),
                },
                OutAttachment {
                    filename: a.filename.clone(),
                    mime_type: a.mime_type.clone(),
                    sha256: a.sha256.clone(),
                },
            ));
        }
        (files, notes)
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

    /// Tells the agents, within the per-ticket hourly limit; an agent past
    /// their own hourly limit gets the news in their next digest instead.
    fn notify_agents(&mut self, rec: &TicketRecord, event: &str, message: &str) {
        if self.snap.notifies_last_hour >= self.ctx.cfg.desk.notifications_per_ticket_per_hour {
            return;
        }
        let cap = self.ctx.cfg.desk.notifications_per_agent_per_hour;
        for (agent, m) in self.out.notify_agents(rec, event, message) {
            let sent = self.snap.agent_notifies_last_hour.iter().find(|(a, _)| *a == agent).map_or(0, |(_, n)| *n);
            if sent >= cap {
                let title = crate::text::truncate_chars(&crate::text::clean_line(&rec.ticket.title), 80);
                let line = format!("#{} {}: {title}", rec.number, crate::text::clean_line(event));
                self.effects.push(Effect::HoldForDigest { agent, line });
            } else {
                self.send(m);
                self.effects.push(Effect::CountAgentNotify { agent });
            }
        }
        self.effects.push(Effect::CountNotify { ticket: rec.number });
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
        let subject = crate::text::clean_line(&self.mail.subject);
        let mut title = self.ctx.tokens.clean_title(&subject);
        if title.is_empty() {
            title = self.mail.body.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(no subject)").to_owned();
            title = crate::text::truncate_chars(&crate::text::clean_line(&title), 120);
        }
        let mut text = match follow_up_of {
            Some(_) => self.reply_text(),
            None => self.mail.body.clone(),
        };
        if title.chars().count() > MAX_TITLE_CHARS {
            // The whole subject stays readable on the ticket.
            text = format!("Subject: {subject}\n\n{text}");
            title = crate::text::truncate_chars(&title, MAX_TITLE_CHARS);
        }
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
            first_response_due: None,
            resolution_due: None,
            merged_into: None,
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
        self.note_what_was_cut(&mut t);
        self.attach(&mut t);
        self.add_participants(&mut t, &self.from.address.clone());
        let mut rec = TicketRecord {
            ticket: t,
            number,
            client_address: self.from.address.clone(),
            mailbox: self.ctx.mailbox.name.clone(),
            thread_ids: self.mail.message_id.iter().cloned().collect(),
            version: 0,
            timers: Default::default(),
            merged_into: None,
        };
        self.index_inbound(number);
        if self.ctx.quiet {
            rec_tag_imported(&mut rec);
            self.index_inbound(number);
            self.effects.insert(0, Effect::SaveTicket(Box::new(rec)));
            return Decision {
                outcome: Outcome::Created { ticket: number, follow_up_of: follow_up_of.map(|r| r.number) },
                effects: self.effects,
            };
        }
        let refusal = if self.snap.acks_last_hour >= self.ctx.cfg.desk.acks_per_sender_per_hour {
            Some(door::AckRefusal::RateLimit)
        } else {
            door::ack_refusal(self.mail, self.ctx.cfg)
        };
        let wants_ack = !automatic && !self.mail.auto.auto_response_suppress;
        if let (true, Some(r)) = (wants_ack, refusal) {
            self.effects.push(Effect::AckRefused(r));
        }
        if wants_ack && refusal.is_none() {
            let body = self.out.render(&self.ctx.templates.ack, &rec, &[]);
            let ack = self.out.mail_to(&rec, OutKind::Ack, vec![self.from.address.clone()], body, 0);
            // The customer's replies to it, and our later mail, thread on it.
            push_thread_id(&mut rec, &ack.message_id);
            self.send(ack);
            self.effects.push(Effect::CountAck { sender: ack_key(&self.from.address) });
        }
        let event = match follow_up_of {
            Some(old) => format!("Follow-up #{number} to #{}", old.number),
            None => format!("New ticket #{number}"),
        };
        self.notify_agents(&rec, &event, &text);
        self.effects.insert(0, Effect::SaveTicket(Box::new(rec)));
        Decision {
            outcome: Outcome::Created { ticket: number, follow_up_of: follow_up_of.map(|r| r.number) },
            effects: self.effects,
        }
    }

    fn user_reply(mut self, rec: &TicketRecord, automatic: bool) -> Decision {
        let mut rec = rec.clone();
        let author = self.sender_client();
        let text = self.reply_text();
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
        self.note_what_was_cut(&mut rec.ticket);
        self.attach(&mut rec.ticket);
        let client_address = rec.client_address.clone();
        self.add_participants(&mut rec.ticket, &client_address);
        if let Some(id) = &self.mail.message_id {
            push_thread_id(&mut rec, id);
        }
        self.index_inbound(rec.number);
        if !automatic && !self.ctx.quiet {
            self.notify_agents(&rec, &format!("Customer reply on #{}", rec.number), &text);
        }
        self.effects.insert(0, Effect::SaveTicket(Box::new(rec.clone())));
        Decision { outcome: Outcome::Replied { ticket: rec.number, agent: None }, effects: self.effects }
    }

    /// An out-of-office or other automatic mail from an agent: kept for the
    /// agents to see, and nothing else — no relay, no commands, no assignment.
    fn agent_auto_reply(mut self, rec: &TicketRecord, agent: &Agent) -> Decision {
        let mut rec = rec.clone();
        let text = self.reply_text();
        rec.ticket.push_internal(
            &agent.id,
            ThreadType::Agent,
            format!("(automatic reply from {}, not relayed)\n\n{text}", agent.id),
            self.now,
        );
        self.index_inbound(rec.number);
        self.effects.insert(0, Effect::SaveTicket(Box::new(rec.clone())));
        Decision { outcome: Outcome::Replied { ticket: rec.number, agent: None }, effects: self.effects }
    }

    fn reject(mut self, rec: &TicketRecord, agent: &Agent, errors: &str) -> Decision {
        let body = self.out.render(&self.ctx.templates.command_error, rec, &[("errors", errors)]);
        let mut m = self.out.mail_to(rec, OutKind::CommandError, vec![agent.email.clone()], body, 0);
        m.subject = format!("Not applied: {}", m.subject);
        self.send(m);
        self.index_inbound(rec.number);
        Decision { outcome: Outcome::Rejected { ticket: rec.number }, effects: self.effects }
    }

    fn agent_reply(mut self, rec: &TicketRecord, agent: &Agent) -> Decision {
        let text = self.reply_text();
        let parsed = commands::parse(&text, &agent.id, self.ctx.cfg);
        if !parsed.errors.is_empty() {
            let errors = parsed
                .errors
                .iter()
                .map(|e| format!("line {}: {}\n  {}", e.line, e.text, e.why))
                .collect::<Vec<_>>()
                .join("\n");
            return self.reject(rec, agent, &errors);
        }
        let mut actions: Vec<Action> = Vec::new();
        let mut note = false;
        let mut merge_to = None;
        for cmd in parsed.commands {
            actions.push(match cmd {
                Command::Merge(n) => {
                    merge_to = Some(n);
                    continue;
                }
                Command::Status(s) => Action::Status(s),
                Command::Priority(p) => Action::Priority(p),
                Command::Category(c) => Action::Category(c),
                Command::Assign(id) => Action::Assign(Some(id)),
                Command::Tag(t) => Action::Tag(t),
                Command::Untag(t) => Action::Untag(t),
                Command::Resolution(r) => Action::Resolution(Some(r)),
                Command::Block => {
                    // Nothing more goes to a sender being blocked: the
                    // text is kept as an internal note.
                    note = true;
                    Action::BlockSender
                }
                Command::Note => {
                    note = true;
                    continue;
                }
            });
        }
        let has_text = !parsed.rest.is_empty() || !self.mail.attachments.is_empty();
        let mut notes = Vec::new();
        let mut note_files = Vec::new();
        let leaked = if note { Vec::new() } else { self.leaked_lines(&parsed.rest) };
        let held = !leaked.is_empty();
        if held {
            // Fail-safe: the notification's internal text is still in the
            // reply (a quoting style we could not cut). Keep it for the
            // agents, send nothing to the customer, and tell the agent.
            let why = format!(
                "Your reply was NOT sent to the customer: it still contains lines of the internal notification, e.g.\n  {}\nIt is kept on the ticket as an internal note. Reply again with only the text meant for the customer.",
                leaked.iter().take(3).map(|l| crate::text::clean_line(l)).collect::<Vec<_>>().join("\n  ")
            );
            actions.push(Action::Note {
                text: format!("(held: not sent, it quoted the internal notification)\n\n{}", parsed.rest),
            });
            let body = self.out.render(&self.ctx.templates.command_error, rec, &[("errors", &why)]);
            let mut m = self.out.mail_to(rec, OutKind::CommandError, vec![agent.email.clone()], body, 3);
            m.subject = format!("Not sent: {}", m.subject);
            self.send(m);
        }
        if has_text && !held {
            let (files, refused) = self.attachments();
            notes = refused;
            if note {
                actions.push(Action::Note { text: non_empty(&parsed.rest, &self.mail.attachments) });
                note_files = files;
            } else {
                actions.push(Action::Reply { text: parsed.rest.clone(), attachments: files });
            }
        }
        let acted = match act::changes(rec, Actor::Agent(agent), &actions, &self.out, self.now) {
            Ok(a) => a,
            Err(errors) => {
                let errors = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
                self.effects.retain(|e| !matches!(e, Effect::WriteAttachment { .. }));
                return self.reject(rec, agent, &errors);
            }
        };
        let mut rec = acted.rec;
        for (entry, by) in acted.blocks {
            self.effects.push(Effect::Block { entry, by, ticket: Some(rec.number) });
        }
        let mut survivor = None;
        if let Some(n) = merge_to {
            // Last: the answer and the changes land on this ticket, then
            // it all moves over.
            let Some(target) = self.snap.merge_into.as_deref().filter(|t| t.number == n) else {
                self.effects.retain(|e| !matches!(e, Effect::WriteAttachment { .. }));
                return self.reject(&rec, agent, &format!("#merge {n}: no ticket #{n}"));
            };
            match merge::merged(&rec, target, &self.snap.merge_chain, Actor::Agent(agent), &self.out, self.now) {
                Ok(m) => {
                    rec = m.from;
                    survivor = Some(m.into);
                }
                Err(errors) => {
                    let errors = errors.iter().map(|e| format!("#merge {n}: {}", e.message)).collect::<Vec<_>>();
                    self.effects.retain(|e| !matches!(e, Effect::WriteAttachment { .. }));
                    return self.reject(&rec, agent, &errors.join("\n"));
                }
            }
        }
        if !notes.is_empty() && !note {
            // The customer got the answer without them: the agent must know.
            let why = format!(
                "Your reply was sent to the customer WITHOUT these files:\n  {}\nSend them another way (a link, or smaller files).",
                notes.join("\n  ")
            );
            let body = self.out.render(&self.ctx.templates.command_error, &rec, &[("errors", &why)]);
            let mut m = self.out.mail_to(&rec, OutKind::CommandError, vec![agent.email.clone()], body, 4);
            m.subject = format!("Sent without attachments: {}", m.subject);
            self.send(m);
        }
        for n in notes {
            rec.ticket.push_thread("system", ThreadType::System, n, self.now);
        }
        // Attachments of a note are kept on the ticket, not sent.
        rec.ticket.attachments.extend(note_files.into_iter().map(|(a, _)| a));
        self.index_inbound(rec.number);
        for m in acted.mails {
            self.send(m);
        }
        if self.ctx.cfg.desk.send_receipts && !acted.changes.is_empty() {
            let body = self.out.render(&self.ctx.templates.receipt, &rec, &[("changes", &acted.changes.join("\n"))]);
            let m = self.out.mail_to(&rec, OutKind::Receipt, vec![agent.email.clone()], body, 2);
            self.send(m);
        }
        let number = rec.number;
        self.effects.insert(0, Effect::SaveTicket(Box::new(rec)));
        if let Some(b) = survivor {
            self.effects.insert(1, Effect::SaveTicket(Box::new(b)));
        }
        Decision { outcome: Outcome::Replied { ticket: number, agent: Some(agent.id.clone()) }, effects: self.effects }
    }
}

/// The conversation's Message-IDs (the customer's and ours to the
/// customer), oldest first, at most [`MAX_THREAD_IDS`]: the root and the
/// newest keep threading intact.
pub fn push_thread_id(rec: &mut TicketRecord, id: &str) {
    if rec.thread_ids.iter().any(|x| x == id) {
        return;
    }
    rec.thread_ids.push(id.to_owned());
    if rec.thread_ids.len() > MAX_THREAD_IDS {
        rec.thread_ids.remove(1);
    }
}

pub const MAX_THREAD_IDS: usize = 100;

fn rec_tag_imported(rec: &mut TicketRecord) {
    if !rec.ticket.tags.iter().any(|t| t == "imported") {
        rec.ticket.tags.push("imported".into());
    }
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
