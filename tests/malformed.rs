//! Malformed and hostile mail: each becomes a ticket as best it can or is
//! refused with a reason (the ingest shell then quarantines the raw bytes);
//! nothing panics. Plus a bounded property run over random and mutated mail.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use ticketd::config::Config;
use ticketd::mail::InboundMail;
use ticketd::outbox::templates::Templates;
use ticketd::triage::token::TokenMatcher;
use ticketd::triage::{Context, Decision, Outcome, Snapshot, decide};

fn config() -> Config {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[store]\npath = \"/tmp/unused\"\n[smtp]\nhost = \"h\"\ntls = \"none\"\n[[mailboxes]]\nname = \"s\"\naddress = \"support@example.test\"\nhost = \"h\"\ntls = \"none\"\npassword = \"p\"\n[[agents]]\nid = \"agent_a\"\nemail = \"a@example.test\"\n[[rules]]\nbody = \"(?i)urgent\"\npriority = \"urgent\"\n",
    )
    .unwrap();
    Config::load_with_env(&p, Some(HashMap::new())).unwrap()
}

fn run(cfg: &Config, raw: &[u8]) -> Result<Decision, String> {
    let mail = InboundMail::parse(raw).map_err(|e| e.to_string())?;
    let templates = Templates::default();
    let tokens = TokenMatcher::new("Ticket");
    let ctx = Context {
        cfg,
        mailbox: &cfg.mailboxes[0],
        secret: b"0123456789abcdef",
        templates: &templates,
        tokens: &tokens,
        quiet: false,
    };
    let snap = Snapshot { next_client: 1, next_ticket: 1, dedupe_key: "id:m@x".into(), ..Snapshot::default() };
    Ok(decide(&mail, &snap, &ctx, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()))
}

fn created(d: &Decision) -> &ticketd::ticket::Ticket {
    assert!(matches!(d.outcome, Outcome::Created { .. }), "{:?}", d.outcome);
    &d.saved().unwrap().ticket
}

#[test]
fn broken_mime_still_becomes_a_ticket() {
    let cfg = config();
    let broken_boundary = b"From: c@x.test\nSubject: broken\nContent-Type: multipart/mixed; boundary=NOPE\n\n--OTHER\nContent-Type: text/plain\n\nhello there\n--OTHER--\n";
    let t = created(&run(&cfg, broken_boundary).unwrap()).clone();
    assert_eq!(t.title, "broken");

    let bad_base64 = b"From: c@x.test\nSubject: b64\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!!not*base64@@@\n";
    created(&run(&cfg, bad_base64).unwrap());

    let lying_charset =
        b"From: c@x.test\nSubject: charset\nContent-Type: text/plain; charset=klingon-8\n\ncaf\xe9 cr\xe8me\n";
    let t = created(&run(&cfg, lying_charset).unwrap()).clone();
    assert!(t.description.starts_with("caf"), "{:?}", t.description);

    let eight_bit_headers =
        b"From: J\xfcrgen <j@x.test>\nSubject: Gr\xfc\xdfe \xff\xfe\nTo: support@example.test\n\nbody\n";
    let t = created(&run(&cfg, eight_bit_headers).unwrap()).clone();
    assert!(!t.title.is_empty());

    let nul_bytes = b"From: c@x.test\nSubject: nul\0byte\n\nbo\0dy\0\n";
    let t = created(&run(&cfg, nul_bytes).unwrap()).clone();
    assert!(!t.title.contains('\0') && !t.description.contains('\0'));

    let huge_header = format!("From: c@x.test\nX-Junk: {}\nSubject: huge\n\nbody\n", "a".repeat(2_000_000));
    assert_eq!(created(&run(&cfg, huge_header.as_bytes()).unwrap()).title, "huge");

    let mut nested = String::from("From: c@x.test\nSubject: nested\nContent-Type: multipart/mixed; boundary=b0\n\n");
    for i in 0..200 {
        nested.push_str(&format!("--b{i}\nContent-Type: multipart/mixed; boundary=b{}\n\n", i + 1));
    }
    nested.push_str("--b200\nContent-Type: text/plain\n\ndeep inside\n");
    created(&run(&cfg, nested.as_bytes()).unwrap());
}

#[test]
fn garbage_is_refused_with_a_reason() {
    let cfg = config();
    assert_eq!(run(&cfg, b"").unwrap_err(), "empty message");
    assert!(run(&cfg, b"\x00\x01\x02 binary junk").unwrap_err().contains("not an email"));
    let d = run(&cfg, b"Subject: no sender\n\nhi\n").unwrap();
    assert_eq!(d.outcome, Outcome::Quarantined);
}

const SEED: &[u8] = b"From: Carla <c@x.test>\r\nTo: support@example.test, b@x.test\r\nSubject: Re: [Ticket #3] Help\r\nMessage-ID: <s@x>\r\nIn-Reply-To: <p@x>\r\nAuto-Submitted: no\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHello =C3=A9 urgent\r\n\r\nOn Mon, Jan 1, 2024 at 1:00 PM X <x@y> wrote:\r\n> old\r\n--B\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename*=UTF-8''%2E%2E%2Fa.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--B--\r\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let cfg = config();
        let _ = run(&cfg, &raw);
    }

    #[test]
    fn mutated_mail_never_panics(edits in proptest::collection::vec((0usize..SEED.len(), any::<u8>(), 0u8..3), 1..40)) {
        let cfg = config();
        let mut raw = SEED.to_vec();
        for (pos, byte, op) in edits {
            let pos = pos.min(raw.len());
            match op {
                0 if pos < raw.len() => raw[pos] = byte,
                1 => raw.insert(pos, byte),
                _ if pos < raw.len() => { raw.remove(pos); }
                _ => {}
            }
        }
        if let Ok(d) = run(&cfg, &raw) {
            // Whatever was decided is internally consistent.
            if let Some(rec) = d.saved() {
                prop_assert!(!rec.ticket.threads.is_empty());
                prop_assert!(!rec.ticket.title.is_empty());
            }
        }
    }
}
