//! The desk's one writer, driven directly (no servers: the store is real,
//! mail arrives as raw bytes the way the IMAP worker hands it over).

mod common;

use common::desk::World;
use ticketd::desk::{ActorRef, Delivery, DeskError, Item};
use ticketd::ticket::{Status, ThreadType};
use ticketd::triage::act::Action;

fn mail(id: &str, extra: &str, body: &str) -> Vec<u8> {
    format!("From: Carla <carla@customer.test>\r\nTo: support@example.test\r\n{extra}Subject: Printer\r\nMessage-ID: <{id}>\r\n\r\n{body}\r\n").into_bytes()
}

#[tokio::test]
async fn a_refusal_and_a_reply_at_the_same_moment_both_land() {
    let w = World::new();
    w.ingest(1, mail("m1@c.test", "Cc: ghost@customer.test\r\n", "It smokes.")).await;
    let entries = w.desk.outbox(false).unwrap();
    let notify = entries.iter().find(|e| e.to.contains(&"alice@example.test".to_owned())).unwrap().seq;
    for round in 0..20u32 {
        // The sender's outcome and a customer reply to the same ticket, at once.
        let refusal = w.desk.delivery(
            notify,
            vec![Delivery::Refused { rcpt: format!("ghost{round}@customer.test"), error: "550 no such user".into() }],
        );
        let reply = w.ingest(
            10 + round,
            mail(&format!("r{round}@c.test"), "In-Reply-To: <m1@c.test>\r\n", &format!("reply {round}")),
        );
        let (r, ()) = tokio::join!(refusal, reply);
        r.unwrap();
    }
    let t = w.desk.ticket(1).unwrap().unwrap().ticket;
    for round in 0..20 {
        assert!(t.threads.iter().any(|e| e.message == format!("reply {round}")), "reply {round} lost");
        assert!(
            t.threads.iter().any(|e| e.kind == ThreadType::System && e.message.contains(&format!("ghost{round}@"))),
            "refusal {round} lost"
        );
    }
}

#[tokio::test]
async fn every_channel_gets_the_same_rules_and_stale_writes_are_refused() {
    let w = World::new();
    w.ingest(1, mail("m1@c.test", "", "It smokes.")).await;
    let before = w.desk.ticket(1).unwrap().unwrap();
    let rec = w
        .desk
        .act(
            1,
            ActorRef::Admin,
            vec![Action::Status(Status::Resolved), Action::Resolution(Some("Fuser".into()))],
            vec![],
            Some(before.version),
        )
        .await
        .unwrap();
    assert_eq!(rec.version, before.version + 1);
    assert!(rec.ticket.resolved_at.is_some());
    let systems: Vec<&str> =
        rec.ticket.threads.iter().filter(|e| e.kind == ThreadType::System).map(|e| e.message.as_str()).collect();
    assert_eq!(systems, vec!["status open → resolved by admin", "resolution set by admin: Fuser"]);
    let queued = w.desk.outbox(false).unwrap();
    assert!(queued.iter().any(|e| e.kind == ticketd::outbox::OutKind::Resolved), "the customer is told");

    // A write based on the old version is refused, and changes nothing.
    let stale = w.desk.act(1, ActorRef::Admin, vec![Action::Status(Status::Open)], vec![], Some(before.version)).await;
    assert_eq!(stale.unwrap_err(), DeskError::Conflict { current: rec.version });
    assert_eq!(w.desk.ticket(1).unwrap().unwrap().ticket.status, Status::Resolved);

    // Bad values are refused with the field, all at once.
    let bad = w
        .desk
        .act(
            1,
            ActorRef::Admin,
            vec![Action::Assign(Some("agent_nobody".into())), Action::Tag(vec!["a b".into()])],
            vec![],
            None,
        )
        .await
        .unwrap_err();
    let DeskError::Invalid(errors) = bad else { panic!("{bad:?}") };
    let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
    assert_eq!(fields, vec!["assignedTo", "tags"]);

    // A reply by an agent assigns, starts work and is relayed; a note is internal.
    w.desk.act(1, ActorRef::Admin, vec![Action::Status(Status::Open)], vec![], None).await.unwrap();
    let rec = w
        .desk
        .act(
            1,
            ActorRef::Agent("agent_alice".into()),
            vec![Action::Reply { text: "Replaced it.".into(), attachments: vec![] }],
            vec![],
            None,
        )
        .await
        .unwrap();
    assert_eq!(rec.ticket.assigned_to.as_deref(), Some("agent_alice"));
    assert_eq!(rec.ticket.status, Status::InProgress);
    let rec = w
        .desk
        .act(1, ActorRef::Agent("agent_alice".into()), vec![Action::Note { text: "old firmware".into() }], vec![], None)
        .await
        .unwrap();
    let last = rec.ticket.threads.last().unwrap();
    assert!(last.internal && last.kind == ThreadType::Agent);
    let json = serde_json::to_value(&rec.ticket).unwrap();
    assert_eq!(json["threads"].as_array().unwrap().last().unwrap()["internal"], true);
    let relays =
        w.desk.outbox(false).unwrap().into_iter().filter(|e| e.kind == ticketd::outbox::OutKind::Relay).count();
    assert_eq!(relays, 1, "the note went to no one");
    assert!(w.desk.act(99, ActorRef::Admin, vec![Action::Status(Status::Open)], vec![], None).await.is_err());
}

#[tokio::test]
async fn a_quarantine_retry_that_fails_again_keeps_an_entry() {
    let w = World::new();
    let raw = b"not an email at all".to_vec();
    let r = w.desk.ingest("support", 1, vec![Item::Mail { uid: 1, raw }]).await;
    assert_eq!(r.done, vec![1]);
    let q = w.desk.quarantine().unwrap();
    assert_eq!(q.len(), 1);
    let again = w.desk.quarantine_retry(q[0].id, ticketd::desk::ActorRef::Admin).await.unwrap();
    assert!(matches!(again, ticketd::desk::RetryOutcome::Quarantined { .. }), "{again:?}");
    let after = w.desk.quarantine().unwrap();
    assert_eq!(after.len(), 1, "the mail is still kept: {after:?}");
    assert!(after[0].reason.contains("unparseable"));
    w.desk.quarantine_drop(after[0].id, ticketd::desk::ActorRef::Admin).await.unwrap();
    assert!(w.desk.quarantine().unwrap().is_empty());
    assert_eq!(
        w.desk.quarantine_drop(after[0].id, ticketd::desk::ActorRef::Admin).await,
        Err(DeskError::NotFound(format!("quarantine entry {}", after[0].id)))
    );
}

#[tokio::test]
async fn a_real_bounce_fails_one_recipient_and_spares_the_others() {
    let w = World::new();
    w.ingest(1, mail("m1@c.test", "Cc: boss@customer.test\r\n", "For both of us.")).await;
    w.desk
        .act(
            1,
            ActorRef::Agent("agent_alice".into()),
            vec![Action::Reply { text: "On it.".into(), attachments: vec![] }],
            vec![],
            None,
        )
        .await
        .unwrap();
    let relay = w.desk.outbox(false).unwrap().into_iter().find(|e| e.kind == ticketd::outbox::OutKind::Relay).unwrap();
    assert_eq!(relay.to, vec!["carla@customer.test", "boss@customer.test"]);
    let dsn = format!(
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.customer.test\r\nTo: support@example.test\r\nSubject: Undelivered\r\nMessage-ID: <dsn1@mx.customer.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.customer.test\r\n\r\nFinal-Recipient: rfc822; boss@customer.test\r\nAction: failed\r\nStatus: 5.1.1\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{}>\r\n--B--\r\n",
        relay.message_id
    );
    w.ingest(2, dsn.into_bytes()).await;
    let after = w.desk.outbox(true).unwrap().into_iter().find(|e| e.seq == relay.seq).unwrap();
    assert_eq!(after.state, ticketd::outbox::OutState::Queued, "still waits for the customer: {after:?}");
    assert_eq!(after.refused, vec!["boss@customer.test"]);
    let t = w.desk.ticket(1).unwrap().unwrap().ticket;
    assert!(
        t.threads.iter().any(|e| e.kind == ThreadType::System && e.message.contains("boss@customer.test")),
        "{t:#?}"
    );
}

/// Two different mails that share a Message-ID (ServiceNow and Jira reuse
/// them) are two mails, and the notifications about them are two mails
/// with two Message-IDs, even on the same day.
#[tokio::test]
async fn two_mails_sharing_a_message_id_get_notifications_with_their_own_ids() {
    let w = World::new();
    w.ingest(1, mail("m1@c.test", "", "It smokes.")).await;
    let reply = |body: &str| mail("reused@c.test", "In-Reply-To: <m1@c.test>\r\n", body);
    w.ingest(2, reply("Still smoking.")).await;
    w.ingest(3, reply("Now it is on fire.")).await;
    let t = w.desk.ticket(1).unwrap().unwrap().ticket;
    let texts: Vec<&str> = t.threads.iter().map(|e| e.message.as_str()).collect();
    assert!(texts.contains(&"Still smoking.") && texts.contains(&"Now it is on fire."), "{texts:?}");
    let ids: Vec<String> = w
        .desk
        .outbox(true)
        .unwrap()
        .into_iter()
        .filter(|e| e.to.contains(&"alice@example.test".to_owned()))
        .map(|e| e.message_id)
        .collect();
    assert_eq!(ids.len(), 3, "one notification per mail: {ids:?}");
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 3, "every notification has its own Message-ID: {ids:?}");
}

/// The per-agent hourly limit: a flood of new tickets gives an agent at
/// most `notifications_per_agent_per_hour` mails, and the rest in one
/// digest, once, when the hour has passed.
#[tokio::test]
async fn an_agent_past_the_hourly_limit_gets_one_digest_of_the_rest() {
    let w = World::with(|c| c.desk.notifications_per_agent_per_hour = Some(2));
    for uid in 1..=5u32 {
        let m = format!(
            "From: c{uid}@customer.test\r\nTo: support@example.test\r\nSubject: Flood {uid}\r\nMessage-ID: <f{uid}@c.test>\r\n\r\nhi\r\n"
        );
        w.ingest(uid, m.into_bytes()).await;
    }
    let to_alice = |w: &World| -> Vec<ticketd::desk::views::OutboxView> {
        w.desk.outbox(true).unwrap().into_iter().filter(|e| e.to.contains(&"alice@example.test".to_owned())).collect()
    };
    let sent = to_alice(&w);
    assert_eq!(sent.len(), 2, "two notifications, the limit: {sent:?}");
    let now = chrono::Utc::now();
    assert_eq!(w.desk.tick(now).await.unwrap(), 0, "still within the hour and over the limit: no digest yet");
    let later = now + chrono::Duration::minutes(61);
    assert_eq!(w.desk.tick(later).await.unwrap(), 1);
    let all = to_alice(&w);
    let digest = all.iter().find(|e| e.kind == ticketd::outbox::OutKind::Digest).expect("a digest");
    assert!(digest.subject.contains("3 notifications held back"), "{}", digest.subject);
    assert_eq!(w.desk.tick(later + chrono::Duration::minutes(1)).await.unwrap(), 0, "one digest, not a stream");
    assert_eq!(to_alice(&w).len(), 3);
}

/// The writer says what each durable commit changed: the console's live
/// updates come from here, from every channel alike.
#[tokio::test]
async fn every_commit_tells_subscribers_what_changed() {
    let w = World::new();
    let mut changes = w.desk.subscribe();
    w.ingest(1, mail("m1@c.test", "", "It smokes.")).await;
    let c = changes.recv().await.unwrap();
    assert_eq!(c.tickets, vec![1]);
    assert!(c.outbox, "the acknowledgement was queued");
    w.desk.act(1, ActorRef::Admin, vec![Action::Note { text: "checked".into() }], vec![], None).await.unwrap();
    let c = changes.recv().await.unwrap();
    assert_eq!((c.tickets.as_slice(), c.outbox), (&[1u64][..], false), "{c:?}");
}
