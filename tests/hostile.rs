//! Hostile mail against the real lab: no message can stop, stall or fool
//! the desk. Each case is followed by a normal mail that must become a
//! ticket while the daemon stays up (or, for a mail that kills the process,
//! comes back up and quarantines it within a bounded number of restarts).

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Lab};

fn normal_mail(id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Carla Customer <customer@example.test>\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nAn ordinary question.\r\n"
    )
    .into_bytes()
}

/// The ticket titled `title`, read from the store (daemon stopped).
fn ticket_titled(daemon: &Daemon, title: &str) -> Option<serde_json::Value> {
    let out = daemon.cli(&["tickets", "list", "--json"]);
    if !out.status.success() {
        return None;
    }
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    list.into_iter().find(|t| t["title"] == title)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_that_kills_the_process_is_quarantined_after_two_deaths_and_the_mailbox_goes_on() {
    let lab = Lab::start();
    // Both are in the mailbox before the daemon starts: the poison comes first.
    let poison = normal_mail("poison@customer.example.test", "POISON-PILL-7 please");
    lab.imap_append("support", "INBOX", &poison).await.unwrap();
    lab.imap_append("support", "INBOX", &normal_mail("after@customer.example.test", "After the poison")).await.unwrap();

    let mut daemon = Daemon::prepare(&lab, "", "");
    daemon.env = vec![("TICKETD_CRASH_ON".into(), "POISON-PILL-7".into())];
    let mut starts = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    // What systemd's Restart=on-failure does, bounded.
    loop {
        if !daemon.running() {
            assert!(starts < 4, "still dying after {starts} starts:\n{}", daemon.log_text());
            starts += 1;
            if !daemon.try_spawn() {
                continue;
            }
        }
        let flags = lab.imap_flags("support", "INBOX").await.unwrap_or_default();
        let all_seen = flags.len() == 2 && flags.iter().all(|(_, f)| f.iter().any(|x| x == "\\Seen"));
        if all_seen && daemon.running() {
            break;
        }
        assert!(Instant::now() < deadline, "poison never quarantined:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One death in a normal batch, two with the message in hand alone.
    assert!(starts <= 3 + 1, "{starts} starts");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(daemon.running(), "alive after quarantining:\n{}", daemon.log_text());
    daemon.stop_ok();
    assert!(ticket_titled(&daemon, "After the poison").is_some(), "the next mail is a ticket");
    assert!(ticket_titled(&daemon, "POISON-PILL-7 please").is_none(), "the poison is not");
    let out = daemon.cli(&["quarantine", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().filter(|l| l.contains("stopped unexpectedly 2 times")).count(), 1, "{listed}");

    // A clean restart after the quarantine is a normal start again.
    daemon.spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    daemon.stop_ok();
    assert!(!daemon.log_text().rsplit("ticketd ready").next().unwrap_or("").contains("one message at a time"));
}
