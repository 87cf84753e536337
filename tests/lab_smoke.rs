//! Smoke tests of the test lab itself (tests/common, scripts/lab.sh): real
//! Postfix and Dovecot on 127.0.0.1. Needs root and scripts/install-deps.sh.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Lab;
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

fn unique_id(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("<{tag}-{}-{nanos}-{n}@example.test>", std::process::id())
}

fn message(from: &str, to: &str, subject: &str, message_id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn port_refuses(port: u16) -> bool {
    matches!(timeout(Duration::from_secs(2), TcpStream::connect(("127.0.0.1", port))).await, Ok(Err(_)))
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_roundtrip_and_outages() {
    let lab = Lab::start();
    let support = "support@example.test";

    // SMTP in through Postfix, out of Dovecot over IMAP.
    let mid = unique_id("smoke");
    let body = "Hello from the smoke test.\n.a line starting with a dot\nbye";
    let raw = message("Customer <customer@example.test>", support, "Smoke", &mid, body);
    lab.smtp_send("customer@example.test", &[support], &raw).await.unwrap();
    let msgs = lab.wait_for_messages(support, "INBOX", 1, WAIT).await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert!(contains(&msgs[0], &format!("Message-ID: {mid}")));
    assert!(contains(&msgs[0], "Hello from the smoke test."));
    assert!(contains(&msgs[0], "\r\n.a line starting with a dot\r\n"), "dot-stuffing undone");
    // BODY.PEEK left it unseen.
    let flags = lab.imap_flags(support, "INBOX").await.unwrap();
    assert_eq!(flags.len(), 1);
    assert!(!flags[0].1.iter().any(|f| f == "\\Seen"), "{flags:?}");

    // user+tag lands in user's INBOX.
    let tagged = unique_id("tagged");
    let raw = message(support, "customer+t42@example.test", "Re: x", &tagged, "reply");
    lab.smtp_send(support, &["customer+t42@example.test"], &raw).await.unwrap();
    let msgs = lab.wait_for_messages("customer@example.test", "INBOX", 1, WAIT).await.unwrap();
    assert!(contains(&msgs[0], &tagged));

    // Nothing leaves the lab: other domains and unknown users are refused.
    let err = lab.smtp_send(support, &["someone@example.com"], &raw).await.unwrap_err();
    assert!(format!("{err:#}").contains("554"), "{err:#}");
    let err = lab.smtp_send(support, &["nobody@example.test"], &raw).await.unwrap_err();
    assert!(format!("{err:#}").contains("550"), "{err:#}");

    // APPEND creates the folder; count and flags see it.
    let appended = unique_id("appended");
    let raw = message("alice@example.test", support, "Appended", &appended, "bulk");
    lab.imap_append(support, "Archive", &raw).await.unwrap();
    assert_eq!(lab.imap_count(support, "Archive").await.unwrap(), 1);
    assert!(lab.imap_folders(support).await.unwrap().contains(&"Archive".to_owned()));
    let n = lab
        .imap_append_many(
            support,
            "Bulk/2026",
            (0..20).map(|i| message("a@example.test", support, &format!("m{i}"), &unique_id("bulk"), "x")),
        )
        .await
        .unwrap();
    assert_eq!(n, 20);
    assert_eq!(lab.imap_count(support, "Bulk/2026").await.unwrap(), 20);
    assert!(lab.imap_count(support, "NoSuchFolder").await.is_err());

    // IMAP outage: open sessions end, new ones are refused, and mail sent
    // meanwhile waits in Postfix.
    let mut open = lab.imap_login(support).await.unwrap();
    open.select("INBOX").await.unwrap();
    lab.stop_imap();
    let noop = timeout(Duration::from_secs(5), open.run_command_and_check_ok("NOOP")).await;
    assert!(matches!(noop, Ok(Err(_))), "an open session must end with the outage");
    assert!(port_refuses(lab.imap_port).await);
    assert!(port_refuses(lab.imaps_port).await);
    assert!(lab.imap_count(support, "INBOX").await.is_err());
    let during = unique_id("during-imap-outage");
    let raw = message("bob@example.test", support, "Queued", &during, "queued while IMAP was down");
    lab.smtp_send("bob@example.test", &[support], &raw).await.unwrap();
    lab.start_imap();
    let msgs = lab.wait_for_messages(support, "INBOX", 2, WAIT).await.unwrap();
    assert!(contains(&msgs[0], &mid), "mail from before the outage kept");
    assert!(contains(&msgs[1], &during), "queued mail delivered after restart");

    // SMTP outage.
    lab.stop_smtp();
    assert!(port_refuses(lab.smtp_port).await);
    let raw = message("carol@example.test", support, "Refused", &unique_id("refused"), "x");
    assert!(lab.smtp_send("carol@example.test", &[support], &raw).await.is_err());
    lab.start_smtp();
    let after = unique_id("after-smtp-outage");
    let raw = message("carol@example.test", support, "Back", &after, "x");
    lab.smtp_send("carol@example.test", &[support], &raw).await.unwrap();
    let msgs = lab.wait_for_messages(support, "INBOX", 3, WAIT).await.unwrap();
    assert!(contains(&msgs[2], &after));

    // Users added at run time can receive mail and log in.
    lab.add_user("dave@example.test", common::PASSWORD);
    let raw = message(support, "dave@example.test", "Hi Dave", &unique_id("dave"), "x");
    lab.smtp_send(support, &["dave@example.test"], &raw).await.unwrap();
    lab.wait_for_messages("dave@example.test", "INBOX", 1, WAIT).await.unwrap();
    lab.add_user("erin@example.test", "pw-erin");
    let mut s = lab.imap_login_with("erin@example.test", "pw-erin").await.unwrap();
    s.logout().await.unwrap();
    assert!(lab.imap_login_with("erin@example.test", "wrong").await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_ports_present_the_lab_certificate() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let lab = Lab::start();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&lab.ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    // Implicit TLS IMAP, verified against CA_PEM under both names.
    for name in ["localhost", "127.0.0.1"] {
        let tcp = TcpStream::connect(("127.0.0.1", lab.imaps_port)).await.unwrap();
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        let tls = timeout(Duration::from_secs(10), connector.connect(server_name, tcp))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("TLS to IMAPS as {name}: {e}"));
        let mut client = async_imap::Client::new(tls);
        let greeting = timeout(Duration::from_secs(10), client.read_response()).await.unwrap().unwrap();
        assert!(greeting.is_some());
        let mut s = client.login("bob@example.test", common::PASSWORD).await.map_err(|(e, _)| e).unwrap();
        assert!(s.capabilities().await.unwrap().has_str("IDLE"));
        s.select("INBOX").await.unwrap();
        s.logout().await.unwrap();
    }

    // The certificate is not publicly trusted.
    let untrusting = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", lab.imaps_port)).await.unwrap();
    let res = tokio_rustls::TlsConnector::from(Arc::new(untrusting))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(res.is_err());

    // STARTTLS on the SMTP port, through lettre trusting CA_PEM.
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor, address::Envelope};
    let ca = Certificate::from_pem(&std::fs::read(&lab.ca_pem).unwrap()).unwrap();
    let params = TlsParameters::builder("localhost".into()).add_root_certificate(ca).build_rustls().unwrap();
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(lab.smtp_port)
        .tls(Tls::Required(params))
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let mid = unique_id("starttls");
    let envelope =
        Envelope::new(Some("helpdesk@example.test".parse().unwrap()), vec!["alice@example.test".parse().unwrap()])
            .unwrap();
    let raw = message("helpdesk@example.test", "alice@example.test", "TLS", &mid, "over STARTTLS");
    mailer.send_raw(&envelope, &raw).await.unwrap();
    let msgs = lab.wait_for_messages("alice@example.test", "INBOX", 1, WAIT).await.unwrap();
    assert!(contains(&msgs[0], &mid));
}

#[tokio::test(flavor = "multi_thread")]
async fn sieve_vacation_replies_through_postfix() {
    let lab = Lab::start();
    lab.set_sieve(
        "helpdesk@example.test",
        "require [\"vacation\", \"vacation-seconds\"];\n\
         vacation :seconds 1 :subject \"Out of office\" \"The helpdesk is away.\";\n",
    );
    let mid = unique_id("to-helpdesk");
    let raw = message("Customer <customer@example.test>", "helpdesk@example.test", "Help", &mid, "please");
    lab.smtp_send("customer@example.test", &["helpdesk@example.test"], &raw).await.unwrap();
    lab.wait_for_messages("helpdesk@example.test", "INBOX", 1, WAIT).await.unwrap();
    let replies = lab.wait_for_messages("customer@example.test", "INBOX", 1, WAIT).await.unwrap();
    let reply = &replies[0];
    assert!(contains(reply, "Subject: Out of office"));
    assert!(contains(reply, "Auto-Submitted: auto-replied"));
    assert!(contains(reply, &format!("In-Reply-To: {mid}")));
    assert!(contains(reply, "Return-Path: <>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_labs_run_side_by_side() {
    let (a, b) = (Lab::start(), Lab::start());
    let ports_a = [a.imap_port, a.imaps_port, a.smtp_port, a.lmtp_port];
    let ports_b = [b.imap_port, b.imaps_port, b.smtp_port, b.lmtp_port];
    assert!(ports_a.iter().all(|p| !ports_b.contains(p)), "{ports_a:?} vs {ports_b:?}");

    let mid = unique_id("only-in-a");
    let raw = message("bob@example.test", "carol@example.test", "A", &mid, "x");
    a.smtp_send("bob@example.test", &["carol@example.test"], &raw).await.unwrap();
    let msgs = a.wait_for_messages("carol@example.test", "INBOX", 1, WAIT).await.unwrap();
    assert!(contains(&msgs[0], &mid));
    // Bare local parts mean @example.test.
    assert_eq!(b.imap_count("carol", "INBOX").await.unwrap(), 0);

    // Stopping one lab leaves the other running.
    b.stop_imap();
    b.stop_smtp();
    assert_eq!(a.imap_count("carol@example.test", "INBOX").await.unwrap(), 1);
    a.smtp_send("bob@example.test", &["carol@example.test"], &raw).await.unwrap();
    a.wait_for_messages("carol@example.test", "INBOX", 2, WAIT).await.unwrap();
    drop(b);
    assert_eq!(a.imap_count("carol@example.test", "INBOX").await.unwrap(), 2);

    // IDLE is offered (a reader of ticketd's would use it).
    let mut s = a.imap_login("carol@example.test").await.unwrap();
    assert!(s.capabilities().await.unwrap().has_str("IDLE"));
    s.logout().await.unwrap();
}
