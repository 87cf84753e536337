//! The desk's clock (#19), measured in one run (not a timed test), in
//! process through the desk as the daemon drives it (no IMAP: the writer is
//! where the clock's cost lands):
//!
//! - ingest throughput of N new-ticket mails (batches of 50, as the IMAP
//!   worker hands them over) into two desks without response targets (the
//!   second a control: what noise alone makes of a ratio), one where every
//!   priority has targets and every lifecycle timer is on, and one like it
//!   whose clock ticks every 100 ms meanwhile (the default is 30 s): all
//!   open at once, their batches interleaved (which goes first rotating),
//!   each timed over its own batches, so all see the same load of this
//!   shared machine (one desk after the other, whole rounds apart,
//!   differed by up to 15% with the same config on both). The ratio to the
//!   first desk is the median over batches of the paired batch times, per
//!   round: robust to a burst of load that hits a few batches of one side;
//! - with N open tickets with targets: a tick when nothing is due (the
//!   common case: one look at the front of the wake index), a tick with
//!   `PER_TICK` tickets due (each a breach notice to every agent), the
//!   time to fire all N, and the sweep of all N after the targets changed.
//!
//! `cargo bench --bench timers` uses N = 10,000 and 2 rounds;
//! `TICKETD_BENCH_TICKETS` and `TICKETD_BENCH_RUNS` change that. Under
//! `cargo test` it is a small smoke run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use ticketd::config::Config;
use ticketd::desk::{Desk, Item};

const TARGETS: &str = "[[sla]]\npriority = \"low\"\nfirst_response = \"8h\"\nresolution = \"5d\"\n[[sla]]\npriority = \"medium\"\nfirst_response = \"4h\"\nresolution = \"3d\"\n[[sla]]\npriority = \"high\"\nfirst_response = \"2h\"\nresolution = \"1d\"\n[[sla]]\npriority = \"urgent\"\nfirst_response = \"1h\"\nresolution = \"8h\"\n";
const TIMERS: &str = "pending_reminder_after = \"3d\"\npending_resolve_after = \"7d\"\nclose_resolved_after = \"7d\"\n";

fn config(dir: &std::path::Path, desk: &str, rest: &str) -> Arc<Config> {
    let toml = format!(
        "[desk]\nacks_per_sender_per_hour = 100000\nnotifications_per_ticket_per_hour = 100000\nnotifications_per_agent_per_hour = 100000000\n{desk}\n[store]\npath = \"{0}/db\"\n[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n[[mailboxes]]\nname = \"support\"\naddress = \"support@example.test\"\nhost = \"127.0.0.1\"\ntls = \"none\"\npassword = \"x\"\n[[agents]]\nid = \"agent_alice\"\nemail = \"alice@example.test\"\n[[agents]]\nid = \"agent_bob\"\nemail = \"bob@example.test\"\n[[rules]]\nsubject = \"(?i)down\"\npriority = \"urgent\"\n{rest}",
        dir.display()
    );
    let p = dir.join("c.toml");
    std::fs::write(&p, toml).unwrap();
    Arc::new(Config::load_with_env(&p, Some(Default::default())).unwrap())
}

fn start(cfg: Arc<Config>) -> Desk {
    Desk::open(cfg, false).expect("open the desk").desk
}

/// A new ticket's mail: four subjects, so every priority's rule is used.
fn mail(i: usize) -> Vec<u8> {
    let subjects = ["Site is down", "Invoice question", "Cannot log in", "Feature idea: dark mode"];
    let body = "Hello support,\r\n\r\nthe button does nothing. Steps: open the app, click, wait.\r\n\r\nThanks\r\n";
    format!(
        "From: Customer {i} <customer{i}@example.test>\r\nTo: support@example.test\r\nSubject: {} {i}\r\nMessage-ID: <timers-{i}@customer.example.test>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}",
        subjects[i % subjects.len()]
    )
    .into_bytes()
}

/// Ingests the same `n` new-ticket mails into each desk, in batches of
/// 50, each desk's batch in turn (which goes first rotating). Returns each
/// desk's msg/s over the time its own batches took, and each batch's time.
async fn ingest(desks: &[&Desk], n: usize) -> (Vec<f64>, Vec<Vec<Duration>>) {
    let mut spent = vec![Vec::new(); desks.len()];
    for (b, chunk) in (0..n).collect::<Vec<_>>().chunks(50).enumerate() {
        for k in 0..desks.len() {
            let side = (b + k) % desks.len();
            let items = chunk.iter().map(|&i| Item::Mail { uid: i as u32 + 1, raw: mail(i) }).collect::<Vec<_>>();
            let t = Instant::now();
            let r = desks[side].ingest("support", 1, items).await;
            spent[side].push(t.elapsed());
            assert!(r.error.is_none(), "batch {b}: {:?}", r.error);
        }
    }
    let rates = spent.iter().map(|s| n as f64 / s.iter().sum::<Duration>().as_secs_f64()).collect();
    (rates, spent)
}

/// The median over batches of desk `a`'s batch time over desk `b`'s for
/// the same mails, taken moments apart: a rate (msg/s) ratio, robust to a
/// burst of load that hits a few batches of one side.
fn paired(spent: &[Vec<Duration>], a: usize, b: usize) -> f64 {
    median(spent[b].iter().zip(&spent[a]).map(|(tb, ta)| tb.as_secs_f64() / ta.as_secs_f64()).collect())
}

/// Of an even count, the mean of the two middle values (of two rounds the
/// upper one alone would flatter whichever side had the quieter round).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("TICKETD_BENCH_TICKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full {
        10_000
    } else {
        300
    });
    let runs: usize =
        std::env::var("TICKETD_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 2 } else { 1 });

    // Ingest, interleaved, four desks: without targets (twice: two
    // identical desks show what this machine's noise alone makes of a
    // ratio), with targets and the clock at its default (30 s: it does not
    // tick during a round), and with targets and a tick every 100 ms.
    let sides = [
        "no response targets",
        "the same again (control)",
        "targets, clock at its default",
        "targets, clock every 100 ms",
    ];
    let mut rates = vec![Vec::new(); sides.len()];
    let mut ratios = vec![Vec::new(); sides.len()];
    let mut kept = None;
    for r in 0..runs {
        let dirs: Vec<_> = (0..sides.len()).map(|_| tempfile::tempdir().unwrap()).collect();
        let desks: Vec<Desk> = dirs
            .iter()
            .enumerate()
            .map(
                |(i, d)| if i < 2 { start(config(d.path(), "", "")) } else { start(config(d.path(), TIMERS, TARGETS)) },
            )
            .collect();
        let clock = {
            let desk = desks[3].clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if desk.tick(Utc::now()).await.is_err() {
                        return;
                    }
                }
            })
        };
        let (rate, spent) = ingest(&desks.iter().collect::<Vec<_>>(), n).await;
        clock.abort();
        let mut line = format!("round {}:", r + 1);
        for (i, side) in sides.iter().enumerate() {
            let ratio = paired(&spent, i, 0);
            line += &format!(" {side} {:.0} msg/s ({ratio:.3});", rate[i]);
            rates[i].push(rate[i]);
            ratios[i].push(ratio);
        }
        eprintln!("{line}");
        let mut desks = desks.into_iter();
        for d in desks.by_ref().take(3) {
            d.end_run().await.unwrap();
        }
        let mut dirs = dirs.into_iter();
        drop(dirs.by_ref().take(3).collect::<Vec<_>>());
        kept = Some((dirs.next().unwrap(), desks.next().unwrap()));
    }
    let (dir, desk) = kept.unwrap();
    let first = desk.ticket(1).unwrap().unwrap();
    assert!(first.ticket.first_response_due.is_some(), "every ticket has targets");
    let created = first.ticket.created_at;
    let open = desk.store().tickets().unwrap().len();

    // Ticks with nothing due, N open tickets with targets.
    let quiet_at = created + TimeDelta::minutes(1);
    let mut quiet = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        assert_eq!(desk.tick(quiet_at).await.unwrap(), 0);
        quiet.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // Everything due at once: every first response breached (and the
    // urgent ones' warnings moot), PER_TICK tickets a tick.
    let due_at = created + TimeDelta::hours(9);
    let mut busy = Vec::new();
    let all = Instant::now();
    let mut fired = 0;
    while desk.time_backlog(due_at).unwrap() {
        let t = Instant::now();
        fired += desk.tick(due_at).await.unwrap();
        busy.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(busy.len() < 10 * open, "the backlog drains");
    }
    let drain = all.elapsed().as_secs_f64();
    let notices = desk.outbox(false).unwrap().iter().filter(|e| e.kind == ticketd::outbox::OutKind::Escalation).count();
    desk.end_run().await.unwrap();
    drop(desk);

    // The targets change: the sweep re-settles every ticket.
    let desk = start(config(
        dir.path(),
        TIMERS,
        &TARGETS.replace("\"8h\"\nresolution = \"5d\"", "\"6h\"\nresolution = \"5d\""),
    ));
    let sweep_at = due_at + TimeDelta::minutes(1);
    let t = Instant::now();
    let mut sweep_ticks = 0;
    while desk.time_backlog(sweep_at).unwrap() {
        desk.tick(sweep_at).await.unwrap();
        sweep_ticks += 1;
        assert!(sweep_ticks < 10 * open, "the sweep ends");
    }
    let sweep = t.elapsed().as_secs_f64();
    desk.end_run().await.unwrap();

    println!();
    let list = |v: &[f64]| v.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", ");
    println!(
        "| ingest, {n} new-ticket mails (median of {runs} rounds) | msg/s | vs no targets, median over batches, per round |"
    );
    println!("|---|---|---|");
    for (i, side) in sides.iter().enumerate() {
        let vs = if i == 0 {
            "1".to_owned()
        } else {
            format!("{} (median {:.3})", list(&ratios[i]), median(ratios[i].clone()))
        };
        println!("| {side} | {:.0} | {vs} |", median(rates[i].clone()));
    }
    println!();
    println!("| the clock, {open} open tickets with targets | value |");
    println!("|---|---|");
    println!(
        "| tick, nothing due: p50 / p99 ms | {:.2} / {:.2} |",
        percentile(quiet.clone(), 0.5),
        percentile(quiet, 0.99)
    );
    println!(
        "| tick, {} tickets due (breach notices): p50 / max ms | {:.0} / {:.0} |",
        ticketd::desk::timers::PER_TICK,
        percentile(busy.clone(), 0.5),
        percentile(busy.clone(), 1.0)
    );
    println!(
        "| all {fired} due tickets fired: ticks, seconds, notices queued | {}, {drain:.1}, {notices} |",
        busy.len()
    );
    println!("| sweep after the targets changed: ticks, seconds | {sweep_ticks}, {sweep:.1} |");
}
