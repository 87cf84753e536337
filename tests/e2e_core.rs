//! End to end through real Postfix (SMTP) and Dovecot (IMAP): the daemon
//! runs as a real process against a private lab started per test.

mod common;

use std::time::Duration;

use common::{Daemon, Lab, header};
use ticketd::config::AfterAction;

fn customer_mail(from: &str, id: &str, subject: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Carla Customer <{from}>\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn with_attachment(id: &str) -> Vec<u8> {
    format!(
        "From: Carla Customer <customer@example.test>\r\nTo: support@example.test\r\nCc: boss@example.test\r\nSubject: Printer on fire\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe printer smokes. Log attached.\r\n--b1\r\nContent-Type: text/plain; name=\"error_logs.txt\"\r\nContent-Disposition: attachment; filename=\"error_logs.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\nRVJST1IgNDAxIGF0IGxpbmUgNDIK\r\n--b1--\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_mail_becomes_a_ticket_and_the_conversation_threads() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;

    lab.smtp_send("customer@example.test", &["support@example.test"], &with_attachment("first@customer.example.test"))
        .await
        .unwrap();
    let acks = lab.wait_for_messages("customer", "INBOX", 1, Duration::from_secs(30)).await.unwrap();
    let ack = String::from_utf8_lossy(&acks[0]).into_owned();
    assert!(header(&ack, "Subject").unwrap().starts_with("[Ticket #1] Printer on fire"), "{ack}");
    assert_eq!(header(&ack, "In-Reply-To").as_deref(), Some("<first@customer.example.test>"));
    assert!(header(&ack, "References").unwrap().contains("<first@customer.example.test>"));
    assert_eq!(header(&ack, "Auto-Submitted").as_deref(), Some("auto-replied"));
    assert!(header(&ack, "From").unwrap().contains("support@example.test"));
    let ack_id = header(&ack, "Message-ID").unwrap();
    lab.wait_for_messages("alice", "INBOX", 1, Duration::from_secs(30)).await.unwrap();

    // The customer answers the acknowledgement: threads by In-Reply-To.
    let reply = customer_mail(
        "customer@example.test",
        "second@customer.example.test",
        "Re: [Ticket #1] Printer on fire",
        &format!("In-Reply-To: {ack_id}\r\nReferences: <first@customer.example.test> {ack_id}\r\n"),
        "It is still smoking.\r\n\r\nOn Thu, 26 Nov 2026 at 10:00, Example Support <support@example.test> wrote:\r\n> We have opened ticket #1",
    );
    lab.smtp_send("customer@example.test", &["support@example.test"], &reply).await.unwrap();
    // A stranger quoting the token must not get into ticket 1.
    let stranger = customer_mail(
        "stranger@example.test",
        "s1@stranger.example.test",
        "Re: [Ticket #1] Printer on fire",
        "",
        "Let me see that ticket",
    );
    lab.smtp_send("stranger@example.test", &["support@example.test"], &stranger).await.unwrap();
    // An out-of-office reply: becomes a ticket, never acknowledged.
    let ooo = customer_mail(
        "bob@example.test",
        "ooo@bob.example.test",
        "Out of office",
        "Auto-Submitted: auto-replied\r\n",
        "I am away until Monday.",
    );
    lab.smtp_send("bob@example.test", &["support@example.test"], &ooo).await.unwrap();

    // Reply → 1 notification, stranger → ack + notification, ooo → notification only.
    lab.wait_for_messages("alice", "INBOX", 4, Duration::from_secs(30)).await.unwrap();
    lab.wait_for_messages("stranger", "INBOX", 1, Duration::from_secs(30)).await.unwrap();
    daemon.stop().await;

    let tickets = daemon.tickets_json();
    assert_eq!(tickets.len(), 3, "{tickets:#?}");
    let t1 = daemon.ticket_json(1);
    assert_eq!(t1["_id"], "support_ticket_1");
    assert_eq!(t1["title"], "Printer on fire");
    assert_eq!(t1["status"], "open");
    assert_eq!(t1["client"], "client_1");
    assert_eq!(t1["participants"], serde_json::json!(["boss@example.test"]));
    let threads = t1["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 2, "{t1:#}");
    assert_eq!(threads[1]["type"], "user");
    assert_eq!(threads[1]["message"], "It is still smoking.");
    let att = &t1["attachments"][0];
    assert_eq!(att["filename"], "error_logs.txt");
    assert_eq!(att["size"], 21);
    assert_eq!(att["type"], "text/plain");
    let url = att["url"].as_str().unwrap();
    let sha = url.rsplit('/').nth(1).unwrap();
    let store = ticketd::store::Store::open_path(
        &daemon.dir.path().join("db"),
        &daemon.dir.path().join("attachments"),
        8 << 20,
    )
    .unwrap();
    let stored = store.attachment(sha).unwrap().expect("the attachment is stored under its hash");
    drop(store);
    daemon.wait_store_free().await;
    assert_eq!(stored, b"ERROR 401 at line 42\n");

    // Postfix may deliver the last two mails in either order.
    let find = |text: &str| {
        tickets.iter().find(|t| t["threads"][0]["message"].as_str().is_some_and(|m| m.contains(text))).cloned().unwrap()
    };
    let stranger = find("Let me see that ticket");
    assert_ne!(stranger["_id"], "support_ticket_1", "the stranger got a ticket of their own");
    assert_ne!(stranger["client"], "client_1");
    assert_eq!(stranger["title"], "Printer on fire");
    assert_eq!(find("I am away until Monday.")["title"], "Out of office");
    let outbox = daemon.outbox_json();
    assert!(
        !outbox.iter().any(|m| m["to"].as_array().unwrap().iter().any(|a| a == "bob@example.test")),
        "no acknowledgement to an autoresponder: {outbox:#?}"
    );

    // Restart over the same mailbox: nothing is created or sent twice.
    daemon.start_in_process().await;
    daemon.wait_fetched("support", Duration::from_secs(30)).await;
    daemon.stop().await;
    assert_eq!(daemon.tickets_json().len(), 3);
    let again = daemon.outbox_json();
    let ids = |e: &[serde_json::Value]| e.iter().map(|m| m["message_id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&outbox), "the restart queued nothing");
    assert_eq!(common::queued(&again, "ack", "customer@example.test").len(), 1, "one acknowledgement only");
    let export = daemon.cli(&["export"]);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&export.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["_id"], "support_ticket_1", "export runs oldest first");
    assert_eq!(common::queued(&again, "agent_notify", "alice@example.test").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_plainly_while_the_daemon_holds_the_store() {
    let lab = Lab::start();
    let mut daemon = Daemon::start(&lab, "");
    let out = daemon.cli(&["tickets", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    daemon.stop_ok();
    let out = daemon.cli(&["tickets", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no tickets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_move_files_processed_mail_away() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |c| {
        let m = c.mailbox();
        m.after = Some(AfterAction::Move);
        m.move_to = Some("Processed".into());
    })
    .await;
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &customer_mail("customer@example.test", "mv1@c.example.test", "Move me", "", "hello"),
    )
    .await
    .unwrap();
    lab.wait_for_messages("customer", "INBOX", 1, Duration::from_secs(30)).await.unwrap();
    lab.wait_for_messages("support", "Processed", 1, Duration::from_secs(30)).await.unwrap();
    daemon.stop().await;
    assert_eq!(lab.imap_count("support", "INBOX").await.unwrap(), 0);
    assert_eq!(daemon.tickets_json().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_mail_is_marked_seen_and_kept() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &customer_mail("customer@example.test", "seen1@c.example.test", "Flags", "", "hello"),
    )
    .await
    .unwrap();
    lab.wait_for_messages("customer", "INBOX", 1, Duration::from_secs(30)).await.unwrap();
    daemon.stop().await;
    let flags = lab.imap_flags("support", "INBOX").await.unwrap();
    assert_eq!(flags.len(), 1);
    assert!(flags[0].1.iter().any(|f| f == "\\Seen"), "{flags:?}");
    assert_eq!(daemon.tickets_json().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_delete_with_polling_instead_of_idle() {
    let lab = Lab::start();
    let mut daemon = Daemon::prepare_with(&lab, |c| {
        c.mailbox().after = Some(AfterAction::Delete);
        c.mailbox().idle = Some(false);
    });
    daemon.spawn();
    for i in 0..3 {
        let m = customer_mail(
            &format!("customer+{i}@example.test"),
            &format!("del{i}@c.example.test"),
            &format!("Poll {i}"),
            "",
            "x",
        );
        lab.smtp_send("customer@example.test", &["support@example.test"], &m).await.unwrap();
    }
    lab.wait_for_messages("customer", "INBOX", 3, Duration::from_secs(30)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lab.imap_count("support", "INBOX").await.unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "processed mail is deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop_ok();
    assert!(daemon.log_text().contains("idle=false"), "the worker polled");
    assert_eq!(daemon.tickets_json().len(), 3);
}
