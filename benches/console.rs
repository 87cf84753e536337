//! Desk console benchmark (not a timed test), printed as a table: with
//! 10,000 tickets in the store (filled through the desk's own ingest
//! path), the time to serve the queue page (the default view and a page
//! further on by cursor), a search by text, and a ticket of 500 entries,
//! p50 and p99 over loopback HTTP from a signed-in session.
//!
//! Run: `cargo bench --bench console` (TICKETD_BENCH_TICKETS overrides
//! 10,000). Under `cargo test --benches` it is a small smoke run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, Method, header};
use tokio_util::sync::CancellationToken;

use ticketd::api::auth::{Principal, Token, Tokens};
use ticketd::api::server::Server;
use ticketd::cli::http::{Body, HttpClient};
use ticketd::config::{ApiConfig, Config, Listen};
use ticketd::desk::{ActorRef, Desk, Item};
use ticketd::triage::act::Action;

const TOKEN: &str = "bench-token-0123456789abcdef";

fn config(dir: &std::path::Path) -> Config {
    let p = dir.join("ticketd.toml");
    let text = format!(
        "[store]\npath = \"{0}/db\"\n[desk]\nacks_per_sender_per_hour = 100000\nnotifications_per_agent_per_hour = 100000\n[smtp]\nhost = \"127.0.0.1\"\nport = 9\ntls = \"none\"\n[[mailboxes]]\nname = \"support\"\naddress = \"support@example.test\"\nhost = \"127.0.0.1\"\nport = 9\ntls = \"none\"\npassword = \"x\"\n[[agents]]\nid = \"agent_alice\"\nemail = \"alice@example.test\"\nname = \"Alice\"\n",
        dir.display()
    );
    std::fs::write(&p, text).unwrap();
    Config::load_with_env(&p, Some(Default::default())).unwrap()
}

struct Latency {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    bytes: usize,
}

async fn measure(
    http: &HttpClient,
    cookie: &str,
    name: &'static str,
    rounds: usize,
    path: impl Fn(usize) -> String,
) -> Latency {
    let mut times = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for i in 0..rounds {
        let p = path(i);
        let t = Instant::now();
        let r = http.send(Method::GET, &p, &[(header::COOKIE, cookie.to_owned())], None).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(r.status, 200, "{p}: {}", String::from_utf8_lossy(&r.body));
        bytes = r.body.len();
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Latency { name, p50: at(0.50), p99: at(0.99), bytes }
}

/// Signs in with the admin token; the session cookie to send.
async fn sign_in(http: &HttpClient, origin: &str) -> String {
    let page = http.get("/desk/login").await.unwrap();
    let set = |r: &ticketd::cli::http::Reply, name: &str| {
        r.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(name))
            .map(|v| v.split(';').next().unwrap().to_owned())
            .unwrap()
    };
    let login = set(&page, "ticketd_login=");
    let html = String::from_utf8_lossy(&page.body);
    let at = html.find("name=\"login_token\" value=\"").unwrap() + 26;
    let lt = &html[at..at + 64];
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("login_token", lt)
        .append_pair("token", TOKEN)
        .finish();
    let extra: [(HeaderName, String); 2] = [(header::COOKIE, login), (header::ORIGIN, origin.to_owned())];
    let body = Body { content_type: "application/x-www-form-urlencoded".into(), bytes: form.into_bytes() };
    let r = http.send(Method::POST, "/desk/login", &extra, Some(body)).await.unwrap();
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    set(&r, "ticketd_session=")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let tickets: usize = std::env::var("TICKETD_BENCH_TICKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full {
        10_000
    } else {
        600
    });
    let rounds = if full { 400 } else { 20 };
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(config(dir.path()));
    let desk = Desk::open(cfg, false).expect("open the desk").desk;

    let t = Instant::now();
    let mut uid = 0u32;
    while (uid as usize) < tickets {
        let items: Vec<Item> = (0..500.min(tickets - uid as usize))
            .map(|_| {
                uid += 1;
                Item::Mail {
                    uid,
                    raw: common::mail::customer_traffic(uid as usize, "support@example.test", "console-bench"),
                }
            })
            .collect();
        let want = items.len();
        let r = desk.ingest("support", 1, items).await;
        assert_eq!(r.done.len(), want, "{:?}", r.error);
    }
    let fill = t.elapsed().as_secs_f64();
    // One long conversation: 500 entries (notes).
    let long = 7u64;
    let want_entries = if full { 500 } else { 60 };
    let t = Instant::now();
    let mut entries = desk.ticket(long).unwrap().unwrap().ticket.threads.len();
    let mut i = 0;
    while entries < want_entries {
        let text = format!("Note {i}: checked the logs again, {}", "nothing new. ".repeat(1 + i % 8));
        let rec = desk
            .act(long, ActorRef::Agent("agent_alice".into()), vec![Action::Note { text }], vec![], None)
            .await
            .unwrap();
        entries = rec.ticket.threads.len();
        i += 1;
    }
    let grow = t.elapsed().as_secs_f64();

    let stop = CancellationToken::new();
    let api = ApiConfig::with_defaults(Listen::Tcp("127.0.0.1:0".parse().unwrap()));
    let tokens = Tokens::from_values(vec![(Token::new(TOKEN), Principal::Admin)]);
    let server = Server::bind_with_extra(desk.clone(), api, tokens, Box::new(ticketd::console::router)).await.unwrap();
    let local = server.local().clone();
    tokio::spawn(server.run(stop.clone(), Default::default()));
    let http = HttpClient::new(local.clone());
    let cookie = sign_in(&http, &local.base_url()).await;
    // A cursor a few pages in, as the queue's own "Next page" link makes it.
    let page = http.send(Method::GET, "/desk/", &[(header::COOKIE, cookie.clone())], None).await.unwrap();
    let html = String::from_utf8_lossy(&page.body).into_owned();
    let next = html
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|h| h.contains("cursor="))
        .unwrap()
        .replace("&amp;", "&");

    let results = vec![
        measure(&http, &cookie, "queue (default view, 50 rows)", rounds, |_| "/desk/".into()).await,
        measure(&http, &cookie, "queue next page (cursor)", rounds, |_| next.clone()).await,
        measure(&http, &cookie, "queue every status, by update", rounds, |_| "/desk/?status=any&sort=updated".into())
            .await,
        measure(&http, &cookie, "queue search q=<rare text>", rounds, |i| {
            format!("/desk/?q=message+{}.&status=any", 100 + i % 50)
        })
        .await,
        measure(&http, &cookie, "queue search q=<customer>", rounds, |i| {
            format!("/desk/?q=customer+{}&status=any", i % 50)
        })
        .await,
        measure(&http, &cookie, "ticket of 500 entries (smoke: 60)", rounds, |_| format!("/desk/tickets/{long}")).await,
        measure(&http, &cookie, "ticket (one mail)", rounds, |i| format!("/desk/tickets/{}", 1 + (i * 7919) % tickets))
            .await,
    ];
    stop.cancel();

    println!(
        "store: {tickets} tickets through Desk::ingest in {fill:.1}s ({:.0} tickets/s); ticket #{long} grown to {entries} entries in {grow:.1}s",
        tickets as f64 / fill
    );
    println!("{:<34} {:>10} {:>10} {:>12}", "console page (loopback HTTP)", "p50 ms", "p99 ms", "body bytes");
    for r in &results {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("{:<34} {:>10.2} {:>10.2} {:>12}", r.name, ms(r.p50), ms(r.p99), r.bytes);
    }
    desk.join_when_last().await;
}
