//! Faults injected for real against private Dovecot and Postfix: outages,
//! broken mailboxes, UIDVALIDITY changes, SMTP rejections, autoresponder
//! loops, bounces and hostile mail. Every loop here is bounded in count and
//! time and talks to 127.0.0.1 only.

mod common;

use std::time::{Duration, Instant};

use common::{ApiAt, Daemon, Lab, decoded, header, wait_for_text};
use ticketd::testkit::MailboxKeys;

const WAIT: Duration = Duration::from_secs(30);

fn mail(from: &str, subject: &str, id: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n{extra}\r\n{body}\r\n"
    )
    .into_bytes()
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Waits until every message in support's INBOX is \Seen (ingested).
async fn all_seen(lab: &Lab, n: usize) {
    common::all_seen(lab, "support", n, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imap_outage_is_survived_and_logged_once() {
    let lab = Lab::start();
    let mut daemon = Daemon::start(&lab, "");
    lab.imap_append("support", "INBOX", &mail("customer@example.test", "Before", "o1@c.test", "", "before the outage"))
        .await
        .unwrap();
    wait_for_text(&lab, "customer", "Before", WAIT).await;

    // Dovecot goes away while the worker is in IDLE; it stays away long
    // enough for several reconnect attempts.
    lab.stop_imap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&daemon.log_text(), "still unavailable") < 2 {
        assert!(Instant::now() < deadline, "no retries seen:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    lab.start_imap();
    lab.imap_append("support", "INBOX", &mail("customer@example.test", "After", "o2@c.test", "", "after the outage"))
        .await
        .unwrap();
    wait_for_text(&lab, "customer", "[Ticket #2] After", Duration::from_secs(60)).await;
    daemon.stop_ok();

    let log = daemon.log_text();
    assert_eq!(count(&log, "mailbox unavailable; reconnecting with backoff"), 1, "one line per state change:\n{log}");
    assert_eq!(count(&log, "mailbox reachable again"), 1, "{log}");
    assert_eq!(daemon.tickets_json().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_mailbox_does_not_stall_the_others() {
    let lab = Lab::start();
    let mut daemon = Daemon::prepare_api_with(&lab, ApiAt::Unix, |c| {
        let mut wrong = MailboxKeys::new("wrongpass", "helpdesk@example.test", lab.imap_port);
        wrong.username = None;
        wrong.password = "not-the-password".into();
        let mut unreachable = MailboxKeys::new("unreachable", "sales@example.test", 1);
        unreachable.username = None;
        unreachable.password = "x".into();
        unreachable.timeout = Some(Duration::from_secs(2));
        c.mailboxes.extend([wrong, unreachable]);
    });
    daemon.spawn();
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &mail("customer@example.test", "Still works", "b1@c.test", "", "hello"),
    )
    .await
    .unwrap();
    wait_for_text(&lab, "customer", "[Ticket #1] Still works", WAIT).await;
    // Both broken mailboxes have been tried meanwhile, as ticketd reports.
    daemon.wait_mailbox("wrongpass", &["login_failed"], WAIT, |_| true).await;
    daemon.wait_mailbox("unreachable", &["down"], WAIT, |_| true).await;
    daemon.stop_ok();
    let log = daemon.log_text();
    assert_eq!(count(&log, "mailbox login failed"), 1, "{log}");
    assert!(log.lines().any(|l| l.contains("ERROR") && l.contains("wrongpass")), "{log}");
    assert!(log.lines().any(|l| l.contains("mailbox unavailable") && l.contains("unreachable")), "{log}");
    assert!(!log.contains("not-the-password"), "passwords never reach the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_change_rereads_the_folder_without_duplicates() {
    let lab = Lab::start();
    let msgs: Vec<Vec<u8>> = (0..3)
        .map(|i| mail(&format!("customer+{i}@example.test"), &format!("Uv {i}"), &format!("uv{i}@c.test"), "", "x"))
        .collect();
    for m in &msgs {
        lab.imap_append("support", "Tickets", m).await.unwrap();
    }
    let mut daemon = Daemon::prepare_with(&lab, |c| c.mailbox().folder = Some("Tickets".into()));
    daemon.spawn();
    lab.wait_for_messages("customer", "INBOX", 3, WAIT).await.unwrap();
    daemon.stop_ok();

    // The folder is recreated: a new UIDVALIDITY, the same three messages and one new.
    let mut s = lab.session("support").await.unwrap();
    s.delete("Tickets").await.unwrap();
    s.create("Tickets").await.unwrap();
    for m in &msgs {
        s.append("Tickets", None, None, m).await.unwrap();
    }
    s.append("Tickets", None, None, mail("customer+9@example.test", "Uv new", "uv9@c.test", "", "x")).await.unwrap();
    // Read mail ticketd never stored (history, e.g. brought by a migration):
    // skipped, not answered.
    s.append("Tickets", Some("(\\Seen)"), None, mail("old@example.test", "Uv history", "uvh@c.test", "", "x"))
        .await
        .unwrap();
    s.logout().await.unwrap();

    let mut daemon = daemon.restart();
    wait_for_text(&lab, "customer", "[Ticket #4] Uv new", WAIT).await;
    daemon.stop_ok();
    assert!(daemon.log_text().contains("UIDVALIDITY changed"), "{}", daemon.log_text());
    assert_eq!(daemon.tickets_json().len(), 4, "the re-read created only the new ticket");
    assert_eq!(lab.imap_count("customer", "INBOX").await.unwrap(), 4, "no acknowledgement twice");
    let titles: Vec<String> =
        daemon.tickets_json().iter().map(|t| t["title"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(!titles.iter().any(|t| t == "Uv history"), "read history became a ticket: {titles:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_holds_through_an_smtp_outage_and_a_restart() {
    let lab = Lab::start();
    lab.stop_smtp();
    // Faster retries for the test.
    let mut daemon = Daemon::in_process(&lab, |c| {
        c.smtp.retry_initial = Some(Duration::from_secs(1));
        c.smtp.retry_max = Some(Duration::from_secs(2));
    })
    .await;

    lab.imap_append("support", "INBOX", &mail("customer@example.test", "Queued one", "q1@c.test", "", "first"))
        .await
        .unwrap();
    lab.imap_append(
        "support",
        "INBOX",
        &mail("customer@example.test", "Re: Queued one", "q2@c.test", "In-Reply-To: <q1@c.test>\r\n", "second"),
    )
    .await
    .unwrap();
    lab.imap_append("support", "INBOX", &mail("stranger@example.test", "Queued two", "q3@c.test", "", "third"))
        .await
        .unwrap();
    all_seen(&lab, 3).await;
    // The sender found SMTP down: the outbox records the failed attempt.
    let tried = |e: &[serde_json::Value]| e.iter().map(|m| m["attempts"].as_u64().unwrap_or(0)).sum::<u64>();
    let before = daemon
        .eventually_outbox("a failed attempt recorded", WAIT, |e| {
            e.iter().any(|m| m["attempts"].as_u64() >= Some(1) && m["last_error"].is_string())
        })
        .await;
    // Restart while SMTP is still down: the queue is on disk.
    daemon.stop().await;
    let out = daemon.cli(&["outbox", "--json"]);
    let pending = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(pending, 5, "2 acks + 3 notifications wait:\n{}", String::from_utf8_lossy(&out.stdout));
    daemon.start_in_process().await;
    // The restarted sender meets the outage too before SMTP comes back.
    let tried_before = tried(&before);
    daemon.eventually_outbox("another attempt after the restart", WAIT, |e| tried(e) > tried_before).await;
    lab.start_smtp();

    wait_for_text(&lab, "stranger", "[Ticket #2] Queued two", WAIT).await;
    let notes = lab.wait_for_messages("alice", "INBOX", 3, WAIT).await.unwrap();
    lab.wait_for_messages("customer", "INBOX", 1, WAIT).await.unwrap();
    daemon.stop().await;
    assert_eq!(lab.imap_count("customer", "INBOX").await.unwrap(), 1, "each mail delivered once");
    assert_eq!(notes.len(), 3);
    // Per-ticket order: ticket 1's "New ticket" notification is handed to
    // Postfix before its "Customer reply" (Postfix may deliver two mails
    // in either order; the order they were accepted in is in its log).
    let t1: Vec<String> = notes.iter().map(|m| decoded(m)).filter(|m| m.contains("[Ticket #1]")).collect();
    assert_eq!(t1.len(), 2);
    let accepted_at = |body: &str| {
        let m = t1.iter().find(|m| m.contains(body)).unwrap_or_else(|| panic!("{body}: {t1:?}"));
        let id = header(m, "Message-ID").unwrap();
        lab.postfix_log().find(&format!("message-id={id}")).unwrap_or_else(|| panic!("{id} not in the Postfix log"))
    };
    assert!(accepted_at("New ticket #1: ") < accepted_at("Customer reply on #1: "), "{t1:?}");
    let out = daemon.cli(&["outbox"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "outbox is empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_smtp_rejection_stops_retrying_and_is_recorded() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;
    // ghost@example.test does not exist: Postfix answers 550 at RCPT time.
    lab.imap_append("support", "INBOX", &mail("ghost@example.test", "Nobody home", "g1@c.test", "", "hello"))
        .await
        .unwrap();
    daemon.eventually_outbox("the refusal recorded", WAIT, |e| e.iter().any(|m| m["state"] == "failed")).await;
    lab.wait_for_messages("alice", "INBOX", 1, WAIT).await.unwrap();
    daemon.stop().await;
    let t = daemon.ticket_json(1);
    let last = t["threads"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "system");
    assert!(last["message"].as_str().unwrap().contains("ghost@example.test could not be delivered"), "{last}");
    let out = String::from_utf8_lossy(&daemon.cli(&["outbox", "--all", "--json"]).stdout).into_owned();
    let failed: Vec<&str> = out.lines().filter(|l| l.contains("\"state\":\"failed\"")).collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert!(failed[0].contains("\"attempts\":1"), "no retries after a 5xx: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_naive_autoresponder_cannot_start_a_loop() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;
    // The worst kind of autoresponder: answers everything, with a fresh
    // subject, no threading headers and no Auto-Submitted.
    lab.smtp_send(
        "carol@example.test",
        &["support@example.test"],
        &mail("carol@example.test", "Hello", "l0@carol.test", "", "first"),
    )
    .await
    .unwrap();
    lab.wait_for_messages("carol", "INBOX", 1, WAIT).await.unwrap();
    let mut answered = 0;
    let started = Instant::now();
    loop {
        let inbox = lab.imap_fetch_all("carol", "INBOX").await.unwrap();
        while answered < inbox.len() && answered < 30 {
            answered += 1;
            let m = mail("carol@example.test", "Out of office", &format!("l{answered}@carol.test"), "", "I am away.");
            lab.smtp_send("carol@example.test", &["support@example.test"], &m).await.unwrap();
        }
        // The exchange is over when ticketd has taken in everything carol
        // sent, has nothing left to send, and carol has every ack it sent.
        let flags = lab.imap_flags("support", "INBOX").await.unwrap_or_default();
        let taken_in = flags.len() == answered + 1 && flags.iter().all(|(_, f)| f.iter().any(|x| x == "\\Seen"));
        let outbox = daemon.outbox_json();
        let acks = common::queued(&outbox, "ack", "carol@example.test");
        if taken_in && outbox.iter().all(|m| m["state"] != "queued") && acks.len() == inbox.len() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60) && answered < 30, "no end: {answered} answers");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop().await;
    assert_eq!(answered, 5, "acknowledgements stop at the per-sender limit (5 per hour)");
    assert_eq!(lab.imap_count("carol", "INBOX").await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sieve_vacation_reply_ends_the_exchange() {
    let lab = Lab::start();
    lab.sieve(
        "bob@example.test",
        "require [\"vacation\", \"vacation-seconds\"];\nvacation :seconds 1 :subject \"Away\" \"I am on vacation.\";\n",
    );
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;
    lab.smtp_send(
        "bob@example.test",
        &["support@example.test"],
        &mail("bob@example.test", "Broken login", "v1@bob.test", "", "help"),
    )
    .await
    .unwrap();
    let note = wait_for_text(&lab, "alice", "[Ticket #1]", WAIT).await;
    let notify_id = header(&note, "Message-ID").unwrap();
    // An agent's relayed reply is not auto-submitted, so the vacation
    // responder answers it; ticketd records that answer and sends nothing.
    let reply = format!(
        "From: alice@example.test\r\nTo: support@example.test\r\nSubject: Re: [Ticket #1] Broken login\r\nMessage-ID: <v2@example.test>\r\nIn-Reply-To: {notify_id}\r\n\r\nTry resetting your password.\r\n"
    );
    lab.smtp_send("alice@example.test", &["support@example.test"], reply.as_bytes()).await.unwrap();
    // The vacation reply arrives and is ingested.
    all_seen(&lab, 3).await;
    // What ticketd queued: the ack, the notification, the relay. Nothing
    // answers the vacation reply, so there is nothing left to loop on.
    let outbox = daemon.eventually_outbox("everything sent", WAIT, |e| e.iter().all(|m| m["state"] == "sent")).await;
    let kinds: Vec<(&str, &str)> =
        outbox.iter().map(|m| (m["kind"].as_str().unwrap(), m["to"][0].as_str().unwrap())).collect();
    assert_eq!(
        kinds,
        [("ack", "bob@example.test"), ("agent_notify", "alice@example.test"), ("relay", "bob@example.test")],
        "{outbox:#?}"
    );
    lab.wait_for_messages("bob", "INBOX", 2, WAIT).await.unwrap();
    daemon.stop().await;
    assert_eq!(
        lab.imap_count("support", "INBOX").await.unwrap(),
        3,
        "customer mail, agent reply, one vacation reply: nothing more"
    );
    assert_eq!(lab.imap_count("bob", "INBOX").await.unwrap(), 2, "the ack (auto-submitted: no vacation) and the relay");
    let t = daemon.ticket_json(1);
    let last = t["threads"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "user");
    assert!(last["message"].as_str().unwrap().contains("I am on vacation."), "{t:#}");
    assert_eq!(t["status"], "in_progress", "an automatic reply does not reopen or change anything");
}

fn dsn(original_id: &str, rcpt: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@lab.example.test (Mail Delivery System)\r\nTo: support@example.test\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{rcpt}@lab.example.test>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"R\"\r\n\r\n--R\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n\r\n--R\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; lab.example.test\r\n\r\nFinal-Recipient: rfc822; {rcpt}\r\nOriginal-Recipient: rfc822;{rcpt}\r\nAction: failed\r\nStatus: 5.2.2\r\nDiagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n\r\n--R\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: Example Support <support@example.test>\r\nTo: {rcpt}\r\nSubject: [Ticket #1] x\r\nMessage-ID: {original_id}\r\n\r\n--R--\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_land_on_their_ticket_or_in_quarantine() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &mail("customer@example.test", "Bounce me", "bo1@c.test", "", "x"),
    )
    .await
    .unwrap();
    let ack = wait_for_text(&lab, "customer", "[Ticket #1]", WAIT).await;
    let ack_id = header(&ack, "Message-ID").unwrap();
    lab.imap_append("support", "INBOX", &dsn(&ack_id, "customer@example.test")).await.unwrap();
    lab.imap_append("support", "INBOX", &dsn("<never-sent@elsewhere.test>", "nobody@example.test")).await.unwrap();
    all_seen(&lab, 3).await;
    daemon.stop().await;

    let t = daemon.ticket_json(1);
    let last = t["threads"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "system");
    assert!(
        last["message"].as_str().unwrap().contains("Delivery failed for customer@example.test (status 5.2.2)"),
        "{last}"
    );
    let out = String::from_utf8_lossy(&daemon.cli(&["outbox", "--all", "--json"]).stdout).into_owned();
    let ack_line = out.lines().find(|l| l.contains("\"kind\":\"ack\"")).unwrap();
    assert!(ack_line.contains("\"state\":\"failed\""), "{out}");
    assert_eq!(daemon.tickets_json().len(), 1, "bounces never open tickets");
    let q = String::from_utf8_lossy(&daemon.cli(&["quarantine", "list"]).stdout).into_owned();
    assert!(q.contains("delivery report that references no mail of ours"), "{q}");
    assert_eq!(lab.imap_count("customer", "INBOX").await.unwrap(), 1, "bounces are never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mail_is_quarantined_and_the_mailbox_keeps_flowing() {
    let lab = Lab::start();
    let big = format!(
        "From: customer@example.test\r\nSubject: Huge\r\nMessage-ID: <huge@c.test>\r\n\r\n{}\r\n",
        "x".repeat(60_000)
    );
    lab.imap_append("support", "INBOX", b"\x00\x01\x02\x03 this is not mail at all").await.unwrap();
    lab.imap_append("support", "INBOX", big.as_bytes()).await.unwrap();
    lab.imap_append("support", "INBOX", b"From: customer@example.test\r\nSubject: Bad base64\r\nMessage-ID: <b64@c.test>\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not*base64@@@\r\n").await.unwrap();
    lab.imap_append("support", "INBOX", &mail("customer@example.test", "Normal", "n1@c.test", "", "fine"))
        .await
        .unwrap();
    let mut daemon = Daemon::in_process(&lab, |c| c.desk.max_message_bytes = Some(20_000)).await;
    all_seen(&lab, 4).await;
    daemon.stop().await;

    let titles: Vec<String> = daemon.tickets_json().iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect();
    assert!(titles.contains(&"Bad base64".to_owned()) && titles.contains(&"Normal".to_owned()), "{titles:?}");
    let list = String::from_utf8_lossy(&daemon.cli(&["quarantine", "list"]).stdout).into_owned();
    assert!(list.contains("unparseable: not an email"), "{list}");
    assert!(list.contains("over desk.max_message_bytes"), "{list}");
    let huge_id =
        list.lines().find(|l| l.contains("max_message_bytes")).unwrap().split_whitespace().next().unwrap().to_owned();
    let shown = String::from_utf8_lossy(&daemon.cli(&["quarantine", "show", &huge_id]).stdout).into_owned();
    assert!(shown.contains("Subject: Huge"), "the header is kept: {shown}");

    // With a bigger limit the operator retries it into a ticket.
    daemon.reconfigure(|c| c.desk.max_message_bytes = Some(20_000_000));
    let out = daemon.cli(&["quarantine", "retry", &huge_id]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(daemon.tickets_json().iter().any(|t| t["title"] == "Huge"));
    let garbage_id =
        list.lines().find(|l| l.contains("not an email")).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(daemon.cli(&["quarantine", "drop", &garbage_id]).status.success());
    let list = String::from_utf8_lossy(&daemon.cli(&["quarantine", "list"]).stdout).into_owned();
    assert_eq!(list.trim(), "quarantine is empty");
}

/// A TCP proxy in front of the real Dovecot that cuts its first connection
/// once the server has sent `cut_after` bytes; later connections pass.
async fn cutting_proxy(target: u16, cut_after: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { continue };
            if !first {
                tokio::spawn(async move {
                    let (mut c, mut s) = (client, server);
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                });
                continue;
            }
            first = false;
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let mut sent = 0;
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || sent + n > cut_after {
                        break;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                }
                up.abort();
                // Dropping both halves resets the connection mid-response.
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_fetch_loses_and_duplicates_nothing() {
    let lab = Lab::start();
    let n = 120;
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            mail(
                &format!("customer+{i}@example.test"),
                &format!("Cut {i}"),
                &format!("cut{i}@c.test"),
                "",
                &format!("marker-{i}-end {}", "padding ".repeat(500)),
            )
        })
        .collect();
    lab.imap_append_many("support", "INBOX", &msgs).await.unwrap();
    let proxy = cutting_proxy(lab.imap_port, 150_000).await;
    // customer+N@ is one sender for the acknowledgement limit.
    let mut daemon = Daemon::prepare_with(&lab, |c| {
        let m = c.mailbox();
        m.batch_size = Some(10);
        m.port = proxy;
        c.desk.acks_per_sender_per_hour = Some(1000);
    });
    daemon.spawn();
    common::all_seen(&lab, "support", n, Duration::from_secs(60)).await;
    lab.wait_for_messages("customer", "INBOX", n, WAIT).await.unwrap();
    daemon.stop_ok();

    let log = daemon.log_text();
    assert_eq!(count(&log, "mailbox unavailable; reconnecting with backoff"), 1, "the cut was noticed once:\n{log}");
    let line = log.lines().find(|l| l.contains("mailbox unavailable")).unwrap();
    assert!(line.contains("IMAP UID FETCH: io: bytes remaining in stream"), "cut mid-fetch: {line}");
    assert_eq!(count(&log, "mailbox reachable again"), 1, "{log}");
    let tickets = daemon.tickets_json();
    assert_eq!(tickets.len(), n, "one ticket per message");
    for i in 0..n {
        let hits = tickets
            .iter()
            .filter(|t| t["description"].as_str().unwrap().starts_with(&format!("marker-{i}-end")))
            .count();
        assert_eq!(hits, 1, "message {i}");
    }
    assert_eq!(lab.imap_count("customer", "INBOX").await.unwrap() as usize, n, "no acknowledgement twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_participant_does_not_hold_back_the_customer() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;
    // ghost@example.test is in Cc but does not exist (Postfix: 550 at RCPT).
    let first = mail("customer@example.test", "Two readers", "pr1@c.test", "Cc: ghost@example.test\r\n", "hello");
    lab.smtp_send("customer@example.test", &["support@example.test"], &first).await.unwrap();
    let note = wait_for_text(&lab, "alice", "[Ticket #1]", WAIT).await;
    let notify_id = header(&note, "Message-ID").unwrap();
    let reply = format!(
        "From: alice@example.test\r\nTo: support@example.test\r\nSubject: Re: [Ticket #1] Two readers\r\nMessage-ID: <pr2@example.test>\r\nIn-Reply-To: {notify_id}\r\n\r\nAnswer for both of you.\r\n"
    );
    lab.smtp_send("alice@example.test", &["support@example.test"], reply.as_bytes()).await.unwrap();
    wait_for_text(&lab, "customer", "Answer for both of you.", WAIT).await;
    daemon
        .eventually_outbox("ghost's refusal recorded", WAIT, |e| {
            e.iter().any(|m| m["kind"] == "relay" && m["refused"].as_array().is_some_and(|r| !r.is_empty()))
        })
        .await;
    daemon.stop().await;
    let t = daemon.ticket_json(1);
    assert_eq!(t["participants"], serde_json::json!(["ghost@example.test"]));
    let system: Vec<&str> = t["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "system")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(system.iter().any(|m| m.starts_with("Mail to ghost@example.test could not be delivered")), "{system:?}");
    let out = String::from_utf8_lossy(&daemon.cli(&["outbox", "--all", "--json"]).stdout).into_owned();
    let relay = out.lines().find(|l| l.contains("\"kind\":\"relay\"")).unwrap();
    assert!(relay.contains("\"state\":\"sent\""), "the relay counts as sent: {out}");
}
