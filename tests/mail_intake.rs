//! Raw bytes → InboundMail: hostile mail is bounded and contained, every
//! body part arrives, addresses fall back, charsets are detected, and caps
//! leave notes. Every fixture is generated here; nothing is read from disk.

use std::time::{Duration, Instant};

use encoding_rs::Encoding;
use proptest::prelude::*;
use ticketd::mail::{
    InboundMail, MAX_ADDRESSES, MAX_ATTACHMENTS, MAX_AUTH_RESULTS, MAX_BODY_BYTES, MAX_REFERENCES, MAX_SUBJECT_CHARS,
    clean_line, clean_text,
};

/// Stack for the hostile cases: small enough that a recursion per nesting
/// level would overflow it, so a regression aborts the test run instead of
/// passing by luck on a big main-thread stack.
const SMALL_STACK: usize = 256 * 1024;

/// Generous for a debug build on a shared machine; the quadratic behaviour
/// these guard against took 16-80 s in release.
const SLOW: Duration = Duration::from_secs(20);

fn parse(raw: &[u8]) -> InboundMail {
    InboundMail::parse(raw).expect("parses")
}

/// Parses on a thread with [`SMALL_STACK`] and drops the result there too
/// (a recursive drop is as fatal as a recursive parse).
fn parse_small_stack(raw: Vec<u8>) -> (InboundMail, Duration) {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(move || {
            let started = Instant::now();
            let mail = parse(&raw);
            let copy = mail.clone();
            drop(mail);
            (copy, started.elapsed())
        })
        .expect("spawn")
        .join()
        .expect("parse thread")
}

fn mail(headers: &str, body: &str) -> Vec<u8> {
    format!("From: Carla <carla@example.test>\r\nTo: support@example.test\r\nSubject: s\r\n{headers}\r\n{body}")
        .into_bytes()
}

/// A mail whose own Content-Type is the multipart from [`multipart`].
fn mime_mail(entity: &str) -> Vec<u8> {
    format!("From: Carla <carla@example.test>\r\nTo: support@example.test\r\nSubject: s\r\n{entity}").into_bytes()
}

/// Content-Type header, blank line and body of a multipart entity.
fn multipart(kind: &str, parts: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (headers, body) in parts {
        s.push_str(&format!("--XB\r\n{headers}\r\n{body}\r\n"));
    }
    s.push_str("--XB--\r\n");
    format!("Content-Type: multipart/{kind}; boundary=XB\r\n\r\n{s}")
}

fn rfc822_nested(depth: usize) -> Vec<u8> {
    let mut s = String::from(
        "From: c@x.test\nSubject: deep\nContent-Type: multipart/mixed; boundary=top\n\n--top\n\nsee below\n--top\nContent-Type: message/rfc822\n\n",
    );
    for _ in 0..depth {
        s.push_str("Content-Type: message/rfc822\n\n");
    }
    s.push_str("From: x@y.test\n\ninnermost\n--top--\n");
    s.into_bytes()
}

fn multipart_nested(depth: usize) -> Vec<u8> {
    let mut s = String::from("From: c@x.test\nSubject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n");
    for i in 0..depth {
        s.push_str(&format!("--b{i}\nContent-Type: text/plain\n\nlevel {i}\n"));
        s.push_str(&format!("--b{i}\nContent-Type: multipart/mixed; boundary=b{}\n\n", i + 1));
    }
    s.push_str(&format!("--b{depth}\n\ninnermost\n"));
    s.into_bytes()
}

#[test]
fn forty_thousand_nested_messages_on_a_small_stack() {
    let raw = rfc822_nested(40_000);
    assert!(raw.len() > 1_000_000);
    let (m, took) = parse_small_stack(raw);
    assert!(took < SLOW, "{took:?}");
    assert_eq!(m.body, "see below");
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].filename, "message.eml");
    assert_eq!(m.attachments[0].mime_type, "message/rfc822");
    assert!(m.attachments[0].bytes.ends_with(b"innermost"));
}

#[test]
fn forty_thousand_nested_multiparts_stop_at_twenty_levels() {
    let (m, took) = parse_small_stack(multipart_nested(40_000));
    assert!(took < SLOW, "{took:?}");
    let expected: Vec<String> = (0..20).map(|i| format!("level {i}")).collect();
    assert_eq!(m.body, expected.join("\n\n"));
    assert!(m.notes.iter().any(|n| n.contains("deeper than 20 levels")), "{:?}", m.notes);
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].filename, "nested-parts.eml");
    assert!(m.attachments[0].bytes.starts_with(b"Content-Type: multipart/mixed; boundary=b20"));
}

#[test]
fn other_deep_shapes_on_a_small_stack() {
    // Digest children default to message/rfc822; base64 hides the nesting
    // from a scan of the raw bytes.
    let mut digest = String::from("From: c@x.test\nSubject: digest\nContent-Type: multipart/digest; boundary=d\n\n");
    for _ in 0..10_000 {
        digest.push_str("--d\n\nContent-Type: multipart/digest; boundary=d\n\n");
    }
    let (m, _) = parse_small_stack(digest.into_bytes());
    assert!(m.attachments.iter().all(|a| a.mime_type == "message/rfc822"));

    let inner = String::from_utf8(rfc822_nested(40_000)).unwrap();
    let encoded = base64(inner.as_bytes());
    let raw = format!(
        "From: c@x.test\nSubject: b64\nContent-Type: multipart/mixed; boundary=o\n\n--o\n\nhello\n--o\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{encoded}\n--o--\n"
    );
    let (m, _) = parse_small_stack(raw.into_bytes());
    assert_eq!(m.body, "hello");
    assert_eq!(m.attachments[0].bytes, inner.as_bytes());

    let n = 100_000;
    let html = format!("<html><body>{}deep text{}</body></html>", "<div>".repeat(n), "</div>".repeat(n));
    let raw = format!("From: c@x.test\nSubject: divs\nContent-Type: text/html\n\n{html}");
    assert!(raw.len() > 1_000_000);
    let (m, took) = parse_small_stack(raw.into_bytes());
    assert_eq!(m.body, "deep text");
    assert!(took < SLOW, "{took:?}");

    let quotes = format!("<p>top</p>{}x", "<blockquote><ul><li><ol><li><a href=\"u\">".repeat(20_000));
    let raw = format!("From: c@x.test\nSubject: q\nContent-Type: text/html\n\n{quotes}");
    let (m, took) = parse_small_stack(raw.into_bytes());
    assert!(m.body.starts_with("top\n\n> > > > > > > > "), "{:?}", &m.body[..80.min(m.body.len())]);
    assert!(took < SLOW, "{took:?}");
}

#[test]
fn missing_boundaries_and_many_parts_stay_linear() {
    let mut s = String::from("From: c@x.test\nSubject: parts\nContent-Type: multipart/mixed; boundary=B\n\n");
    for i in 0..16_000 {
        s.push_str(&format!("--B\nContent-Type: multipart/mixed; boundary=nowhere{i}\n\n{}\n", "x".repeat(100)));
    }
    s.push_str("--B--\n");
    let started = Instant::now();
    let m = parse(s.as_bytes());
    assert!(started.elapsed() < SLOW, "{:?}", started.elapsed());
    assert!(m.notes.iter().any(|n| n.contains("more than 1000 MIME parts")), "{:?}", m.notes);

    let mut s =
        String::from("From: c@x.test\nSubject: tiny\nContent-Type: multipart/mixed; boundary=B\n\n--B\n\nbody text\n");
    for i in 0..10_000 {
        s.push_str(&format!("--B\nContent-Type: application/octet-stream; name=f{i}.bin\n\n{i}\n"));
    }
    s.push_str("--B--\n");
    let m = parse(s.as_bytes());
    assert_eq!(m.body, "body text");
    assert_eq!(m.attachments.len(), MAX_ATTACHMENTS);
    assert_eq!(m.attachments[0].filename, "f0.bin");
    assert!(m.notes.iter().any(|n| n == "898 attachments over the limit of 100 were not kept"), "{:?}", m.notes);
}

#[test]
fn every_body_part_reaches_the_ticket() {
    let body = multipart(
        "mixed",
        &[
            ("Content-Type: text/plain\r\n", "first plain"),
            ("Content-Type: text/html\r\n", "<p>then <b>html</b></p>"),
            ("Content-Type: image/png\r\nContent-Disposition: inline\r\n", "PNG"),
            ("", "no content type at all"),
            ("Content-Type: text/html\r\nContent-Disposition: attachment; filename=page.html\r\n", "<p>file</p>"),
        ],
    );
    let m = parse(&mime_mail(&body));
    assert_eq!(m.body, "first plain\n\nthen html\n\nno content type at all");
    let names: Vec<&str> = m.attachments.iter().map(|a| a.filename.as_str()).collect();
    assert_eq!(names, vec!["image.png", "page.html"]);
    assert!(m.notes.iter().any(|n| n == "part without Content-Type read as text/plain"), "{:?}", m.notes);

    let alt_blank_plain = multipart(
        "alternative",
        &[("Content-Type: text/plain\r\n", "  \r\n "), ("Content-Type: text/html\r\n", "<div>only in html</div>")],
    );
    assert_eq!(parse(&mime_mail(&alt_blank_plain)).body, "only in html");
    let alt = multipart(
        "alternative",
        &[("Content-Type: text/html\r\n", "<div>html copy</div>"), ("Content-Type: text/plain\r\n", "plain copy")],
    );
    let m = parse(&mime_mail(&alt));
    assert_eq!(m.body, "plain copy");
    assert!(m.attachments.is_empty());

    let empty = "Content-Type: multipart/mixed; boundary=E\r\n\r\n--E--\r\n";
    let m = parse(&mime_mail(empty));
    assert_eq!(m.body, "");
    assert!(m.notes.iter().any(|n| n.contains("empty multipart")), "{:?}", m.notes);

    let no_ct = parse(b"From: c@x.test\nSubject: plain\n\nno MIME at all\n");
    assert_eq!(no_ct.body, "no MIME at all");
    assert!(no_ct.notes.is_empty(), "{:?}", no_ct.notes);
}

#[test]
fn unusable_from_falls_back_or_is_explained() {
    let m = parse(b"From: Bob <@example.test>\nSender: bob@example.test\nSubject: x\n\nhi\n");
    assert_eq!(m.from.as_ref().unwrap().address, "bob@example.test");
    assert!(m.notes.iter().any(|n| n.contains("Sender used")), "{:?}", m.notes);
    let m = parse(b"From: garbage\nReply-To: <Reply@Example.TEST>\nSubject: x\n\nhi\n");
    assert_eq!(m.from.as_ref().unwrap().address, "reply@example.test");
    let m = parse(b"Return-Path: <rp@example.test>\nFrom: nobody@\nSubject: x\n\nhi\n");
    assert_eq!(m.from.as_ref().unwrap().address, "rp@example.test");
    let m = parse(b"From: @example.test\nSubject: x\n\nhi\n");
    assert_eq!(m.from, None);
    assert!(m.from_problem.as_deref().unwrap().contains("no usable address"), "{:?}", m.from_problem);
    let m = parse(b"From: a b@exa mple.test, Ok@Ok.test\nSubject: x\n\nhi\n");
    assert_eq!(m.from.unwrap().address, "ok@ok.test");
}

const SAMPLES: &[(&str, &str)] = &[
    (
        "ISO-2022-JP",
        "お問い合わせいただきありがとうございます。ご注文の商品はまだ届いておりません。至急ご確認をお願いいたします。",
    ),
    (
        "Shift_JIS",
        "お問い合わせいただきありがとうございます。ご注文の商品はまだ届いておりません。至急ご確認をお願いいたします。",
    ),
    (
        "EUC-JP",
        "お問い合わせいただきありがとうございます。ご注文の商品はまだ届いておりません。至急ご確認をお願いいたします。",
    ),
    ("GBK", "您好，我们的订单至今尚未收到。请尽快帮我们查询物流信息，谢谢您的帮助。"),
    ("gb18030", "您好，我们的订单至今尚未收到。请尽快帮我们查询物流信息，谢谢您的帮助。"),
    ("Big5", "您好，我們的訂單至今尚未收到。請盡快幫我們查詢物流資訊，謝謝您的幫助。"),
    ("EUC-KR", "안녕하세요. 주문한 상품이 아직 도착하지 않았습니다. 빠른 확인 부탁드립니다. 감사합니다."),
    ("KOI8-R", "Здравствуйте! Мы до сих пор не получили наш заказ. Пожалуйста, проверьте статус доставки. Спасибо."),
    (
        "windows-1251",
        "Здравствуйте! Мы до сих пор не получили наш заказ. Пожалуйста, проверьте статус доставки. Спасибо.",
    ),
    (
        "ISO-8859-2",
        "Dobrý den, naše objednávka stále nedorazila. Prosím, zkontrolujte stav doručení co nejdříve. Děkuji.",
    ),
    (
        "windows-1250",
        "Dzień dobry, nasze zamówienie wciąż nie dotarło. Proszę sprawdzić status dostawy. Dziękuję bardzo.",
    ),
    (
        "windows-1252",
        "Grüße aus Köln! Unsere Bestellung ist noch nicht angekommen – bitte prüfen Sie den Status. Merci, François.",
    ),
];

fn encode(label: &str, text: &str) -> Vec<u8> {
    let enc = Encoding::for_label(label.as_bytes()).expect("known label");
    let (bytes, _, unmappable) = enc.encode(text);
    assert!(!unmappable, "{label} cannot encode the sample");
    assert!(std::str::from_utf8(&bytes).is_err() || label == "ISO-2022-JP", "{label} sample is valid UTF-8");
    bytes.into_owned()
}

fn raw_with(headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut raw = b"From: c@x.test\r\nTo: support@example.test\r\n".to_vec();
    raw.extend_from_slice(headers);
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    raw
}

#[test]
fn charsets_declared_undeclared_and_lying() {
    let mut ran = 0;
    for (label, text) in SAMPLES {
        let bytes = encode(label, text);
        let declared =
            parse(&raw_with(format!("Subject: x\r\nContent-Type: text/plain; charset={label}\r\n").as_bytes(), &bytes));
        assert_eq!(declared.body, *text, "declared {label}");
        assert!(declared.notes.is_empty(), "declared {label}: {:?}", declared.notes);

        let undeclared = parse(&raw_with(b"Subject: x\r\n", &bytes));
        assert_eq!(undeclared.body, *text, "undeclared {label}");
        if *label != "ISO-2022-JP" {
            assert!(
                undeclared.notes.iter().any(|n| n.starts_with("charset guessed as")),
                "{label}: {:?}",
                undeclared.notes
            );
        }

        let lying = parse(&raw_with(b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n", &bytes));
        assert_eq!(lying.body, *text, "declared utf-8 but {label}");
        assert!(!lying.body.contains('\u{FFFD}'));
        ran += 1;
    }
    assert_eq!(ran, SAMPLES.len());

    let html = encode(
        "windows-1251",
        "<html><head><meta charset=\"windows-1251\"></head><body><p>Добрый день, заказ не пришёл.</p></body></html>",
    );
    let m = parse(&raw_with(b"Subject: x\r\nContent-Type: text/html\r\n", &html));
    assert_eq!(m.body, "Добрый день, заказ не пришёл.");

    let unknown = parse(&raw_with(
        b"Subject: x\r\nContent-Type: text/plain; charset=klingon-8\r\n",
        &encode("windows-1252", "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e"),
    ));
    assert_eq!(unknown.body, "café crème brûlée");
    assert!(unknown.notes.iter().any(|n| n.starts_with("unknown charset klingon-8")), "{:?}", unknown.notes);
}

#[test]
fn raw_eight_bit_headers_are_decoded_not_replaced() {
    for (label, text) in SAMPLES {
        let short: String = text.chars().take(12).collect();
        let mut headers = b"Subject: ".to_vec();
        headers.extend(encode(label, &short));
        headers.extend(format!("\r\nContent-Type: text/plain; charset={label}\r\n").as_bytes());
        let m = parse(&raw_with(&headers, &encode(label, text)));
        assert_eq!(m.subject, short, "{label}");
    }

    // No charset declared anywhere: the header fields alone are guessed.
    let subject = "Проблема с доставкой заказа номер 4711, срочно";
    let mut headers = b"Subject: ".to_vec();
    headers.extend(encode("windows-1251", subject));
    headers.extend(b"\r\n");
    let raw = [
        b"From: ".as_slice(),
        &encode("windows-1251", "Пётр Иванов"),
        b" <petr@x.test>\r\n",
        &headers,
        b"\r\nbody\r\n",
    ]
    .concat();
    let m = parse(&raw);
    assert_eq!(m.subject, subject);
    assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("Пётр Иванов"));
    assert!(m.notes.iter().any(|n| n == "raw 8-bit header text read as windows-1251"), "{:?}", m.notes);

    let jp = encode("ISO-2022-JP", "配送について");
    let raw = [b"From: c@x.test\r\nSubject: ".as_slice(), &jp, b"\r\n\r\nbody\r\n"].concat();
    assert_eq!(parse(&raw).subject, "配送について");

    let latin = [
        b"From: c@x.test\r\nSubject: ".as_slice(),
        &encode("windows-1252", "Rückfrage zur Lieferung für Müller"),
        b"\r\n\r\nbody\r\n",
    ]
    .concat();
    assert_eq!(parse(&latin).subject, "Rückfrage zur Lieferung für Müller");
}

#[test]
fn caps_apply_with_notes() {
    let m = parse(&mail(&format!("X-Long: {}\r\n", "y".repeat(3_000_000)), "b"));
    assert_eq!(m.subject, "s");
    assert!(m.notes.iter().any(|n| n.contains("overlong headers")), "{:?}", m.notes);

    let subject = "Ü".repeat(1_000_000);
    let raw = format!("From: c@x.test\r\nSubject: {subject}\r\n\r\nb");
    let m = parse(raw.as_bytes());
    assert_eq!(m.subject.chars().count(), MAX_SUBJECT_CHARS);
    assert!(m.notes.iter().any(|n| n.contains("subject longer than")), "{:?}", m.notes);

    let cc: Vec<String> = (0..40_000).map(|i| format!("p{i}@x.test")).collect();
    let m = parse(&mail(&format!("Cc: {}\r\n", cc.join(", ")), "b"));
    assert_eq!(m.cc.len(), MAX_ADDRESSES);
    assert_eq!(m.cc[0], "p0@x.test");
    assert!(m.notes.iter().any(|n| n.contains("Cc addresses over the limit of 500")), "{:?}", m.notes);

    let mut refs: Vec<String> = (0..1000).map(|i| format!("<r{i}@x.test>")).collect();
    refs.insert(500, format!("<{}@x.test>", "l".repeat(300)));
    let m = parse(&mail(&format!("References: {}\r\n", refs.join(" ")), "b"));
    assert_eq!(m.references.len(), MAX_REFERENCES);
    assert_eq!(m.references.last().map(String::as_str), Some("r999@x.test"));
    assert!(m.references.iter().all(|r| r.len() < 250));
    assert_eq!(m.notes.iter().filter(|n| n.contains("References")).count(), 2, "{:?}", m.notes);

    let ar: String = (0..50).map(|i| format!("Authentication-Results: mx{i}.test; dkim=pass\r\n")).collect();
    let m = parse(&mail(&ar, "b"));
    assert_eq!(m.auth_results.len(), MAX_AUTH_RESULTS);
    assert!(m.auth_results[0].starts_with("mx0.test"));

    let big = "line of text\r\n".repeat(20 * 1024 * 1024 / 14);
    let started = Instant::now();
    let m = parse(&mail("", &big));
    assert!(started.elapsed() < SLOW);
    assert!(m.body.len() <= MAX_BODY_BYTES && m.body.len() > MAX_BODY_BYTES - 100);
    assert!(m.notes.iter().any(|n| n == "text after 2 MiB was cut; the original mail is kept"), "{:?}", m.notes);
}

#[test]
fn control_and_bidi_characters_are_cleaned() {
    assert_eq!(clean_line("a\u{1b}[31mred\u{0}\r\n b\u{202e}c\u{2066}d\u{200f}"), "a [31mred bcd");
    assert_eq!(
        clean_text("one\r\ntwo\rthree\t\u{1b}[2Jx\u{0}\u{202e}y\u{200f}\u{85}z"),
        "one\ntwo\nthree\t[2Jxy\u{200f}z"
    );

    let body = multipart(
        "mixed",
        &[
            ("Content-Type: text/plain\r\n", "hi\u{1b}]0;owned\u{7}\r\nthere\0"),
            ("Content-Type: application/octet-stream; name=\"invoice\u{202e}fdp.exe\"\r\n", "MZ"),
        ],
    );
    let raw = format!("From: \"Ann\u{202e}\u{1b}[1m\" <ann@x.test>\r\nSubject: a\u{1b}[2J\u{202e}b\r\n{}", body);
    let m = parse(raw.as_bytes());
    assert_eq!(m.subject, "a [2Jb");
    assert_eq!(m.from.unwrap().name.as_deref(), Some("Ann [1m"));
    assert_eq!(m.body, "hi]0;owned\nthere");
    assert_eq!(m.attachments[0].filename, "invoicefdp.exe");
}

#[test]
fn content_hash_sees_what_a_person_sees() {
    let copy = |received: &str, id: &str, text: &str| {
        let raw = format!(
            "Received: {received}\r\nFrom: Ann <ann@x.test>\r\nSubject: Help\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n\r\n{text}\r\n"
        );
        parse(raw.as_bytes())
    };
    let a = copy("from mx1.test by mx2.test", "same@x", "the printer is broken");
    let b = copy("from relay.test by other.test; Tue", "same@x", "the printer is broken");
    let c = copy("from mx1.test by mx2.test", "same@x", "a different mail");
    assert_eq!(a.content_sha256, b.content_sha256);
    assert_ne!(a.raw_sha256, b.raw_sha256);
    assert_ne!(a.content_sha256, c.content_sha256);
    assert_eq!(a.content_sha256.len(), 64);
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const SEEDS: &[&str] = &[
    "From: A <a@x.test>\r\nSubject: Re: hi\r\nContent-Type: multipart/alternative; boundary=\"q\"\r\n\r\n--q\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =\r\nok\r\n--q\r\nContent-Type: text/html\r\n\r\n<p>caf&eacute; <a href=x>ok</a></p><blockquote>q</blockquote>\r\n--q--\r\n",
    "From: a@x.test\nContent-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: message/rfc822\n\nContent-Type: multipart/mixed; boundary=n\n\n--n\n\ninner\n--n--\n--m\nContent-Type: image/gif; name=\"\u{202e}x.gif\"\nContent-Transfer-Encoding: base64\n\nR0lGODlhAQABAAAAACw=\n--m--\n",
    "From: a@x.test\nSubject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\n\n--r\n\nfailed\n--r\nContent-Type: message/delivery-status\n\nAction: failed\nStatus: 5.1.1\n--r\nContent-Type: text/rfc822-headers\n\nMessage-ID: <o@x>\n--r--\n",
];

fn check_invariants(raw: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(m) = InboundMail::parse(raw) {
        prop_assert!(!m.body.contains('\r') && !m.body.contains('\0'));
        prop_assert!(m.body.len() <= MAX_BODY_BYTES);
        prop_assert!(!m.subject.chars().any(char::is_control));
        prop_assert!(m.subject.chars().count() <= MAX_SUBJECT_CHARS);
        prop_assert!(m.attachments.len() <= MAX_ATTACHMENTS);
        prop_assert!(m.notes.len() <= 30 && m.notes.iter().all(|n| n.len() < 200));
        let attached: usize = m.attachments.iter().map(|a| a.bytes.len()).sum();
        prop_assert!(attached <= raw.len(), "{} attachment bytes from {} raw", attached, raw.len());
        for a in &m.attachments {
            let unsafe_name = a.filename.is_empty() || a.filename.contains(['/', '\\', '\u{202e}']);
            prop_assert!(!unsafe_name, "{:?}", a.filename);
        }
        if let Some(f) = &m.from {
            prop_assert!(f.address.contains('@') && !f.address.starts_with('@') && !f.address.ends_with('@'));
        }
        prop_assert_eq!(m.from.is_none(), m.from_problem.is_some());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_keep_the_invariants(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check_invariants(&raw)?;
    }

    #[test]
    fn mutated_mail_keeps_the_invariants(
        seed in 0..SEEDS.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..60),
    ) {
        let mut raw = SEEDS[seed].as_bytes().to_vec();
        for (pos, byte, op) in edits {
            let pos = pos % (raw.len() + 1);
            match op {
                0 if pos < raw.len() => raw[pos] = byte,
                1 => raw.insert(pos, byte),
                2 if pos < raw.len() => { raw.remove(pos); }
                // Repeating a slice builds nesting and long runs.
                _ => {
                    let end = (pos + usize::from(byte)).min(raw.len());
                    let piece = raw[pos..end].to_vec();
                    for _ in 0..(byte % 8) {
                        raw.splice(pos..pos, piece.iter().copied());
                    }
                }
            }
        }
        check_invariants(&raw)?;
    }
}
