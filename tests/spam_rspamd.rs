//! The rspamd client against a real rspamd (Debian's package), started
//! privately by `scripts/rspamd-lab.sh`: GTUBE is spam, an ordinary mail is
//! not, and a stopped rspamd is reported as unreachable within the timeout.

#[path = "common/rspamd.rs"]
mod rspamd_lab;

use std::time::{Duration, Instant};

use rspamd_lab::RspamdLab;
use ticketd::spam::rspamd::{RspamdClient, ScanRequest};
use ticketd::spam::{Action, Filter, VerdictSource};

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
const TIMEOUT: Duration = Duration::from_secs(5);

fn mail(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Ann Customer <ann@example.net>\r\nTo: support@example.test\r\nSubject: {subject}\r\n\
Message-ID: <{}@example.net>\r\nDate: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.replace(' ', "-"),
        chrono::Utc::now().to_rfc2822(),
    )
    .into_bytes()
}

fn request(message: &[u8]) -> ScanRequest<'_> {
    ScanRequest {
        message,
        from: Some("ann@example.net"),
        ip: Some("203.0.113.7".parse().expect("ip")),
        rcpt: vec!["support@example.test"],
        helo: Some("client.example.net"),
        queue_id: Some("4ABC123"),
    }
}

#[tokio::test]
async fn gtube_is_spam_ordinary_mail_is_not_and_a_stopped_rspamd_is_unreachable() {
    let mut lab = RspamdLab::start();
    let client = RspamdClient::new(&lab.url, TIMEOUT).expect("url");

    let spam = mail("hello", &format!("Please read this.\r\n\r\n{GTUBE}\r\n"));
    let reply = client.check(&request(&spam)).await.expect("rspamd scans GTUBE");
    assert_eq!(reply.action, Action::Reject, "{reply:?}");
    assert!(reply.symbols.iter().any(|s| s.name == "GTUBE"), "{reply:?}");
    let v = reply.verdict(None);
    assert!(v.spam, "{v:?}");
    assert_eq!(v.source, VerdictSource::Scanner(Filter::Rspamd));
    assert!(v.score.is_some_and(|s| s >= reply.required_score), "{v:?}");
    assert!(v.reason.contains("GTUBE"), "{}", v.reason);

    let ham = mail(
        "Printer on the second floor",
        "Hello,\r\n\r\nthe printer on the second floor shows error 42 since this morning.\r\n\
Could someone have a look?\r\n\r\nThanks,\r\nAnn\r\n",
    );
    let reply = client.check(&request(&ham)).await.expect("rspamd scans an ordinary mail");
    let v = reply.verdict(None);
    assert!(!v.spam, "{v:?}");
    assert!(!reply.action.is_spam() && reply.score < reply.required_score, "{reply:?}");
    // The bare message, with none of the optional fields, is scanned too.
    let bare = ScanRequest { message: &ham, ..ScanRequest::default() };
    assert!(!client.check(&bare).await.expect("bare scan").verdict(None).spam);
    // A desk that sets a low threshold holds it.
    assert!(reply.verdict(Some(reply.score - 1.0)).spam);

    lab.stop();
    let started = Instant::now();
    let err = client.check(&request(&spam)).await.expect_err("rspamd is stopped");
    assert!(err.is_unreachable(), "{err}");
    assert!(started.elapsed() <= TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
}
