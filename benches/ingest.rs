//! Ingest benchmark (not a timed test). For each mailbox size, in one run
//! against a private Dovecot:
//!
//! - (a) the bare IMAP fetch of the whole mailbox (UID FETCH BODY.PEEK[] in
//!   batches of 50, the batches ticketd uses);
//! - (b) the physical limit: the same fetch plus writing what ticketd must
//!   keep — each raw message and each decoded attachment — into a file,
//!   with one fsync per batch;
//! - (c) the real `ticketd` daemon ingesting the same mailbox, every
//!   message durable before it is marked `\Seen` (outbound mail is pointed
//!   at a closed port so only ingest is measured);
//!
//! - (d) the same daemon on PostgreSQL (`store.backend = "postgres"`, one
//!   node holding the lease; a private server with fsync on, like sled),
//!   ingesting the same mailbox;
//! - (c0) with `TICKETD_BENCH_BASELINE_BIN=PATH`, (c) again with another
//!   build (e.g. main's), alternating with (c) in the same run;
//!
//! and prints msg/s, the ratios c/a and c/b (d/b, d/c), the bytes the
//! daemon wrote (`/proc/PID/io`), the store's size on disk against what it
//! holds, and the daemon's peak RSS (VmHWM). `TICKETD_BENCH_POSTGRES=0`
//! leaves (d) out.
//!
//! `cargo bench --bench ingest` runs 2,000 and 10,000 mails;
//! `TICKETD_BENCH_SIZES=2000,10000,20000` and `TICKETD_BENCH_RUNS=3` (the
//! median is printed) change that. Under `cargo test` it is a small smoke run.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use futures::TryStreamExt;

use ticketd::imap::worker::uid_set;
use ticketd::store::{Scan, Store, Table};

/// The synthetic support set: plain questions, replies, HTML, and one in
/// ten carrying a 100 KiB attachment.
pub fn message(i: usize) -> Vec<u8> {
    let sender = format!("customer+{}@example.test", i % 400);
    let subjects =
        ["Cannot log in", "Invoice question", "API returns 401", "Feature idea: dark mode", "Printer on fire"];
    let subject = subjects[i % subjects.len()];
    let body = format!(
        "Hello support,\r\n\r\nthis is message {i}. {}\r\n\r\nSteps to reproduce:\r\n1. open the app\r\n2. click the button\r\n3. nothing happens\r\n\r\nThanks,\r\nCustomer {i}\r\n",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(1 + i % 8)
    );
    let mut m = format!(
        "Return-Path: <{sender}>\r\nFrom: Customer {i} <{sender}>\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <bench-{i}@customer.example.test>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    );
    match i % 10 {
        0..=2 if i >= 400 => {
            m.push_str(&format!("In-Reply-To: <bench-{}@customer.example.test>\r\n", i - 400));
            m.push_str(&format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n> quoted earlier text\r\n"));
        }
        3 => {
            let html = body.replace("\r\n", "<br>\r\n");
            m.push_str(&format!("Content-Type: multipart/alternative; boundary=\"alt{i}\"\r\n\r\n--alt{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--alt{i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{html}</p></body></html>\r\n--alt{i}--\r\n"));
        }
        4 => {
            // 100 KiB of (unique per message) binary, base64 in 76-column lines.
            let data: Vec<u8> =
                (0..100 * 1024u32).map(|b| (b.wrapping_mul(2654435761).wrapping_add(i as u32) >> 13) as u8).collect();
            let b64 = base64(&data);
            let lines: Vec<&str> = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
            m.push_str(&format!("Content-Type: multipart/mixed; boundary=\"mix{i}\"\r\n\r\n--mix{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--mix{i}\r\nContent-Type: application/octet-stream; name=\"dump{i}.bin\"\r\nContent-Disposition: attachment; filename=\"dump{i}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--mix{i}--\r\n", lines.join("\r\n")));
        }
        _ => m.push_str(&format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{body}")),
    }
    m.into_bytes()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            out.push(if k <= c.len() { A[((n >> (18 - 6 * k)) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

async fn session(lab: &common::Lab, user: &str) -> common::ImapSession {
    lab.imap_login(user).await.unwrap()
}

/// Fetches the whole mailbox in batches of 50; calls `each` per batch.
async fn fetch_all(lab: &common::Lab, user: &str, n: usize, mut each: impl FnMut(&[(u32, Vec<u8>)])) -> u64 {
    let mut s = session(lab, user).await;
    s.examine("INBOX").await.unwrap();
    let uids: Vec<u32> = (1..=n as u32).collect();
    let mut bytes = 0u64;
    for chunk in uids.chunks(50) {
        let mut got = Vec::with_capacity(chunk.len());
        let mut stream = s.uid_fetch(uid_set(chunk.iter().copied()), "(UID BODY.PEEK[])").await.unwrap();
        while let Some(f) = stream.try_next().await.unwrap() {
            if let (Some(uid), Some(b)) = (f.uid, f.body()) {
                bytes += b.len() as u64;
                got.push((uid, b.to_vec()));
            }
        }
        drop(stream);
        assert_eq!(got.len(), chunk.len(), "every message fetched");
        each(&got);
    }
    let _ = s.logout().await;
    bytes
}

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn du(path: &std::path::Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(path) else { return 0 };
    if m.is_file() {
        return m.len();
    }
    std::fs::read_dir(path).map(|rd| rd.filter_map(Result::ok).map(|e| du(&e.path())).sum()).unwrap_or(0)
}

struct Run {
    raw_secs: f64,
    kept_secs: f64,
    ingest_secs: f64,
    /// (d) on PostgreSQL, when measured.
    pg_secs: Option<f64>,
    /// (c0) the baseline build, when given.
    base_secs: Option<f64>,
    mailbox_bytes: u64,
    written: u64,
    store_bytes: u64,
    holds: u64,
    hwm_kib: u64,
    tickets: usize,
}

async fn one_run(lab: &common::Lab, user: &str, n: usize, pg: Option<&common::pg::PgLab>) -> Run {
    // (a) the bare fetch.
    let t = Instant::now();
    let mailbox_bytes = fetch_all(lab, user, n, |_| {}).await;
    let raw_secs = t.elapsed().as_secs_f64();

    // (b) fetch + write what must be kept, one fsync per batch.
    let scratch = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(scratch.path().join("kept.dat")).unwrap();
    let mut offset = 0u64;
    let mut attachment_bytes = 0u64;
    let parser = mail_parser::MessageParser::default();
    let t = Instant::now();
    fetch_all(lab, user, n, |batch| {
        for (_, raw) in batch {
            file.write_all_at(raw, offset).unwrap();
            offset += raw.len() as u64;
            if raw.windows(26).any(|w| w == b"Content-Transfer-Encoding:") {
                let msg = parser.parse(raw).unwrap();
                for a in msg.attachments() {
                    let c = a.contents();
                    file.write_all_at(c, offset).unwrap();
                    offset += c.len() as u64;
                    attachment_bytes += c.len() as u64;
                }
            }
        }
        file.sync_data().unwrap();
    })
    .await;
    let kept_secs = t.elapsed().as_secs_f64();
    drop(file);

    // (c0) the baseline build, then (c) this one, then (d) on PostgreSQL.
    let base_secs = match std::env::var_os("TICKETD_BENCH_BASELINE_BIN") {
        Some(bin) => {
            let (d, secs, _) = daemon_run(lab, user, Some(bin.into()), None).await;
            drop(d);
            unmark(lab, user).await;
            Some(secs)
        }
        None => None,
    };
    let (mut daemon, ingest_secs, pid) = daemon_run(lab, user, None, None).await;
    let written = proc_field(pid, "io", "write_bytes:");
    let hwm_kib = proc_field(pid, "status", "VmHWM:");
    daemon.stop_ok();
    if let Ok(keep) = std::env::var("TICKETD_BENCH_KEEP_LOG") {
        let _ = std::fs::copy(&daemon.log, keep);
    }
    let dir = daemon.dir.path();
    let store_bytes = du(&dir.join("db")) + du(&dir.join("attachments"));
    let store = Store::open_path(&dir.join("db"), &dir.join("attachments"), 8 << 20).unwrap();
    let mut records = 0u64;
    for table in Table::ALL {
        for item in store.backend().scan(*table, Scan::default()) {
            let (k, v) = item.unwrap();
            records += (k.len() + v.len()) as u64;
        }
    }
    let tickets = store.tickets().unwrap().len();
    drop(store);
    let pg_secs = match pg {
        Some(pg) => {
            unmark(lab, user).await;
            let (d, secs, _) = daemon_run(lab, user, None, Some(pg)).await;
            drop(d);
            Some(secs)
        }
        None => None,
    };
    // What the store holds: every raw mail, every decoded attachment, every record.
    let holds = mailbox_bytes + attachment_bytes + records;
    Run {
        raw_secs,
        kept_secs,
        ingest_secs,
        pg_secs,
        base_secs,
        mailbox_bytes,
        written,
        store_bytes,
        holds,
        hwm_kib,
        tickets,
    }
}

/// Marks every message of `user`'s INBOX unread again (the daemon marked them).
async fn unmark(lab: &common::Lab, user: &str) {
    let mut s = session(lab, user).await;
    s.select("INBOX").await.unwrap();
    let _: Vec<_> = s.uid_store("1:*", "-FLAGS.SILENT (\\Seen)").await.unwrap().try_collect().await.unwrap();
    let _ = s.logout().await;
}

/// The real daemon (`bin`, else this build) ingesting `user`'s INBOX, on
/// sled or, with `pg`, on a fresh database of that server: returns it
/// (still running), the seconds until every message was marked `\Seen`,
/// and its pid.
async fn daemon_run(
    lab: &common::Lab,
    user: &str,
    bin: Option<std::path::PathBuf>,
    pg: Option<&common::pg::PgLab>,
) -> (common::Daemon, f64, u32) {
    let mut daemon = common::Daemon::prepare(
        lab,
        "batch_size = 50",
        "acks_per_sender_per_hour = 100000\nnotifications_per_ticket_per_hour = 100000\nnotifications_per_agent_per_hour = 100000",
    );
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cfg = std::fs::read_to_string(&daemon.config)
        .unwrap()
        .replacen(&format!("port = {}", lab.smtp_port), &format!("port = {dead}"), 1)
        .replacen("username = \"support@example.test\"", &format!("username = \"{user}@example.test\""), 1)
        .replacen("address = \"support@example.test\"", &format!("address = \"{user}@example.test\""), 1)
        .replace("timeout = \"10s\"\n\n[[mailboxes]]", "timeout = \"10s\"\nretry_initial = \"1h\"\n\n[[mailboxes]]");
    if let Some(pg) = pg {
        let db = pg.fresh_db("bench").unwrap();
        cfg = cfg.replacen("[store]\n", &format!("[store]\nbackend = \"postgres\"\nurl = \"{}\"\n", pg.url(&db)), 1);
        cfg.push_str("\n[cluster]\nnode = \"bench\"\n");
    }
    std::fs::write(&daemon.config, cfg).unwrap();
    let log_filter = std::env::var("TICKETD_BENCH_LOG")
        .unwrap_or_else(|_| "warn,ticketd::daemon=info,ticketd::cluster::node=info".into());
    daemon.env = vec![("TICKETD_LOG".into(), log_filter)];
    if let Some(bin) = bin {
        // The harness starts `<wrapper> <this build> ARGS`: run `bin` instead.
        let script = daemon.dir.path().join("baseline.sh");
        std::fs::write(&script, format!("#!/bin/sh\nshift\nexec '{}' \"$@\"\n", bin.display())).unwrap();
        daemon.wrapper = vec!["/bin/sh".into(), script.display().to_string()];
    }
    let mut watch = session(lab, user).await;
    let t = Instant::now();
    daemon.spawn();
    let pid = daemon.pid();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        watch.examine("INBOX").await.unwrap();
        let unseen = watch.uid_search("UNSEEN").await.unwrap().len();
        if unseen == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "ingest did not finish");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = watch.logout().await;
    (daemon, secs, pid)
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
        .unwrap_or_else(|| if full { vec![2000, 10000] } else { vec![60] });
    let runs: usize = std::env::var("TICKETD_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let lab = common::Lab::start();
    let pg = match std::env::var("TICKETD_BENCH_POSTGRES").as_deref() {
        Ok("0") => None,
        _ => Some(common::pg::PgLab::start_durable().unwrap()),
    };
    let mut table = Vec::new();
    for &n in &sizes {
        let user = format!("bench{n}");
        lab.add_user(&user, common::PASSWORD);
        let t = Instant::now();
        let mut s = session(&lab, &user).await;
        for i in 0..n {
            s.append("INBOX", None, None, message(i)).await.unwrap();
        }
        let _ = s.logout().await;
        eprintln!("loaded {n} messages in {:.1}s", t.elapsed().as_secs_f64());
        let mut results = Vec::new();
        for r in 0..runs {
            if r > 0 {
                // Unmark for the next run: the daemon marked them \Seen.
                unmark(&lab, &user).await;
            }
            let run = one_run(&lab, &user, n, pg.as_ref()).await;
            assert_eq!(
                run.tickets,
                (0..n).filter(|i| !(i % 10 <= 2 && *i >= 400)).count(),
                "every original became a ticket"
            );
            eprintln!(
                "  run {}: a {:.2}s  b {:.2}s  c {:.2}s  c0 {:?}  d {:?}",
                r + 1,
                run.raw_secs,
                run.kept_secs,
                run.ingest_secs,
                run.base_secs,
                run.pg_secs
            );
            results.push(run);
        }
        table.push((n, results));
    }
    println!();
    println!(
        "| mails | MB | (a) fetch msg/s | (b) fetch+keep msg/s | (c) ticketd msg/s | c/a | c/b | written / mailbox | store / holds | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (n, rs) in &table {
        let nf = *n as f64;
        let a = median(rs.iter().map(|r| r.raw_secs).collect());
        let b = median(rs.iter().map(|r| r.kept_secs).collect());
        let c = median(rs.iter().map(|r| r.ingest_secs).collect());
        let last = rs.last().unwrap();
        println!(
            "| {n} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
            last.mailbox_bytes as f64 / 1e6,
            nf / a,
            nf / b,
            nf / c,
            c / a,
            c / b,
            median(rs.iter().map(|r| r.written as f64 / r.mailbox_bytes as f64).collect()),
            median(rs.iter().map(|r| r.store_bytes as f64 / r.holds as f64).collect()),
            median(rs.iter().map(|r| r.hwm_kib as f64 / 1024.0).collect()),
        );
    }
    let pg_or_base = table.iter().any(|(_, rs)| rs.iter().any(|r| r.pg_secs.is_some() || r.base_secs.is_some()));
    if pg_or_base {
        println!();
        println!(
            "| mails | (b) fetch+keep msg/s | (c0) baseline sled msg/s | (c) sled msg/s | (d) PostgreSQL msg/s | c/c0 | d/c | b/d |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (n, rs) in &table {
            let nf = *n as f64;
            let b = median(rs.iter().map(|r| r.kept_secs).collect());
            let c = median(rs.iter().map(|r| r.ingest_secs).collect());
            let opt = |v: Vec<Option<f64>>| -> Option<f64> {
                let v: Vec<f64> = v.into_iter().flatten().collect();
                (!v.is_empty()).then(|| median(v))
            };
            let c0 = opt(rs.iter().map(|r| r.base_secs).collect());
            let d = opt(rs.iter().map(|r| r.pg_secs).collect());
            let show = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.0}"));
            let ratio = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.2}"));
            println!(
                "| {n} | {:.0} | {} | {:.0} | {} | {} | {} | {} |",
                nf / b,
                show(c0.map(|s| nf / s)),
                nf / c,
                show(d.map(|s| nf / s)),
                ratio(c0.map(|s0| s0 / c)),
                ratio(d.map(|sd| c / sd)),
                ratio(d.map(|sd| sd / b)),
            );
        }
    }
    std::io::stdout().flush().unwrap();
}
