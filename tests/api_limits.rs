//! The API cannot be held open (the attack pass's third finding): 200
//! connections that never send a request used to take every descriptor of
//! a daemon under a 128-descriptor limit, and with them the API, the health
//! probes, IMAP ingest and sending. Now connections past
//! `api.max_connections` are closed at once, a header must arrive within
//! `api.header_timeout`, and the mail work never notices.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{ApiAt, Daemon, Lab};

/// Whether the server has closed `s` (EOF or reset) within `limit`,
/// whatever it answered before.
fn closed_within(s: &TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut b = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match (&mut &*s).read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_the_daemon() {
    let lab = Lab::start();
    let mut daemon = Daemon::prepare_api_with(&lab, ApiAt::Tcp, |c| {
        let api = c.api.as_mut().unwrap();
        api.max_connections = Some(48);
        api.header_timeout = Some(Duration::from_secs(2));
        api.idle_timeout = Some(Duration::from_secs(4));
    });
    // The descriptor limit of the attack pass.
    daemon.wrapper = vec!["prlimit".into(), "--nofile=128:128".into(), "--".into()];
    daemon.spawn();
    let addr = match daemon.listen() {
        ticketd::config::Listen::Tcp(a) => a,
        other => panic!("{other}"),
    };

    // 200 connections that send nothing.
    let mut held: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    assert!(held.len() >= 150, "the kernel accepted the connections: {}", held.len());
    let started = Instant::now();
    // Past the cap they are closed at once, not queued.
    let refused = held.iter_mut().rev().take(100).filter(|s| closed_within(s, Duration::from_millis(500))).count();
    assert!(refused >= 100, "connections past api.max_connections are closed at once: {refused} of 100");

    // Mail goes on meanwhile: a customer's mail is ingested and acknowledged.
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        b"From: customer@example.test\r\nTo: support@example.test\r\nSubject: During the flood\r\nMessage-ID: <flood@c.test>\r\n\r\nHello\r\n",
    )
    .await
    .unwrap();
    common::wait_for_text(&lab, "customer", "[Ticket #1] During the flood", Duration::from_secs(30)).await;

    // The ones within the cap sent no header: closed after api.header_timeout.
    let kept = &mut held[..48];
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in kept.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
        assert!(closed_within(s, left), "a connection without a header outlived the header timeout");
    }
    assert!(started.elapsed() < Duration::from_secs(12), "closed within the header timeout: {:?}", started.elapsed());
    drop(held);

    // A request that starts but never finishes its body is closed when nothing moves.
    let mut slow = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /api/v1/tickets/1/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"te",
        common::ADMIN_TOKEN
    );
    slow.write_all(head.as_bytes()).unwrap();
    let t0 = Instant::now();
    assert!(closed_within(&slow, Duration::from_secs(20)), "a stalled upload is cut off");
    assert!(t0.elapsed() >= Duration::from_secs(3), "by the idle timeout, not at once: {:?}", t0.elapsed());

    // The API answers at once afterwards, and the descriptors came back.
    let r = daemon.api().get("/readyz").await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid())).unwrap().count();
    assert!(fds < 80, "descriptors held after the flood: {fds}");
    let log = daemon.log_text();
    assert!(log.contains("API connections refused"), "the refusals are logged once a minute: {log}");
    assert!(!log.contains("cannot store changes"), "the store never ran out of descriptors:\n{log}");
    daemon.stop_ok();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

/// The fourth finding: an attachment's body was built in memory and sent
/// after the handler returned, outside `api.concurrency` and `api.timeout`:
/// 60 slow readers of a 5 MiB file took the daemon from 19 to 318 MiB. Now
/// a download streams from the store inside both bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_a_large_attachment_hold_little_memory() {
    use base64::Engine as _;
    let lab = Lab::start();
    let mut daemon = Daemon::prepare_api_with(&lab, ApiAt::Tcp, |c| {
        let api = c.api.as_mut().unwrap();
        api.concurrency = Some(4);
        api.timeout = Some(Duration::from_secs(3));
        api.public_attachments = Some(true);
    });
    daemon.spawn();
    let file: Vec<u8> = (0..5u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&file);
    let lines: Vec<&str> = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let raw = format!(
        "From: customer@example.test\r\nTo: support@example.test\r\nSubject: Big file\r\nMessage-ID: <big@c.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        lines.join("\r\n")
    );
    lab.imap_append("support", "INBOX", raw.as_bytes()).await.unwrap();
    let t = daemon.eventually_json("/api/v1/tickets/1", Duration::from_secs(30), |s, _| s == 200).await;
    let url = t["attachments"][0]["url"].as_str().unwrap().to_owned();
    let path = url.strip_prefix(&daemon.listen().base_url()).unwrap().to_owned();
    let addr = match daemon.listen() {
        ticketd::config::Listen::Tcp(a) => a,
        other => panic!("{other}"),
    };
    // One whole download first: the bytes are right.
    let r = daemon.api_anonymous().get(&path).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.as_ref() == file.as_slice());
    let before = rss_kib(daemon.pid());

    // 60 readers ask and then read nothing.
    let mut readers = Vec::new();
    for _ in 0..60 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        readers.push(s);
    }
    std::thread::sleep(Duration::from_secs(2));
    let during = rss_kib(daemon.pid());
    eprintln!("daemon RSS: {before} KiB before, {during} KiB with 60 slow readers of a 5 MiB file");
    assert!(
        during < before + 48 * 1024,
        "60 slow readers of a 5 MiB file grew the daemon from {before} KiB to {during} KiB"
    );
    // Past api.timeout the stalled ones are cut off, and the waiting ones told so.
    for s in &readers {
        assert!(closed_within(s, Duration::from_secs(30)), "a stalled download outlived api.timeout");
    }
    drop(readers);
    let r = daemon.api_anonymous().get(&path).await.unwrap();
    assert_eq!(r.status, 200, "the API serves again");
    assert!(r.body.as_ref() == file.as_slice());
    daemon.stop_ok();
}

/// A log line that cannot be written (stderr on a full disk) is dropped,
/// and the daemon goes on: it used to panic in the middle of its work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_be_written_stops_nothing() {
    let lab = Lab::start();
    let daemon = Daemon::prepare_api(&lab, ApiAt::Tcp, "", "");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(&daemon.config)
        .arg("run")
        .env("TICKETD_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(full)
        .spawn()
        .unwrap();
    daemon.eventually_json("/readyz", Duration::from_secs(30), |s, _| s == 200).await;
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        b"From: customer@example.test\r\nTo: support@example.test\r\nSubject: Logged nowhere\r\nMessage-ID: <full@c.test>\r\n\r\nHello\r\n",
    )
    .await
    .unwrap();
    common::wait_for_text(&lab, "customer", "[Ticket #1] Logged nowhere", Duration::from_secs(30)).await;
    assert!(child.try_wait().unwrap().is_none(), "the daemon is still running");
    assert!(std::process::Command::new("kill").arg(child.id().to_string()).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "a clean stop although no log line could be written: {status}");
}
