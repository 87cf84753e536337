use super::*;
use crate::outbound::templates::Templates;
use crate::triage::{Context, Outcome, decide};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    cfg: crate::config::Config,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[store]\npath = \"{0}/db\"\n[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n[[mailboxes]]\nname = \"support\"\naddress = \"support@example.test\"\nhost = \"127.0.0.1\"\ntls = \"none\"\npassword = \"x\"\n[[agents]]\nid = \"agent_alice\"\nemail = \"alice@example.test\"\n",
        dir.path().display()
    );
    let p = dir.path().join("c.toml");
    std::fs::write(&p, toml).unwrap();
    let cfg = crate::config::Config::load_with_env(&p, Some(Default::default())).unwrap();
    let store = Store::open(&cfg.store).unwrap();
    Fixture { _dir: dir, store, cfg }
}

fn ingest(f: &Fixture, uid: u32, raw: &[u8]) -> (Outcome, Vec<u64>) {
    let mail = InboundMail::parse(raw).unwrap();
    let tokens = TokenMatcher::new("Ticket");
    let now = Utc::now();
    let snap = f.store.snapshot("support", &mail, &tokens, now).unwrap();
    let templates = Templates::default();
    let ctx = Context {
        cfg: &f.cfg,
        mailbox: &f.cfg.mailboxes[0],
        secret: b"0123456789abcdef",
        templates: &templates,
        tokens: &tokens,
    };
    let d = decide(&mail, &snap, &ctx, now);
    let origin =
        Origin { mailbox: "support", uid_validity: 7, uid, raw, dedupe_key: mail.dedupe_key(), clear_in_hand: false };
    let queued = f.store.apply(&origin, Some(&mail), &d, now).unwrap();
    (d.outcome, queued)
}

#[test]
fn one_message_one_ticket_and_a_refetch_is_a_no_op() {
    let f = fixture();
    let raw = b"From: c@customer.test\nMessage-ID: <a@c>\nSubject: Help\n\nbody\n";
    let (o, queued) = ingest(&f, 1, raw);
    assert_eq!(o, Outcome::Created { ticket: 1, follow_up_of: None });
    assert_eq!(queued.len(), 2, "ack + one agent notification");
    let (o, queued) = ingest(&f, 1, raw);
    assert_eq!(o, Outcome::Duplicate);
    assert!(queued.is_empty());
    assert_eq!(f.store.tickets().unwrap().len(), 1);
    assert_eq!(f.store.cursor("support").unwrap(), Some(Cursor { uid_validity: 7, last_uid: 1, acked_uid: Some(0) }));
    let t = f.store.ticket(1).unwrap().unwrap();
    assert_eq!(t.ticket.client, "client_1");
    assert_eq!(f.store.ticket_by_message_id("<A@c>").unwrap(), Some(1));
}

#[test]
fn replies_thread_and_numbers_are_sequential() {
    let f = fixture();
    ingest(&f, 1, b"From: c@customer.test\nMessage-ID: <a@c>\nSubject: One\n\nx\n");
    ingest(&f, 2, b"From: d@customer.test\nMessage-ID: <b@c>\nSubject: Two\n\ny\n");
    let (o, _) =
        ingest(&f, 3, b"From: c@customer.test\nMessage-ID: <c@c>\nIn-Reply-To: <a@c>\nSubject: Re: One\n\nmore\n");
    assert_eq!(o, Outcome::Replied { ticket: 1, agent: None });
    let (o, _) = ingest(&f, 4, b"From: c@customer.test\nMessage-ID: <d@c>\nSubject: Re: [Ticket #2] Two\n\nnot mine\n");
    assert_eq!(o, Outcome::Created { ticket: 3, follow_up_of: None }, "c is a stranger to ticket 2");
    assert_eq!(f.store.ticket(1).unwrap().unwrap().ticket.threads.len(), 2);
    assert_eq!(f.store.ticket(3).unwrap().unwrap().ticket.client, "client_1");
}

#[test]
fn mail_without_message_id_dedupes_by_hash() {
    let f = fixture();
    let raw = b"From: c@customer.test\nSubject: no id\n\nx\n";
    ingest(&f, 1, raw);
    assert_eq!(ingest(&f, 2, raw).0, Outcome::Duplicate);
}

#[test]
fn outbox_keeps_order_per_ticket_and_retries() {
    let f = fixture();
    ingest(&f, 1, b"From: c@customer.test\nMessage-ID: <a@c>\nSubject: One\n\nx\n");
    ingest(&f, 2, b"From: c@customer.test\nMessage-ID: <b@c>\nIn-Reply-To: <a@c>\nSubject: Re: One\n\ny\n");
    let now = Utc::now();
    let due = f.store.due(now, 100).unwrap();
    assert_eq!(due.len(), 1, "one per ticket at a time");
    let (seq, first) = &due[0];
    assert_eq!(first.mail.kind, crate::outbound::OutKind::Ack);
    f.store.mark_retry(*seq, "421 try later", now + chrono::Duration::seconds(60)).unwrap();
    assert!(f.store.due(now, 100).unwrap().is_empty(), "the ticket's later mail waits behind the retry");
    f.store.mark_sent(*seq, now).unwrap();
    let next = f.store.due(now, 100).unwrap();
    assert_eq!(next.len(), 1);
    f.store.mark_failed(next[0].0, "550 no such user", now).unwrap();
    let t = f.store.ticket(1).unwrap().unwrap();
    assert!(t.ticket.threads.last().unwrap().message.contains("550 no such user"));
    assert_eq!(f.store.pending_count(), 1);
}

#[test]
fn a_second_open_reports_the_lock() {
    let f = fixture();
    let err = Store::open(&f.cfg.store).err().expect("second open must fail");
    assert!(matches!(err, StoreError::Locked(_)), "{err}");
    assert!(err.to_string().contains("in use"));
}

#[test]
fn attachments_are_content_addressed() {
    let f = fixture();
    let p1 = f.store.write_attachment("abcdef", b"hello").unwrap();
    let p2 = f.store.write_attachment("abcdef", b"hello").unwrap();
    assert_eq!(p1, p2);
    assert_eq!(std::fs::read(p1).unwrap(), b"hello");
}
