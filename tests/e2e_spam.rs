//! Spam at the door, end to end: the real daemon against a private Dovecot
//! and Postfix, and a private rspamd (Debian's package) — as the border's
//! milter (Postfix's `smtpd_milters`, the setup an admin runs) or asked by
//! ticketd itself over its HTTP API. Mail arrives over SMTP through the
//! border, or, where the border's own `Authentication-Results` are needed
//! above its `Received:` line (which no SMTP client can write), appended to
//! the mailbox with the border's headers as the MTA writes them.
//!
//! Negative checks ask ticketd (its outbox, its spam list), never an inbox
//! that may simply not have received the mail yet.

mod common;
#[path = "common/rspamd.rs"]
mod rspamd_lab;

use std::time::Duration;

use serde_json::Value;

use common::{ApiAt, Daemon, Lab, all_seen, wait_for_text};
use rspamd_lab::RspamdLab;

const WAIT: Duration = Duration::from_secs(60);
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

fn mail(from: &str, id: &str, subject: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "{extra}From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn cli_json(daemon: &Daemon, args: &[&str]) -> Value {
    let out = daemon.cli(args);
    assert!(out.status.success(), "ticketd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ticketd {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn spam_list(daemon: &Daemon) -> Vec<Value> {
    cli_json(daemon, &["spam", "list", "--json"]).as_array().cloned().unwrap_or_default()
}

fn held_from<'a>(list: &'a [Value], from: &str) -> &'a Value {
    list.iter().find(|e| e["from"] == from).unwrap_or_else(|| panic!("nothing from {from} on the spam list: {list:#?}"))
}

/// Every outbox entry, sent or not, as JSON.
fn outbox(daemon: &Daemon) -> Vec<Value> {
    let out = daemon.cli(&["outbox", "--all", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn mail_to(daemon: &Daemon, address: &str) -> Vec<Value> {
    outbox(daemon).into_iter().filter(|e| e["to"].as_array().unwrap().iter().any(|t| t == address)).collect()
}

async fn metrics(daemon: &Daemon) -> String {
    String::from_utf8(daemon.api().get("/metrics").await.unwrap().body.to_vec()).unwrap()
}

fn metric(text: &str, line: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {line} in the metrics"))
        .parse()
        .unwrap()
}

/// Appends `[spam]` (and desk keys) to a prepared daemon's config.
fn with_spam(daemon: &Daemon, spam: &str) {
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(&daemon.config, format!("{text}\n[spam]\n{spam}\n")).unwrap();
}

/// The border is Postfix with rspamd's milter (its defaults): spam gets
/// `X-Spam: Yes` appended, and every `X-Spam` a sender wrote is removed.
/// ticketd (`border = "rspamd"`, `placement = "milter"`) believes only that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_borders_milter_verdict_is_believed_and_forgeries_are_not() {
    let lab = Lab::start();
    let rspamd = RspamdLab::start();
    lab.set_milter(&rspamd.milter);
    let mut daemon = Daemon::prepare_api(&lab, ApiAt::Unix, "", "");
    with_spam(&daemon, "border = \"rspamd\"\nplacement = \"milter\"\nblock = [\"@bad.example\"]");
    daemon.spawn();
    let send = |from: &'static str, raw: Vec<u8>| {
        let lab = &lab;
        async move { lab.smtp_send(from, &["support@example.test"], &raw).await.unwrap() }
    };

    // 1. Spam by the border's verdict.
    send(
        "stranger@example.test",
        mail("Sam <stranger@example.test>", "s1@example.test", "lab-spammy offer", "", "Cheap printers, today only."),
    )
    .await;
    // 2. Ham with every verdict header a sender can forge saying "spam".
    let forged_spam = "X-Spam: Yes\r\nX-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=20.0\r\nX-Rspamd-Action: reject\r\nX-Spamd-Result: default: True [20.00 / 15.00]\r\n";
    send(
        "customer@example.test",
        mail(
            "Carla <customer@example.test>",
            "c1@example.test",
            "Printer on the second floor",
            forged_spam,
            "It shows error 42.",
        ),
    )
    .await;
    // 3. Spam with every verdict header a sender can forge saying "clean".
    let forged_clean = "X-Spam: No\r\nX-Spam-Flag: NO\r\nX-Spam-Status: No, score=-5.0\r\nX-Rspamd-Action: no action\r\nX-Spamd-Result: default: False [0.00 / 15.00]\r\n";
    send(
        "bob@example.test",
        mail("Bob <bob@example.test>", "b1@example.test", "lab-spammy deal", forged_clean, "Buy now."),
    )
    .await;
    // 4. A blocked domain (subdomains included), however harmless the mail.
    send("x@mail.bad.example", mail("X <x@mail.bad.example>", "x1@bad.example", "Hello", "", "Just saying hi.")).await;
    all_seen(&lab, "support", 4, WAIT).await;

    let tickets = daemon.tickets_json();
    assert_eq!(tickets.len(), 1, "only the ham became a ticket: {tickets:#?}");
    assert_eq!(tickets[0]["title"], "Printer on the second floor");
    let list = spam_list(&daemon);
    assert_eq!(list.len(), 3, "{list:#?}");
    let s1 = held_from(&list, "stranger@example.test");
    assert_eq!(s1["source"], "border_rspamd");
    assert!(s1["reason"].as_str().unwrap().contains("X-Spam: Yes"), "{s1}");
    assert_eq!(
        held_from(&list, "bob@example.test")["source"],
        "border_rspamd",
        "a forged clean verdict cleans nothing"
    );
    let blocked = held_from(&list, "x@mail.bad.example");
    assert_eq!(
        (blocked["source"].as_str(), blocked["reason"].as_str()),
        (Some("blocked"), Some("blocked: @bad.example"))
    );
    // Nothing went to a held sender, and no agent was told about them.
    for who in ["stranger@example.test", "bob@example.test", "x@mail.bad.example"] {
        assert!(mail_to(&daemon, who).is_empty(), "mail to {who}: {:#?}", mail_to(&daemon, who));
    }
    let notified = mail_to(&daemon, "alice@example.test");
    assert_eq!(notified.len(), 1, "one notification, for the one ticket: {notified:#?}");
    wait_for_text(&lab, "customer", "[Ticket #1]", WAIT).await;

    // 5. The customer's own reply, judged spam by the border: it joins its
    // ticket (the milter gives no score, below any hard limit) and is logged.
    send(
        "customer@example.test",
        mail(
            "Carla <customer@example.test>",
            "c2@example.test",
            "Re: [Ticket #1] lab-spammy printer",
            "",
            "Still broken.",
        ),
    )
    .await;
    all_seen(&lab, "support", 5, WAIT).await;
    let t = daemon.ticket_json(1);
    assert!(t["threads"].as_array().unwrap().iter().any(|e| e["message"] == "Still broken."), "{t:#}");
    assert_eq!(spam_list(&daemon).len(), 3);
    assert!(daemon.log_text().contains("below spam.reply_hard_limit"), "the verdict is logged");

    // Release: an ordinary ticket, acknowledged as the rules allow.
    let id = s1["id"].as_u64().unwrap().to_string();
    let out = daemon.cli(&["spam", "release", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("released into support_ticket_2"));
    assert_eq!(daemon.ticket_json(2)["title"], "lab-spammy offer");
    wait_for_text(&lab, "stranger", "[Ticket #2]", WAIT).await;
    assert_eq!(spam_list(&daemon).len(), 2);

    // The blocklist at run time, through the CLI and the daemon's API.
    let added = cli_json(&daemon, &["block", "add", "Carol@Example.test", "--json"]);
    assert_eq!(added["changed"], true);
    send("carol@example.test", mail("Carol <carol+x@example.test>", "k1@example.test", "Question", "", "Hi.")).await;
    all_seen(&lab, "support", 6, WAIT).await;
    assert_eq!(held_from(&spam_list(&daemon), "carol+x@example.test")["reason"], "blocked: carol@example.test");
    let blocklist = cli_json(&daemon, &["block", "list", "--json"]);
    let entries: Vec<(&str, &str)> = blocklist
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["entry"].as_str().unwrap(), b["source"].as_str().unwrap()))
        .collect();
    assert_eq!(entries, [("@bad.example", "config"), ("carol@example.test", "runtime")]);

    let m = metrics(&daemon).await;
    assert_eq!(metric(&m, "ticketd_spam_held_total{source=\"border_rspamd\"}"), 2.0);
    assert_eq!(metric(&m, "ticketd_spam_blocked_total"), 2.0);
    assert_eq!(metric(&m, "ticketd_spam_released_total"), 1.0);
    daemon.stop_ok();
}

/// ticketd asks rspamd itself (`spam.rspamd_url`): GTUBE is held, ham is
/// not, a customer's spammy reply joins its ticket below the hard limit;
/// with rspamd down the `unreachable` policy decides, never dropping mail.
/// And no acknowledgement to a sender the border's Authentication-Results
/// show failing DMARC, unless `acks_require_aligned_sender` is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rspamd_asked_by_ticketd_up_and_down_and_no_backscatter() {
    let lab = Lab::start();
    let mut rspamd = RspamdLab::start();
    let mut daemon = Daemon::prepare_api(&lab, ApiAt::Unix, "", "trusted_authserv_id = \"mx.example.test\"");
    let url = rspamd.url.clone();
    let spam =
        |unreachable: &str| format!("rspamd_url = \"{url}\"\nrspamd_timeout = \"3s\"\nunreachable = \"{unreachable}\"");
    let base = std::fs::read_to_string(&daemon.config).unwrap();
    with_spam(&daemon, &spam("hold"));
    daemon.spawn();
    let send = |from: &'static str, raw: Vec<u8>| {
        let lab = &lab;
        async move { lab.smtp_send(from, &["support@example.test"], &raw).await.unwrap() }
    };

    send(
        "stranger@example.test",
        mail("Sam <stranger@example.test>", "g1@example.test", "hello", "", &format!("Please read.\r\n\r\n{GTUBE}")),
    )
    .await;
    send(
        "customer@example.test",
        mail(
            "Carla <customer@example.test>",
            "c1@example.test",
            "Printer on the second floor",
            "",
            "Hello,\r\n\r\nthe printer shows error 42.\r\n\r\nCarla",
        ),
    )
    .await;
    all_seen(&lab, "support", 2, WAIT).await;
    let list = spam_list(&daemon);
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["source"], "scanner_rspamd");
    assert!(list[0]["reason"].as_str().unwrap().contains("GTUBE"), "{}", list[0]);
    assert_eq!(daemon.tickets_json().len(), 1);
    wait_for_text(&lab, "customer", "[Ticket #1]", WAIT).await;

    // The customer's reply scores 8 ("add header": spam) but stays below
    // spam.reply_hard_limit (15): it joins the ticket.
    send(
        "customer@example.test",
        mail(
            "Carla <customer@example.test>",
            "c2@example.test",
            "Re: [Ticket #1] lab-spammy printer",
            "",
            "Still broken.",
        ),
    )
    .await;
    all_seen(&lab, "support", 3, WAIT).await;
    let t = daemon.ticket_json(1);
    assert!(t["threads"].as_array().unwrap().iter().any(|e| e["message"] == "Still broken."), "{t:#}");
    assert_eq!(spam_list(&daemon).len(), 1);

    // DMARC fail at the border, the setting on (the default where
    // trusted_authserv_id is set): a ticket, the agents told, no ack.
    let border = |id: &str| {
        format!(
            "Authentication-Results: mx.example.test;\r\n\tspf=fail smtp.mailfrom=bob@example.test;\r\n\tdkim=none; dmarc=fail header.from=example.test\r\n\
Received: from client.example.net (client.example.net [203.0.113.7])\r\n\tby mx.example.test (Postfix) with ESMTP id {id}\r\n\tfor <support@example.test>; Mon,  7 Dec 2026 10:00:00 +0000 (UTC)\r\n"
        )
    };
    let forged = |n: u32| {
        mail(
            "Bob <bob@example.test>",
            &format!("d{n}@example.test"),
            &format!("Invoice {n}"),
            &border(&format!("4AB{n}")),
            "Pay this invoice.",
        )
    };
    lab.imap_append("support", "INBOX", &forged(1)).await.unwrap();
    all_seen(&lab, "support", 4, WAIT).await;
    assert_eq!(daemon.tickets_json().len(), 2);
    assert!(mail_to(&daemon, "bob@example.test").is_empty(), "no acknowledgement to a DMARC-failing sender");
    assert_eq!(metric(&metrics(&daemon).await, "ticketd_acks_suppressed_total{reason=\"dmarc_fail\"}"), 1.0);

    // rspamd down, unreachable = "hold": held with the reason, never dropped.
    rspamd.stop();
    send("carol@example.test", mail("Carol <carol@example.test>", "k1@example.test", "A question", "", "Hello?")).await;
    all_seen(&lab, "support", 5, WAIT).await;
    let held = held_from(&spam_list(&daemon), "carol@example.test").clone();
    assert_eq!(held["source"], "rspamd_unreachable");
    assert!(held["reason"].as_str().unwrap().contains("unreachable"), "{held}");
    let m = metrics(&daemon).await;
    assert_eq!(metric(&m, "ticketd_spam_held_total{source=\"scanner_rspamd\"}"), 1.0);
    assert_eq!(metric(&m, "ticketd_spam_held_total{source=\"rspamd_unreachable\"}"), 1.0);
    assert!(metric(&m, "ticketd_rspamd_scans_total{result=\"unreachable\"}") >= 1.0);

    // Restarted with unreachable = "accept" and acks_require_aligned_sender
    // off: mail is a ticket again, and the DMARC-failing sender is acknowledged.
    daemon.stop_ok();
    std::fs::write(
        &daemon.config,
        base.replace(
            "trusted_authserv_id = \"mx.example.test\"",
            "trusted_authserv_id = \"mx.example.test\"\nacks_require_aligned_sender = false",
        ),
    )
    .unwrap();
    with_spam(&daemon, &spam("accept"));
    daemon.spawn();
    send(
        "helpdesk@example.test",
        mail("Hal <helpdesk@example.test>", "a1@example.test", "Another question", "", "Hello again?"),
    )
    .await;
    lab.imap_append("support", "INBOX", &forged(2)).await.unwrap();
    all_seen(&lab, "support", 7, WAIT).await;
    let titles: Vec<String> = daemon.tickets_json().iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect();
    assert!(titles.contains(&"Another question".to_owned()) && titles.contains(&"Invoice 2".to_owned()), "{titles:?}");
    wait_for_text(&lab, "bob", "Invoice 2", WAIT).await;
    assert_eq!(mail_to(&daemon, "bob@example.test").len(), 1, "the setting off: acknowledged");
    // The held mail is still there, and can be released now.
    let out = daemon.cli(&["spam", "release", &held["id"].as_u64().unwrap().to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for_text(&lab, "carol", "A question", WAIT).await;
    daemon.stop_ok();
}
