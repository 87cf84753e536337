//! The desk keeps time (#19), driven through the desk with an injected
//! clock: tickets come in as mail at the real time, the clock is ticked at
//! any instant the test names, nothing sleeps. What the desk queued is read
//! from its own outbox.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use ticketd::config::Config;
use ticketd::desk::views::{DueFilter, Sort, TicketQuery};
use ticketd::desk::{ActorRef, Desk, DeskError, Item};
use ticketd::outbox::OutKind;
use ticketd::ticket::{Status, ThreadType};
use ticketd::triage::act::Action;

const TARGETS: &str = "[[sla]]\npriority = \"urgent\"\nfirst_response = \"1h\"\nresolution = \"8h\"\n";
const TIMERS: &str = "pending_reminder_after = \"3d\"\npending_resolve_after = \"7d\"\nclose_resolved_after = \"7d\"\n";

struct World {
    dir: tempfile::TempDir,
    desk: Desk,
}

fn config(dir: &Path, desk: &str, rest: &str) -> Arc<Config> {
    let toml = format!(
        "[desk]\nnotifications_per_agent_per_hour = 10000\n{desk}\n[store]\npath = \"{0}/db\"\n[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n[[mailboxes]]\nname = \"support\"\naddress = \"support@example.test\"\nhost = \"127.0.0.1\"\ntls = \"none\"\npassword = \"x\"\npriority = \"urgent\"\n[[agents]]\nid = \"agent_alice\"\nemail = \"alice@example.test\"\n[[agents]]\nid = \"agent_bob\"\nemail = \"bob@example.test\"\n{rest}",
        dir.display()
    );
    let p = dir.join("c.toml");
    std::fs::write(&p, toml).unwrap();
    Arc::new(Config::load_with_env(&p, Some(Default::default())).unwrap_or_else(|e| panic!("{e}")))
}

fn start(cfg: Arc<Config>) -> Desk {
    Desk::open(cfg, false).expect("open the desk").desk
}

impl World {
    fn new(desk: &str, rest: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let desk = start(config(dir.path(), desk, rest));
        World { dir, desk }
    }

    /// Stops the desk and starts it again on the same store, under a
    /// config that may differ: what survives is what was durable.
    async fn restart(self, desk: &str, rest: &str) -> World {
        let World { dir, desk: old } = self;
        old.end_run().await.unwrap();
        drop(old);
        let desk = start(config(dir.path(), desk, rest));
        World { dir, desk }
    }

    async fn mail(&self, uid: u32, from: &str, subject: &str, extra: &str) -> DateTime<Utc> {
        let raw = format!(
            "From: {from}\r\nTo: support@example.test\r\n{extra}Subject: {subject}\r\nMessage-ID: <m{uid}@customer.test>\r\n\r\nHelp.\r\n"
        );
        let before = Utc::now().trunc_subsecs(0);
        let r = self.desk.ingest("support", 1, vec![Item::Mail { uid, raw: raw.into_bytes() }]).await;
        assert_eq!(r.done, vec![uid], "{:?}", r.error);
        before
    }

    fn sent(&self, kind: OutKind) -> Vec<ticketd::desk::views::OutboxView> {
        self.desk.outbox(true).unwrap().into_iter().filter(|e| e.kind == kind).collect()
    }

    fn ticket(&self, n: u64) -> ticketd::record::TicketRecord {
        self.desk.ticket(n).unwrap().unwrap()
    }
}

fn min(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

/// The created instant the desk stored (ingest reads the real clock).
fn created(w: &World, n: u64) -> DateTime<Utc> {
    w.ticket(n).ticket.created_at
}

#[tokio::test]
async fn an_urgent_ticket_warns_once_breaches_once_and_shows_in_the_queue() {
    let w = World::new("sla_warn_before = \"15m\"", TARGETS);
    w.mail(1, "carla@customer.test", "Site is down", "").await;
    w.desk.act(1, ActorRef::Admin, vec![Action::Assign(Some("agent_alice".into()))], vec![], None).await.unwrap();
    let t = created(&w, 1);
    let rec = w.ticket(1);
    assert_eq!(rec.ticket.first_response_due, Some(t + min(60)));
    assert_eq!(rec.ticket.resolution_due, Some(t + min(8 * 60)));

    let overdue = |at| TicketQuery { due: Some(DueFilter::Overdue), as_of: Some(at), ..TicketQuery::default() };
    let soon = |at| TicketQuery {
        due: Some(DueFilter::Within(min(30))),
        as_of: Some(at),
        sort: Sort::DueAsc,
        ..TicketQuery::default()
    };
    assert!(w.desk.list(&overdue(t + min(40))).unwrap().tickets.is_empty());
    assert_eq!(w.desk.list(&soon(t + min(40))).unwrap().tickets.len(), 1, "due within 30 minutes");

    assert_eq!(w.desk.tick(t + min(40)).await.unwrap(), 0, "nothing yet");
    assert!(w.desk.tick(t + min(46)).await.unwrap() >= 1);
    let warnings = w.sent(OutKind::Escalation);
    assert_eq!(warnings.len(), 1, "one warning, to the assignee: {warnings:?}");
    assert_eq!(warnings[0].to, vec!["alice@example.test"]);
    assert!(warnings[0].subject.starts_with("Due soon: [Ticket #1]"));

    for at in [t + min(46), t + min(50), t + min(61), t + min(62), t + min(90), t + min(20)] {
        w.desk.tick(at).await.unwrap();
    }
    let all = w.sent(OutKind::Escalation);
    assert_eq!(all.len(), 2, "one warning and one breach notice, whatever the ticks: {all:?}");
    assert!(all[1].subject.starts_with("Overdue: "));
    let rec = w.ticket(1);
    let notes: Vec<&str> = rec
        .ticket
        .threads
        .iter()
        .filter(|e| e.kind == ThreadType::System && e.message.starts_with("response target"))
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert_eq!(w.desk.list(&overdue(t + min(90))).unwrap().tickets.len(), 1);
    let snap = w.desk.health().readings();
    assert!(snap.sla.contains(&("breach".into(), "urgent".into(), "first_response".into(), 1)), "{:?}", snap.sla);
    assert_eq!(w.desk.time_counts(t + min(90)).unwrap(), (1, 0), "one overdue, nothing left to do");

    // After a restart the flags are still there: nothing is sent again.
    let w = w.restart("sla_warn_before = \"15m\"", TARGETS).await;
    w.desk.tick(t + min(120)).await.unwrap();
    assert_eq!(w.sent(OutKind::Escalation).len(), 2);
    // The answer meets the first response (late): it leaves the queue's overdue.
    w.desk
        .act(
            1,
            ActorRef::Agent("agent_alice".into()),
            vec![Action::Reply { text: "Fixed.".into(), attachments: vec![] }],
            vec![],
            None,
        )
        .await
        .unwrap();
    assert_eq!(w.ticket(1).ticket.first_response_due, None);
    assert!(w.desk.list(&overdue(t + min(120))).unwrap().tickets.is_empty());
}

#[tokio::test]
async fn a_pending_ticket_is_reminded_once_then_resolved_then_closed_across_a_restart() {
    let w = World::new(TIMERS, "");
    w.mail(1, "carla@customer.test", "Question", "").await;
    let rec = w
        .desk
        .act(1, ActorRef::Agent("agent_alice".into()), vec![Action::Status(Status::Pending)], vec![], None)
        .await
        .unwrap();
    let since = rec.timers.since.unwrap();
    let day = |d: i64| since + TimeDelta::days(d);
    w.desk.tick(day(2)).await.unwrap();
    assert!(w.sent(OutKind::Reminder).is_empty());
    w.desk.tick(day(3)).await.unwrap();
    let reminders = w.sent(OutKind::Reminder);
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0].to, vec!["carla@customer.test"]);

    let w = w.restart(TIMERS, "").await;
    w.desk.tick(day(3)).await.unwrap();
    w.desk.tick(day(5)).await.unwrap();
    assert_eq!(w.sent(OutKind::Reminder).len(), 1, "one reminder, restart or not");
    w.desk.tick(day(7)).await.unwrap();
    let rec = w.ticket(1);
    assert_eq!(rec.ticket.status, Status::Resolved);
    assert_eq!(w.sent(OutKind::Resolved).len(), 1, "the customer is told");
    let outbox_before = w.desk.outbox(true).unwrap().len();
    w.desk.tick(day(14)).await.unwrap();
    let rec = w.ticket(1);
    assert_eq!(rec.ticket.status, Status::Closed);
    assert!(
        rec.ticket
            .threads
            .iter()
            .any(|e| e.kind == ThreadType::System && e.message == "status resolved → closed by system")
    );
    assert_eq!(w.desk.outbox(true).unwrap().len(), outbox_before, "closing sends nothing");
    let snap = w.desk.health().readings();
    assert!(snap.automations.contains(&("close_resolved".into(), 1)), "{:?}", snap.automations);
}

#[tokio::test]
async fn a_customer_reply_before_the_reminder_moves_the_ticket_back() {
    let w = World::new(TIMERS, "");
    w.mail(1, "carla@customer.test", "Question", "").await;
    w.desk.act(1, ActorRef::Admin, vec![Action::Status(Status::Pending)], vec![], None).await.unwrap();
    w.mail(2, "carla@customer.test", "Re: Question", "In-Reply-To: <m1@customer.test>\r\n").await;
    let rec = w.ticket(1);
    assert_eq!(rec.ticket.status, Status::Open);
    assert_eq!(rec.timers.wake, None);
    w.desk.tick(Utc::now() + TimeDelta::days(30)).await.unwrap();
    assert!(w.sent(OutKind::Reminder).is_empty());
    assert_eq!(w.ticket(1).ticket.status, Status::Open);
}

#[tokio::test]
async fn a_merged_tickets_mail_lands_on_the_survivor() {
    let w = World::new("", "");
    w.mail(1, "carla@customer.test", "Printer broken", "").await;
    w.mail(2, "dave@customer.test", "Printer still broken", "").await;
    let survivor = w.desk.merge(2, 1, ActorRef::Agent("agent_alice".into())).await.unwrap();
    assert_eq!(survivor.number, 1);
    assert!(survivor.ticket.participants.contains(&"dave@customer.test".to_owned()));
    let merged = w.ticket(2);
    assert_eq!((merged.ticket.status, merged.merged_into), (Status::Closed, Some(1)));

    // By the token of the merged ticket, and by a reply to its acknowledgement.
    w.mail(3, "dave@customer.test", "Re: [Ticket #2] Printer still broken", "").await;
    let ack = w.sent(OutKind::Ack).into_iter().find(|e| e.ticket == 2).unwrap();
    w.mail(4, "dave@customer.test", "Re: your ticket", &format!("In-Reply-To: <{}>\r\n", ack.message_id)).await;
    let b = w.ticket(1);
    let texts = b.ticket.threads.iter().filter(|e| e.kind == ThreadType::User).count();
    assert_eq!(texts, 4, "both first mails and both replies: {:#?}", b.ticket.threads);
    assert_eq!(w.ticket(2).ticket.threads.len(), merged.ticket.threads.len(), "nothing lands on the merged one");
    assert!(w.desk.ticket(3).unwrap().is_none(), "no new ticket was opened");

    // A delivery report about the merged ticket's mail still counts.
    let dsn = format!(
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.customer.test\r\nTo: support@example.test\r\nSubject: Undelivered\r\nMessage-ID: <dsn1@mx.customer.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.customer.test\r\n\r\nFinal-Recipient: rfc822; dave@customer.test\r\nAction: failed\r\nStatus: 5.1.1\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{}>\r\n--B--\r\n",
        ack.message_id
    );
    let r = w.desk.ingest("support", 1, vec![Item::Mail { uid: 9, raw: dsn.into_bytes() }]).await;
    assert_eq!(r.done, vec![9]);
    assert!(w.desk.quarantine().unwrap().is_empty(), "not quarantined");
    let failed = w.desk.outbox(true).unwrap().into_iter().find(|e| e.seq == ack.seq).unwrap();
    assert_eq!(failed.refused, vec!["dave@customer.test"]);
    assert!(
        w.ticket(1)
            .ticket
            .threads
            .iter()
            .any(|e| e.kind == ThreadType::System && e.message.contains("dave@customer.test"))
    );

    // Refusals: the other way round (a cycle through a merged, closed ticket), into a closed one.
    let refused = |e: DeskError| match e {
        DeskError::Invalid(v) => {
            assert_eq!(v[0].field, "into");
            v[0].message.clone()
        }
        e => panic!("{e:?}"),
    };
    let e = refused(w.desk.merge(1, 2, ActorRef::Admin).await.unwrap_err());
    assert!(e.contains("merge cycle"), "{e}");
    w.mail(5, "erin@customer.test", "Another", "").await;
    w.desk.act(3, ActorRef::Admin, vec![Action::Status(Status::Closed)], vec![], None).await.unwrap();
    let e = refused(w.desk.merge(1, 3, ActorRef::Admin).await.unwrap_err());
    assert!(e.contains("#3 is closed"), "{e}");
    assert!(matches!(w.desk.merge(9, 1, ActorRef::Admin).await, Err(DeskError::NotFound(_))));
}

#[tokio::test]
async fn targets_configured_later_are_adopted_without_a_burst_and_the_tick_is_bounded() {
    let w = World::new("", "");
    let n = ticketd::desk::timers::PER_TICK as u32 + 5;
    for uid in 1..=n {
        w.mail(uid, &format!("c{uid}@customer.test"), "Site is down", "").await;
    }
    assert_eq!(w.ticket(1).ticket.first_response_due, None, "no targets yet");
    let t = created(&w, 1);
    // Targets configured and the desk restarted: the first ticks sweep every
    // ticket under the new config; what it puts in the past is shown as
    // overdue, not announced (an upgrade's adoption of records without
    // clocks does the same: see triage::timers' tests).
    let w = w.restart("", TARGETS).await;
    let late = t + min(10 * 60);
    assert!(w.desk.time_backlog(late).unwrap(), "a sweep is owed");
    let mut ticks = 0;
    while w.desk.time_backlog(late).unwrap() {
        w.desk.tick(late).await.unwrap();
        ticks += 1;
        assert!(ticks < 10, "the sweep ends");
    }
    assert!(ticks >= 2, "bounded: {n} tickets take more than one tick");
    let rec = w.ticket(n as u64);
    assert!(rec.ticket.first_response_due.is_some(), "the new target shows");
    assert!(w.sent(OutKind::Escalation).is_empty(), "what passed before the targets existed is not announced");
    assert_eq!(w.desk.time_counts(late).unwrap().0, n as u64, "but every one shows as overdue");

    // New tickets from now on breach for real; many at once take several ticks.
    let w = w.restart("", TARGETS).await;
    for uid in 1000..1000 + n {
        w.mail(uid, &format!("d{uid}@customer.test"), "Site is down", "").await;
    }
    let t2 = Utc::now() + min(2 * 60);
    let first = w.desk.tick(t2).await.unwrap();
    assert_eq!(first, ticketd::desk::timers::PER_TICK, "one tick does at most PER_TICK tickets");
    assert!(w.desk.time_backlog(t2).unwrap());
    w.desk.tick(t2).await.unwrap();
    assert!(!w.desk.time_backlog(t2).unwrap());
    assert_eq!(w.sent(OutKind::Escalation).len(), 2 * n as usize, "one breach notice per ticket, to both agents");
}

#[tokio::test]
async fn nothing_fires_under_the_old_targets_while_the_sweep_is_under_way() {
    // The sweep goes by ticket number, the clock by due time: the urgent
    // tickets come last in the one and first in the other.
    let high = "[[sla]]\npriority = \"high\"\nfirst_response = \"8h\"\n[[rules]]\nsubject = \"(?i)slow\"\npriority = \"high\"\n";
    let w = World::new("", &format!("{TARGETS}{high}"));
    let n = ticketd::desk::timers::PER_TICK as u32;
    for uid in 1..=n {
        w.mail(uid, &format!("c{uid}@customer.test"), "Site is slow", "").await;
    }
    for uid in n + 1..=n + 5 {
        w.mail(uid, &format!("c{uid}@customer.test"), "Site is down", "").await;
    }
    let urgent = u64::from(n + 5);
    let t = created(&w, urgent);
    assert_eq!(w.ticket(urgent).ticket.first_response_due, Some(t + min(60)));
    // The urgent first response target grows to 4h. Two hours in, under
    // the old rules the urgent tickets are overdue; under the new ones not.
    let longer = TARGETS.replace("\"1h\"", "\"4h\"");
    let w = w.restart("", &format!("{longer}{high}")).await;
    let at = t + min(2 * 60);
    let mut ticks = 0;
    while w.desk.time_backlog(at).unwrap() {
        w.desk.tick(at).await.unwrap();
        ticks += 1;
        assert!(ticks < 10, "the sweep ends");
    }
    assert!(ticks >= 2, "the sweep took more than one tick");
    let sent = w.sent(OutKind::Escalation);
    assert!(sent.is_empty(), "no notice is owed under the new targets: {} sent, e.g. {:?}", sent.len(), sent.first());
    let rec = w.ticket(urgent);
    assert_eq!(rec.ticket.first_response_due, Some(t + min(4 * 60)));
    assert!(!rec.timers.sla.target(ticketd::sla::TargetKind::FirstResponse).breached);
}

#[tokio::test]
async fn a_sweep_cut_short_by_another_config_change_starts_over() {
    let w = World::new("", TARGETS);
    let n = ticketd::desk::timers::PER_TICK as u32 + 5;
    for uid in 1..=n {
        w.mail(uid, &format!("c{uid}@customer.test"), "Site is down", "").await;
    }
    let t = created(&w, 1);
    // A new target, and one tick of its sweep; then yet another target
    // before the sweep got through.
    let w = w.restart("", &TARGETS.replace("\"1h\"", "\"4h\"")).await;
    w.desk.tick(t).await.unwrap();
    assert!(w.desk.time_backlog(t).unwrap(), "the sweep is under way");
    assert_eq!(w.ticket(1).ticket.first_response_due, Some(t + min(4 * 60)), "swept under the second config");
    let w = w.restart("", &TARGETS.replace("\"1h\"", "\"2h\"")).await;
    let mut ticks = 0;
    while w.desk.time_backlog(t).unwrap() {
        w.desk.tick(t).await.unwrap();
        ticks += 1;
        assert!(ticks < 10, "the sweep ends");
    }
    for k in [1, u64::from(n)] {
        let rec = w.ticket(k);
        assert_eq!(
            rec.ticket.first_response_due,
            Some(rec.ticket.created_at + min(2 * 60)),
            "ticket {k} follows the config in force"
        );
    }
}
