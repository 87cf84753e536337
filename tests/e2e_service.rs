//! How ticketd runs as a service: TLS to the real servers (implicit and
//! STARTTLS, trusting the lab's private CA), and the systemd notify protocol.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{ApiAt, Daemon, Lab, header, wait_for_text};
use ticketd::config::Tls;

fn mail(subject: &str, id: &str) -> Vec<u8> {
    format!("From: customer@example.test\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\r\nhello\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_starttls_against_the_real_servers() {
    let lab = Lab::start();
    // IMAPS (implicit TLS) for the mailbox, STARTTLS for Postfix.
    let mut daemon = Daemon::prepare_api_with(&lab, ApiAt::Unix, |c| {
        let m = c.mailbox();
        m.port = lab.imaps_port;
        m.tls = Tls::Implicit;
        m.ca_file = Some(lab.ca_pem.clone());
        c.smtp.tls = Tls::Starttls;
        c.smtp.ca_file = Some(lab.ca_pem.clone());
    });
    daemon.spawn();
    lab.smtp_send("customer@example.test", &["support@example.test"], &mail("Over TLS", "tls1@c.test")).await.unwrap();
    let ack = wait_for_text(&lab, "customer", "[Ticket #1] Over TLS", Duration::from_secs(30)).await;
    assert!(
        header(&ack, "Received").unwrap_or_default().contains("ESMTPS") || ack.contains("with ESMTPS"),
        "the ack went over STARTTLS:\n{ack}"
    );
    daemon.stop_ok();
    assert!(!daemon.log_text().contains("clear text"), "no cleartext warning with TLS");

    // STARTTLS on the plain IMAP port works too.
    daemon.reconfigure(|c| {
        let m = c.mailbox();
        m.port = lab.imap_port;
        m.tls = Tls::Starttls;
    });
    daemon.spawn();
    lab.smtp_send("customer@example.test", &["support@example.test"], &mail("Over STARTTLS", "tls2@c.test"))
        .await
        .unwrap();
    wait_for_text(&lab, "customer", "[Ticket #2] Over STARTTLS", Duration::from_secs(30)).await;
    daemon.stop_ok();

    // A server whose certificate we do not trust is refused: ticketd says
    // why on /readyz, and in a clear log line.
    daemon.reconfigure(|c| c.mailbox().ca_file = None);
    daemon.spawn();
    let mailbox = daemon
        .wait_mailbox("support", &["down"], Duration::from_secs(20), |m| {
            m["last_error"].as_str().is_some_and(|e| e.contains("invalid peer certificate"))
        })
        .await;
    daemon.stop_ok();
    assert!(daemon.log_text().contains("invalid peer certificate"), "{mailbox}\n{}", daemon.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_and_stopping() {
    let lab = Lab::start();
    let mut daemon = Daemon::start(&lab, "");
    daemon.stop_ok();
    let sock_path = daemon.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    daemon.env =
        vec![("NOTIFY_SOCKET".into(), sock_path.display().to_string()), ("WATCHDOG_USEC".into(), "400000".into())];
    daemon.launch();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    // READY once the store is open; then STATUS says what the mailbox does.
    while !got.contains("READY=1") || !got.contains("WATCHDOG=1") || !got.contains("STATUS=support: idle") {
        let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("a notification within 20s ({e}): {got}"));
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("STATUS=store open; connecting to 1 mailbox(es)"), "{got}");
    daemon.stop_ok();
    while !got.contains("STOPPING=1") {
        let n = sock.recv(&mut buf).expect("STOPPING within 20s");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// Signals are the process's intents: SIGHUP reads the token files again
/// (a rotated agent token works without a restart, the old one stops
/// working); a second SIGTERM while the first drains quits at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_tokens_and_a_second_sigterm_quits_at_once() {
    use std::io::Write;
    let lab = Lab::start();
    let mut daemon = Daemon::start_api(&lab, common::ApiAt::Tcp);
    let listen = daemon.listen();
    let as_alice = |token: &str| {
        ticketd::cli::http::HttpClient::new(listen.clone()).with_token(ticketd::api::auth::Token::new(token))
    };
    assert_eq!(as_alice(common::ALICE_TOKEN).get("/api/v1/tickets").await.unwrap().status, 200);
    let rotated = "alice-rotated-token-0123456789abcdef";
    std::fs::write(daemon.dir.path().join("api-alice"), format!("{rotated}\n")).unwrap();
    let hup = std::process::Command::new("kill").arg("-HUP").arg(daemon.pid().to_string()).status().unwrap();
    assert!(hup.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while as_alice(rotated).get("/api/v1/tickets").await.unwrap().status != 200 {
        assert!(std::time::Instant::now() < deadline, "the rotated token never worked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(as_alice(common::ALICE_TOKEN).get("/api/v1/tickets").await.unwrap().status, 401, "the old one is gone");
    assert!(daemon.running(), "SIGHUP stops nothing");

    // A request that never finishes keeps the drain busy (up to its grace).
    let addr = match daemon.listen() {
        ticketd::config::Listen::Tcp(a) => a,
        other => panic!("{other}"),
    };
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /api/v1/tickets/1/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        common::ADMIN_TOKEN
    );
    slow.write_all(head.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = daemon.pid().to_string();
    let term = || std::process::Command::new("kill").arg("-TERM").arg(&pid).status().unwrap();
    assert!(term().success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(daemon.running(), "the first SIGTERM drains");
    assert!(term().success());
    let status = daemon.wait(Duration::from_secs(5)).expect("the second SIGTERM quits at once");
    assert!(!status.success(), "quitting without a drain is not a clean stop: {status}");
    assert!(daemon.log_text().contains("again: quitting now"), "{}", daemon.log_text());
}
