//! Crash safety: 300 messages ingested while the daemon is killed over and
//! over — by SIGKILL at random moments and by an abort at each step of
//! fetch → commit → flush → IMAP post-action → SMTP send. At the end every
//! message is in exactly one thread entry, no ticket is duplicated, every
//! acknowledgement due was sent, and duplicate sends are counted.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Daemon, Lab};
use futures::TryStreamExt;

const N: usize = 300;

fn is_reply(i: usize) -> bool {
    i % 6 == 5
}

fn raw(i: usize) -> Vec<u8> {
    let (sender, extra) = if is_reply(i) {
        (
            format!("customer+{}@example.test", i - 1),
            format!("In-Reply-To: <crash-{}@customer.example.test>\r\n", i - 1),
        )
    } else {
        (format!("customer+{i}@example.test"), String::new())
    };
    format!(
        "From: Customer <{sender}>\r\nTo: support@example.test\r\nSubject: Crash test {i}\r\nMessage-ID: <crash-{i}@customer.example.test>\r\n{extra}\r\nmarker-{i}-end\r\n"
    )
    .into_bytes()
}

/// (Message-ID, In-Reply-To) of every message in `user`'s INBOX.
async fn ids(lab: &Lab, user: &str) -> Vec<(String, String)> {
    let Ok(mut s) = lab.session(user).await else { return Vec::new() };
    let mb = s.examine("INBOX").await.unwrap();
    let mut out = Vec::new();
    if mb.exists > 0 {
        let fetches: Vec<_> = s
            .uid_fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID IN-REPLY-TO)])")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        for f in &fetches {
            let h = String::from_utf8_lossy(f.header().or(f.body()).unwrap_or_default()).into_owned();
            out.push((
                common::header(&h, "Message-ID").unwrap_or_default(),
                common::header(&h, "In-Reply-To").unwrap_or_default(),
            ));
        }
    }
    let _ = s.logout().await;
    out
}

/// A small deterministic generator: the run is repeatable from its seed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_anywhere_loses_nothing_and_duplicates_nothing() {
    let lab = Lab::start();
    let mut s = lab.session("support").await.unwrap();
    for i in 0..N {
        s.append("INBOX", None, None, raw(i)).await.unwrap();
    }
    s.logout().await.unwrap();
    let originals = (0..N).filter(|i| !is_reply(*i)).count();

    let mut daemon = Daemon::prepare_with(&lab, |c| {
        c.mailbox().batch_size = Some(7);
        c.desk.acks_per_sender_per_hour = Some(1000);
        c.desk.notifications_per_agent_per_hour = Some(1000);
    });
    daemon.spawn();
    daemon.kill9();
    let seed = 0x7ac4e7d;
    let mut rng = Lcg(seed);
    let mut crashes = 0;
    let started = Instant::now();
    let mut plan: Vec<Option<(&str, u64)>> = Vec::new();
    for step in ["fetched", "committed", "flushed", "post-action", "sent"] {
        for n in [1, 4, 9] {
            plan.push(Some((step, n)));
        }
    }
    plan.extend(std::iter::repeat_n(None, 12));
    for point in plan {
        daemon.env = match point {
            Some((step, n)) => vec![("TICKETD_CRASH_AT".into(), format!("{step}:{n}"))],
            None => Vec::new(),
        };
        if !daemon.try_spawn() {
            crashes += 1;
            continue;
        }
        match point {
            Some(_) => {
                let deadline = Instant::now() + Duration::from_secs(5);
                while daemon.running() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(100 + rng.next(1200))).await,
        }
        if daemon.running() {
            daemon.kill9();
        }
        crashes += 1;
        assert!(started.elapsed() < Duration::from_secs(300), "crash loop is bounded");
    }

    // Let a clean run finish the work.
    daemon.env.clear();
    daemon.spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let acks = ids(&lab, "customer").await;
        let notes = ids(&lab, "alice").await;
        let distinct_acks: std::collections::HashSet<_> = acks.iter().map(|(id, _)| id.clone()).collect();
        let distinct_notes: std::collections::HashSet<_> = notes.iter().map(|(id, _)| id.clone()).collect();
        if distinct_acks.len() >= originals && distinct_notes.len() >= N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 120s: {} of {originals} acks, {} of {N} notifications\n{}",
            distinct_acks.len(),
            distinct_notes.len(),
            daemon.log_text().lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    daemon.stop_ok();

    let tickets = daemon.tickets_json();
    assert_eq!(tickets.len(), originals, "one ticket per original message, none twice");
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for t in &tickets {
        for e in t["threads"].as_array().unwrap() {
            let m = e["message"].as_str().unwrap();
            if let Some(i) = m.strip_prefix("marker-").and_then(|r| r.strip_suffix("-end")) {
                *seen.entry(i.parse().unwrap()).or_default() += 1;
            }
        }
    }
    for i in 0..N {
        assert_eq!(seen.get(&i), Some(&1), "message {i} must be in exactly one thread entry");
    }
    let flags = lab.imap_flags("support", "INBOX").await.unwrap();
    assert_eq!(flags.len(), N);
    assert!(flags.iter().all(|(_, f)| f.iter().any(|x| x == "\\Seen")), "every message marked processed");

    let acks = ids(&lab, "customer").await;
    let notes = ids(&lab, "alice").await;
    let mut per_original: HashMap<String, usize> = HashMap::new();
    for (_, parent) in &acks {
        *per_original.entry(parent.clone()).or_default() += 1;
    }
    assert_eq!(per_original.len(), originals, "every acknowledgement due was sent");
    let dup_acks = acks.len() - originals;
    let dup_notes = notes.len() - N;
    println!(
        "crash test: {N} messages, {crashes} crashes (seed {seed:#x}); duplicate sends: {dup_acks} acknowledgements, {dup_notes} notifications"
    );
    assert!(dup_acks + dup_notes <= crashes, "at most one duplicate send per crash");
}
