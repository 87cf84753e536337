//! Hostile mail against the real lab: no message can stop, stall or fool
//! the desk. Each case is followed by a normal mail that must become a
//! ticket while the daemon stays up (or, for a mail that kills the process,
//! comes back up and quarantines it within a bounded number of restarts).

mod common;

use std::time::{Duration, Instant};

use common::{ApiAt, Daemon, Lab};
use ticketd::config::Tls;

fn normal_mail(id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Carla Customer <customer@example.test>\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nAn ordinary question.\r\n"
    )
    .into_bytes()
}

/// The ticket titled `title`, read from the store (daemon stopped).
fn ticket_titled(daemon: &Daemon, title: &str) -> Option<serde_json::Value> {
    let out = daemon.cli(&["tickets", "list", "--json"]);
    if !out.status.success() {
        return None;
    }
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    list.into_iter().find(|t| t["title"] == title)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_that_kills_the_process_is_quarantined_after_two_deaths_and_the_mailbox_goes_on() {
    let lab = Lab::start();
    // Both are in the mailbox before the daemon starts: the poison comes first.
    let poison = normal_mail("poison@customer.example.test", "POISON-PILL-7 please");
    lab.imap_append("support", "INBOX", &poison).await.unwrap();
    lab.imap_append("support", "INBOX", &normal_mail("after@customer.example.test", "After the poison")).await.unwrap();

    let mut daemon = Daemon::prepare_api(&lab, ApiAt::Unix, "", "");
    daemon.env = vec![("TICKETD_CRASH_ON".into(), "POISON-PILL-7".into())];
    let mut starts = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    // What systemd's Restart=on-failure does, bounded.
    loop {
        if !daemon.running() {
            assert!(starts < 4, "still dying after {starts} starts:\n{}", daemon.log_text());
            starts += 1;
            if !daemon.try_spawn() {
                continue;
            }
        }
        let flags = lab.imap_flags("support", "INBOX").await.unwrap_or_default();
        let all_seen = flags.len() == 2 && flags.iter().all(|(_, f)| f.iter().any(|x| x == "\\Seen"));
        if all_seen && daemon.running() {
            break;
        }
        assert!(Instant::now() < deadline, "poison never quarantined:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One death in a normal batch, two with the message in hand alone.
    assert!(starts <= 3 + 1, "{starts} starts");
    // The worker went on past the poison and is waiting for more mail.
    daemon.wait_fetched("support", Duration::from_secs(30)).await;
    assert!(daemon.running(), "alive after quarantining:\n{}", daemon.log_text());
    daemon.stop_ok();
    assert!(ticket_titled(&daemon, "After the poison").is_some(), "the next mail is a ticket");
    assert!(ticket_titled(&daemon, "POISON-PILL-7 please").is_none(), "the poison is not");
    let out = daemon.cli(&["quarantine", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().filter(|l| l.contains("stopped unexpectedly 2 times")).count(), 1, "{listed}");

    // A clean restart after the quarantine is a normal start again.
    daemon.spawn();
    daemon.wait_fetched("support", Duration::from_secs(30)).await;
    daemon.stop_ok();
    assert!(!daemon.log_text().rsplit("ticketd ready").next().unwrap_or("").contains("one message at a time"));
}

/// Waits until the daemon has ingested `n` messages of `user`'s INBOX.
async fn ingested(lab: &Lab, user: &str, n: usize, within: Duration) {
    common::all_seen(lab, user, n, within).await;
}

fn deep_rfc822(depth: usize) -> Vec<u8> {
    let mut m = b"From: a@example.test\r\nSubject: innermost\r\n\r\nx\r\n".to_vec();
    for _ in 0..depth {
        let mut outer = b"From: a@example.test\r\nSubject: wrap\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
        outer.extend_from_slice(&m);
        m = outer;
    }
    let mut top = b"From: Mallory <mallory@example.test>\r\nTo: support@example.test\r\nSubject: Nested to death\r\nMessage-ID: <deep@evil.test>\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
    top.extend_from_slice(&m);
    top
}

fn deep_html(depth: usize) -> Vec<u8> {
    let html = format!("{}deep{}", "<div>".repeat(depth), "</div>".repeat(depth));
    format!("From: Mallory <mallory@example.test>\r\nTo: support@example.test\r\nSubject: Deep HTML\r\nMessage-ID: <deephtml@evil.test>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_nesting_never_stops_or_stalls_the_desk() {
    let lab = Lab::start();
    let mut daemon = Daemon::start(&lab, "");
    for (i, raw) in [deep_rfc822(40_000), deep_html(100_000)].into_iter().enumerate() {
        lab.imap_append("support", "INBOX", &raw).await.unwrap();
        let after = normal_mail(&format!("after{i}@customer.example.test"), &format!("After hostile {i}"));
        lab.imap_append("support", "INBOX", &after).await.unwrap();
        let t = Instant::now();
        common::wait_for_text(&lab, "customer", &format!("After hostile {i}"), Duration::from_secs(30)).await;
        assert!(daemon.running(), "alive:\n{}", daemon.log_text());
        eprintln!("hostile case {i}: the next mail's ack after {:?}", t.elapsed());
    }
    ingested(&lab, "support", 4, Duration::from_secs(30)).await;
    daemon.stop_ok();
    assert!(!daemon.log_text().contains("stopped uncleanly"), "no restart was needed");
    let deep = ticket_titled(&daemon, "Nested to death").expect("the nested mail is a ticket");
    assert!(deep["attachments"].as_array().unwrap().iter().any(|a| a["filename"] == "message.eml"), "{deep}");
    let html = ticket_titled(&daemon, "Deep HTML").expect("the deep HTML is a ticket");
    assert!(html["description"].as_str().unwrap().contains("deep"), "its text arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_gets_an_excerpt_to_agents_and_holds_nobody_up() {
    let lab = Lab::start();
    let mut daemon = Daemon::start(&lab, "");
    let line = "All work and no play makes the printer a dull printer.\r\n";
    let huge = format!(
        "From: customer@example.test\r\nTo: support@example.test\r\nSubject: Twenty megabytes\r\nMessage-ID: <huge@customer.example.test>\r\n\r\n{}",
        line.repeat((20 << 20) / line.len())
    );
    lab.imap_append("support", "INBOX", huge.as_bytes()).await.unwrap();
    lab.imap_append("support", "INBOX", &normal_mail("small@customer.example.test", "Small one")).await.unwrap();
    let t = Instant::now();
    let note = common::wait_for_text(&lab, "alice", "Twenty megabytes", Duration::from_secs(60)).await;
    assert!(note.len() < 200_000, "an excerpt, not 20 MiB: {} bytes", note.len());
    assert!(note.contains("the full text is on ticket #1"), "says where the rest is");
    common::wait_for_text(&lab, "customer", "Small one", Duration::from_secs(30)).await;
    eprintln!("20 MiB mail: notification and the next ack within {:?}", t.elapsed());
    let stop = Instant::now();
    daemon.stop_ok();
    assert!(stop.elapsed() < Duration::from_secs(30), "SIGTERM honoured within the drain deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_out_of_office_answer_never_acts() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &normal_mail("q1@customer.example.test", "Help me"),
    )
    .await
    .unwrap();
    let note = common::wait_for_text(&lab, "alice", "[Ticket #1]", Duration::from_secs(30)).await;
    let proof = common::header(&note, "Message-ID").unwrap();
    // What Exchange sends back for an agent who is away: with the proof.
    let oof = format!(
        "From: Alice <alice@example.test>\r\nTo: support@example.test\r\nSubject: Automatic reply: [Ticket #1] Help me\r\nMessage-ID: <oof1@example.test>\r\nIn-Reply-To: {proof}\r\nReferences: {proof}\r\nAuto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n\r\n#status closed\r\nI am out of the office until Monday.\r\n"
    );
    lab.smtp_send("alice@example.test", &["support@example.test"], oof.as_bytes()).await.unwrap();
    ingested(&lab, "support", 2, Duration::from_secs(30)).await;
    daemon.stop().await;
    let t = daemon.ticket_json(1);
    assert_eq!(t["status"], "open", "no command applied: {t:#}");
    assert_eq!(t["assignedTo"], serde_json::Value::Null, "not assigned to the absent agent");
    let last = t["threads"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["internal"], true, "kept for the agents only: {last}");
    assert!(last["message"].as_str().unwrap().contains("out of the office"));
    let to_customer: Vec<serde_json::Value> = daemon
        .outbox_json()
        .into_iter()
        .filter(|m| m["to"].as_array().unwrap().iter().any(|a| a == "customer@example.test"))
        .collect();
    assert_eq!(to_customer.len(), 1, "the acknowledgement only: nothing relayed: {to_customer:#?}");
    assert_eq!(to_customer[0]["kind"], "ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_participants_and_a_huge_subject_are_still_delivered() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;
    let cc: Vec<String> = (0..60).map(|i| format!("customer+p{i}@example.test")).collect();
    let subject = format!("Long {}", "subject ".repeat(248));
    let first = format!(
        "From: customer@example.test\r\nTo: support@example.test\r\nCc: {}\r\nSubject: {subject}\r\nMessage-ID: <many@customer.example.test>\r\n\r\nFor all of us.\r\n",
        cc.join(",\r\n ")
    );
    lab.smtp_send("customer@example.test", &["support@example.test"], first.as_bytes()).await.unwrap();
    let acks = lab.wait_for_messages("customer", "INBOX", 1, Duration::from_secs(30)).await.unwrap();
    let ack = String::from_utf8_lossy(&acks[0]).into_owned();
    let parsed = mail_parser::MessageParser::default().parse(&acks[0]).unwrap();
    assert!(parsed.subject().unwrap().starts_with("[Ticket #1] Long subject"), "{ack}");
    assert!(ack.lines().all(|l| l.len() <= 998), "every header line fits");
    let notes = lab.wait_for_messages("alice", "INBOX", 1, Duration::from_secs(30)).await.unwrap();
    let proof = common::header(&String::from_utf8_lossy(&notes[0]), "Message-ID").unwrap();
    let answer = format!(
        "From: alice@example.test\r\nTo: support@example.test\r\nSubject: Re: [Ticket #1] Long\r\nMessage-ID: <ans@example.test>\r\nIn-Reply-To: {proof}\r\n\r\nAnswer for all sixty-one of you.\r\n"
    );
    lab.smtp_send("alice@example.test", &["support@example.test"], answer.as_bytes()).await.unwrap();
    // One copy per address, all into customer's INBOX (customer+pN@ is customer@).
    let all = lab.wait_for_messages("customer", "INBOX", 62, Duration::from_secs(60)).await.unwrap();
    let relays: Vec<String> =
        all.iter().map(|m| String::from_utf8_lossy(m).into_owned()).filter(|m| m.contains("sixty-one")).collect();
    assert_eq!(relays.len(), 61, "the client and sixty participants");
    let to = common::header(&relays[0], "To").unwrap();
    assert_eq!(to.matches("@example.test").count(), 61, "{to}");
    assert!(relays[0].lines().all(|l| l.len() <= 998));
    daemon.stop().await;
    let t = daemon.ticket_json(1);
    assert!(t["title"].as_str().unwrap().chars().count() <= 201, "title capped");
    let description = t["description"].as_str().unwrap();
    let first = description.lines().next().unwrap_or("");
    // Postfix folds the 2,000-character line on its way in (LMTP's 998
    // limit); unfolding adds a space: compare without spaces.
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    assert_eq!(squash(first.trim_start_matches("Subject: ")), squash(&subject), "the whole subject is on the ticket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_a_trace_log() {
    let lab = Lab::start();
    let imap_pw = "Imap-Pw-7f3a9c";
    lab.add_user("support", imap_pw);
    lab.enable_smtp_auth();
    let smtp_pw = "Smtp-Pw-51e0b2";
    lab.add_user("relay", smtp_pw);
    let mut daemon = Daemon::prepare_with(&lab, |c| {
        c.mailbox().password = imap_pw.into();
        c.smtp.tls = Tls::Starttls;
        c.smtp.ca_file = Some(lab.ca_pem.clone());
        c.smtp.username = Some("relay@example.test".into());
        c.smtp.password = Some(smtp_pw.into());
    });
    daemon.env = vec![("TICKETD_LOG".into(), "trace".into())];
    daemon.spawn();
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &normal_mail("t1@customer.example.test", "Trace me"),
    )
    .await
    .unwrap();
    let ack = common::wait_for_text(&lab, "customer", "[Ticket #1] Trace me", Duration::from_secs(30)).await;
    assert!(ack.contains("ESMTPSA"), "sent with AUTH over TLS");
    daemon.stop_ok();
    let log = daemon.log_text();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "the log really is verbose");
    use base64_check::encode;
    for secret in [
        imap_pw.to_owned(),
        smtp_pw.to_owned(),
        encode(format!("\0relay@example.test\0{smtp_pw}").as_bytes()),
        encode(smtp_pw.as_bytes()),
    ] {
        assert!(!log.contains(&secret), "{secret:?} in the trace log");
    }
}

/// Standard base64, enough to look for an AUTH PLAIN/LOGIN payload.
mod base64_check {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn encodes_like_rfc_4648() {
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"f"), "Zg==");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_delivery_report_is_ordinary_mail() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &normal_mail("r1@customer.example.test", "Report me"),
    )
    .await
    .unwrap();
    let ack = common::wait_for_text(&lab, "customer", "[Ticket #1] Report me", Duration::from_secs(30)).await;
    let ack_id = common::header(&ack, "Message-ID").unwrap();
    let report = |from: &str, rcpt: &str, id: &str| {
        format!(
            "From: {from}\r\nTo: support@example.test\r\nSubject: Undelivered Mail\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.test\r\n\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 no such user (attacker text)\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {ack_id}\r\nSubject: x\r\n--B--\r\n"
        )
    };
    // From an ordinary sender: a ticket of its own, nothing written on #1.
    lab.smtp_send(
        "stranger@example.test",
        &["support@example.test"],
        report("stranger@example.test", "customer@example.test", "f1@evil.test").as_bytes(),
    )
    .await
    .unwrap();
    ingested(&lab, "support", 2, Duration::from_secs(30)).await;
    daemon.stop().await;
    let t1 = daemon.ticket_json(1);
    assert!(
        !t1["threads"].as_array().unwrap().iter().any(|e| e["message"].as_str().unwrap().contains("attacker text")),
        "{t1:#}"
    );
    assert_eq!(daemon.tickets_json().len(), 2, "the forged report became an ordinary ticket");
    let out = daemon.cli(&["outbox", "--all", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("\"state\":\"failed\""), "no mail marked failed: {text}");
}

/// A customer's escape sequences never reach an admin's terminal:
/// `tickets raw` refuses a terminal (here a pseudo-terminal from `script`)
/// unless told `--force`, and prints to a pipe or file as it always did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_mail_is_not_printed_to_a_terminal() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;
    let evil = "From: customer@example.test\r\nTo: support@example.test\r\nSubject: Printer\r\nMessage-ID: <esc@c.test>\r\n\r\nHello \x1b]0;pwned\x07\x1b[2J world\r\n";
    lab.smtp_send("customer@example.test", &["support@example.test"], evil.as_bytes()).await.unwrap();
    ingested(&lab, "support", 1, Duration::from_secs(30)).await;
    daemon.stop().await;
    let piped = daemon.cli(&["tickets", "raw", "1"]);
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));
    assert!(piped.stdout.windows(2).any(|w| w == b"\x1b]"), "to a pipe the bytes are unaltered");
    let on_tty = |extra: &str| {
        let cmd =
            format!("{} --config {} tickets raw 1 {extra}", env!("CARGO_BIN_EXE_ticketd"), daemon.config.display());
        std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap()
    };
    let refused = on_tty("");
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(text.contains("not printing the raw mail"), "{text}");
    assert!(!refused.stdout.windows(2).any(|w| w == b"\x1b]"), "no escape sequence reached the terminal");
    let forced = on_tty("--force");
    assert!(forced.stdout.windows(2).any(|w| w == b"\x1b]"), "--force prints it");
}
