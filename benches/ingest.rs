//! Ingest benchmark (not a timed test): loads N realistic messages into a
//! private Dovecot mailbox, then in the same run measures a plain IMAP fetch
//! of the whole mailbox (UID FETCH BODY.PEEK[] in batches of 50, the same
//! batches ticketd uses) and ticketd ingesting all of it (fetch, parse,
//! decide, one sled transaction per message, group flush per batch, \Seen
//! post-action), and prints both and their ratio.
//!
//! Run: `cargo bench --bench ingest` (TICKETD_BENCH_MESSAGES overrides N = 2000).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use ticketd::config::Config;
use ticketd::desk::{Desk, Parts};
use ticketd::imap::worker::{Worker, uid_set};
use ticketd::outbound::templates::Templates;
use ticketd::store::{Records, Store};

pub fn message(i: usize) -> Vec<u8> {
    let sender = format!("customer+{}@example.test", i % 400);
    let subjects = [
        "Cannot log in",
        "Invoice question",
        "API returns 401",
        "Feature idea: dark mode",
        "Printer on fire",
        "Password reset link expired",
    ];
    let subject = subjects[i % subjects.len()];
    let body = format!(
        "Hello support,\r\n\r\nthis is message {i}. {}\r\n\r\nSteps to reproduce:\r\n1. open the app\r\n2. click the button\r\n3. nothing happens\r\n\r\nThanks,\r\nCustomer {i}\r\n",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(1 + i % 8)
    );
    let mut m = format!(
        "Return-Path: <{sender}>\r\nFrom: Customer {i} <{sender}>\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <bench-{i}@customer.example.test>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    );
    match i % 10 {
        // Replies to earlier mail of the same sender.
        0..=2 if i >= 400 => {
            m.push_str(&format!("In-Reply-To: <bench-{}@customer.example.test>\r\n", i - 400));
            m.push_str(&format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n> quoted earlier text\r\n"));
        }
        3 => {
            let html = body.replace("\r\n", "<br>\r\n");
            m.push_str(&format!("Content-Type: multipart/alternative; boundary=\"alt{i}\"\r\n\r\n--alt{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--alt{i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{html}</p></body></html>\r\n--alt{i}--\r\n"));
        }
        4 => {
            let attachment = "RVJST1IgNDAxIGF0IGxpbmUgNDIK\r\n".repeat(200);
            m.push_str(&format!("Content-Type: multipart/mixed; boundary=\"mix{i}\"\r\n\r\n--mix{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--mix{i}\r\nContent-Type: text/plain; name=\"log{i}.txt\"\r\nContent-Disposition: attachment; filename=\"log{i}.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{attachment}--mix{i}--\r\n"));
        }
        _ => m.push_str(&format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{body}")),
    }
    m.into_bytes()
}

async fn session(lab: &common::Lab) -> ticketd::imap::ImapSession {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", lab.imap_port)).await.unwrap();
    let mut c = async_imap::Client::new(Box::new(tcp) as ticketd::imap::ImapConn);
    c.read_response().await.unwrap();
    c.login("support@example.test", "secret").await.map_err(|(e, _)| e).unwrap()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench` passes --bench; under `cargo test` this is a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("TICKETD_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(if full {
        2000
    } else {
        60
    });
    let lab = common::Lab::start();

    let t = Instant::now();
    let mut s = session(&lab).await;
    let mut bytes = 0usize;
    for i in 0..n {
        let m = message(i);
        bytes += m.len();
        s.append("INBOX", None, None, &m).await.unwrap();
    }
    println!("loaded {n} messages ({:.1} MiB) in {:.2}s", bytes as f64 / 1048576.0, t.elapsed().as_secs_f64());

    // 1. Plain IMAP fetch of the same mailbox, same batch size.
    s.select("INBOX").await.unwrap();
    let t = Instant::now();
    let mut fetched = 0usize;
    let uids: Vec<u32> = (1..=n as u32).collect();
    for chunk in uids.chunks(50) {
        let got: Vec<_> = s
            .uid_fetch(uid_set(chunk.iter().copied()), "(UID BODY.PEEK[])")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        fetched += got.iter().filter(|f| f.body().is_some()).count();
    }
    let raw_secs = t.elapsed().as_secs_f64();
    assert_eq!(fetched, n, "raw fetch saw every message");
    s.logout().await.ok();

    // 2. ticketd ingesting the same mailbox.
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("ticketd.toml");
    std::fs::write(
        &cfg_path,
        common::daemon::config_text(&lab, dir.path(), "batch_size = 50", "acks_per_sender_per_hour = 1000"),
    )
    .unwrap();
    let cfg = Arc::new(Config::load(&cfg_path).unwrap());
    let store = Store::open(&cfg.store).unwrap();
    let secret = b"bench-secret-0123456789".to_vec();
    let desk = Desk::start(Parts {
        cfg: cfg.clone(),
        store: store.clone(),
        secret,
        templates: Templates::default(),
        wake: Arc::new(Notify::new()),
        health: Default::default(),
        daemon: false,
    })
    .unwrap()
    .desk;
    let shutdown = CancellationToken::new();
    let worker = Worker {
        mb: cfg.mailboxes[0].clone(),
        desk: desk.clone(),
        max_message_bytes: cfg.desk.max_message_bytes,
        shutdown: shutdown.clone(),
    };
    let t = Instant::now();
    let worker_task = tokio::spawn(worker.run());
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if store.cursor("support").unwrap().is_some_and(|c| c.last_uid as usize >= n) {
            break;
        }
        assert!(Instant::now() < deadline, "ingest did not finish in 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ingest_secs = t.elapsed().as_secs_f64();
    shutdown.cancel();
    worker_task.await.unwrap();
    desk.join_when_last().await;
    let tickets = store.tickets().unwrap().len();
    let queued = store.pending_count();

    println!("raw IMAP fetch : {raw_secs:>7.3}s  {:>8.0} msg/s", n as f64 / raw_secs);
    println!(
        "ticketd ingest : {ingest_secs:>7.3}s  {:>8.0} msg/s  ({tickets} tickets, {queued} mails queued)",
        n as f64 / ingest_secs
    );
    println!("ratio ingest/raw: {:.2}x", ingest_secs / raw_secs);
    println!("peak RSS of this process: {:.1} MiB", rss_kib() as f64 / 1024.0);
}
