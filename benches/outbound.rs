//! Outbound benchmark (not a timed test). In one run against a private lab
//! Postfix: N mails written by `outbound::build::build` are pushed over one
//! connection by ticketd's `SmtpClient` and, as the reference, by Python's
//! smtplib (a plain client: one connection, one command at a time, no
//! pipelining), the same bytes to the same recipients. Each round starts
//! with Postfix's queue empty (so no round pays for the previous one's
//! deliveries) and the order alternates (plain first, then ticketd first). Prints msg/s of both and the ratio, then
//! `build()` times for large bodies (linear: twice the size, about twice the
//! time).
//!
//! Then the whole daemon: its sender draining an outbox of 300 new
//! tickets (600 mails: acknowledgements and notifications, each outcome
//! committed before the next mail leaves) against smtplib pushing 600
//! mails, in the same run; and latency with IDLE for 100 single mails sent
//! 200 ms apart: SMTP 250 → ticket committed, and → acknowledgement in the
//! customer's mailbox (p50, p99).
//!
//! Run: `cargo bench --bench outbound` (TICKETD_BENCH_MAILS overrides N = 600,
//! TICKETD_BENCH_ROUNDS the rounds per client, 4).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::Utc;

use ticketd::config::{SmtpConfig, Tls};
use ticketd::outbound::build::{BuildOptions, build};
use ticketd::outbound::smtp::{RcptResult, SmtpClient, address};
use ticketd::outbox::{OutKind, OutMail};

const PLAIN_CLIENT: &str = r#"
import smtplib, sys, time
manifest, port = sys.argv[1], int(sys.argv[2])
jobs = [line.rstrip("\n").split("\t") for line in open(manifest)]
bodies = [(f, r, open(p, "rb").read()) for f, r, p in jobs]
start = time.perf_counter()
s = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example.test", timeout=30)
s.ehlo()
for f, r, data in bodies:
    s.sendmail(f, [r], data)
s.quit()
print(time.perf_counter() - start)
"#;

fn mail(i: usize) -> OutMail {
    let ticket = 1000 + i as u64 / 2;
    let (kind, to, body) = if i.is_multiple_of(2) {
        (
            OutKind::Ack,
            "customer@example.test",
            format!(
                "Hello,\n\nthank you for writing to Example Support. We have opened ticket #{ticket}\n\
                 (Cannot log in since the update) and will get back to you soon.\n\nTo add anything, \
                 just reply to this message and keep [Ticket #{ticket}] in\nthe subject.\n\n-- \nExample Support\n"
            ),
        )
    } else {
        (
            OutKind::AgentNotify,
            "alice@example.test",
            format!(
                "New ticket #{ticket}: Cannot log in since the update\nFrom: customer@example.test\n\
                 Status: open   Priority: medium   Category: technical\n\n{}\n-- \nReply to this mail \
                 to answer the customer.\n",
                "Since this morning's update the login page just reloads. Cleared cookies, same. \
                 Tried two browsers.\n"
                    .repeat(8)
            ),
        )
    };
    OutMail {
        ticket,
        kind,
        from_address: "support@example.test".into(),
        from_name: "Example Support".into(),
        to: vec![to.into()],
        subject: format!("[Ticket #{ticket}] Cannot log in since the update"),
        body,
        message_id: format!("bench-{i}.{ticket}@desk.example.test"),
        in_reply_to: Some(format!("customer-{ticket}@customer.example")),
        references: vec![format!("customer-{ticket}@customer.example")],
        attachments: vec![],
        internal_lines: vec![],
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn ticketd_round(cfg: &SmtpConfig, jobs: &[(String, String, Vec<u8>)]) -> Duration {
    let start = Instant::now();
    let mut client = SmtpClient::new(cfg);
    for (from, rcpt, bytes) in jobs {
        let r = client.send(&address(from).unwrap(), &[address(rcpt).unwrap()], bytes).await.unwrap();
        assert_eq!(r, [RcptResult::Delivered]);
    }
    client.quit().await;
    let took = start.elapsed();
    assert_eq!(client.connections(), 1);
    took
}

fn plain_round(script: &std::path::Path, manifest: &std::path::Path, port: u16) -> Duration {
    let out = std::process::Command::new("python3").arg(script).arg(manifest).arg(port.to_string()).output().unwrap();
    assert!(out.status.success(), "smtplib: {}", String::from_utf8_lossy(&out.stderr));
    Duration::from_secs_f64(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}

/// Waits until Postfix has handed every queued mail to Dovecot.
async fn drain_queue(lab: &common::Lab) {
    let conf = lab.path().join("postfix");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = std::process::Command::new("postqueue").arg("-c").arg(&conf).arg("-p").output().unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("Mail queue is empty") {
            return;
        }
        assert!(Instant::now() < deadline, "Postfix queue not drained: {}", String::from_utf8_lossy(&out.stdout));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn build_times() {
    let line = "Ünïcode line with = signs and a few words, long enough to need wrapping later on.\n";
    println!("\nbuild() of one mail with a large text body (quoted-printable):");
    let mut previous: Option<Duration> = None;
    for mib in [10usize, 20, 40, 80] {
        let mut m = mail(1);
        m.body = line.repeat(mib * 1024 * 1024 / line.len());
        let opts = BuildOptions::new(Utc::now());
        // Best of five: the machine is shared, and the minimum is the cost.
        let (raw, took) = (0..5)
            .map(|_| {
                let start = Instant::now();
                let raw = build(&m, &mut |_| unreachable!(), &opts).unwrap();
                (raw, start.elapsed())
            })
            .min_by_key(|(_, took)| *took)
            .unwrap();
        let growth = previous.map(|p| format!("  ×{:.2} for ×2 size", took.as_secs_f64() / p.as_secs_f64()));
        println!(
            "  {mib:>3} MiB body → {:>5.1} MiB mail in {:>7.1} ms ({:>4.0} MiB/s){}",
            raw.len() as f64 / 1048576.0,
            took.as_secs_f64() * 1e3,
            mib as f64 / took.as_secs_f64(),
            growth.unwrap_or_default()
        );
        previous = Some(took);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("TICKETD_BENCH_MAILS", 600);
    let rounds = env_usize("TICKETD_BENCH_ROUNDS", 4);
    let lab = common::Lab::start();
    let cfg = SmtpConfig {
        host: "127.0.0.1".into(),
        port: lab.smtp_port,
        tls: Tls::None,
        username: None,
        password: None,
        hello_name: Some("desk.example.test".into()),
        ca_file: None,
        timeout: Duration::from_secs(30),
        retry_initial: Duration::from_secs(1),
        retry_max: Duration::from_secs(10),
    };

    let opts = BuildOptions::new(Utc::now());
    let start = Instant::now();
    let jobs: Vec<(String, String, Vec<u8>)> = (0..n)
        .map(|i| {
            let m = mail(i);
            let raw = build(&m, &mut |_| unreachable!(), &opts).unwrap();
            (m.from_address, m.to[0].clone(), raw)
        })
        .collect();
    let build_all = start.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("plain.py");
    std::fs::write(&script, PLAIN_CLIENT).unwrap();
    let manifest = dir.path().join("manifest.tsv");
    let mut mf = std::fs::File::create(&manifest).unwrap();
    for (i, (from, rcpt, raw)) in jobs.iter().enumerate() {
        let p = dir.path().join(format!("{i}.eml"));
        std::fs::write(&p, raw).unwrap();
        writeln!(mf, "{from}\t{rcpt}\t{}", p.display()).unwrap();
    }
    drop(mf);

    println!(
        "outbound: {n} mails ({:.1} KiB average), one connection per client and round, lab Postfix on 127.0.0.1",
        jobs.iter().map(|j| j.2.len()).sum::<usize>() as f64 / n as f64 / 1024.0
    );
    println!("build() of all {n}: {:.1} ms", build_all.as_secs_f64() * 1e3);
    let (mut ours, mut plain, mut ratios) = (Duration::ZERO, Duration::ZERO, Vec::new());
    for round in 1..=rounds {
        let (p, t) = if round % 2 == 1 {
            drain_queue(&lab).await;
            let p = plain_round(&script, &manifest, lab.smtp_port);
            drain_queue(&lab).await;
            (p, ticketd_round(&cfg, &jobs).await)
        } else {
            drain_queue(&lab).await;
            let t = ticketd_round(&cfg, &jobs).await;
            drain_queue(&lab).await;
            (plain_round(&script, &manifest, lab.smtp_port), t)
        };
        println!(
            "round {round}: smtplib {:>6.1} msg/s   SmtpClient {:>6.1} msg/s   ratio {:.2}",
            rate(n, p),
            rate(n, t),
            p.as_secs_f64() / t.as_secs_f64()
        );
        plain += p;
        ours += t;
        ratios.push(p.as_secs_f64() / t.as_secs_f64());
    }
    let total = n * rounds;
    println!(
        "all rounds: smtplib {:.1} msg/s, SmtpClient {:.1} msg/s, ratio SmtpClient/smtplib = {:.2} (median of rounds {:.2}; target ≥ 0.8)",
        rate(total, plain),
        rate(total, ours),
        plain.as_secs_f64() / ours.as_secs_f64(),
        median(&mut ratios)
    );
    build_times();
    daemon_outbox(&lab, &script, &manifest, n).await;
    latency(&lab).await;
}

fn accepted_from_support(lab: &common::Lab) -> usize {
    lab.postfix_log().matches("from=<support@example.test>, size=").count()
}

/// The daemon's sender against smtplib, same server, same run.
async fn daemon_outbox(lab: &common::Lab, script: &std::path::Path, manifest: &std::path::Path, n: usize) {
    let tickets = n / 2;
    lab.stop_smtp();
    let mut daemon = common::Daemon::prepare_with(lab, |c| {
        c.mailbox().batch_size = Some(50);
        c.desk.acks_per_sender_per_hour = Some(100_000);
        c.desk.notifications_per_ticket_per_hour = Some(100_000);
        c.desk.notifications_per_agent_per_hour = Some(100_000);
    });
    let log_filter = std::env::var("TICKETD_BENCH_LOG").unwrap_or_else(|_| "warn,ticketd::daemon=info".into());
    daemon.env = vec![("TICKETD_LOG".into(), log_filter)];
    daemon.spawn();
    let msgs: Vec<Vec<u8>> = (0..tickets)
        .map(|i| {
            format!("From: customer+o{i}@example.test\r\nTo: support@example.test\r\nSubject: Outbox {i}\r\nMessage-ID: <o{i}@customer.example.test>\r\n\r\nQueued while the relay is down.\r\n").into_bytes()
        })
        .collect();
    lab.imap_append_many("support", "INBOX", &msgs).await.unwrap();
    common::all_seen(lab, "support", tickets, Duration::from_secs(120)).await;
    daemon.stop_ok();
    lab.start_smtp();
    drain_queue(lab).await;
    // The mail the sender tried during the outage waits for its retry time
    // (and holds back its ticket's later mail): that is the backoff, not the
    // sender's speed, so the drain is timed over the mail due at the start.
    let out = daemon.cli(&["outbox", "--json"]);
    assert!(out.status.success(), "outbox --json: {}", String::from_utf8_lossy(&out.stderr));
    let pending: Vec<serde_json::Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(pending.len(), n, "every mail waits in the outbox");
    let now = Utc::now();
    let held: std::collections::HashSet<u64> = pending
        .iter()
        .filter(|e| {
            e["next_attempt"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t > now)
        })
        .map(|e| e["ticket"].as_u64().unwrap())
        .collect();
    let waiting = pending.iter().filter(|e| held.contains(&e["ticket"].as_u64().unwrap())).count();
    let due = n - waiting;
    let before = accepted_from_support(lab);
    daemon.spawn();
    let t = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(300);
    while accepted_from_support(lab) < before + due {
        assert!(Instant::now() < deadline, "the outbox did not drain");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ours = t.elapsed();
    // The held ones go too, once their retry time comes.
    while accepted_from_support(lab) < before + n {
        assert!(Instant::now() < deadline, "the mail deferred during the outage was never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = t.elapsed();
    daemon.stop_ok();
    if let Ok(keep) = std::env::var("TICKETD_BENCH_KEEP_LOG") {
        std::fs::write(keep, daemon.log_text()).unwrap();
    }
    drain_queue(lab).await;
    let plain = plain_round(script, manifest, lab.smtp_port);
    let plain_rate = rate(n, plain);
    println!(
        "\ndaemon outbox: {n} mails ({tickets} new tickets) queued during an SMTP outage; after the restart the {due} due ones drained at {:.1} msg/s (each outcome durable before the next send); smtplib {plain_rate:.1} msg/s in the same run; ratio {:.2} (target ≥ 0.8). The {waiting} mails of the tickets tried during the outage went at their retry time, {:.1} s after the restart.",
        rate(due, ours),
        rate(due, ours) / plain_rate,
        all.as_secs_f64()
    );
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// SMTP 250 → ticket committed (the daemon's log) and → acknowledgement in
/// the customer's mailbox, for mails sent one by one.
async fn latency(lab: &common::Lab) {
    let count = env_usize("TICKETD_BENCH_LATENCY_MAILS", 100);
    let mut daemon = common::Daemon::prepare_with(lab, |c| c.desk.acks_per_sender_per_hour = Some(100_000));
    daemon.env = vec![("TICKETD_LOG".into(), "info".into())];
    daemon.spawn();
    let seen =
        std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, chrono::DateTime<Utc>>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (seen, stop, port) = (seen.clone(), stop.clone(), lab.imap_port);
        let lab_user = "customer".to_owned();
        let pw = common::PASSWORD.to_owned();
        tokio::spawn(async move {
            use futures::TryStreamExt;
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let mut c = async_imap::Client::new(tcp);
            c.read_response().await.unwrap();
            let mut s = c.login(common::address(&lab_user), pw).await.map_err(|(e, _)| e).unwrap();
            let mut last = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                s.examine("INBOX").await.unwrap();
                let fetches: Vec<_> = s
                    .uid_fetch(format!("{}:*", last + 1), "(UID BODY.PEEK[HEADER.FIELDS (IN-REPLY-TO)])")
                    .await
                    .unwrap()
                    .try_collect()
                    .await
                    .unwrap();
                let now = Utc::now();
                let before = last;
                for f in fetches.iter().filter(|f| f.uid.is_some_and(|u| u > before)) {
                    last = last.max(f.uid.unwrap_or(0));
                    let h = String::from_utf8_lossy(f.header().or(f.body()).unwrap_or_default()).into_owned();
                    if let Some(id) = common::header(&h, "In-Reply-To") {
                        seen.lock().unwrap().entry(id.trim_matches(['<', '>']).to_owned()).or_insert(now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut sent = Vec::new();
    for i in 0..count {
        let id = format!("lat{i}@customer.example.test");
        let raw = format!(
            "From: customer+lat{i}@example.test\r\nTo: support@example.test\r\nSubject: Latency {i}\r\nMessage-ID: <{id}>\r\n\r\nHow fast?\r\n"
        );
        lab.smtp_send("customer@example.test", &["support@example.test"], raw.as_bytes()).await.unwrap();
        sent.push((id, Utc::now()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < count {
        assert!(Instant::now() < deadline, "not every acknowledgement arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    watcher.await.unwrap();
    daemon.stop_ok();
    let log = daemon.log_text();
    let committed = |id: &str| -> Option<chrono::DateTime<Utc>> {
        let line = log.lines().find(|l| l.contains("new ticket") && l.contains(&format!("message_id=\"{id}\"")))?;
        chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok().map(|t| t.with_timezone(&Utc))
    };
    let seen = seen.lock().unwrap();
    let (mut to_ticket, mut to_ack) = (Vec::new(), Vec::new());
    for (id, at) in &sent {
        if let Some(c) = committed(id) {
            to_ticket.push((c - *at).num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
        if let Some(a) = seen.get(id) {
            to_ack.push((*a - *at).num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
    }
    println!(
        "latency, {count} mails 200 ms apart (IDLE): SMTP 250 → ticket committed p50 {:.2} s, p99 {:.2} s (target < 1 s); → acknowledgement in the mailbox p50 {:.2} s, p99 {:.2} s (target < 2 s)",
        percentile(&mut to_ticket, 0.5),
        percentile(&mut to_ticket, 0.99),
        percentile(&mut to_ack, 0.5),
        percentile(&mut to_ack, 0.99)
    );
}
