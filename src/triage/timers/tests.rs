//! The clock's rules on whole tickets: decided by `decide` and `act` as
//! the desk does, fired at injected instants. The time arithmetic itself
//! (business hours, DST, pauses) has its goldens in `sla::tests`.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::*;
use crate::config::Config;
use crate::mail::InboundMail;
use crate::outbox::OutKind;
use crate::outbox::templates::Templates;
use crate::triage::token::TokenMatcher;
use crate::triage::{Context, Snapshot, identity};

const CONFIG: &str = r#"
[store]
path = "/tmp/unused/db"
[desk]
sla_warn_before = "15m"
pending_reminder_after = "3d"
pending_resolve_after = "7d"
close_resolved_after = "7d"
[smtp]
host = "127.0.0.1"
tls = "none"
[[mailboxes]]
name = "support"
address = "support@example.test"
host = "127.0.0.1"
tls = "none"
password = "x"
priority = "low"
[[agents]]
id = "agent_alice"
email = "alice@example.test"
[[agents]]
id = "agent_bob"
email = "bob@example.test"
[[rules]]
subject = "(?i)down"
priority = "urgent"
[[sla]]
priority = "urgent"
first_response = "1h"
resolution = "8h"
[[sla]]
priority = "high"
first_response = "4h"
calendar = "office"
[[calendars]]
name = "office"
timezone = "Europe/Berlin"
hours = { mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-17:00" }
"#;

const SECRET: &[u8] = b"test-secret-0123456789";

pub(crate) struct World {
    pub(crate) cfg: Config,
    templates: Templates,
    tokens: TokenMatcher,
}

/// Monday 2024-01-15 10:30 UTC (11:30 in Berlin).
pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 0).unwrap()
}

pub(crate) fn at(min: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(min)
}

impl World {
    pub(crate) fn new() -> World {
        World::with(CONFIG)
    }

    fn with(toml: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, toml).unwrap();
        let cfg = Config::load_with_env(&p, Some(HashMap::new())).unwrap_or_else(|e| panic!("{e}"));
        World { cfg, templates: Templates::default(), tokens: TokenMatcher::new("Ticket") }
    }

    pub(crate) fn ctx(&self) -> Context<'_> {
        Context {
            cfg: &self.cfg,
            mailbox: &self.cfg.mailboxes[0],
            secret: SECRET,
            templates: &self.templates,
            tokens: &self.tokens,
            quiet: false,
        }
    }

    pub(crate) fn decide(&self, raw: &str, snap: &Snapshot, now: DateTime<Utc>) -> Decision {
        let mail = InboundMail::parse(raw.as_bytes()).unwrap();
        crate::triage::decide(&mail, snap, &self.ctx(), now)
    }

    /// A new ticket with this subject, created at `t0`.
    pub(crate) fn ticket(&self, subject: &str) -> TicketRecord {
        self.ticket_from(1, "carla@customer.test", subject, t0())
    }

    /// Ticket `n` from `from`, created at `when`.
    pub(crate) fn ticket_from(&self, n: u64, from: &str, subject: &str, when: DateTime<Utc>) -> TicketRecord {
        let raw = format!(
            "From: {from}\nTo: support@example.test\nMessage-ID: <m{n}@customer.test>\nSubject: {subject}\n\nHelp.\n"
        );
        let snap = Snapshot { next_client: n, next_ticket: n, dedupe_key: format!("id:m{n}"), ..Snapshot::default() };
        self.decide(&raw, &snap, when).saved().unwrap().clone()
    }

    pub(crate) fn act(
        &self,
        rec: &TicketRecord,
        actor: Actor<'_>,
        actions: &[Action],
        now: DateTime<Utc>,
    ) -> TicketRecord {
        let ctx = self.ctx();
        let out = Composer { ctx: &ctx, seed: format!("t:{now}"), inbound_id: None, now };
        act::act(rec, actor, actions, &out, now).unwrap().saved().unwrap().clone()
    }

    pub(crate) fn admin(&self, rec: &TicketRecord, actions: &[Action], now: DateTime<Utc>) -> TicketRecord {
        self.act(rec, Actor::Admin, actions, now)
    }

    fn fire(&self, rec: &TicketRecord, now: DateTime<Utc>) -> Fired {
        let ctx = self.ctx();
        let out = Composer { ctx: &ctx, seed: format!("clock:{}:{}", rec.number, rec.version), inbound_id: None, now };
        fire(rec, &out, &[], now)
    }

    /// Fires and returns the record as saved and the mail sent.
    fn fired(&self, rec: &TicketRecord, now: DateTime<Utc>) -> (TicketRecord, Vec<crate::outbox::OutMail>) {
        let f = self.fire(rec, now);
        let mails = f.decision.outbox().cloned().collect();
        (f.decision.saved().unwrap().clone(), mails)
    }
}

pub(crate) fn systems(rec: &TicketRecord) -> Vec<&str> {
    rec.ticket.threads.iter().filter(|e| e.kind == ThreadType::System).map(|e| e.message.as_str()).collect()
}

fn reply(text: &str) -> Action {
    Action::Reply { text: text.into(), attachments: vec![] }
}

#[test]
fn a_new_ticket_shows_its_due_times_and_is_indexed_by_them() {
    let w = World::new();
    let urgent = w.ticket("Site is down");
    assert_eq!(urgent.ticket.priority, Priority::Urgent);
    assert_eq!(urgent.ticket.first_response_due, Some(at(60)));
    assert_eq!(urgent.ticket.resolution_due, Some(at(8 * 60)));
    assert_eq!(urgent.timers.wake, Some(at(45)), "the warning, 15 minutes ahead");
    assert_eq!(urgent.timers.due, Some(at(60)));
    let json = serde_json::to_value(&urgent.ticket).unwrap();
    assert_eq!(json["firstResponseDue"], "2024-01-15T11:30:00Z");
    assert_eq!(json["resolutionDue"], "2024-01-15T18:30:00Z");

    let low = w.ticket("Question");
    assert_eq!((low.ticket.first_response_due, low.ticket.resolution_due), (None, None), "no rule for low");
    assert_eq!((low.timers.wake, low.timers.due), (None, None), "nothing to wake for: not indexed");
    let json = serde_json::to_value(&low.ticket).unwrap();
    assert!(json["firstResponseDue"].is_null() && json.get("firstResponseDue").is_some(), "null, not absent");
}

#[test]
fn business_hours_count_only_when_the_desk_is_open() {
    let w = World::new();
    let rec = w.ticket("Question");
    // high: 4 business hours from Monday 11:30 Berlin is 15:30 Berlin.
    let high = w.admin(&rec, &[Action::Priority(Priority::High)], at(0));
    assert_eq!(high.ticket.first_response_due, Some(Utc.with_ymd_and_hms(2024, 1, 15, 14, 30, 0).unwrap()));
    assert_eq!(high.ticket.resolution_due, None, "the high rule sets no resolution target");
}

#[test]
fn an_agent_answer_meets_the_first_response_and_a_note_does_not() {
    let w = World::new();
    let rec = w.ticket("Site is down");
    let noted = w.act(&rec, Actor::Agent(&w.cfg.agents[0]), &[Action::Note { text: "looking".into() }], at(10));
    assert_eq!(noted.ticket.first_response_due, Some(at(60)), "a note is not an answer");
    let system = w.admin(&noted, &[Action::System("checked".into())], at(11));
    assert_eq!(system.ticket.first_response_due, Some(at(60)), "nor is a system entry");
    let answered = w.act(&system, Actor::Agent(&w.cfg.agents[0]), &[reply("On it.")], at(20));
    assert_eq!(answered.ticket.first_response_due, None, "met");
    assert_eq!(answered.ticket.resolution_due, Some(at(8 * 60)));
    assert_eq!(answered.timers.sla.target(TargetKind::FirstResponse).met, Some(at(20)));
    assert_eq!(answered.timers.wake, Some(at(8 * 60 - 15)), "next: the resolution's warning");
}

#[test]
fn pending_pauses_the_clocks_and_a_priority_change_moves_them() {
    let w = World::new();
    let rec = w.ticket("Site is down");
    let pending = w.admin(&rec, &[Action::Status(Status::Pending)], at(30));
    assert_eq!(pending.timers.wake, Some(at(30 + 3 * 24 * 60)), "only the reminder can come due while pending");
    assert_eq!(pending.timers.due, None, "a stopped clock is never overdue");
    let back = w.admin(&pending, &[Action::Status(Status::Open)], at(120));
    assert_eq!(back.ticket.first_response_due, Some(at(60 + 90)), "the 90 minutes pending do not count");
    // low → urgent after two hours: the time spent counts against the new target.
    let low = w.ticket("Question");
    let up = w.admin(&low, &[Action::Priority(Priority::Urgent)], at(120));
    assert_eq!(up.ticket.first_response_due, Some(at(60)), "overdue at once");
    let (after, mails) = w.fired(&up, at(120));
    let kinds: Vec<&str> = systems(&after).into_iter().filter(|s| s.starts_with("response target")).collect();
    assert_eq!(kinds.len(), 1, "the breach alone, no warning first: {kinds:?}");
    assert!(kinds[0].starts_with("response target breached: first response was due at 2024-01-15T11:30:00Z"));
    assert_eq!(mails.len(), 2, "both agents (nobody is assigned)");
}

#[test]
fn one_warning_and_one_breach_per_target_whatever_the_clock_does() {
    let w = World::new();
    let rec = w.admin(&w.ticket("Site is down"), &[Action::Assign(Some("agent_bob".into()))], at(1));
    // Before the warning: nothing.
    let f = w.fire(&rec, at(40));
    assert!(f.sla.is_empty() && f.decision.outbox().next().is_none());
    // The warning, to the assignee only, as an escalation they can answer.
    let (warned, mails) = w.fired(&rec, at(45));
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!((m.kind, m.to.as_slice()), (OutKind::Escalation, &["bob@example.test".to_owned()][..]));
    assert!(m.subject.starts_with("Due soon: [Ticket #1]"), "{}", m.subject);
    assert!(m.body.contains("is due at 2024-01-15T11:30:00Z (15m from now)"), "{}", m.body);
    assert!(identity::verify_agent_id(SECRET, &m.message_id, 1, "agent_bob", at(45), 30), "bob can act by answering");
    assert!(
        systems(&warned).contains(&"response target: first response due at 2024-01-15T11:30:00Z; agent_bob warned")
    );
    assert_eq!(warned.timers.wake, Some(at(60)));
    // The same instant again, or a clock that went back: nothing more.
    for now in [at(45), at(50), at(0)] {
        let f = w.fire(&warned, now);
        assert!(f.sla.is_empty() && f.decision.outbox().next().is_none(), "at {now}");
    }
    // The breach, once.
    let (breached, mails) = w.fired(&warned, at(61));
    assert_eq!(mails.len(), 1);
    assert!(mails[0].subject.starts_with("Overdue: "));
    assert!(breached.timers.sla.target(TargetKind::FirstResponse).breached);
    assert_eq!(breached.timers.wake, Some(at(8 * 60 - 15)), "next: the resolution's warning");
    assert_eq!(breached.timers.due, Some(at(60)), "still overdue for the queue");
    assert_eq!(breached.ticket.first_response_due, Some(at(60)), "shown until met");
    let f = w.fire(&breached, at(62));
    assert!(f.sla.is_empty(), "never a second breach notice");
    // A clock that jumps a day forward owes the resolution's breach, once, without its warning.
    let (late, mails) = w.fired(&breached, at(24 * 60));
    assert_eq!(mails.len(), 1);
    assert!(mails[0].subject.starts_with("Overdue: "));
    assert_eq!(late.timers.wake, None, "nothing more can come due");
    // Met late: recorded as breached, no notice.
    let answered = w.act(&late, Actor::Agent(&w.cfg.agents[1]), &[reply("Fixed.")], at(25 * 60));
    assert_eq!(answered.ticket.first_response_due, None);
    assert!(answered.timers.sla.target(TargetKind::FirstResponse).breached, "late stays late");
}

#[test]
fn a_notice_past_an_agents_hourly_limit_waits_for_the_digest() {
    let w = World::new();
    let rec = w.ticket("Site is down");
    let ctx = w.ctx();
    let out = Composer { ctx: &ctx, seed: "s".into(), inbound_id: None, now: at(61) };
    let full = vec![("agent_alice".to_owned(), 60)];
    let f = fire(&rec, &out, &full, at(61));
    let to: Vec<&String> = f.decision.outbox().flat_map(|m| m.to.iter()).collect();
    assert_eq!(to, vec!["bob@example.test"]);
    assert!(f.decision.effects.iter().any(|e| matches!(e, Effect::HoldForDigest { agent, line } if agent == "agent_alice" && line.starts_with("#1 Overdue (first response)"))));
    assert!(f.decision.saved().unwrap().timers.sla.target(TargetKind::FirstResponse).breached, "sent either way");
}

#[test]
fn pending_gets_one_reminder_then_is_resolved_then_closed() {
    let w = World::new();
    let rec = w.ticket("Question");
    let pending =
        w.act(&rec, Actor::Agent(&w.cfg.agents[0]), &[reply("Which model?"), Action::Status(Status::Pending)], at(0));
    let day = |d: i64| at(d * 24 * 60);
    assert_eq!(pending.timers.wake, Some(day(3)));
    assert!(w.fire(&pending, day(2)).lifecycle.is_none());
    let (reminded, mails) = w.fired(&pending, day(3));
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!((m.kind, m.to.as_slice()), (OutKind::Reminder, &["carla@customer.test".to_owned()][..]));
    assert!(m.subject.starts_with("Re: [Ticket #1]"), "in the customer's thread: {}", m.subject);
    assert!(m.body.contains("it will be closed as resolved on 2024-01-22"), "{}", m.body);
    assert!(reminded.timers.reminded);
    assert!(systems(&reminded).iter().any(|s| s.starts_with("reminder sent to the customer")));
    assert_eq!(reminded.timers.wake, Some(day(7)));
    assert!(w.fire(&reminded, day(4)).decision.outbox().next().is_none(), "one reminder");
    let (resolved, mails) = w.fired(&reminded, day(7));
    assert_eq!(resolved.ticket.status, Status::Resolved);
    assert_eq!(resolved.ticket.resolved_at, Some(day(7)));
    assert_eq!(mails.iter().map(|m| m.kind).collect::<Vec<_>>(), vec![OutKind::Resolved]);
    let s = systems(&resolved);
    assert!(s.iter().any(|s| s.contains("resolved automatically")));
    assert!(s.contains(&"status pending → resolved by system"));
    assert_eq!(resolved.timers.wake, Some(day(14)));
    let (closed, mails) = w.fired(&resolved, day(14));
    assert_eq!(closed.ticket.status, Status::Closed);
    assert!(mails.is_empty(), "closing sends nothing");
    assert!(systems(&closed).contains(&"status resolved → closed by system"));
    assert_eq!(closed.timers.wake, None);
}

#[test]
fn a_customer_reply_ends_the_wait_and_an_agent_answer_restarts_it() {
    let w = World::new();
    let rec = w.ticket("Question");
    let pending = w.admin(&rec, &[Action::Status(Status::Pending)], at(0));
    let raw = "From: carla@customer.test\nTo: support@example.test\nMessage-ID: <m2@customer.test>\nIn-Reply-To: <m1@customer.test>\nSubject: Re: Question\n\nModel X.\n";
    let snap =
        Snapshot { by_thread: Some(pending.clone()), sender_client: Some("client_1".into()), ..Snapshot::default() };
    let d = w.decide(raw, &snap, at(60));
    let open = d.saved().unwrap();
    assert_eq!(open.ticket.status, Status::Open);
    assert_eq!(open.timers.wake, None, "open: no lifecycle timer (and no target for low)");
    // Pending again, then another answer while pending: the wait starts over.
    let again = w.admin(open, &[Action::Status(Status::Pending)], at(120));
    let answered = w.act(
        &again,
        Actor::Agent(&w.cfg.agents[0]),
        &[reply("Still there?"), Action::Status(Status::Pending)],
        at(24 * 60),
    );
    assert_eq!(answered.timers.wake, Some(at(24 * 60 + 3 * 24 * 60)));
}

#[test]
fn every_timer_is_off_unless_configured() {
    let w = World::with(&CONFIG.replace(
        "pending_reminder_after = \"3d\"\npending_resolve_after = \"7d\"\nclose_resolved_after = \"7d\"\n",
        "",
    ));
    let rec = w.ticket("Question");
    let pending = w.admin(&rec, &[Action::Status(Status::Pending)], at(0));
    assert_eq!(pending.timers.wake, None);
    let resolved = w.admin(&rec, &[Action::Status(Status::Resolved)], at(0));
    assert_eq!(resolved.timers.wake, None);
}

#[test]
fn an_old_record_is_adopted_without_a_burst() {
    let w = World::new();
    let mut old = w.ticket("Site is down");
    old.timers = Timers::default();
    old.ticket.first_response_due = None;
    old.ticket.resolution_due = None;
    // History: an agent answered after 30 minutes.
    old.ticket.push_thread("agent_alice", ThreadType::Agent, "On it".into(), at(30));
    let now = at(10 * 60);
    let after = resettle(&old, &w.cfg.sla, now).expect("visible change");
    let t = &after.timers;
    assert_eq!(t.sla.target(TargetKind::FirstResponse).met, Some(at(30)), "met when it was");
    assert!(t.sla.target(TargetKind::Resolution).breached, "passed before the upgrade: counted as sent");
    assert_eq!(after.ticket.resolution_due, Some(at(8 * 60)), "shown as overdue");
    assert_eq!(t.due, Some(at(8 * 60)));
    assert_eq!(t.wake, None, "nothing owed: no burst");
    assert!(w.fire(&after, now).sla.is_empty());
    assert_eq!(resettle(&after, &w.cfg.sla, now), None, "settled: the sweep writes nothing twice");
    // A ticket nothing applies to is left as it is.
    let mut low = w.ticket("Question");
    low.timers = Timers::default();
    assert_eq!(resettle(&low, &w.cfg.sla, now), None);
}

#[test]
fn imported_history_is_shown_not_announced() {
    let w = World::new();
    let mut d = {
        let raw = "From: carla@customer.test\nTo: support@example.test\nMessage-ID: <m1@customer.test>\nSubject: Site is down\n\nHelp.\n";
        let snap = Snapshot { next_client: 1, next_ticket: 1, dedupe_key: "id:m1".into(), ..Snapshot::default() };
        w.decide(raw, &snap, t0())
    };
    history(&mut d, &w.cfg.sla, at(24 * 60));
    let rec = d.saved().unwrap();
    assert_eq!(rec.ticket.first_response_due, Some(at(60)), "overdue, and shown");
    assert_eq!(rec.timers.wake, None, "but nobody is told");
}

#[test]
fn a_config_change_moves_due_times_at_the_sweep() {
    let w = World::new();
    let rec = w.ticket("Site is down");
    let stricter = World::with(&CONFIG.replace("first_response = \"1h\"", "first_response = \"30m\""));
    let after = resettle(&rec, &stricter.cfg.sla, at(5)).expect("changed");
    assert_eq!(after.ticket.first_response_due, Some(at(30)));
    assert_eq!(after.timers.wake, Some(at(15)), "the warning, at most half the target ahead");
    let said: Vec<_> = systems(&after).into_iter().filter(|s| s.starts_with("response targets changed")).collect();
    assert_eq!(
        said,
        vec![
            "response targets changed with the desk's time config: first response due 2024-01-15T11:00:00Z (was 2024-01-15T11:30:00Z)"
        ]
    );
    assert_eq!(resettle(&rec, &w.cfg.sla, at(5)), None, "same config: nothing to write");
    // Targets a new config moves into the past are shown, not announced;
    // one it leaves where it was keeps its notice.
    let stricter = World::with(&CONFIG.replace("first_response = \"1h\"", "first_response = \"10m\""));
    let after = resettle(&rec, &stricter.cfg.sla, at(30)).expect("changed");
    assert_eq!(after.ticket.first_response_due, Some(at(10)));
    assert!(after.timers.sla.target(TargetKind::FirstResponse).breached);
    assert!(w.fire(&after, at(30)).sla.is_empty(), "no burst after a config change");
    let low = w.ticket("Question");
    let urgent_later = World::with(
        &CONFIG.replace("priority = \"high\"\nfirst_response = \"4h\"", "priority = \"low\"\nfirst_response = \"4h\""),
    );
    let after = resettle(&low, &urgent_later.cfg.sla, at(5)).expect("a target now applies");
    assert_eq!(
        after.timers.wake,
        Some(Utc.with_ymd_and_hms(2024, 1, 15, 14, 15, 0).unwrap()),
        "its warning, in business time"
    );
}

#[test]
fn an_emailed_agent_answer_meets_the_first_response_and_an_emailed_note_does_not() {
    let w = World::new();
    let rec = w.ticket("Site is down");
    let proof = identity::agent_message_id(
        SECRET,
        1,
        "agent_alice",
        identity::tag("s", "agent_notify", 0),
        t0(),
        &w.cfg.desk.message_id_domain,
    );
    let answer = |id: &str, body: &str| {
        format!(
            "From: alice@example.test\nTo: support@example.test\nMessage-ID: <{id}@example.test>\nIn-Reply-To: {proof}\nSubject: Re: [Ticket #1] Site is down\n\n{body}\n"
        )
    };
    let snap = |rec: &TicketRecord, key: &str| Snapshot {
        by_thread: Some(rec.clone()),
        dedupe_key: key.into(),
        ..Snapshot::default()
    };
    let noted = w.decide(&answer("a1", "#note\nChecking the logs."), &snap(&rec, "id:a1"), at(10));
    let noted = noted.saved().unwrap();
    assert!(noted.ticket.threads.iter().any(|e| e.kind == ThreadType::Agent && e.internal), "{noted:#?}");
    assert_eq!(noted.ticket.first_response_due, Some(at(60)), "an emailed #note is not an answer");
    let d = w.decide(&answer("a2", "It is back up."), &snap(noted, "id:a2"), at(20));
    assert!(d.outbox().any(|m| m.to.contains(&"carla@customer.test".to_owned())), "relayed");
    let answered = d.saved().unwrap();
    assert_eq!(answered.ticket.first_response_due, None, "the relayed answer meets it");
    assert_eq!(answered.timers.sla.target(TargetKind::FirstResponse).met, Some(at(20)));
}

#[test]
fn a_notice_for_an_assignee_no_longer_configured_goes_to_every_agent() {
    let w = World::new();
    // Assigned to an agent since removed from the config.
    let mut rec = w.admin(&w.ticket("Site is down"), &[Action::Assign(Some("agent_bob".into()))], at(1));
    rec.ticket.assigned_to = Some("agent_carol".into());
    let (after, mails) = w.fired(&rec, at(61));
    let to: Vec<&str> = mails.iter().flat_map(|m| m.to.iter().map(String::as_str)).collect();
    assert_eq!(to, ["alice@example.test", "bob@example.test"], "nobody would hear of the breach otherwise");
    let s = systems(&after);
    assert!(s.iter().any(|s| s.starts_with("response target breached") && s.ends_with("every agent told")), "{s:?}");
}

#[test]
fn an_automatic_step_the_rules_refuse_is_said_once_and_not_tried_every_tick() {
    let w = World::new();
    let rec = w.ticket("Question");
    let mut pending =
        w.act(&rec, Actor::Agent(&w.cfg.agents[0]), &[reply("Which model?"), Action::Status(Status::Pending)], at(0));
    let day = |d: i64| at(d * 24 * 60);
    let (reminded, _) = w.fired(&pending, day(3));
    // Merged elsewhere while pending (a record only a bug or an old
    // version could leave): the rules refuse any status but closed.
    pending = reminded;
    pending.merged_into = Some(9);
    let (after, mails) = w.fired(&pending, day(7));
    assert_eq!(after.ticket.status, Status::Pending, "nothing changed");
    assert!(mails.is_empty());
    let said: Vec<_> = systems(&after).into_iter().filter(|s| s.starts_with("automatic step not taken")).collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("merged into #9"), "{}", said[0]);
    assert_eq!(after.timers.wake, None, "the timer waits for the next change of status");
    assert!(w.fire(&after, day(8)).lifecycle.is_none());
}
