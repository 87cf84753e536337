//! Spam benchmark (not a timed test): the real `ticketd` daemon ingesting,
//! in one run against a private Dovecot, a mailbox of ordinary mail and a
//! mailbox of the same size half of which its border (SpamAssassin, as
//! `spamc` at delivery writes it: `X-Spam-*` above the border's `Received:`)
//! marked spam. Held spam makes no ticket, no acknowledgement and no
//! notification, only a spam-list entry and the raw copy, so holding must
//! not be slower than making a ticket: the half-spam mailbox should ingest
//! at least as fast. Prints msg/s of each and their ratio.
//!
//! `cargo bench --bench spam` runs 2,000 mails per mailbox;
//! `TICKETD_BENCH_SIZES=2000,10000` and `TICKETD_BENCH_RUNS=3` (the median
//! is printed) change that. Under `cargo test` it is a small smoke run.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use futures::TryStreamExt;

use ticketd::store::Store;

const BORDER_HOST: &str = "mx.example.test";

/// Message `i` of a mailbox; `spam` marks it as the border's SpamAssassin
/// does (ham gets the border's "No").
fn message(i: usize, spam: bool) -> Vec<u8> {
    let (sender, subject, verdict) = if spam {
        (
            format!("offers+{}@promo{}.example", i % 97, i % 13),
            "Cheap printers, today only",
            "X-Spam-Flag: YES\r\nX-Spam-Level: *******\r\nX-Spam-Status: Yes, score=7.3 required=5.0 tests=BENCH autolearn=no\r\n",
        )
    } else {
        (
            format!("customer+{}@example.test", i % 400),
            ["Cannot log in", "Invoice question", "API returns 401", "Printer on fire"][i % 4],
            "X-Spam-Level: *\r\nX-Spam-Status: No, score=1.3 required=5.0 tests=BENCH autolearn=no\r\n",
        )
    };
    let body = format!(
        "Hello support,\r\n\r\nthis is message {i}. {}\r\n\r\nThanks,\r\nSomeone {i}\r\n",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(1 + i % 8)
    );
    format!(
        "X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on {BORDER_HOST}\r\n{verdict}\
Received: from client.example.net (client.example.net [203.0.113.7])\r\n\tby {BORDER_HOST} (Postfix) with ESMTP id B{i}\r\n\tfor <support@example.test>; Mon,  7 Dec 2026 08:00:00 +0000 (UTC)\r\n\
Return-Path: <{sender}>\r\nFrom: Someone {i} <{sender}>\r\nTo: support@example.test\r\nSubject: {subject}\r\n\
Message-ID: <spam-bench-{i}-{spam}@example.test>\r\nDate: Mon, 07 Dec 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
    .into_bytes()
}

async fn load(lab: &common::Lab, user: &str, n: usize, half_spam: bool) {
    lab.add_user(user, common::PASSWORD);
    let mut s = lab.imap_login(user).await.unwrap();
    for i in 0..n {
        s.append("INBOX", None, None, message(i, half_spam && i % 2 == 1)).await.unwrap();
    }
    let _ = s.logout().await;
}

async fn unmark(lab: &common::Lab, user: &str) {
    let mut s = lab.imap_login(user).await.unwrap();
    s.select("INBOX").await.unwrap();
    let _: Vec<_> = s.uid_store("1:*", "-FLAGS.SILENT (\\Seen)").await.unwrap().try_collect().await.unwrap();
    let _ = s.logout().await;
}

struct Run {
    secs: f64,
    tickets: usize,
    held: usize,
}

/// The daemon reading `user`'s mailbox from scratch until every message is
/// `\Seen` (durable first); outbound mail goes to a closed port.
async fn one_run(lab: &common::Lab, user: &str) -> Run {
    let mut daemon = common::Daemon::prepare(
        lab,
        "batch_size = 50",
        "acks_per_sender_per_hour = 100000\nnotifications_per_ticket_per_hour = 100000\nnotifications_per_agent_per_hour = 100000",
    );
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = std::fs::read_to_string(&daemon.config)
        .unwrap()
        .replacen(&format!("port = {}", lab.smtp_port), &format!("port = {dead}"), 1)
        .replacen("username = \"support@example.test\"", &format!("username = \"{user}@example.test\""), 1)
        .replacen("address = \"support@example.test\"", &format!("address = \"{user}@example.test\""), 1)
        .replace("timeout = \"10s\"\n\n[[mailboxes]]", "timeout = \"10s\"\nretry_initial = \"1h\"\n\n[[mailboxes]]");
    let cfg = format!("{cfg}\n[spam]\nborder = \"spamassassin\"\nborder_host = \"{BORDER_HOST}\"\n");
    std::fs::write(&daemon.config, cfg).unwrap();
    daemon.env = vec![("TICKETD_LOG".into(), "warn,ticketd::daemon=info".into())];
    let mut watch = lab.imap_login(user).await.unwrap();
    let t = Instant::now();
    daemon.spawn();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        watch.examine("INBOX").await.unwrap();
        if watch.uid_search("UNSEEN").await.unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "ingest did not finish");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = watch.logout().await;
    daemon.stop_ok();
    let dir = daemon.dir.path();
    let store = Store::open_path(&dir.join("db"), &dir.join("attachments"), 8 << 20).unwrap();
    Run { secs, tickets: store.tickets().unwrap().len(), held: store.spam_entries().unwrap().len() }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::var("TICKETD_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| if full { vec![2000] } else { vec![60] });
    let runs: usize = std::env::var("TICKETD_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let lab = common::Lab::start();
    let mut table = Vec::new();
    for &n in &sizes {
        let (ham, mixed) = (format!("ham{n}"), format!("mixed{n}"));
        let t = Instant::now();
        load(&lab, &ham, n, false).await;
        load(&lab, &mixed, n, true).await;
        eprintln!("loaded 2 x {n} messages in {:.1}s", t.elapsed().as_secs_f64());
        let (mut ham_secs, mut mixed_secs) = (Vec::new(), Vec::new());
        for r in 0..runs {
            if r > 0 {
                unmark(&lab, &ham).await;
                unmark(&lab, &mixed).await;
            }
            // Alternate which goes first, so neither always meets a cold cache.
            let order: [(&str, bool); 2] =
                if r % 2 == 0 { [(&ham, false), (&mixed, true)] } else { [(&mixed, true), (&ham, false)] };
            for (user, is_mixed) in order {
                let run = one_run(&lab, user).await;
                let spam = if is_mixed { n / 2 } else { 0 };
                assert_eq!((run.tickets, run.held), (n - spam, spam), "{user}: every ham a ticket, every spam held");
                eprintln!("  run {} {user}: {:.2}s", r + 1, run.secs);
                if is_mixed { mixed_secs.push(run.secs) } else { ham_secs.push(run.secs) }
            }
        }
        table.push((n, median(ham_secs), median(mixed_secs)));
    }
    println!();
    println!("| mails | all ham msg/s | half spam msg/s | half spam / all ham |");
    println!("|---|---|---|---|");
    for (n, ham, mixed) in &table {
        let nf = *n as f64;
        println!("| {n} | {:.0} | {:.0} | {:.2} |", nf / ham, nf / mixed, ham / mixed);
    }
    std::io::stdout().flush().unwrap();
}
