//! Import benchmark (not a timed test): the same N messages brought in
//! three ways in one run, each into a fresh store, all quiet (no mail is
//! queued): `ticketd import` of an mbox file, of a Maildir, and IMAP
//! ingest with `initial = "import"` from a private Dovecot. Prints a table
//! with the rates and their ratios, and the peak RSS after the mbox import.
//!
//! Run: `cargo bench --bench import` (TICKETD_BENCH_MESSAGES overrides N = 2000).

// ingest.rs (below) holds a private copy of the lab too.
#[path = "../tests/common/mod.rs"]
#[allow(unused_imports, clippy::duplicate_mod)]
mod common;

/// For its message generator (`message(i)`), shared with the ingest bench.
#[path = "ingest.rs"]
#[allow(dead_code)]
mod ingest;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use ticketd::config::Config;
use ticketd::desk::Desk;
use ticketd::desk::import;
use ticketd::imap::worker::Worker;
use ticketd::mail::mailbox::MboxReader;
use ticketd::store::{Records, Store};

fn desk_for(config: &Path) -> (Arc<Config>, Store, Desk) {
    let desk = common::desk::open_desk(Config::load(config).unwrap());
    (desk.config().clone(), desk.store().clone(), desk)
}

/// mboxrd, written as it is generated: the file is never in memory.
fn write_mbox(path: &Path, n: usize) -> u64 {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(w, "From customer+{}@example.test Thu Nov 26 10:00:00 2026", i % 400).unwrap();
        for line in ingest::message(i).split_inclusive(|b| *b == b'\n') {
            if line.iter().position(|b| *b != b'>').is_some_and(|p| line[p..].starts_with(b"From ")) {
                w.write_all(b">").unwrap();
            }
            w.write_all(line).unwrap();
        }
        w.write_all(b"\n").unwrap();
    }
    w.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn write_maildir(root: &Path, n: usize) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for i in 0..n {
        std::fs::write(root.join("cur").join(format!("{}.M{i}P1.bench:2,S", 1_700_000_000 + i)), ingest::message(i))
            .unwrap();
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn import_into(lab: &common::Lab, dir: &Path, source: &Path) -> (f64, usize, import::Summary) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg_path = dir.join("ticketd.toml");
    std::fs::write(&cfg_path, common::daemon::config_text(lab, dir, "", "")).unwrap();
    let (_, store, desk) = desk_for(&cfg_path);
    let t = Instant::now();
    let summary = import::run(&desk, &[source.to_owned()], &mut import::Silent).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    desk.join_when_last().await;
    assert_eq!(store.pending_count(), 0, "an import queues no mail");
    (secs, store.tickets().unwrap().len(), summary)
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
    let work = tempfile::tempdir().unwrap();
    let mbox = work.path().join("history.mbox");
    let mbox_bytes = write_mbox(&mbox, n);
    let maildir = work.path().join("Maildir");
    write_maildir(&maildir, n);
    println!("{n} messages: mbox {:.1} MiB, a Maildir of {n} files", mbox_bytes as f64 / 1048576.0);

    // The reader alone, before anything else raises the high-water mark:
    // its memory does not depend on the file's size.
    let t = Instant::now();
    let file = std::io::BufReader::new(std::fs::File::open(&mbox).unwrap());
    let mut reader = MboxReader::open(file, 50 << 20).unwrap().expect("an mbox");
    let mut entries = 0;
    while reader.next_entry().unwrap().is_some() {
        entries += 1;
    }
    assert_eq!(entries, n);
    let (read_secs, rss_reader) = (t.elapsed().as_secs_f64(), rss_kib());

    let a = work.path().join("a");
    let (mbox_secs, tickets, summary) = import_into(&lab, &a, &mbox).await;
    assert_eq!(summary.messages as usize, n, "{summary:?}");
    let rss_after_mbox = rss_kib();
    let b = work.path().join("b");
    let (maildir_secs, maildir_tickets, _) = import_into(&lab, &b, &maildir).await;
    assert_eq!(maildir_tickets, tickets, "the same tickets either way");

    let mut s = lab.session("support").await.unwrap();
    for i in 0..n {
        s.append("INBOX", None, None, ingest::message(i)).await.unwrap();
    }
    s.logout().await.unwrap();
    let c = work.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    let cfg_path = c.join("ticketd.toml");
    std::fs::write(&cfg_path, common::daemon::config_text(&lab, &c, "initial = \"import\"", "")).unwrap();
    let (cfg, store, desk) = desk_for(&cfg_path);
    let shutdown = CancellationToken::new();
    let worker = Worker {
        mb: cfg.mailboxes[0].clone(),
        desk: desk.clone(),
        max_message_bytes: cfg.desk.max_message_bytes,
        shutdown: shutdown.clone(),
    };
    let t = Instant::now();
    let task = tokio::spawn(worker.run());
    let deadline = Instant::now() + Duration::from_secs(600);
    while store.cursor("support").unwrap().is_none_or(|c| (c.last_uid as usize) < n) {
        assert!(Instant::now() < deadline, "IMAP ingest did not finish in 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let imap_secs = t.elapsed().as_secs_f64();
    shutdown.cancel();
    task.await.unwrap();
    desk.join_when_last().await;
    assert_eq!(store.tickets().unwrap().len(), tickets, "IMAP made the same tickets");
    assert_eq!(store.pending_count(), 0, "quiet over IMAP too");

    println!("{:<28} {:>9} {:>10} {:>14}", "path", "seconds", "msg/s", "time vs mbox");
    for (name, secs) in [
        ("ticketd import (mbox)", mbox_secs),
        ("ticketd import (Maildir)", maildir_secs),
        ("IMAP ingest, initial=import", imap_secs),
    ] {
        println!("{name:<28} {secs:>9.3} {:>10.0} {:>13.2}x", n as f64 / secs, secs / mbox_secs);
    }
    println!("{tickets} tickets, {} replies, {} duplicates each way", summary.replied, summary.duplicates);
    println!(
        "peak RSS: {:.1} MiB after reading the whole mbox alone ({:.0} MiB/s), {:.1} MiB after its import (sled's cache and tables)",
        rss_reader as f64 / 1024.0,
        mbox_bytes as f64 / 1048576.0 / read_secs,
        rss_after_mbox as f64 / 1024.0
    );
}
