//! The desk keeps time (#19), end to end through real Postfix and Dovecot
//! with short durations: a breach notice to the assignee, exactly once
//! across a restart; a pending ticket reminded, resolved and closed; a
//! merge after which the merged ticket's mail lands on the survivor.
//! "Exactly once" is asked of ticketd's own outbox, after a later event
//! proved that the clock kept ticking.

mod common;

use std::time::Duration;

use axum::http::Method;
use common::{ApiAt, Daemon, Lab, wait_for_text};
use ticketd::cli::http::Body;

const WAIT: Duration = Duration::from_secs(40);

fn mail(from: &str, subject: &str, id: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.test\r\n{extra}Subject: {subject}\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// A daemon with the API, `desk_extra` in `[desk]` and `tables` (e.g.
/// `[[sla]]`) at the end of the file.
fn daemon(lab: &Lab, mailbox_extra: &str, desk_extra: &str, tables: &str) -> Daemon {
    let mut d = Daemon::prepare_api(lab, ApiAt::Unix, mailbox_extra, &format!("clock_interval = \"1s\"\n{desk_extra}"));
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, format!("{text}\n{tables}")).unwrap();
    d.spawn();
    d
}

/// The outbox (everything ever queued) of one ticket, as ticketd says.
async fn outbox_of(d: &Daemon, ticket: u64) -> Vec<serde_json::Value> {
    let r = d.api().get("/api/v1/outbox?all=true").await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["entries"].as_array().unwrap().iter().filter(|e| e["ticket"] == ticket).cloned().collect()
}

fn subjects(entries: &[serde_json::Value], kind: &str) -> Vec<String> {
    entries.iter().filter(|e| e["kind"] == kind).map(|e| e["subject"].as_str().unwrap().to_owned()).collect()
}

fn systems(t: &serde_json::Value) -> Vec<String> {
    t["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "system")
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_ticket_past_its_target_gets_one_breach_notice_to_the_assignee() {
    let lab = Lab::start();
    let targets = "[[sla]]\npriority = \"urgent\"\nfirst_response = \"4s\"\nresolution = \"14s\"\n";
    let mut d = daemon(&lab, "priority = \"urgent\"", "sla_warn_before = \"0s\"", targets);
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &mail("customer@example.test", "Site is down", "c1@customer.example.test", "", "Nothing loads."),
    )
    .await
    .unwrap();
    let t = d.eventually_json("/api/v1/tickets/1", WAIT, |s, _| s == 200).await;
    assert!(t["firstResponseDue"].is_string() && t["resolutionDue"].is_string(), "{t:#}");
    let r = d
        .api()
        .send(
            Method::PATCH,
            "/api/v1/tickets/1",
            &[],
            Some(Body::json(&serde_json::json!({"assignedTo": "agent_alice"}))),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let notice = wait_for_text(&lab, "alice", "Overdue: [Ticket #1]", WAIT).await;
    assert!(notice.contains("The first response on ticket #1 was due at"), "{notice}");
    let overdue = d
        .eventually_json("/api/v1/tickets?due=overdue", WAIT, |_, v| {
            v["tickets"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert_eq!(overdue["tickets"][0]["_id"], "support_ticket_1");

    // Across a restart, until the resolution target passes too (a later
    // event: the clock went on ticking), the first response's notice is not
    // repeated.
    d = d.restart();
    wait_for_text(&lab, "alice", "The resolution on ticket #1 was due", WAIT).await;
    let sent = outbox_of(&d, 1).await;
    let notices = subjects(&sent, "escalation");
    assert_eq!(notices.len(), 2, "one breach notice per target: {notices:?}");
    assert!(notices.iter().all(|s| s == "Overdue: [Ticket #1] Site is down"), "{notices:?}");
    for e in sent.iter().filter(|e| e["kind"] == "escalation") {
        assert_eq!(e["to"], serde_json::json!(["alice@example.test"]), "the assignee");
    }
    let t = d.eventually_json("/api/v1/tickets/1", WAIT, |s, _| s == 200).await;
    let breaches: Vec<String> = systems(&t).into_iter().filter(|s| s.starts_with("response target breached")).collect();
    assert_eq!(breaches.len(), 2, "{breaches:?}");
    let metrics = String::from_utf8_lossy(&d.api().get("/metrics").await.unwrap().body).into_owned();
    assert!(metrics.contains("ticketd_sla_breaches_total{priority=\"urgent\",target=\"resolution\"} 1"), "{metrics}");
    assert!(metrics.contains("ticketd_sla_overdue_tickets 1"), "{metrics}");
    d.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_ticket_is_reminded_then_resolved_and_a_resolved_one_closes() {
    let lab = Lab::start();
    let timers = "pending_reminder_after = \"2s\"\npending_resolve_after = \"5s\"\nclose_resolved_after = \"3s\"";
    let mut d = daemon(&lab, "", timers, "");
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &mail("customer@example.test", "Printer question", "c1@customer.example.test", "", "Which toner?"),
    )
    .await
    .unwrap();
    d.eventually_json("/api/v1/tickets/1", WAIT, |s, _| s == 200).await;
    let r = d
        .api()
        .send(Method::PATCH, "/api/v1/tickets/1", &[], Some(Body::json(&serde_json::json!({"status": "pending"}))))
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let reminder = wait_for_text(&lab, "customer", "is waiting for your answer", WAIT).await;
    assert!(reminder.contains("[Ticket #1]") && reminder.contains("it will be closed as resolved on"), "{reminder}");
    wait_for_text(&lab, "customer", "has been resolved", WAIT).await;
    let t = d.eventually_json("/api/v1/tickets/1", WAIT, |_, v| v["status"] == "closed").await;
    let s = systems(&t);
    assert!(s.iter().any(|m| m.starts_with("reminder sent to the customer")), "{s:?}");
    assert!(s.iter().any(|m| m == "status pending → resolved by system"), "{s:?}");
    assert!(s.iter().any(|m| m == "status resolved → closed by system"), "{s:?}");
    assert!(t["resolvedAt"].is_string(), "kept on close");
    let kinds: Vec<String> = outbox_of(&d, 1).await.iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "reminder").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "resolved").count(), 1, "{kinds:?}");
    assert_eq!(kinds.len(), 4, "ack, notification, reminder, resolved notice; closing mails nothing: {kinds:?}");
    d.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_merge_the_merged_tickets_mail_lands_on_the_survivor() {
    let lab = Lab::start();
    let mut d = daemon(&lab, "", "", "");
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &mail("customer@example.test", "Printer broken", "c1@customer.example.test", "", "It smokes."),
    )
    .await
    .unwrap();
    d.eventually_json("/api/v1/tickets/1", WAIT, |s, _| s == 200).await;
    lab.smtp_send(
        "carol@example.test",
        &["support@example.test"],
        &mail("carol@example.test", "Printer still broken", "k1@carol.example.test", "", "Same printer, same smoke."),
    )
    .await
    .unwrap();
    d.eventually_json("/api/v1/tickets/2", WAIT, |s, _| s == 200).await;

    let r = d
        .api()
        .send(Method::POST, "/api/v1/tickets/2/merge", &[], Some(Body::json(&serde_json::json!({"into": 1}))))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let b: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(b["_id"], "support_ticket_1");
    assert_eq!(b["participants"], serde_json::json!(["carol@example.test"]), "A's customer joins B");
    let a = d.eventually_json("/api/v1/tickets/2", WAIT, |s, _| s == 200).await;
    assert_eq!((a["status"].as_str(), a["mergedInto"].as_str()), (Some("closed"), Some("support_ticket_1")));

    // Carol answers under the merged ticket's token: it lands on #1.
    lab.smtp_send(
        "carol@example.test",
        &["support@example.test"],
        &mail(
            "carol@example.test",
            "Re: [Ticket #2] Printer still broken",
            "k2@carol.example.test",
            "",
            "Now it beeps too.",
        ),
    )
    .await
    .unwrap();
    let t = d
        .eventually_json("/api/v1/tickets/1", WAIT, |_, v| {
            v["threads"].as_array().is_some_and(|a| a.iter().any(|e| e["message"] == "Now it beeps too."))
        })
        .await;
    assert!(
        t["threads"].as_array().unwrap().iter().any(|e| e["message"] == "Same printer, same smoke."),
        "A's entries moved"
    );
    let none = d.api().get("/api/v1/tickets/3").await.unwrap();
    assert_eq!(none.status, 404, "no new ticket was opened");

    // The other way round is a cycle; the CLI says so and changes nothing.
    let out = d.cli(&["tickets", "merge", "1", "--into", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("merge cycle"), "{err}");

    // An agent merges by mail: #merge in the answer to a notification.
    lab.smtp_send(
        "carol@example.test",
        &["support@example.test"],
        &mail("carol@example.test", "Printer!!", "k3@carol.example.test", "", "Help."),
    )
    .await
    .unwrap();
    d.eventually_json("/api/v1/tickets/3", WAIT, |s, _| s == 200).await;
    let note = wait_for_text(&lab, "alice", "New ticket #3", WAIT).await;
    let notify_id = common::header(&note, "Message-ID").unwrap();
    let answer = format!(
        "From: alice@example.test\r\nTo: support@example.test\r\nSubject: Re: [Ticket #3] Printer!!\r\nMessage-ID: <a3@example.test>\r\nIn-Reply-To: {notify_id}\r\nReferences: {notify_id}\r\n\r\n#merge 1\r\nWe continue on #1.\r\n"
    );
    lab.smtp_send("alice@example.test", &["support@example.test"], answer.as_bytes()).await.unwrap();
    let c = d.eventually_json("/api/v1/tickets/3", WAIT, |_, v| v["mergedInto"] == "support_ticket_1").await;
    assert_eq!(c["status"], "closed");
    d.stop_ok();
}
