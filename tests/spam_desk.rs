//! The spam list and the blocklist through the desk's one writer (no
//! servers: the store is real, mail arrives as raw bytes the way the IMAP
//! worker hands it over, rspamd's answer included when it was asked).

use std::sync::Arc;

use ticketd::config::Config;
use ticketd::desk::{ActorRef, Desk, DeskError, Item, RetryOutcome};
use ticketd::outbox::OutKind;
use ticketd::spam::{BlockEntry, Filter, ScanResult, Verdict, VerdictSource};
use ticketd::store::Records;
use ticketd::ticket::Status;
use ticketd::triage::act::Action;

struct World {
    _dir: tempfile::TempDir,
    desk: Desk,
}

fn world(spam: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[desk]\ntrusted_authserv_id = \"mx.example.test\"\n[store]\npath = \"{0}/db\"\n[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n[[mailboxes]]\nname = \"support\"\naddress = \"support@example.test\"\nhost = \"127.0.0.1\"\ntls = \"none\"\npassword = \"x\"\n[[agents]]\nid = \"agent_alice\"\nemail = \"alice@example.test\"\n[spam]\n{spam}\n",
        dir.path().display()
    );
    let p = dir.path().join("c.toml");
    std::fs::write(&p, toml).unwrap();
    let cfg = Arc::new(Config::load_with_env(&p, Some(Default::default())).unwrap_or_else(|e| panic!("{e}")));
    let desk = Desk::open(cfg, false).expect("open the desk").desk;
    World { _dir: dir, desk }
}

const BORDER: &str = "Received: from client.example.net (client.example.net [203.0.113.7])\r\n\tby mx.example.test (Postfix) with ESMTP id 5B5F098C21A\r\n\tfor <support@example.test>; Mon,  7 Dec 2026 08:00:00 +0000 (UTC)\r\n";
const SA_SPAM: &str = "X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=7.3 required=5.0 tests=LAB autolearn=no\r\n";

fn mail(above: &str, from: &str, id: &str, subject: &str) -> Vec<u8> {
    format!(
        "{above}{BORDER}From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 7 Dec 2026 08:00:00 +0000\r\n\r\nHello,\r\nplease help.\r\n"
    )
    .into_bytes()
}

async fn ingest(w: &World, uid: u32, item: Item) {
    let r = w.desk.ingest("support", 1, vec![item]).await;
    assert_eq!(r.done, vec![uid], "{:?}", r.error);
}

fn door(w: &World, what: &str, label: &str) -> u64 {
    w.desk.health().readings().door.iter().filter(|(a, l, _)| a == what && l == label).map(|(_, _, n)| *n).sum()
}

#[tokio::test]
async fn spam_is_held_listed_released_into_a_ticket_and_never_read_twice() {
    let w = world("border = \"spamassassin\"");
    let raw = mail(SA_SPAM, "Spammer <offers@spam.example>", "s1@spam.example", "Cheap printers");
    ingest(&w, 1, Item::Mail { uid: 1, raw: raw.clone() }).await;
    assert!(w.desk.store().tickets().unwrap().is_empty(), "no ticket");
    assert!(w.desk.outbox(true).unwrap().is_empty(), "no acknowledgement, no notification");
    assert!(w.desk.store().client("offers@spam.example").unwrap().is_none(), "no client");
    let list = w.desk.spam().unwrap();
    assert_eq!(list.len(), 1);
    let e = &list[0];
    assert_eq!(
        (e.source.as_str(), e.score, e.from.as_deref()),
        ("border_spamassassin", Some(7.3), Some("offers@spam.example"))
    );
    assert_eq!(e.subject, "Cheap printers");
    assert!(e.reason.contains("X-Spam-Status Yes"), "{}", e.reason);
    let (_, kept) = w.desk.spam_entry(e.id).unwrap().unwrap();
    assert_eq!(kept, raw, "the raw mail is kept byte for byte");
    assert_eq!(door(&w, "held", "border_spamassassin"), 1);

    // Fetched again (a second copy in the mailbox, a re-read): a duplicate.
    ingest(&w, 2, Item::Mail { uid: 2, raw: raw.clone() }).await;
    assert_eq!(w.desk.spam().unwrap().len(), 1);

    // Released: ingested as ordinary mail, acknowledged as the rules allow.
    let out = w.desk.spam_release(e.id, ActorRef::Admin).await.unwrap();
    assert_eq!(out, RetryOutcome::Ingested { ticket: Some(1) });
    assert!(w.desk.spam().unwrap().is_empty());
    let rec = w.desk.ticket(1).unwrap().unwrap();
    assert_eq!(rec.client_address, "offers@spam.example");
    let outbox = w.desk.outbox(false).unwrap();
    assert!(outbox.iter().any(|m| m.kind == OutKind::Ack && m.to == ["offers@spam.example"]), "{outbox:?}");
    assert_eq!(w.desk.ticket_mails(1).unwrap().len(), 1, "the raw mail belongs to the ticket now");
    assert_eq!(door(&w, "released", ""), 1);
    // Once in, a re-read is a duplicate of the ticket's mail.
    ingest(&w, 3, Item::Mail { uid: 3, raw }).await;
    assert_eq!(w.desk.store().tickets().unwrap().len(), 1);
    assert!(matches!(w.desk.spam_release(e.id, ActorRef::Admin).await, Err(DeskError::NotFound(_))));
}

#[tokio::test]
async fn dropped_spam_is_gone_with_its_raw_copy_and_retention_removes_old_spam() {
    let w = world("border = \"spamassassin\"\nretention_days = 30");
    let one = mail(SA_SPAM, "a@spam.example", "s1@spam.example", "one");
    let two = mail(SA_SPAM, "b@spam.example", "s2@spam.example", "two");
    ingest(&w, 1, Item::Mail { uid: 1, raw: one.clone() }).await;
    ingest(&w, 2, Item::Mail { uid: 2, raw: two }).await;
    let list = w.desk.spam().unwrap();
    assert_eq!(list.len(), 2);
    w.desk.spam_drop(list[0].id, ActorRef::Admin).await.unwrap();
    assert_eq!(w.desk.spam().unwrap().len(), 1);
    assert_eq!(w.desk.store().raw(&list[0].raw_sha256).unwrap(), None, "the raw copy is gone");
    ingest(&w, 3, Item::Mail { uid: 3, raw: one }).await;
    assert_eq!(w.desk.spam().unwrap().len(), 1, "a dropped mail is not read into the list again");
    assert!(w.desk.store().tickets().unwrap().is_empty());
    assert!(matches!(w.desk.spam_drop(list[0].id, ActorRef::Admin).await, Err(DeskError::NotFound(_))));

    let r = w.desk.prune(chrono::Utc::now()).await.unwrap();
    assert_eq!(r.spam, 0, "a day-old entry stays");
    let r = w.desk.prune(chrono::Utc::now() + chrono::Duration::days(31)).await.unwrap();
    assert_eq!(r.spam, 1, "{r:?}");
    assert!(w.desk.spam().unwrap().is_empty());
    assert_eq!(w.desk.store().raw(&list[1].raw_sha256).unwrap(), None);
}

#[tokio::test]
async fn the_blocklist_from_the_config_and_at_run_time() {
    let w = world("block = [\"@bad.example\"]");
    ingest(&w, 1, Item::Mail { uid: 1, raw: mail("", "X <x@mail.BAD.example>", "b1@bad.example", "hi") }).await;
    let list = w.desk.spam().unwrap();
    assert_eq!((list[0].source.as_str(), list[0].reason.as_str()), ("blocked", "blocked: @bad.example"));
    assert_eq!(door(&w, "blocked", ""), 1);

    let late = BlockEntry::parse("Late@Example.net").unwrap();
    assert!(w.desk.block(late.clone(), true, ActorRef::Admin).await.unwrap().changed);
    assert!(!w.desk.block(late.clone(), true, ActorRef::Admin).await.unwrap().changed, "already there");
    ingest(&w, 2, Item::Mail { uid: 2, raw: mail("", "late+news@example.net", "l1@example.net", "hi") }).await;
    assert_eq!(w.desk.spam().unwrap().len(), 2);
    let entries = w.desk.blocklist().unwrap();
    let shown: Vec<(&str, &str)> = entries.iter().map(|b| (b.entry.as_str(), b.source.as_str())).collect();
    assert_eq!(shown, [("@bad.example", "config"), ("late@example.net", "runtime")]);
    assert_eq!(entries[1].by.as_deref(), Some("admin"));

    let config_entry = BlockEntry::parse("@bad.example").unwrap();
    let err = w.desk.block(config_entry, false, ActorRef::Admin).await.unwrap_err();
    assert!(err.to_string().contains("in the config file"), "{err}");
    w.desk.block(late.clone(), false, ActorRef::Admin).await.unwrap();
    assert!(matches!(w.desk.block(late, false, ActorRef::Admin).await, Err(DeskError::NotFound(_))));
    ingest(&w, 3, Item::Mail { uid: 3, raw: mail("", "late@example.net", "l2@example.net", "hi") }).await;
    assert_eq!(w.desk.store().tickets().unwrap().len(), 1, "unblocked: a ticket again");
}

#[tokio::test]
async fn an_agent_blocks_a_tickets_sender() {
    let w = world("");
    ingest(
        &w,
        1,
        Item::Mail { uid: 1, raw: mail("", "Phisher <ph@phish.example>", "p1@phish.example", "Your account") },
    )
    .await;
    let rec = w
        .desk
        .act(1, ActorRef::Agent("agent_alice".into()), vec![Action::BlockSender], Vec::new(), None)
        .await
        .unwrap();
    assert_eq!(rec.ticket.status, Status::Closed);
    assert!(rec.ticket.tags.contains(&"spam".to_owned()));
    assert!(rec.ticket.threads.iter().any(|e| e.message.starts_with("sender ph@phish.example blocked by agent_alice")));
    let b = w.desk.blocklist().unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].entry.as_str(), b[0].by.as_deref(), b[0].ticket),
        ("ph@phish.example", Some("agent_alice"), Some(1))
    );
    ingest(&w, 2, Item::Mail { uid: 2, raw: mail("", "ph+2@phish.example", "p2@phish.example", "Again") }).await;
    assert_eq!(w.desk.store().tickets().unwrap().len(), 1, "held, not a new ticket");
    assert_eq!(w.desk.spam().unwrap()[0].source, "blocked");
    // Not an agent's own address.
    ingest(&w, 3, Item::Mail { uid: 3, raw: mail("", "alice@example.test", "a1@example.test", "note to self") }).await;
    let err = w.desk.act(2, ActorRef::Admin, vec![Action::BlockSender], Vec::new(), None).await.unwrap_err();
    assert!(err.to_string().contains("an agent's address"), "{err}");
}

#[tokio::test]
async fn rspamds_answer_travels_with_the_mail() {
    let w = world("unreachable = \"hold\"");
    let gtube = ScanResult::Verdict(Verdict {
        spam: true,
        score: Some(15.0),
        source: VerdictSource::Scanner(Filter::Rspamd),
        reason: "rspamd: reject, score 15 / 15 (GTUBE 0)".into(),
    });
    let raw = mail("", "g@example.org", "g1@example.org", "gtube");
    ingest(&w, 1, Item::Scanned { uid: 1, raw, scan: gtube }).await;
    let down = ScanResult::Failed { code: "unreachable".into(), reason: "connection refused".into() };
    let raw = mail("", "h@example.org", "h1@example.org", "ham");
    ingest(&w, 2, Item::Scanned { uid: 2, raw, scan: down }).await;
    let list = w.desk.spam().unwrap();
    let sources: Vec<&str> = list.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(sources, ["scanner_rspamd", "rspamd_unreachable"]);
    assert!(list[1].reason.contains("connection refused"));
    assert!(w.desk.store().tickets().unwrap().is_empty());
}

/// `tests/fixtures/python-email/reply-encoded-ids.eml`: a customer's
/// follow-up written with Python's `email` package, whose In-Reply-To is
/// their first mail's long Message-ID as RFC 2047 encoded words. Decoded,
/// it threads into the ticket instead of opening a new one.
#[tokio::test]
async fn a_reply_whose_ids_are_encoded_words_joins_its_ticket() {
    let w = world("");
    let first = "From: Ann Customer <ann@example.net>\r\nTo: support@example.test\r\nSubject: printer on the second floor\r\n\
Message-ID: <CAF=first.long.message.id.from.a.corporate.mail.system.0123456789abcdef0123@mail.example.net>\r\n\r\nError 42.\r\n";
    ingest(&w, 1, Item::Mail { uid: 1, raw: first.as_bytes().to_vec() }).await;
    let reply =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/python-email/reply-encoded-ids.eml"))
            .unwrap();
    ingest(&w, 2, Item::Mail { uid: 2, raw: reply }).await;
    assert_eq!(w.desk.store().tickets().unwrap().len(), 1, "no second ticket");
    let t = w.desk.ticket(1).unwrap().unwrap().ticket;
    assert!(t.threads.iter().any(|e| e.message.contains("It is still broken.")), "{:?}", t.threads);
}

/// A quarantine entry retried goes through the rules of fetched mail, the
/// door included: spam is held, counted like any held mail, and the retry
/// says where it went; released, it is a ticket.
#[tokio::test]
async fn a_retried_quarantine_entry_meets_the_door_like_fetched_mail() {
    let w = world("border = \"spamassassin\"");
    let header = mail(SA_SPAM, "offers@spam.example", "big@spam.example", "Huge offer");
    ingest(&w, 1, Item::TooLarge { uid: 1, size: 1 << 30, header }).await;
    let q = w.desk.quarantine().unwrap();
    assert_eq!(q.len(), 1, "too large: quarantined with its header");
    let out = w.desk.quarantine_retry(q[0].id, ActorRef::Admin).await.unwrap();
    let list = w.desk.spam().unwrap();
    assert_eq!(list.len(), 1, "held on the spam list");
    assert_eq!(out, RetryOutcome::Held { id: list[0].id, reason: list[0].reason.clone() });
    assert_eq!(door(&w, "held", "border_spamassassin"), 1, "counted like a fetched mail held");
    assert!(w.desk.quarantine().unwrap().is_empty());
    assert!(w.desk.store().tickets().unwrap().is_empty());
    let out = w.desk.spam_release(list[0].id, ActorRef::Admin).await.unwrap();
    assert_eq!(out, RetryOutcome::Ingested { ticket: Some(1) });
    assert_eq!(door(&w, "released", ""), 1);
}
