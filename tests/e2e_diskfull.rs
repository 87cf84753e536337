//! A full disk under the store: ticketd stops marking mail processed, says
//! so once at ERROR, and carries on by itself when space returns. The store
//! lives on a small tmpfs mounted for this test (CI runs as root).

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, Lab, wait_for_text};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mail(subject: &str, id: &str) -> Vec<u8> {
    format!("From: customer@example.test\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\r\n{}\r\n", "some text ".repeat(500)).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acknowledging_and_recovers() {
    let lab = Lab::start();
    let mut daemon = Daemon::prepare(&lab, "", "");
    let db = daemon.dir.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"]).arg(&db).status().unwrap();
    assert!(ok.success(), "mounting a tmpfs needs root (CI runs as root)");
    let _mount = Mount(db.clone());
    daemon.spawn();

    lab.smtp_send("customer@example.test", &["support@example.test"], &mail("Before", "df1@c.test")).await.unwrap();
    wait_for_text(&lab, "customer", "[Ticket #1] Before", Duration::from_secs(30)).await;

    // Fill the disk.
    let filler = db.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    drop(f);

    lab.smtp_send("customer@example.test", &["support@example.test"], &mail("During", "df2@c.test")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !daemon.log_text().contains("cannot store changes") {
        assert!(Instant::now() < deadline, "no ERROR about the store:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Retries go on (with backoff) while the disk stays full; the mail is not marked.
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.log_text().matches("waiting for the store").count() < 2 {
        assert!(Instant::now() < deadline, "no retries:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flags = lab.imap_flags("support", "INBOX").await.unwrap();
    assert_eq!(flags.len(), 2);
    assert!(!flags[1].1.iter().any(|f| f == "\\Seen"), "nothing is marked processed that was not stored: {flags:?}");
    let log = daemon.log_text();
    assert_eq!(log.lines().filter(|l| l.contains("ERROR") && l.contains("cannot store changes")).count(), 1, "{log}");

    // Space returns: the mail becomes a ticket without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while lab.imap_count("customer", "INBOX").await.unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "no recovery:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_text(&lab, "customer", "[Ticket #2] During", Duration::from_secs(5)).await;
    assert!(daemon.log_text().contains("the store accepts writes again"), "{}", daemon.log_text());
    daemon.stop_ok();
    let titles: Vec<String> = daemon.tickets_json().iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect();
    assert_eq!(titles, vec!["During", "Before"]);
    let flags = lab.imap_flags("support", "INBOX").await.unwrap();
    assert!(flags.iter().all(|(_, f)| f.iter().any(|x| x == "\\Seen")), "{flags:?}");
}
