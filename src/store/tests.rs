use super::*;

#[test]
fn sled_keeps_the_backend_contract() {
    let root = tempfile::tempdir().unwrap();
    contract::run(root.path(), &|dir: &Path| {
        // sled's flusher thread lets go of the file lock a moment after a
        // dropped Db: a reopen right after a drop in the same process may
        // briefly see the lock (a second open while the first lives sees it
        // for good, which the contract checks).
        let mut tries = 0;
        loop {
            match sled_backend::SledBackend::open(&dir.join("db"), &dir.join("attachments"), 8 << 20) {
                Err(StoreError::Locked(_)) if tries < 25 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r.map(|b| Box::new(b) as Box<dyn Backend>),
            }
        }
    });
}

#[test]
fn a_second_open_reports_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open_path(&dir.path().join("db"), &dir.path().join("att"), 8 << 20).unwrap();
    let err = Store::open_path(&dir.path().join("db"), &dir.path().join("att"), 8 << 20).err().expect("must fail");
    assert!(matches!(err, StoreError::Locked(_)), "{err}");
    assert!(err.to_string().contains("in use"));
}

#[test]
fn a_store_of_the_old_tree_per_table_layout_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = sled::open(&path).unwrap();
        let tickets = db.open_tree("tickets").unwrap();
        let rec = serde_json::json!({
            "ticket": {"_id": "support_ticket_1", "title": "t", "description": "d", "status": "open",
                "priority": "low", "category": "general", "client": "client_1", "assignedTo": null,
                "threads": [
                    {"author": "client_1", "message": "hi", "timestamp": "2024-01-15T10:30:00Z", "type": "user"},
                    {"author": "agent_alice", "message": "secret", "timestamp": "2024-01-15T10:31:00Z", "type": "agent"}
                ],
                "attachments": [], "tags": [], "resolution": null, "createdAt": "2024-01-15T10:30:00Z",
                "updatedAt": "2024-01-15T10:31:00Z", "resolvedAt": null, "number": 1},
            "number": 1, "client_address": "c@x.test", "mailbox": "support", "thread_ids": ["a@x"], "internal": [1]
        });
        tickets.insert(be(1), serde_json::to_vec(&rec).unwrap()).unwrap();
        db.open_tree("msgids").unwrap().insert("a@x", &be(1)).unwrap();
        db.open_tree("meta").unwrap().insert("next_ticket", &be(2)).unwrap();
        db.open_tree("raw").unwrap().insert("ab", &b"raw bytes"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open_path(&path, &dir.path().join("att"), 8 << 20).unwrap();
    let rec = store.ticket(1).unwrap().expect("ticket migrated");
    assert!(!rec.ticket.threads[0].internal);
    assert!(rec.ticket.threads[1].internal, "a note stays internal");
    assert_eq!(store.ticket_by_message_id("<A@x>").unwrap(), Some(1));
    assert_eq!(store.counter(keys::NEXT_TICKET).unwrap(), 2);
    assert_eq!(store.raw("ab").unwrap().as_deref(), Some(&b"raw bytes"[..]));
    drop(store);
    // A second open finds nothing left to migrate and the same data.
    let store = Store::open_path(&path, &dir.path().join("att"), 8 << 20).unwrap();
    assert_eq!(store.tickets().unwrap().len(), 1);
}

#[test]
fn recent_counts_stay_small_however_busy_the_key() {
    use chrono::TimeZone;
    let t0 = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
    let mut r = Recent::default();
    for i in 0..10_000 {
        r.add(t0 + chrono::Duration::milliseconds(i * 300));
    }
    let end = t0 + chrono::Duration::milliseconds(10_000 * 300);
    assert!(json(&r).len() < 2_000, "at most one entry per minute");
    // 10,000 events over 50 minutes: all within the hour.
    assert_eq!(r.count(end), 10_000);
    // At 11:10 the window is 10:11–11:10 (whole minutes): the 11 minutes
    // from 10:00 to 10:10, 200 events each, have aged out.
    assert_eq!(r.count(end + chrono::Duration::minutes(20)), 10_000 - 11 * 200);
    assert_eq!(r.count(end + chrono::Duration::hours(2)), 0, "an hour later nothing counts");
    let mut one = Recent::default();
    one.add(t0);
    assert_eq!(one.count(t0 + chrono::Duration::minutes(59)), 1);
    assert_eq!(one.count(t0 + chrono::Duration::minutes(61)), 0);
}

#[test]
fn a_tickets_oldest_mail_goes_first_even_when_a_later_one_is_due_earlier() {
    use crate::outbox::{OutKind, OutMail, OutState, OutboxEntry};
    use chrono::TimeZone;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_path(&dir.path().join("db"), &dir.path().join("att"), 8 << 20).unwrap();
    let t0 = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
    let entry = |ticket: u64, at: chrono::DateTime<chrono::Utc>| OutboxEntry {
        mail: OutMail {
            ticket,
            kind: OutKind::Ack,
            from_address: "s@x.test".into(),
            from_name: "S".into(),
            to: vec!["c@x.test".into()],
            subject: "s".into(),
            body: "b".into(),
            message_id: format!("m{ticket}.{}@x.test", at.timestamp()),
            in_reply_to: None,
            references: vec![],
            attachments: vec![],
            internal_lines: vec![],
        },
        state: OutState::Queued,
        attempts: 0,
        next_attempt: at,
        last_error: None,
        created: t0,
        done_rcpts: vec![],
        failed_rcpts: vec![],
    };
    let mut w = WriteSet::default();
    // Ticket 1: seq 1 retries at +10s; seq 2 is due at once. Ticket 2: seq 3 due at once.
    for (seq, e) in [(1, entry(1, t0 + chrono::Duration::seconds(10))), (2, entry(1, t0)), (3, entry(2, t0))] {
        w.put(Table::Outbox, be(seq), json(&e));
        w.put(Table::OutboxDue, keys::due(e.next_attempt.timestamp(), seq), vec![]);
        w.put(Table::OutboxTickets, keys::ticket_seq(e.mail.ticket, seq), vec![]);
    }
    store.take_committer().unwrap().commit(w).unwrap();
    let seqs = |now| store.due(now, 10).unwrap().into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    assert_eq!(seqs(t0), vec![3], "ticket 1's later mail waits behind its retrying first one");
    assert_eq!(seqs(t0 + chrono::Duration::seconds(10)), vec![3, 1], "then the first one goes too, once due");
    assert_eq!(store.next_due_at().unwrap(), Some(t0));
}

#[test]
fn a_store_error_says_whether_the_disk_is_full_or_the_process_is_out_of_descriptors() {
    let blob = |code| StoreError::Io { what: "blob store /x".into(), source: std::io::Error::from_raw_os_error(code) };
    assert_eq!(blob(28).diagnosis(), "the disk is full");
    assert!(blob(24).diagnosis().contains("LimitNOFILE"), "EMFILE is not a full disk");
    let wrapped = StoreError::from(sled::Error::Io(std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        std::io::Error::from_raw_os_error(28),
    )));
    assert_eq!(wrapped.diagnosis(), "the disk is full");
    assert_eq!(StoreError::Closed.diagnosis(), "see the error");
}
