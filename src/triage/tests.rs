use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::config::Config;
use crate::mail::InboundMail;
use crate::ticket::{Category, Priority};

const CONFIG: &str = r#"
[store]
path = "/tmp/unused/db"
[desk]
subject_tag = "Ticket"
display_name = "Example Support"
[attachments]
base_url = "https://support.example.test/att"
max_bytes = 100
[smtp]
host = "127.0.0.1"
tls = "none"
[[mailboxes]]
name = "support"
address = "support@example.test"
host = "127.0.0.1"
tls = "none"
password = "x"
category = "technical"
priority = "low"
[[agents]]
id = "agent_alice"
email = "alice@example.test"
name = "Alice"
[[agents]]
id = "agent_bob"
email = "bob@example.test"
[[rules]]
subject = "(?i)outage|down"
priority = "urgent"
tags = ["outage"]
"#;

const SECRET: &[u8] = b"test-secret-0123456789";

struct World {
    cfg: Config,
    templates: Templates,
    tokens: TokenMatcher,
}

impl World {
    fn new() -> World {
        World::with(CONFIG)
    }

    fn with(toml: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, toml).unwrap();
        let cfg = Config::load_with_env(&p, Some(HashMap::new())).unwrap();
        World { cfg, templates: Templates::default(), tokens: TokenMatcher::new("Ticket") }
    }

    fn decide(&self, raw: &str, snap: &Snapshot) -> Decision {
        let mail = InboundMail::parse(raw.as_bytes()).unwrap();
        let ctx = Context {
            cfg: &self.cfg,
            mailbox: &self.cfg.mailboxes[0],
            secret: SECRET,
            templates: &self.templates,
            tokens: &self.tokens,
            quiet: false,
        };
        decide(&mail, snap, &ctx, now())
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 0).unwrap()
}

fn snap() -> Snapshot {
    Snapshot { next_client: 7, next_ticket: 42, dedupe_key: "id:test@x".into(), ..Snapshot::default() }
}

fn customer_mail(extra: &str, subject: &str, body: &str) -> String {
    format!(
        "From: Carla Customer <Carla@Customer.test>\nTo: support@example.test\nMessage-ID: <m1@customer.test>\n{extra}Subject: {subject}\n\n{body}\n"
    )
}

fn existing(status: Status) -> TicketRecord {
    let w = World::new();
    let d = w.decide(&customer_mail("", "Printer broken", "It smokes."), &snap());
    let mut rec = d.saved().unwrap().clone();
    rec.ticket.status = status;
    rec
}

#[test]
fn new_ticket_from_a_customer() {
    let w = World::new();
    let d = w.decide(
        &customer_mail("Cc: boss@customer.test, alice@example.test\n", "Re: Printer broken", "It smokes.\n"),
        &snap(),
    );
    assert_eq!(d.outcome, Outcome::Created { ticket: 42, follow_up_of: None });
    assert!(d.effects.contains(&Effect::CreateClient { address: "carla@customer.test".into(), number: 7 }));
    let rec = d.saved().unwrap();
    let t = &rec.ticket;
    assert_eq!(t.id, "support_ticket_42");
    assert_eq!(t.title, "Printer broken");
    assert_eq!(t.description, "It smokes.");
    assert_eq!((t.status, t.priority, t.category), (Status::Open, Priority::Low, Category::Technical));
    assert_eq!(t.client, "client_7");
    assert_eq!(t.participants, vec!["boss@customer.test"], "agents and our own address are not participants");
    assert_eq!(t.threads.len(), 1);
    assert_eq!(t.threads[0].kind, ThreadType::User);
    assert_eq!(t.threads[0].author, "client_7");

    let out: Vec<&OutMail> = d.outbox().collect();
    let ack = out.iter().find(|m| m.kind == OutKind::Ack).expect("an acknowledgement");
    assert_eq!(ack.to, vec!["carla@customer.test"]);
    assert_eq!(ack.from_address, "support@example.test");
    assert_eq!(ack.subject, "[Ticket #42] Printer broken");
    assert_eq!(ack.in_reply_to.as_deref(), Some("m1@customer.test"));
    assert_eq!(ack.references, vec!["m1@customer.test"]);
    assert!(ack.body.contains("ticket #42"));
    let notes: Vec<&&OutMail> = out.iter().filter(|m| m.kind == OutKind::AgentNotify).collect();
    assert_eq!(notes.len(), 2, "every agent is told");
    assert!(identity::verify_agent_id(SECRET, &notes[0].message_id, 42, "agent_alice", now(), 30));
    assert!(identity::verify_agent_id(SECRET, &notes[1].message_id, 42, "agent_bob", now(), 30));
    for m in &out {
        assert!(d.effects.contains(&Effect::IndexMessageId { id: m.message_id.clone(), ticket: 42 }));
    }
    assert!(d.effects.contains(&Effect::IndexMessageId { id: "m1@customer.test".into(), ticket: 42 }));
    assert!(d.effects.contains(&Effect::CountAck { sender: "carla@customer.test".into() }));
}

#[test]
fn decisions_are_deterministic() {
    let w = World::new();
    let raw = customer_mail("", "Hello", "x");
    assert_eq!(w.decide(&raw, &snap()), w.decide(&raw, &snap()));
}

#[test]
fn rules_and_title_fallbacks() {
    let w = World::new();
    let d = w.decide(&customer_mail("", "Site DOWN again", "help"), &snap());
    let t = &d.saved().unwrap().ticket;
    assert_eq!(t.priority, Priority::Urgent);
    assert_eq!(t.tags, vec!["outage"]);
    let d = w.decide(&customer_mail("", "", "\n\n  First line here\nsecond"), &snap());
    assert_eq!(d.saved().unwrap().ticket.title, "First line here");
    let d = w.decide(&customer_mail("", "Re:", ""), &snap());
    assert_eq!(d.saved().unwrap().ticket.title, "(no subject)");
}

#[test]
fn html_only_mail_gets_a_text_description() {
    let w = World::new();
    let raw = "From: c@customer.test\nSubject: Hi\nContent-Type: text/html\n\n<html><body><p>Hello <b>team</b></p></body></html>\n";
    let d = w.decide(raw, &snap());
    assert_eq!(d.saved().unwrap().ticket.description, "Hello team");
}

#[test]
fn duplicates_and_our_own_mail_do_nothing() {
    let w = World::new();
    let s = Snapshot { duplicate: true, ..snap() };
    let d = w.decide(&customer_mail("", "x", "y"), &s);
    assert_eq!(d, Decision { outcome: Outcome::Duplicate, effects: vec![] });
    let own =
        "From: support@example.test\nMessage-ID: <ticketd.42.ack.abcdef@example.test>\nSubject: [Ticket #42] x\n\nhi\n";
    assert_eq!(w.decide(own, &Snapshot { own_mail: true, ..snap() }).outcome, Outcome::OwnMail);
    let look_alike = own.replace("From: support@", "From: mallory@");
    assert!(
        matches!(w.decide(&look_alike, &snap()).outcome, Outcome::Created { .. }),
        "an id that merely looks like ours, never sent by us, is ordinary mail"
    );
}

#[test]
fn automatic_mail_is_never_acknowledged() {
    let w = World::new();
    for h in [
        "Auto-Submitted: auto-replied\n",
        "Precedence: bulk\n",
        "List-Id: <l.customer.test>\n",
        "X-Autoreply: yes\n",
        "Return-Path: <>\n",
    ] {
        let d = w.decide(&customer_mail(h, "Out of office", "away"), &snap());
        assert!(matches!(d.outcome, Outcome::Created { .. }), "{h}");
        assert!(d.outbox().all(|m| m.kind != OutKind::Ack), "{h} got an ack");
    }
    let daemon = "From: MAILER-DAEMON@mx.test\nSubject: x\n\nhi\n";
    assert!(w.decide(daemon, &snap()).outbox().all(|m| m.kind != OutKind::Ack));
}

#[test]
fn acknowledgements_are_rate_limited() {
    let w = World::new();
    let s = Snapshot { acks_last_hour: 5, ..snap() };
    let d = w.decide(&customer_mail("", "again", "y"), &s);
    assert!(d.outbox().all(|m| m.kind != OutKind::Ack));
    assert!(!d.effects.iter().any(|e| matches!(e, Effect::CountAck { .. })));
}

#[test]
fn reply_by_references_joins_and_reopens() {
    let w = World::new();
    let rec = existing(Status::Resolved);
    let s = Snapshot { by_thread: Some(rec), sender_client: Some("client_7".into()), ..snap() };
    let raw = "From: carla@customer.test\nMessage-ID: <m2@customer.test>\nIn-Reply-To: <ticketd.42.ack.x@example.test>\nSubject: Re: something else\n\nStill broken.\n\nOn Mon, Jan 15, 2024 at 10:30 AM Support <support@example.test> wrote:\n> We opened ticket 42\n";
    let d = w.decide(raw, &s);
    assert_eq!(d.outcome, Outcome::Replied { ticket: 42, agent: None });
    let t = &d.saved().unwrap().ticket;
    assert_eq!(t.status, Status::Open);
    assert_eq!(t.resolved_at, None);
    let last = t.threads.last().unwrap();
    assert_eq!((last.kind, last.author.as_str()), (ThreadType::User, "client_7"));
    assert_eq!(t.threads[t.threads.len() - 2].message, "status resolved → open by client_7 (customer replied)");
    assert!(d.outbox().all(|m| m.kind == OutKind::AgentNotify), "no ack for replies");
    let ids = &d.saved().unwrap().thread_ids;
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!((ids[0].as_str(), ids[2].as_str()), ("m1@customer.test", "m2@customer.test"));
    assert_eq!(
        identity::verify_ours(SECRET, &ids[1], []),
        Some((42, identity::IdKind::Ack)),
        "our acknowledgement is part of the thread: {ids:?}"
    );
}

#[test]
fn reply_by_token_from_the_client_joins() {
    let w = World::new();
    let s = Snapshot { by_token: Some(existing(Status::Open)), sender_client: Some("client_7".into()), ..snap() };
    let raw = "From: CARLA@customer.test\nMessage-ID: <m3@customer.test>\nSubject: AW: [ticket #42] Printer broken\n\nmore info\n";
    assert_eq!(w.decide(raw, &s).outcome, Outcome::Replied { ticket: 42, agent: None });
}

#[test]
fn a_strangers_token_match_opens_a_new_ticket() {
    let w = World::new();
    let s = Snapshot { by_token: Some(existing(Status::Open)), next_client: 8, next_ticket: 43, ..snap() };
    let raw = "From: mallory@elsewhere.test\nMessage-ID: <x@elsewhere.test>\nSubject: Re: [Ticket #42] Printer broken\n\nlet me in\n";
    let d = w.decide(raw, &s);
    assert_eq!(d.outcome, Outcome::Created { ticket: 43, follow_up_of: None });
    assert_eq!(d.saved().unwrap().ticket.client, "client_8");
    assert_eq!(d.saved().unwrap().ticket.title, "Printer broken");
}

#[test]
fn a_forged_agent_cannot_act_as_agent() {
    let w = World::new();
    let s = Snapshot { by_token: Some(existing(Status::Open)), next_ticket: 43, next_client: 8, ..snap() };
    let raw = "From: Alice <alice@example.test>\nMessage-ID: <f@evil.test>\nSubject: Re: [Ticket #42] Printer broken\n\n#status closed\nWe are done here.\n";
    let d = w.decide(raw, &s);
    assert_eq!(d.outcome, Outcome::Created { ticket: 43, follow_up_of: None }, "no proof: a stranger");
    assert!(d.outbox().all(|m| m.kind != OutKind::Relay));
    // Even replying into the thread by references, an unproven agent is a user.
    let s = Snapshot { by_thread: Some(existing(Status::Open)), next_client: 8, ..snap() };
    let raw = "From: alice@example.test\nMessage-ID: <f2@evil.test>\nIn-Reply-To: <m1@customer.test>\nSubject: x\n\n#status closed\n";
    let d = w.decide(raw, &s);
    assert_eq!(d.outcome, Outcome::Replied { ticket: 42, agent: None });
    assert_eq!(d.saved().unwrap().ticket.status, Status::Open);
}

fn notify_id(agent: &str) -> String {
    identity::agent_message_id(SECRET, 42, agent, identity::tag("abc", "agent_notify", 0), now(), "example.test")
}

fn agent_mail(agent: &str, body: &str) -> String {
    format!(
        "From: {agent}@example.test\nTo: support@example.test\nMessage-ID: <a1@example.test>\nIn-Reply-To: <{}>\nSubject: Re: [Ticket #42] Printer broken\n\n{body}\n\nOn Mon, Jan 15, 2024 at 10:30 AM Support <support@example.test> wrote:\n> New ticket\n",
        notify_id(&format!("agent_{agent}"))
    )
}

#[test]
fn a_proven_agent_reply_is_relayed_and_assigns() {
    let w = World::new();
    let s = Snapshot { by_thread: Some(existing(Status::Open)), ..snap() };
    let d = w.decide(&agent_mail("alice", "Please restart it. Mail me at alice@example.test"), &s);
    assert_eq!(d.outcome, Outcome::Replied { ticket: 42, agent: Some("agent_alice".into()) });
    let t = &d.saved().unwrap().ticket;
    assert_eq!(t.assigned_to.as_deref(), Some("agent_alice"));
    assert_eq!(t.status, Status::InProgress);
    let last = t.threads.last().unwrap();
    assert_eq!((last.kind, last.author.as_str()), (ThreadType::Agent, "agent_alice"));
    assert!(last.message.starts_with("Please restart it."));
    let relay = d.outbox().find(|m| m.kind == OutKind::Relay).expect("relayed");
    assert_eq!(relay.to, vec!["carla@customer.test"]);
    assert_eq!(relay.from_address, "support@example.test");
    assert_eq!(relay.in_reply_to.as_deref(), Some("m1@customer.test"));
    assert!(!relay.body.contains("alice@example.test"));
    assert!(!relay.body.contains("wrote:"));
}

#[test]
fn dkim_or_trust_from_header_also_prove_an_agent() {
    let dkim = World::with(&CONFIG.replace(
        "display_name = \"Example Support\"",
        "display_name = \"x\"\ntrusted_authserv_id = \"mx.example.test\"",
    ));
    let s = Snapshot { by_thread: Some(existing(Status::Open)), ..snap() };
    // As the border hands it over: its results above its own Received line.
    let raw = "Authentication-Results: mx.example.test; dkim=pass header.d=example.test\nReceived: from out.example.test by mx.example.test with ESMTPS; Mon, 15 Jan 2024 10:00:00 +0000\nFrom: alice@example.test\nMessage-ID: <a9@example.test>\nIn-Reply-To: <m1@customer.test>\nSubject: x\n\nhello\n";
    assert_eq!(dkim.decide(raw, &s).outcome, Outcome::Replied { ticket: 42, agent: Some("agent_alice".into()) });
    let plain = World::new();
    assert_eq!(plain.decide(raw, &s).outcome, Outcome::Replied { ticket: 42, agent: None });
    let trusting = World::with(
        &CONFIG.replace("display_name = \"Example Support\"", "display_name = \"x\"\ntrust_from_header = true"),
    );
    assert_eq!(trusting.decide(raw, &s).outcome, Outcome::Replied { ticket: 42, agent: Some("agent_alice".into()) });
}

#[test]
fn agent_commands_change_the_ticket_and_are_removed() {
    let w = World::new();
    let s = Snapshot { by_thread: Some(existing(Status::Open)), ..snap() };
    let body = "#status resolved\n#priority high\n#tag printer, hardware\n#resolution Replaced the fuser\n#assign agent_bob\nAll fixed.";
    let d = w.decide(&agent_mail("alice", body), &s);
    let t = &d.saved().unwrap().ticket;
    assert_eq!(t.status, Status::Resolved);
    assert_eq!(t.resolved_at, Some(now()));
    assert_eq!(t.priority, Priority::High);
    assert_eq!(t.tags, vec!["printer", "hardware"]);
    assert_eq!(t.resolution.as_deref(), Some("Replaced the fuser"));
    assert_eq!(t.assigned_to.as_deref(), Some("agent_bob"));
    let systems: Vec<&str> =
        t.threads.iter().filter(|e| e.kind == ThreadType::System).map(|e| e.message.as_str()).collect();
    assert!(systems.contains(&"status open → resolved by agent_alice"), "{systems:?}");
    assert!(systems.contains(&"priority low → high by agent_alice"));
    assert_eq!(t.threads.last().unwrap().message, "All fixed.");
    let kinds: Vec<OutKind> = d.outbox().map(|m| m.kind).collect();
    assert!(kinds.contains(&OutKind::Relay) && kinds.contains(&OutKind::Resolved), "{kinds:?}");
    let resolved = d.outbox().find(|m| m.kind == OutKind::Resolved).unwrap();
    assert!(resolved.body.contains("Replaced the fuser"));
}

#[test]
fn a_bad_command_changes_nothing_and_says_why() {
    let w = World::new();
    let s = Snapshot { by_thread: Some(existing(Status::Open)), ..snap() };
    let d = w.decide(&agent_mail("alice", "#status done\n#priority high\nHello"), &s);
    assert_eq!(d.outcome, Outcome::Rejected { ticket: 42 });
    assert!(d.saved().is_none(), "the ticket is untouched");
    let err: Vec<&OutMail> = d.outbox().collect();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].kind, OutKind::CommandError);
    assert_eq!(err[0].to, vec!["alice@example.test"]);
    assert!(err[0].body.contains("line 1: #status done"), "{}", err[0].body);
    assert!(err[0].body.contains("invalid status \"done\""));
}

#[test]
fn notes_are_not_relayed() {
    let w = World::new();
    let s = Snapshot { by_thread: Some(existing(Status::Open)), ..snap() };
    let d = w.decide(&agent_mail("alice", "#note\nCustomer is on the old firmware."), &s);
    let rec = d.saved().unwrap();
    assert_eq!(rec.ticket.threads.last().unwrap().message, "Customer is on the old firmware.");
    assert!(rec.ticket.threads.last().unwrap().internal, "a note is marked internal");
    assert!(d.outbox().all(|m| m.kind != OutKind::Relay));
    assert_eq!(rec.ticket.status, Status::Open, "a note does not start work");
}

#[test]
fn a_reply_to_a_closed_ticket_opens_a_follow_up() {
    let w = World::new();
    let s = Snapshot {
        by_thread: Some(existing(Status::Closed)),
        sender_client: Some("client_7".into()),
        next_ticket: 43,
        ..snap()
    };
    let raw = "From: carla@customer.test\nMessage-ID: <m4@customer.test>\nIn-Reply-To: <m1@customer.test>\nSubject: Re: [Ticket #42] Printer broken\n\nIt is back.\n\n> old text\n";
    let d = w.decide(raw, &s);
    assert_eq!(d.outcome, Outcome::Created { ticket: 43, follow_up_of: Some(42) });
    let t = &d.saved().unwrap().ticket;
    assert!(t.tags.contains(&"follow-up".to_owned()));
    assert!(t.threads[0].message.contains("support_ticket_42"));
    assert_eq!(t.threads[0].kind, ThreadType::System);
    assert_eq!(t.threads[1].message, "It is back.");
}

#[test]
fn bounces_attach_to_their_ticket_or_go_to_quarantine() {
    let w = World::new();
    let ack_id = identity::message_id(
        SECRET,
        identity::IdKind::Ack,
        42,
        identity::tag("s", "ack", 0),
        now(),
        "",
        "example.test",
    );
    let report = "From: MAILER-DAEMON@mx.test\nTo: support@example.test\nMessage-ID: <b1@mx.test>\nSubject: Undelivered\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\n\n--B\nContent-Type: text/plain\n\nfailed\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.test\n\nFinal-Recipient: rfc822; carla@customer.test\nAction: failed\nStatus: 5.1.1\n--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: <ORIG>\nSubject: x\n--B--\n";
    let raw = &report.replace("ORIG", &ack_id);
    let sent = notification_of(&w.decide(&customer_mail("", "Printer broken", "It smokes."), &snap()), "alice");
    let ack = OutMail { to: vec!["carla@customer.test".into()], message_id: ack_id.clone(), ..sent };
    let ours =
        Snapshot { by_thread: Some(existing(Status::Open)), bounced_mail: Some(Box::new(ack.clone())), ..snap() };
    let d = w.decide(raw, &ours);
    assert_eq!(d.outcome, Outcome::Bounce { ticket: 42 });
    assert!(d.saved().unwrap().ticket.threads.last().unwrap().message.contains("carla@customer.test"));
    assert!(d.effects.iter().any(|e| matches!(e, Effect::MarkSentFailed { message_id, .. } if *message_id == ack_id)));
    // A report naming an id computed from the outside (no MAC under our
    // secret, or the old MAC-less format) proves nothing: quarantined.
    let mut flipped = ack_id.clone().into_bytes();
    flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    for fake in ["ticketd.42.ack.abc@example.test", flipped.as_str()] {
        let m = OutMail { message_id: fake.to_owned(), ..ack.clone() };
        let d = w.decide(&report.replace("ORIG", fake), &Snapshot { bounced_mail: Some(Box::new(m)), ..ours.clone() });
        assert_eq!(d.outcome, Outcome::Quarantined, "{fake}");
    }
    assert!(d.outbox().next().is_none(), "bounces are never answered");
    let d = w.decide(raw, &snap());
    assert_eq!(d.outcome, Outcome::Quarantined);
    // A report about a mail we sent to someone else is not believed.
    let elsewhere = OutMail { to: vec!["other@customer.test".into()], ..ack };
    let d = w.decide(raw, &Snapshot { bounced_mail: Some(Box::new(elsewhere)), ..ours.clone() });
    assert_eq!(d.outcome, Outcome::Quarantined);
    // From an ordinary sender, a multipart/report is ordinary mail: no system entry.
    let forged = raw.replace("From: MAILER-DAEMON@mx.test", "From: mallory@evil.test");
    let d = w.decide(&forged, &Snapshot { by_thread: None, ..ours });
    assert!(matches!(d.outcome, Outcome::Created { .. }), "{:?}", d.outcome);
    assert!(!d.effects.iter().any(|e| matches!(e, Effect::MarkSentFailed { .. })));
}

#[test]
fn oversized_attachments_are_refused_with_a_system_entry() {
    let w = World::new();
    let big = "A".repeat(300);
    let raw = format!(
        "From: c@customer.test\nSubject: files\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=X\n\n--X\nContent-Type: text/plain\n\nsee files\n--X\nContent-Type: text/plain; name=small.txt\nContent-Disposition: attachment; filename=small.txt\n\nsmall\n--X\nContent-Type: application/octet-stream; name=big.bin\nContent-Disposition: attachment; filename=big.bin\n\n{big}\n--X--\n"
    );
    let d = w.decide(&raw, &snap());
    let t = &d.saved().unwrap().ticket;
    assert_eq!(t.attachments.len(), 1);
    assert_eq!(t.attachments[0].filename, "small.txt");
    assert!(t.attachments[0].url.starts_with("https://support.example.test/att/"));
    assert!(t.attachments[0].url.ends_with("/small.txt"));
    assert!(t.threads.iter().any(|e| e.kind == ThreadType::System && e.message.contains("big.bin")));
    assert_eq!(d.effects.iter().filter(|e| matches!(e, Effect::WriteAttachment { .. })).count(), 1);
}

#[test]
fn mail_without_from_is_quarantined() {
    let w = World::new();
    let d = w.decide("Subject: hi\nMessage-ID: <n@x>\n\nbody\n", &snap());
    assert_eq!(d.outcome, Outcome::Quarantined);
}

#[test]
fn urls_are_percent_encoded() {
    assert_eq!(attachment_url("https://x/a/", "ab", "my file é.txt"), "https://x/a/ab/my%20file%20%C3%A9.txt");
}

fn notification_of(d: &Decision, agent: &str) -> OutMail {
    d.outbox().find(|m| m.kind == OutKind::AgentNotify && m.to[0].starts_with(agent)).unwrap().clone()
}

#[test]
fn a_reply_quoting_the_notification_in_any_style_relays_only_the_new_text() {
    let w = World::new();
    let created = w.decide(&customer_mail("", "Printer broken", "It smokes."), &snap());
    let note = notification_of(&created, "alice");
    assert!(note.internal_lines.iter().any(|l| l.starts_with("Status:")), "{:?}", note.internal_lines);
    // s-nail / POSIX mailx: a TAB before every quoted line.
    let quoted: String = note.body.lines().map(|l| format!("\t{l}\n")).collect();
    let body = format!("Please restart it.\n\n\"Example Support\" <support@example.test> wrote:\n{quoted}");
    let raw = format!(
        "From: alice@example.test\nTo: support@example.test\nMessage-ID: <a7@example.test>\nIn-Reply-To: <{}>\nSubject: Re: [Ticket #42] Printer broken\n\n{body}",
        note.message_id
    );
    let s = Snapshot { by_thread: Some(existing(Status::Open)), parent_mail: Some(Box::new(note.clone())), ..snap() };
    let d = w.decide(&raw, &s);
    let relay = d.outbox().find(|m| m.kind == OutKind::Relay).expect("relayed");
    assert_eq!(relay.body, "Please restart it.");
    assert!(!relay.body.contains("Status:"));
}

#[test]
fn a_reply_that_still_carries_the_notification_is_held_not_relayed() {
    let w = World::new();
    let created = w.decide(&customer_mail("", "Printer broken", "It smokes."), &snap());
    let note = notification_of(&created, "alice");
    // The agent pasted the internal status line into the answer itself.
    let status = note.internal_lines.iter().find(|l| l.starts_with("Status:")).unwrap().clone();
    let raw = format!(
        "From: alice@example.test\nTo: support@example.test\nMessage-ID: <a8@example.test>\nIn-Reply-To: <{}>\nSubject: Re: [Ticket #42] Printer broken\n\nHere is where we stand:\n{status}\nWe will fix it.\n",
        note.message_id
    );
    let s = Snapshot { by_thread: Some(existing(Status::Open)), parent_mail: Some(Box::new(note)), ..snap() };
    let d = w.decide(&raw, &s);
    assert!(d.outbox().all(|m| m.kind != OutKind::Relay), "nothing reaches the customer");
    let told = d.outbox().find(|m| m.kind == OutKind::CommandError).expect("the agent is told");
    assert!(told.body.contains("NOT sent to the customer"), "{}", told.body);
    let last = d.saved().unwrap().ticket.threads.last().unwrap().clone();
    assert!(last.internal && last.message.contains("We will fix it."), "{last:?}");
}

#[test]
fn ack_limits_count_people_not_plus_addresses_and_suppression_is_honoured() {
    assert_eq!(ack_key("customer+7@x.test"), "customer@x.test");
    assert_eq!(ack_key("customer@x.test"), "customer@x.test");
    let w = World::new();
    let d = w.decide(&customer_mail("", "Hi", "x"), &snap());
    assert!(d.effects.contains(&Effect::CountAck { sender: "carla@customer.test".into() }));
    for v in ["All", "OOF", "DR, AutoReply"] {
        let d = w.decide(&customer_mail(&format!("X-Auto-Response-Suppress: {v}\n"), "Meeting", "x"), &snap());
        assert!(d.outbox().all(|m| m.kind != OutKind::Ack), "{v}: no acknowledgement");
    }
    let d = w.decide(&customer_mail("X-Auto-Response-Suppress: DR\n", "Hi", "x"), &snap());
    assert!(d.outbox().any(|m| m.kind == OutKind::Ack), "only delivery reports suppressed: still acknowledged");
}

#[test]
fn agent_notifications_are_limited_per_ticket() {
    let w = World::new();
    let reply = "From: carla@customer.test\nMessage-ID: <m9@customer.test>\nIn-Reply-To: <m1@customer.test>\nSubject: Re: x\n\nagain\n";
    let busy = Snapshot { by_thread: Some(existing(Status::Open)), notifies_last_hour: 20, ..snap() };
    let d = w.decide(reply, &busy);
    assert!(d.outbox().all(|m| m.kind != OutKind::AgentNotify), "over the hourly limit: recorded, not notified");
    assert_eq!(d.outcome, Outcome::Replied { ticket: 42, agent: None });
    let calm = Snapshot { notifies_last_hour: 19, ..busy };
    let d = w.decide(reply, &calm);
    assert!(d.outbox().any(|m| m.kind == OutKind::AgentNotify));
    assert!(d.effects.contains(&Effect::CountNotify { ticket: 42 }));
}

#[test]
fn an_agent_whose_file_was_left_out_is_told() {
    let w = World::new();
    let s = Snapshot { by_thread: Some(existing(Status::Open)), ..snap() };
    let big = "A".repeat(300);
    let raw = format!(
        "From: alice@example.test\nTo: support@example.test\nMessage-ID: <a2@example.test>\nIn-Reply-To: <{}>\nSubject: Re: [Ticket #42] Printer broken\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=X\n\n--X\nContent-Type: text/plain\n\nThe driver is attached.\n--X\nContent-Type: application/octet-stream; name=driver.bin\nContent-Disposition: attachment; filename=driver.bin\n\n{big}\n--X--\n",
        notify_id("agent_alice")
    );
    let d = w.decide(&raw, &s);
    assert_eq!(d.outcome, Outcome::Replied { ticket: 42, agent: Some("agent_alice".into()) });
    let relay = d.outbox().find(|m| m.kind == OutKind::Relay).expect("the text is relayed");
    assert!(relay.attachments.is_empty());
    let told = d.outbox().find(|m| m.kind == OutKind::CommandError).expect("the agent is told");
    assert_eq!(told.to, vec!["alice@example.test"]);
    assert!(told.subject.starts_with("Sent without attachments"), "{}", told.subject);
    assert!(told.body.contains("driver.bin"), "{}", told.body);
}
