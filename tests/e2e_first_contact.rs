//! First contact with a mailbox that already holds mail: `initial`
//! decides, and nobody is flooded. And `check-config --connect` tells the
//! admin which server does not work before the desk goes quiet.

mod common;

use std::time::Duration;

use common::{ApiAt, Daemon, Lab, address};
use ticketd::config::{AfterAction, Initial};

fn old_mail(i: usize, date: &str) -> Vec<u8> {
    format!(
        "From: Customer {i} <customer+old{i}@example.test>\r\nTo: support@example.test\r\nSubject: Old question {i}\r\nMessage-ID: <old{i}@customer.example.test>\r\nDate: {date}\r\n\r\nAsked long ago ({i}).\r\n"
    )
    .into_bytes()
}

/// 3 read, 2 read and answered, 2 unread.
async fn fill(lab: &Lab, user: &str) {
    let mut s = lab.session(user).await.unwrap();
    let flags = ["(\\Seen)", "(\\Seen)", "(\\Seen)", "(\\Seen \\Answered)", "(\\Seen \\Answered)", "()", "()"];
    for (i, f) in flags.iter().enumerate() {
        let date = format!("Mon, {:02} Jun 2025 09:00:00 +0000", i + 2);
        s.append("INBOX", Some(f), None, old_mail(i, &date)).await.unwrap();
    }
    s.logout().await.unwrap();
}

/// A desk on `user`'s mailbox, meeting it for the first time as `initial` says.
fn daemon_for(lab: &Lab, user: &str, initial: Initial) -> Daemon {
    Daemon::prepare_api_with(lab, ApiAt::Unix, |c| {
        let m = c.mailbox();
        m.initial = Some(initial);
        m.address = address(user);
        m.username = Some(address(user));
        c.desk.acks_per_sender_per_hour = Some(100);
    })
}

/// The first contact is over: the worker has been through the folder once
/// and waits for new mail, as `/readyz` says.
async fn settle(d: &Daemon) {
    d.wait_fetched("support", Duration::from_secs(30)).await;
}

fn titles(d: &Daemon) -> Vec<String> {
    let mut t: Vec<String> = d.tickets_json().iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_already_there_is_handled_as_initial_says() {
    let lab = Lab::start();
    for user in ["desk-unseen", "desk-new", "desk-import"] {
        lab.add_user(user, common::PASSWORD);
        fill(&lab, user).await;
    }

    // The default, "unseen": the two unread mails are work; read mail is history.
    let mut d = daemon_for(&lab, "desk-unseen", Initial::Unseen);
    d.start_in_process().await;
    lab.wait_for_messages("customer", "INBOX", 2, Duration::from_secs(30)).await.unwrap();
    lab.wait_for_messages("alice", "INBOX", 2, Duration::from_secs(30)).await.unwrap();
    settle(&d).await;
    d.stop().await;
    assert_eq!(titles(&d), vec!["Old question 5", "Old question 6"]);
    let flags = lab.imap_flags("desk-unseen", "INBOX").await.unwrap();
    assert_eq!(flags.len(), 7, "nothing moved or deleted");
    assert!(flags[..5].iter().all(|(_, f)| f.iter().any(|x| x == "\\Seen")));
    assert_eq!(lab.imap_fetch_all("customer", "INBOX").await.unwrap().len(), 2, "two acknowledgements, not seven");
    assert_eq!(lab.imap_fetch_all("alice", "INBOX").await.unwrap().len(), 2, "two notifications, not seven");

    // "new": nothing already there; what arrives afterwards is.
    let mut d = daemon_for(&lab, "desk-new", Initial::New);
    d.start_in_process().await;
    settle(&d).await;
    let fresh = "From: carol@example.test\r\nTo: desk-new@example.test\r\nSubject: Fresh\r\nMessage-ID: <fresh@c.test>\r\n\r\nNew today.\r\n";
    lab.smtp_send("carol@example.test", &["desk-new@example.test"], fresh.as_bytes()).await.unwrap();
    lab.wait_for_messages("alice", "INBOX", 3, Duration::from_secs(30)).await.unwrap();
    d.stop().await;
    assert_eq!(titles(&d), vec!["Fresh"]);
    let flags = lab.imap_flags("desk-new", "INBOX").await.unwrap();
    assert!(flags[5..7].iter().all(|(_, f)| !f.iter().any(|x| x == "\\Seen")), "old unread mail left alone: {flags:?}");

    // "import": all of it, quietly, with the original dates.
    let mut d = daemon_for(&lab, "desk-import", Initial::Import);
    d.start_in_process().await;
    common::all_seen(&lab, "desk-import", 7, Duration::from_secs(30)).await;
    settle(&d).await;
    d.stop().await;
    let tickets = d.tickets_json();
    assert_eq!(tickets.len(), 7);
    for t in &tickets {
        assert!(t["tags"].as_array().unwrap().iter().any(|x| x == "imported"), "{t}");
        assert!(t["createdAt"].as_str().unwrap().starts_with("2025-06-0"), "original date: {}", t["createdAt"]);
    }
    assert_eq!(lab.imap_fetch_all("customer", "INBOX").await.unwrap().len(), 2, "no acknowledgement for history");
    assert_eq!(lab.imap_fetch_all("alice", "INBOX").await.unwrap().len(), 3, "no notification for history");
    let out = d.cli(&["outbox", "--all", "--json"]);
    let queued: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert!(queued.is_empty(), "history queued nothing: {queued:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_connect_names_each_server_that_does_not_work() {
    let lab = Lab::start();
    let good = Daemon::prepare_with(&lab, |c| {
        c.mailbox().after = Some(AfterAction::Move);
        c.mailbox().move_to = Some("Done".into());
    });
    let out = good.cli(&["check-config", "--connect"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "the move_to folder is missing:\n{text}");
    assert!(text.contains("ok   mailbox support") && text.contains("login OK; INBOX holds 0 message(s)"), "{text}");
    assert!(text.contains("FAIL mailbox support") && text.contains("move_to folder \"Done\" does not exist"), "{text}");
    assert!(text.contains("ok   smtp 127.0.0.1"), "{text}");
    lab.imap_append("support", "Done", b"From: x@example.test\r\nSubject: x\r\n\r\nx\r\n").await.unwrap();
    let out = good.cli(&["check-config", "--connect"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let wrong = Daemon::prepare_with(&lab, |c| c.mailbox().password = "wrong".into());
    let out = wrong.cli(&["check-config", "--connect"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success());
    assert!(text.contains("FAIL mailbox support") && text.contains("login as support@example.test refused"), "{text}");

    // Nothing listens on a port just released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = Daemon::prepare_with(&lab, |c| {
        c.mailbox().port = free;
        c.smtp.port = free;
    });
    let out = down.cli(&["check-config", "--connect"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!("FAIL mailbox support (127.0.0.1:{free})")) && text.contains("connect to"),
        "{text}"
    );
    assert!(text.contains(&format!("FAIL smtp 127.0.0.1:{free}")), "{text}");
}
