//! The outgoing-mail writer: everything it produces is valid RFC 5322 and
//! reads back (through mail-parser) as what was meant, whatever the input.

use std::io;

use chrono::{TimeZone, Utc};
use mail_parser::{MessageParser, MimeHeaders};
use proptest::prelude::*;

use ticketd::outbound::build::{BuildError, BuildOptions, build};
use ticketd::outbox::{OutAttachment, OutKind, OutMail};

fn mail() -> OutMail {
    OutMail {
        ticket: 42,
        kind: OutKind::Ack,
        from_address: "support@example.test".into(),
        from_name: "Example Support".into(),
        to: vec!["customer@example.test".into()],
        subject: "[Ticket #42] Printer on fire".into(),
        body: "Hello,\n\nwe got your mail.\n".into(),
        message_id: "t42.ack.1@desk.example.test".into(),
        in_reply_to: Some("orig-1@customer.example".into()),
        references: vec!["orig-1@customer.example".into()],
        attachments: vec![],
        internal_lines: vec![],
    }
}

fn opts() -> BuildOptions {
    BuildOptions::new(Utc.with_ymd_and_hms(2026, 1, 15, 10, 30, 0).unwrap())
}

fn no_files(a: &OutAttachment) -> io::Result<Vec<u8>> {
    Err(io::Error::new(io::ErrorKind::NotFound, a.sha256.clone()))
}

fn built(m: &OutMail) -> Vec<u8> {
    build(m, &mut no_files, &opts()).unwrap()
}

/// Every line ends in CRLF, has at most 998 octets, and the whole message is
/// 7-bit (no relay needs 8BITMIME for it).
fn assert_wire_clean(raw: &[u8]) {
    assert!(raw.ends_with(b"\r\n"), "message must end with CRLF");
    assert!(raw.is_ascii(), "8-bit octets in the output");
    for (i, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or_else(|| {
            assert!(line.is_empty(), "bare LF after line {i}");
            line
        });
        assert!(!line.contains(&b'\r'), "bare CR in line {i}");
        assert!(line.len() <= 998, "line {i} has {} octets", line.len());
    }
}

fn header_section(raw: &[u8]) -> &str {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header/body separator");
    std::str::from_utf8(&raw[..end]).unwrap()
}

/// Header lines ticketd folded itself stay within RFC 5322's 78 columns.
fn assert_folded(raw: &[u8]) {
    for line in header_section(raw).split("\r\n") {
        assert!(line.len() <= 78, "header line of {} chars: {line:?}", line.len());
    }
}

fn header_names(raw: &[u8]) -> Vec<String> {
    header_section(raw)
        .split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
        .collect()
}

#[test]
fn sixty_recipients_are_folded_between_addresses_and_all_read_back() {
    let mut m = mail();
    m.kind = OutKind::Relay;
    m.to = (0..60).map(|i| format!("participant.number{i:02}@customer-{i}.example.test")).collect();
    let raw = built(&m);
    assert_wire_clean(&raw);
    assert_folded(&raw);
    let parsed = MessageParser::default().parse(&raw).unwrap();
    let got: Vec<&str> = parsed.to().unwrap().iter().filter_map(|a| a.address()).collect();
    assert_eq!(got, m.to.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn a_two_thousand_character_subject_is_capped_with_its_token() {
    let mut m = mail();
    m.subject = format!("[Ticket #42] {}", "very long words ".repeat(125));
    let raw = built(&m);
    assert_wire_clean(&raw);
    assert_folded(&raw);
    let subject = MessageParser::default().parse(&raw).unwrap().subject().unwrap().to_owned();
    assert!(subject.starts_with("[Ticket #42] very long words"), "{subject}");
    assert!(subject.ends_with('…'), "{subject}");
    assert!(subject.chars().count() <= "[Ticket #42] ".len() + 200, "{}", subject.chars().count());

    // One unbreakable word: encoded-words still keep lines short.
    m.subject = format!("[Ticket #42] {}", "x".repeat(2000));
    let raw = built(&m);
    assert_wire_clean(&raw);
    assert_folded(&raw);
    let subject = MessageParser::default().parse(&raw).unwrap().subject().unwrap().to_owned();
    assert_eq!(subject, format!("[Ticket #42] {}…", "x".repeat(199)));
}

#[test]
fn absurd_or_invalid_foreign_message_ids_are_dropped_not_fatal() {
    let mut m = mail();
    let long = format!("{}@evil.example", "a".repeat(2000));
    m.in_reply_to = Some(long.clone());
    m.references = vec![
        "root@customer.example".into(),
        long.clone(),
        "with space@x".into(),
        "inject>\r\nBcc: x@evil".into(),
        "newest@customer.example".into(),
    ];
    let raw = built(&m);
    assert_wire_clean(&raw);
    assert_folded(&raw);
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert!(parsed.in_reply_to().as_text().is_none(), "the only In-Reply-To id was unusable");
    let refs = parsed.references().as_text_list().unwrap();
    assert_eq!(refs, ["root@customer.example", "newest@customer.example"]);
    assert!(!header_names(&raw).contains(&"bcc".to_owned()));

    m.references = (0..100).map(|i| format!("ref{i}@customer.example")).collect();
    let raw = built(&m);
    let parsed = MessageParser::default().parse(&raw).unwrap();
    let refs = parsed.references().as_text_list().unwrap();
    assert_eq!(refs.len(), 20);
    assert_eq!(refs[0], "ref0@customer.example");
    assert_eq!(refs[1], "ref81@customer.example");
    assert_eq!(refs[19], "ref99@customer.example");
}

#[test]
fn unicode_subject_and_display_name_round_trip() {
    let mut m = mail();
    m.from_name = "Support Köln – 日本 \"Team\", Inc.".into();
    m.subject = "[Ticket #42] Grüße: Überweisung fehlgeschlagen — 支払いができません 🙁".into();
    let raw = built(&m);
    assert_wire_clean(&raw);
    assert_folded(&raw);
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.subject(), Some(m.subject.as_str()));
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some(m.from_name.as_str()));
    assert_eq!(from.address(), Some("support@example.test"));
}

#[test]
fn header_injection_through_names_and_subjects_adds_no_header() {
    let mut m = mail();
    m.from_name = "Evil\r\nBcc: x@evil".into();
    m.subject = "Hi\r\nBcc: y@evil\nX-Injected: 1\r\n\r\nbody".into();
    let raw = built(&m);
    assert_wire_clean(&raw);
    let names = header_names(&raw);
    assert!(!names.contains(&"bcc".to_owned()), "{names:?}");
    assert!(!names.contains(&"x-injected".to_owned()), "{names:?}");
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert!(parsed.bcc().is_none());
    assert_eq!(parsed.from().unwrap().first().unwrap().name(), Some("Evil Bcc: x@evil"));
    assert_eq!(parsed.subject(), Some("Hi Bcc: y@evil X-Injected: 1 body"));
    assert_eq!(parsed.body_text(0).unwrap(), "Hello,\r\n\r\nwe got your mail.\r\n");
}

#[test]
fn bidi_and_terminal_controls_never_reach_a_header() {
    let mut m = mail();
    m.from_name = "Supp\u{1b}[31mort\u{202E}".into();
    m.subject = "[Ticket #42] invoice\u{2066}\u{7} \u{200F}exe.pdf".into();
    let parsed_raw = built(&m);
    let parsed = MessageParser::default().parse(&parsed_raw).unwrap();
    assert_eq!(parsed.from().unwrap().first().unwrap().name(), Some("Supp[31mort"));
    assert_eq!(parsed.subject(), Some("[Ticket #42] invoice exe.pdf"));
}

#[test]
fn the_headers_ticketd_relies_on_are_there() {
    let raw = built(&mail());
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.message_id(), Some("t42.ack.1@desk.example.test"));
    assert_eq!(parsed.in_reply_to().as_text(), Some("orig-1@customer.example"));
    assert_eq!(parsed.date().unwrap().to_timestamp(), opts().date.timestamp());
    assert_eq!(parsed.header_raw("X-Ticketd-Ticket").map(str::trim), Some("42"));
    assert_eq!(parsed.header_raw("MIME-Version").map(str::trim), Some("1.0"));
    assert_eq!(parsed.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
    assert_eq!(parsed.header_raw("X-Auto-Response-Suppress").map(str::trim), Some("All"));
    let ct = parsed.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
    assert_eq!(ct.attribute("charset").map(str::to_ascii_lowercase).as_deref(), Some("utf-8"));

    let mut relay = mail();
    relay.kind = OutKind::Relay;
    let names = header_names(&built(&relay));
    assert!(!names.contains(&"auto-submitted".to_owned()), "{names:?}");
    assert!(!names.contains(&"x-auto-response-suppress".to_owned()), "{names:?}");
}

#[test]
fn attachments_round_trip_byte_exact() {
    let binary: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let text_with_bare_lf = b"line one\nline two\r\n.\nlone\rcr\n".to_vec();
    let files = [
        ("Ünïcödé Report (final).bin", "application/octet-stream", binary.clone()),
        ("notes.txt", "text/plain", text_with_bare_lf.clone()),
        ("empty", "application/x-empty", Vec::new()),
    ];
    let mut m = mail();
    m.attachments = files
        .iter()
        .enumerate()
        .map(|(i, (name, mime, _))| OutAttachment {
            filename: (*name).into(),
            mime_type: (*mime).into(),
            sha256: i.to_string(),
        })
        .collect();
    let mut read =
        |a: &OutAttachment| -> io::Result<Vec<u8>> { Ok(files[a.sha256.parse::<usize>().unwrap()].2.clone()) };
    let raw = build(&m, &mut read, &opts()).unwrap();
    assert_wire_clean(&raw);
    assert_folded(&raw);
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.body_text(0).unwrap(), "Hello,\r\n\r\nwe got your mail.\r\n");
    assert_eq!(parsed.attachment_count(), 3);
    for (i, (name, mime, bytes)) in files.iter().enumerate() {
        let a = parsed.attachment(i as u32).unwrap();
        assert_eq!(a.attachment_name(), Some(*name));
        let ct = a.content_type().unwrap();
        assert_eq!(format!("{}/{}", ct.ctype(), ct.subtype().unwrap()), *mime);
        assert_eq!(a.contents(), &bytes[..], "attachment {name}");
    }
}

#[test]
fn unbuildable_entries_are_typed_permanent_errors() {
    let mut m = mail();
    m.from_name = "Line\nbreak".into();
    assert!(build(&m, &mut no_files, &opts()).is_ok(), "a bad display name is cleaned, not fatal");

    m.to.push("Evil <x@evil>\r\nBcc: y@evil".into());
    let e = build(&m, &mut no_files, &opts()).unwrap_err();
    assert!(matches!(e, BuildError::Address { field: "To", .. }), "{e}");
    assert!(e.is_permanent());
    assert!(!e.to_string().contains('\n'), "the error is safe to log: {e}");

    let mut m = mail();
    m.to.clear();
    assert!(matches!(build(&m, &mut no_files, &opts()), Err(BuildError::NoRecipients)));

    let mut m = mail();
    m.message_id = "our id".into();
    assert!(matches!(build(&m, &mut no_files, &opts()), Err(BuildError::MessageId(_))));

    let mut m = mail();
    m.attachments.push(OutAttachment {
        filename: "gone.pdf".into(),
        mime_type: "application/pdf".into(),
        sha256: "0".into(),
    });
    let e = build(&m, &mut no_files, &opts()).unwrap_err();
    assert!(e.is_permanent(), "a missing attachment never comes back: {e}");
    let mut busy = |_: &OutAttachment| -> io::Result<Vec<u8>> { Err(io::Error::other("too many open files")) };
    assert!(!build(&m, &mut busy, &opts()).unwrap_err().is_permanent());
}

/// Found by the property test below: a body with lone CRs (old Mac line
/// ends) put bare CRs on the wire.
#[test]
fn lone_carriage_returns_in_a_body_become_line_breaks() {
    for body in ["\r", "one\rtwo\r\nthree\n\rfour\n", "\r\r\n\n", "end\r"] {
        let m = OutMail { body: body.to_owned(), ..mail() };
        let raw = built(&m);
        assert_wire_clean(&raw);
    }
    let m = OutMail { body: "one\rtwo".to_owned(), ..mail() };
    let raw = String::from_utf8(built(&m)).unwrap();
    assert!(raw.contains("one\r\ntwo"), "{raw}");
}

#[test]
fn a_twenty_mib_body_builds_and_stays_within_line_limits() {
    let line = "Ünïcode line with = signs and a few words, long enough to need wrapping later on. ";
    let mut m = mail();
    m.body = line.repeat(20 * 1024 * 1024 / line.len());
    m.body.push_str("\n.\nlast line\n");
    let raw = built(&m);
    assert_wire_clean(&raw);
    assert!(raw.len() > 20 * 1024 * 1024);
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.body_text(0).unwrap().len(), m.body.len() + 3, "three LFs became CRLF");
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9][a-z0-9._+-]{0,20}@[a-z0-9]{1,10}\\.[a-z]{2,5}"
            .prop_filter("dot-atom", |s| ticketd::outbound::build::check_address(s).is_ok()),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn build_never_panics_and_never_writes_an_overlong_line(
        name in any::<String>(),
        subject in prop_oneof![any::<String>(), "\\PC{0,600}", "[a-zA-Z ]{0,3000}"],
        body in prop_oneof![any::<String>(), "[\\x00-\\x7f]{0,3000}"],
        to in prop::collection::vec(address(), 1..70),
        refs in prop::collection::vec(any::<String>(), 0..30),
        in_reply_to in any::<Option<String>>(),
        filename in any::<String>(),
        mime in any::<String>(),
        relay in any::<bool>(),
    ) {
        let m = OutMail {
            ticket: 7,
            kind: if relay { OutKind::Relay } else { OutKind::AgentNotify },
            from_address: "support@example.test".into(),
            from_name: name,
            to,
            subject,
            body,
            message_id: "t7.n1@desk.example.test".into(),
            in_reply_to,
            references: refs,
            attachments: vec![OutAttachment { filename, mime_type: mime, sha256: String::new() }],
            internal_lines: vec![],
        };
        let mut file = |_: &OutAttachment| -> io::Result<Vec<u8>> { Ok(b"data\n\x00\xff".to_vec()) };
        match build(&m, &mut file, &opts()) {
            Ok(raw) => {
                assert_wire_clean(&raw);
                let names = header_names(&raw);
                for once in ["from", "to", "subject", "date", "message-id"] {
                    prop_assert_eq!(names.iter().filter(|n| *n == once).count(), 1, "{}", once);
                }
                prop_assert!(!names.contains(&"bcc".to_owned()));
                let parsed = MessageParser::default().parse(&raw).unwrap();
                prop_assert_eq!(parsed.to().unwrap().iter().count(), m.to.len());
                prop_assert_eq!(parsed.attachment(0).unwrap().contents(), b"data\n\x00\xff");
            }
            Err(e) => prop_assert!(matches!(e, BuildError::Address { .. }), "{}", e),
        }
    }
}
