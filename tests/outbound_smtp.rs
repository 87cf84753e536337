//! The SMTP client against the lab's real Postfix: per-recipient results,
//! one connection for many mails, reconnection after an outage, STARTTLS
//! and implicit TLS with the lab's private CA.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::Lab;
use tokio::net::TcpListener;

use ticketd::config::{Secret, SmtpConfig, Tls};
use ticketd::outbound::build::{BuildOptions, build};
use ticketd::outbound::smtp::{RcptResult, SendError, SmtpClient, address};
use ticketd::outbox::{OutKind, OutMail};

const WAIT: Duration = Duration::from_secs(20);

fn config(lab: &Lab, tls: Tls, port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls,
        username: None,
        password: None,
        hello_name: Some("desk.example.test".into()),
        ca_file: Some(lab.ca_pem.clone()),
        timeout: Duration::from_secs(10),
        retry_initial: Duration::from_secs(1),
        retry_max: Duration::from_secs(10),
    }
}

fn mail(id: &str, to: &[&str]) -> (OutMail, Vec<u8>) {
    let m = OutMail {
        ticket: 7,
        kind: OutKind::Relay,
        from_address: "support@example.test".into(),
        from_name: "Example Support".into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        subject: format!("[Ticket #7] {id}"),
        body: format!("Body of {id}.\n.\nA line that was only a dot.\n"),
        message_id: format!("{id}@desk.example.test"),
        in_reply_to: None,
        references: vec![],
        attachments: vec![],
        internal_lines: vec![],
    };
    let raw = build(&m, &mut |_| unreachable!("no attachments"), &BuildOptions::new(Utc::now())).unwrap();
    (m, raw)
}

fn rcpts(list: &[&str]) -> Vec<ticketd::outbound::smtp::Address> {
    list.iter().map(|a| address(a).unwrap()).collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn connects(lab: &Lab) -> usize {
    lab.postfix_log().lines().filter(|l| l.contains("connect from") && !l.contains("disconnect from")).count()
}

/// Postfix's log is written by another process; wait until it shows `n`.
async fn wait_for_connects(lab: &Lab, n: usize) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    while connects(lab) < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    connects(lab)
}

/// Implicit TLS in front of the lab's Postfix (which offers only STARTTLS),
/// with the lab's own certificate: the client must speak TLS from the first
/// byte or get nothing.
async fn tls_front(lab: &Lab) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> =
        CertificateDer::pem_file_iter(lab.path().join("tls/server.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(lab.path().join("tls/server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = lab.smtp_port;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut postfix) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut postfix).await;
            });
        }
    });
    port
}

/// Everything logged by anyone (ticketd, lettre, rustls through `log`) at
/// every level, kept for grepping.
fn capture_trace_log() -> Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .try_init()
        .expect("the only subscriber in this test binary");
    buf
}

fn base64(bytes: &[u8]) -> String {
    encodify::base64::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_client_against_the_lab_postfix() {
    let log = capture_trace_log();
    let lab = Lab::start();
    // lab.sh probes the port while starting; those connections are not ours.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = connects(&lab);

    // One refused recipient does not stop the others.
    let mut client = SmtpClient::new(&config(&lab, Tls::None, lab.smtp_port));
    let to = ["alice@example.test", "nobody@example.test", "bob@example.test"];
    let (_, raw) = mail("three-rcpts", &to);
    let results = client.send(&address("support@example.test").unwrap(), &rcpts(&to), &raw).await.unwrap();
    assert_eq!(results[0], RcptResult::Delivered);
    assert_eq!(results[2], RcptResult::Delivered);
    match &results[1] {
        RcptResult::Refused(reply) => {
            assert_eq!(reply.code, 550, "{reply}");
            assert!(reply.is_permanent());
            assert!(reply.text.contains("nobody@example.test"), "{reply}");
        }
        other => panic!("unknown user accepted: {other:?}"),
    }
    for user in ["alice", "bob"] {
        let got = lab.wait_for_messages(user, "INBOX", 1, WAIT).await.unwrap();
        assert!(contains(&got[0], "Message-ID: <three-rcpts@desk.example.test>"), "{user}");
        assert!(contains(&got[0], "\r\n.\r\nA line that was only a dot."), "dot-stuffing undone for {user}");
        assert!(!contains(&got[0], "dot.\r\n\r\n"), "no empty line added at the end");
    }

    // A relay to 60 participants with a 2,000-character subject goes out
    // whole, and every copy names all 60 (stranger+N@ all land in stranger's
    // INBOX).
    let many: Vec<String> = (0..60).map(|i| format!("stranger+participant{i:02}@example.test")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let (mut m, _) = mail("sixty", &many_refs);
    m.subject = format!("[Ticket #7] {}", "a rather long subject line ".repeat(75));
    let raw = build(&m, &mut |_| unreachable!(), &BuildOptions::new(Utc::now())).unwrap();
    let results = client.send(&address("support@example.test").unwrap(), &rcpts(&many_refs), &raw).await.unwrap();
    assert!(results.iter().all(|r| *r == RcptResult::Delivered), "{results:?}");
    let got = lab.wait_for_messages("stranger", "INBOX", 60, WAIT).await.unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&got[59]).unwrap();
    assert_eq!(parsed.to().unwrap().iter().count(), 60);
    assert!(parsed.subject().unwrap().starts_with("[Ticket #7] a rather long subject line"));

    // All recipients refused: no DATA, every refusal reported, connection kept.
    let (_, raw) = mail("nobody-home", &["ghost1@example.test", "ghost2@example.test"]);
    let results = client
        .send(&address("support@example.test").unwrap(), &rcpts(&["ghost1@example.test", "ghost2@example.test"]), &raw)
        .await
        .unwrap();
    assert!(results.iter().all(|r| matches!(r, RcptResult::Refused(reply) if reply.code == 550)), "{results:?}");
    assert!(client.is_connected());

    // A recipient outside the lab's domain: 554 relay denied, permanent.
    let (_, raw) = mail("relay-denied", &["someone@example.com"]);
    let results =
        client.send(&address("support@example.test").unwrap(), &rcpts(&["someone@example.com"]), &raw).await.unwrap();
    assert!(matches!(&results[0], RcptResult::Refused(r) if r.code == 554 && r.is_permanent()), "{results:?}");

    // Twenty mails, one connection (the one above).
    let before = wait_for_connects(&lab, base + 1).await;
    assert_eq!(before, base + 1, "{}", lab.postfix_log());
    for i in 0..20 {
        let (_, raw) = mail(&format!("reuse-{i}"), &["carol@example.test"]);
        let r = client.send(&address("support@example.test").unwrap(), &rcpts(&["carol@example.test"]), &raw).await;
        assert_eq!(r.unwrap(), [RcptResult::Delivered]);
    }
    let got = lab.wait_for_messages("carol", "INBOX", 20, WAIT).await.unwrap();
    assert_eq!(got.len(), 20);
    assert_eq!(client.connections(), 1);
    assert_eq!(connects(&lab), before, "one SMTP connection for all mails:\n{}", lab.postfix_log());

    // The server goes away and comes back: the dead connection is noticed
    // and replaced, and the mail goes out once.
    lab.stop_smtp();
    let (_, raw) = mail("during-outage", &["carol@example.test"]);
    let err = client.send(&address("support@example.test").unwrap(), &rcpts(&["carol@example.test"]), &raw).await;
    let err = err.unwrap_err();
    assert!(!err.is_permanent(), "an outage is transient: {err}");
    assert!(matches!(err, SendError::Connect { .. }), "{err}");
    lab.start_smtp();
    let (_, raw) = mail("after-outage", &["carol@example.test"]);
    let r = client.send(&address("support@example.test").unwrap(), &rcpts(&["carol@example.test"]), &raw).await;
    assert_eq!(r.unwrap(), [RcptResult::Delivered]);
    let got = lab.wait_for_messages("carol", "INBOX", 21, WAIT).await.unwrap();
    assert!(contains(&got[20], "after-outage@desk.example.test"));
    assert_eq!(client.connections(), 2);

    // A connection the server closed while idle is replaced without an error.
    let mut idle = SmtpClient::new(&config(&lab, Tls::None, lab.smtp_port));
    let (_, raw) = mail("idle-1", &["carol@example.test"]);
    idle.send(&address("support@example.test").unwrap(), &rcpts(&["carol@example.test"]), &raw).await.unwrap();
    lab.stop_smtp();
    lab.start_smtp();
    let (_, raw) = mail("idle-2", &["carol@example.test"]);
    let r = idle.send(&address("support@example.test").unwrap(), &rcpts(&["carol@example.test"]), &raw).await;
    assert_eq!(r.unwrap(), [RcptResult::Delivered], "reused dead connection must be retried on a fresh one");
    assert_eq!(idle.connections(), 2);
    lab.wait_for_messages("carol", "INBOX", 23, WAIT).await.unwrap();

    // STARTTLS, verified against the lab CA; Postfix records ESMTPS.
    let mut tls = SmtpClient::new(&config(&lab, Tls::Starttls, lab.smtp_port));
    let (_, raw) = mail("over-starttls", &["alice@example.test"]);
    let r = tls.send(&address("support@example.test").unwrap(), &rcpts(&["alice@example.test"]), &raw).await;
    assert_eq!(r.unwrap(), [RcptResult::Delivered]);
    let got = lab.wait_for_messages("alice", "INBOX", 2, WAIT).await.unwrap();
    assert!(contains(&got[1], "over-starttls@desk.example.test"));
    assert!(contains(&got[1], "with ESMTPS"), "{}", String::from_utf8_lossy(&got[1][..600.min(got[1].len())]));

    // Without the private CA the certificate is refused, as a transient error.
    let mut untrusting = config(&lab, Tls::Starttls, lab.smtp_port);
    untrusting.ca_file = None;
    let err = SmtpClient::new(&untrusting)
        .send(&address("support@example.test").unwrap(), &rcpts(&["alice@example.test"]), &raw)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Tls { .. }) && !err.is_permanent(), "{err}");

    // Implicit TLS from the first byte.
    let port = tls_front(&lab).await;
    let mut implicit = SmtpClient::new(&config(&lab, Tls::Implicit, port));
    for i in 0..3 {
        let (_, raw) = mail(&format!("implicit-{i}"), &["bob@example.test"]);
        let r = implicit.send(&address("support@example.test").unwrap(), &rcpts(&["bob@example.test"]), &raw).await;
        assert_eq!(r.unwrap(), [RcptResult::Delivered]);
    }
    assert_eq!(implicit.connections(), 1);
    let got = lab.wait_for_messages("bob", "INBOX", 4, WAIT).await.unwrap();
    // Postfix delivers in parallel: the three arrive in any order.
    for i in 0..3 {
        let id = format!("implicit-{i}@desk.example.test");
        assert!(got.iter().any(|m| contains(m, &id)), "{id} not delivered");
    }
    let mut impatient = config(&lab, Tls::None, port);
    impatient.timeout = Duration::from_secs(2);
    let mut plain_to_tls = SmtpClient::new(&impatient);
    plain_to_tls
        .send(&address("support@example.test").unwrap(), &rcpts(&["bob@example.test"]), &raw)
        .await
        .unwrap_err();
    implicit.quit().await;
    assert!(!implicit.is_connected());

    // AUTH with a real password, which must appear nowhere in a trace log.
    const PASSWORD: &str = "pw-Zq83xv-unique";
    lab.add_user("sender@example.test", PASSWORD);
    lab.enable_smtp_auth();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut authed = config(&lab, Tls::Starttls, lab.smtp_port);
    authed.username = Some("sender@example.test".into());
    authed.password = Some(Secret::Inline(PASSWORD.into()));
    let mut client = SmtpClient::new(&authed);
    let (_, raw) = mail("authenticated", &["alice@example.test"]);
    let r = client.send(&address("sender@example.test").unwrap(), &rcpts(&["alice@example.test"]), &raw).await;
    assert_eq!(r.unwrap(), [RcptResult::Delivered]);
    client.quit().await;
    let got = lab.wait_for_messages("alice", "INBOX", 3, WAIT).await.unwrap();
    assert!(contains(&got[2], "authenticated@desk.example.test"));
    assert!(contains(&got[2], "with ESMTPSA"), "Postfix records the authenticated submission");

    authed.password = Some(Secret::Inline("wrong-password".into()));
    let err = SmtpClient::new(&authed)
        .send(&address("sender@example.test").unwrap(), &rcpts(&["alice@example.test"]), &raw)
        .await
        .unwrap_err();
    assert!(matches!(&err, SendError::Auth { .. }) && !err.is_permanent(), "{err}");

    let log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(log.contains("SMTP connected"), "the capture works: {log}");
    for secret in [
        PASSWORD.to_owned(),
        base64(format!("\0sender@example.test\0{PASSWORD}").as_bytes()),
        base64(PASSWORD.as_bytes()),
        base64(b"\0sender@example.test\0wrong-password"),
        "wrong-password".to_owned(),
    ] {
        assert!(!log.contains(&secret), "credential {secret:?} in the trace log");
    }
}
