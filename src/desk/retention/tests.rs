use std::sync::Arc;

use super::*;
use crate::desk::{ActorRef, Delivery, Item};
use crate::store::{QuarantineEntry, WriteSet};
use crate::testkit::TestConfig;
use crate::triage::act::Action;

struct World {
    _dir: tempfile::TempDir,
    desk: Desk,
}

/// A fresh test desk that prunes after 30 days.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let desk =
        Desk::open(Arc::new(TestConfig::new(dir.path()).with(|c| c.store.retention_days = Some(30)).load()), false)
            .unwrap()
            .desk;
    World { _dir: dir, desk }
}

fn mail(id: &str, from: &str, extra: &str, body: &str) -> Vec<u8> {
    format!("From: <{from}>\r\nTo: support@example.test\r\n{extra}Subject: Printer {id}\r\nMessage-ID: <{id}>\r\n\r\n{body}\r\n")
        .into_bytes()
}

async fn ingest(w: &World, uid: u32, raw: Vec<u8>) {
    let r = w.desk.ingest("support", 1, vec![Item::Mail { uid, raw }]).await;
    assert_eq!(r.done, vec![uid], "{:?}", r.error);
}

/// Everything queued is reported sent.
async fn deliver_all(w: &World) {
    for e in w.desk.outbox(false).unwrap() {
        w.desk.delivery(e.seq, vec![Delivery::Done]).await.unwrap();
    }
}

async fn set_status(w: &World, n: u64, s: Status) {
    w.desk.act(n, ActorRef::Admin, vec![Action::Status(s)], Vec::new(), None).await.unwrap();
}

fn sha_of(w: &World, n: u64) -> Vec<String> {
    w.desk.store().raw_for_ticket(n).unwrap().into_iter().map(|(r, _)| r.raw_sha256).collect()
}

#[tokio::test]
async fn closed_tickets_lose_raw_copies_and_sent_bodies_but_nothing_dedupe_needs() {
    let w = world();
    ingest(&w, 1, mail("a1@c.test", "ann@c.test", "", "first")).await;
    ingest(&w, 2, mail("a2@c.test", "ann@c.test", "In-Reply-To: <a1@c.test>\r\n", "second")).await;
    ingest(&w, 3, mail("b1@c.test", "bob@c.test", "", "still open")).await;
    ingest(&w, 4, mail("c1@c.test", "cid@c.test", "", "shared copy")).await;
    deliver_all(&w).await;
    set_status(&w, 1, Status::Closed).await;
    set_status(&w, 3, Status::Closed).await;
    let store = w.desk.store().clone();
    // Ticket 3's raw copy is also what a quarantine entry names.
    let shared = sha_of(&w, 3).remove(0);
    let q = QuarantineEntry {
        id: 99,
        reason: "test".into(),
        mailbox: "support".into(),
        uid: 9,
        raw_sha256: shared.clone(),
        at: Utc::now(),
        ingest_key: None,
    };
    let mut ws = WriteSet::default();
    ws.put(Table::Quarantine, be(99), json(&q));
    w.desk.load(ws).await.unwrap();
    let tickets_before: Vec<_> = store.tickets().unwrap();
    let sent_before = store.sent_entries().unwrap();
    assert!(sent_before.iter().any(|(_, e)| e.mail.ticket == 1 && !e.mail.body.is_empty()));

    let now = Utc::now();
    let r = w.desk.prune(now).await.unwrap();
    assert_eq!((r.tickets, r.raw_copies, r.stale_acks), (0, 0, 0), "closed today: nothing is due");

    let later = now + chrono::Duration::days(31);
    let r = w.desk.prune(later).await.unwrap();
    assert_eq!(r.tickets, 2, "{r:?}");
    assert_eq!(r.raw_copies, 2, "ticket 1's two mails; ticket 3's copy is named elsewhere: {r:?}");
    assert!(r.sent_records >= 2, "{r:?}");
    assert!(r.stale_acks >= 1, "a month later no rate-limit record counts: {r:?}");
    assert!(!r.more);

    for sha in sha_of(&w, 1) {
        assert_eq!(store.raw(&sha).unwrap(), None, "pruned");
    }
    assert!(store.raw(&shared).unwrap().is_some(), "a copy something else names stays");
    assert!(store.raw(&sha_of(&w, 2)[0]).unwrap().is_some(), "an open ticket keeps its mail");
    let mbox = String::from_utf8(w.desk.raw_mbox(1).unwrap()).unwrap();
    assert_eq!(mbox.matches("X-Ticketd-Pruned:").count(), 2, "{mbox}");
    assert!(!mbox.contains("first") && mbox.contains("support_ticket_1"), "{mbox}");
    assert!(String::from_utf8(w.desk.raw_mbox(3).unwrap()).unwrap().contains("shared copy"));

    assert_eq!(store.tickets().unwrap(), tickets_before, "tickets are untouched");
    for (seq, before) in &sent_before {
        let after = store.sent_entry(*seq).unwrap().expect("sent records stay");
        assert_eq!(after.mail.message_id, before.mail.message_id);
        assert_eq!(after.mail.internal_lines, before.mail.internal_lines);
        let pruned = [1, 3].contains(&before.mail.ticket);
        assert_eq!(after.mail.body.is_empty(), pruned, "ticket {}", before.mail.ticket);
        assert!(store.our_mail(&before.mail.message_id).unwrap().is_some(), "own mail is still recognised");
    }
    assert_eq!(store.ticket_by_message_id("<a2@c.test>").unwrap(), Some(1), "threading index stays");

    // Dedupe still knows the pruned mail: the same bytes again change nothing.
    let before = store.counter(crate::store::keys::NEXT_TICKET).unwrap();
    ingest(&w, 5, mail("a1@c.test", "ann@c.test", "", "first")).await;
    assert_eq!(store.counter(crate::store::keys::NEXT_TICKET).unwrap(), before);
    assert_eq!(store.ticket(1).unwrap(), tickets_before.iter().find(|t| t.number == 1).cloned());

    let r = w.desk.prune(later).await.unwrap();
    assert!(r.is_empty() && r.raw_copies == 0, "done tickets are not visited again: {r:?}");

    // Reopened, answered and closed again: the new mail goes in a later run.
    set_status(&w, 1, Status::Open).await;
    ingest(&w, 6, mail("a3@c.test", "ann@c.test", "In-Reply-To: <a1@c.test>\r\n", "third")).await;
    set_status(&w, 1, Status::Closed).await;
    let r = w.desk.prune(later).await.unwrap();
    assert_eq!((r.tickets, r.raw_copies), (1, 1), "{r:?}");
    let (tickets, raws) = pruned_counts(&store).unwrap();
    assert_eq!((tickets, raws), (2, 3));
}

#[tokio::test]
async fn nothing_is_pruned_while_a_backup_copies_blobs_or_when_retention_is_off() {
    let w = world();
    ingest(&w, 1, mail("a1@c.test", "ann@c.test", "", "first")).await;
    set_status(&w, 1, Status::Closed).await;
    let store = w.desk.store().clone();
    let later = Utc::now() + chrono::Duration::days(31);

    assert!(plan(&store, 0, later).unwrap().tickets.is_empty(), "retention_days = 0 keeps everything");

    let mut tx = Tx::new(&store);
    let (report, doomed) = prune_writes(&mut tx, plan(&store, 30, later).unwrap(), later, true).unwrap();
    assert!(report.waiting.is_some() && report.tickets == 0 && doomed.is_empty(), "{report:?}");
    for item in ingested(&store) {
        let (key, _) = item.unwrap();
        assert_eq!(tx.ingested(&key).unwrap().unwrap().pruned, None, "no record is marked while a copy runs");
    }
    let mut tx = Tx::new(&store);
    let (report, doomed) = prune_writes(&mut tx, plan(&store, 30, later).unwrap(), later, false).unwrap();
    assert_eq!((report.tickets, doomed.len()), (1, 1), "{report:?}");
}
