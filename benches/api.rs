//! API benchmark (not a timed test), printed as a table:
//!
//! 1. list and show latency (p50/p99) over loopback HTTP with 10,000
//!    tickets in the store, filled through the desk's own ingest path
//!    (generated mails in batches of 500, no IMAP);
//! 2. ingest throughput over IMAP from a private Dovecot, with and without
//!    a client polling `GET /api/v1/tickets` every 100 ms, in the same run
//!    (fresh store and mailbox for each, same messages), and their ratio.
//!
//! Run: `cargo bench --bench api` (TICKETD_BENCH_TICKETS overrides 10,000,
//! TICKETD_BENCH_MESSAGES the 1,000 mails of part 2). Under `cargo test
//! --benches` it is a small smoke run.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use ticketd::api::auth::{Principal, Token, Tokens};
use ticketd::api::server::Server;
use ticketd::cli::http::HttpClient;
use ticketd::config::{ApiConfig, Config, Listen};
use ticketd::desk::{Desk, Item};
use ticketd::imap::worker::Worker;
use ticketd::store::Records;

const TOKEN: &str = "bench-token-0123456789abcdef";

fn config(lab: &common::Lab, dir: &std::path::Path) -> Config {
    common::daemon::lab_config(lab, dir)
        .with(|c| {
            c.mailbox().batch_size = Some(50);
            c.desk.acks_per_sender_per_hour = Some(100_000);
            c.desk.notifications_per_agent_per_hour = Some(100_000);
        })
        .load()
}

/// The API of `desk` on a free loopback port.
async fn serve(desk: &Desk, shutdown: &CancellationToken) -> HttpClient {
    let api = ApiConfig::with_defaults(Listen::Tcp("127.0.0.1:0".parse().unwrap()));
    let tokens = Tokens::from_values(vec![(Token::new(TOKEN), Principal::Admin)]);
    let server = Server::bind_with(desk.clone(), api, tokens).await.unwrap();
    let local = server.local().clone();
    tokio::spawn(server.run(shutdown.clone(), Default::default()));
    HttpClient::new(local).with_token(Token::new(TOKEN))
}

struct Latency {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    bytes: usize,
}

async fn measure(api: &HttpClient, name: &'static str, rounds: usize, path: impl Fn(usize) -> String) -> Latency {
    let mut times = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for i in 0..rounds {
        let p = path(i);
        let t = Instant::now();
        let r = api.get(&p).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(r.status, 200, "{p}: {}", String::from_utf8_lossy(&r.body));
        bytes = r.body.len();
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Latency { name, p50: at(0.50), p99: at(0.99), bytes }
}

/// Seconds to ingest `n` messages already in `user`'s INBOX, optionally
/// with a client polling the ticket list every 100 ms meanwhile.
async fn ingest_over_imap(lab: &common::Lab, user: &str, n: usize, poll: bool) -> (f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(lab, dir.path());
    cfg.mailboxes[0].username = format!("{user}@example.test");
    let desk = common::desk::open_desk(cfg.clone());
    let stop = CancellationToken::new();
    let api = serve(&desk, &stop).await;
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    if poll {
        let (stop, polls) = (stop.clone(), polls.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.is_cancelled() {
                tick.tick().await;
                if api.get("/api/v1/tickets").await.is_ok_and(|r| r.status == 200) {
                    polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let worker = Worker {
        mb: cfg.mailboxes[0].clone(),
        desk: desk.clone(),
        max_message_bytes: cfg.desk.max_message_bytes,
        shutdown: stop.clone(),
    };
    let t = Instant::now();
    let task = tokio::spawn(worker.run());
    let deadline = Instant::now() + Duration::from_secs(900);
    let store = desk.store().clone();
    while store.cursor("support").unwrap().is_none_or(|c| (c.last_uid as usize) < n) {
        assert!(Instant::now() < deadline, "ingest did not finish in 15 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    stop.cancel();
    task.await.unwrap();
    assert_eq!(store.tickets().unwrap().len(), n, "every message became a ticket");
    desk.join_when_last().await;
    (secs, polls.load(std::sync::atomic::Ordering::Relaxed))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, full_n: usize, smoke: usize| {
        std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(if full { full_n } else { smoke })
    };
    let tickets: usize = env("TICKETD_BENCH_TICKETS", 10_000, 600);
    let messages: usize = env("TICKETD_BENCH_MESSAGES", 1_000, 60);
    let rounds = if full { 400 } else { 20 };
    let lab = common::Lab::start();

    // 1. A full store, through the desk's ingest path.
    let dir = tempfile::tempdir().unwrap();
    let desk = common::desk::open_desk(config(&lab, dir.path()));
    let t = Instant::now();
    let mut uid = 0u32;
    while (uid as usize) < tickets {
        let items: Vec<Item> = (0..500.min(tickets - uid as usize))
            .map(|_| {
                uid += 1;
                Item::Mail {
                    uid,
                    raw: common::mail::customer_traffic(uid as usize, "support@example.test", "api-bench"),
                }
            })
            .collect();
        let want = items.len();
        let r = desk.ingest("support", 1, items).await;
        assert_eq!(r.done.len(), want, "{:?}", r.error);
    }
    let fill = t.elapsed().as_secs_f64();
    let stop = CancellationToken::new();
    let api = serve(&desk, &stop).await;
    let n = tickets as u64;
    let results = vec![
        measure(&api, "list (newest 50)", rounds, |_| "/api/v1/tickets".into()).await,
        measure(&api, "list page via cursor", rounds, |i| {
            format!("/api/v1/tickets?cursor={}", n - (i as u64 * 37) % (n / 2))
        })
        .await,
        measure(&api, "list status=open&limit=500", rounds / 4, |_| "/api/v1/tickets?status=open&limit=500".into())
            .await,
        measure(&api, "list q=<rare text>", rounds / 4, |_| "/api/v1/tickets?q=message%20777.".into()).await,
        measure(&api, "list sort=-updatedAt", rounds / 4, |_| "/api/v1/tickets?sort=-updatedAt".into()).await,
        measure(&api, "show one ticket", rounds, |i| format!("/api/v1/tickets/{}", 1 + (i * 7919) % tickets)).await,
    ];
    stop.cancel();
    desk.join_when_last().await;

    // 2. Ingest over IMAP, without and with a client polling the API, in
    // the order quiet, polled, polled, quiet so neither mode gets the warm
    // (or the cold) end of the run to itself.
    let users = ["bench-a", "bench-b", "bench-c", "bench-d"];
    for user in users {
        lab.add_user(user, common::PASSWORD);
        let to = format!("{user}@example.test");
        let n = lab
            .imap_append_many(user, "INBOX", (0..messages).map(|i| common::mail::customer_traffic(i, &to, "api-bench")))
            .await
            .unwrap();
        assert_eq!(n, messages);
    }
    let mut runs = Vec::new();
    for (user, poll) in users.iter().zip([false, true, true, false]) {
        let (secs, polls) = ingest_over_imap(&lab, user, messages, poll).await;
        runs.push((poll, secs, polls));
    }
    let mean = |poll: bool| {
        let v: Vec<f64> = runs.iter().filter(|r| r.0 == poll).map(|r| r.1).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (quiet, polled) = (mean(false), mean(true));
    let polls: usize = runs.iter().map(|r| r.2).sum();

    println!(
        "store: {tickets} tickets, filled through Desk::ingest in {fill:.1}s ({:.0} tickets/s)",
        tickets as f64 / fill
    );
    println!("{:<30} {:>10} {:>10} {:>12}", "request (loopback HTTP)", "p50 ms", "p99 ms", "body bytes");
    for r in &results {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("{:<30} {:>10.2} {:>10.2} {:>12}", r.name, ms(r.p50), ms(r.p99), r.bytes);
    }
    println!("ingest over IMAP, {messages} messages per run (fresh store and mailbox each):");
    for (poll, secs, n) in &runs {
        let mode =
            if *poll { format!("polled every 100 ms ({n} list requests)") } else { "without API polling".into() };
        println!("  {mode:<42} {secs:>7.2}s  {:>7.0} msg/s", messages as f64 / secs);
    }
    println!("  mean without polling: {quiet:.2}s; mean with polling: {polled:.2}s ({polls} list requests in all)");
    println!("  ratio polled/quiet: {:.2}x", polled / quiet);
}
