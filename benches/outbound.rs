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
use ticketd::outbound::{OutKind, OutMail};

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
}
