use proptest::prelude::*;

use super::*;
use crate::mail::InboundMail;

const HOST: &str = "mx.example.test";

fn cfg(border: Border, placement: Placement, threshold: Option<f64>) -> SpamConfig {
    SpamConfig {
        border,
        placement,
        border_host: Some(HOST.to_owned()),
        score_threshold: threshold,
        ..SpamConfig::default()
    }
}

fn sa() -> SpamConfig {
    cfg(Border::SpamAssassin, Placement::AboveBorder, None)
}

fn verdict_of(raw: &str, c: &SpamConfig) -> Option<Verdict> {
    let mail = InboundMail::parse(raw.as_bytes()).expect("fixture parses");
    border_verdict(&mail.trace, c)
}

const BORDER: &str = "Received: from client.example.net (client.example.net [203.0.113.7])\r\n\
\tby mx.example.test (Postfix) with ESMTP id 6B1359A83E5\r\n\
\tfor <support@example.test>; Mon,  7 Dec 2026 08:01:27 +0000 (UTC)\r\n";
const LMTP: &str = "Received: from mx.example.test ([127.0.0.1])\r\n\tby mx.example.test with LMTP id x\r\n\
\tfor <support@example.test>; Mon, 07 Dec 2026 08:01:49 +0000\r\n";
const BODY: &str = "From: Sam <sam@example.net>\r\nTo: support@example.test\r\nSubject: s\r\n\
Message-ID: <m@example.net>\r\nDate: Mon, 7 Dec 2026 06:00:00 +0000\r\n\r\nhello\r\n";

const SA_SPAM: &str = "X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=7.3 required=5.0 tests=A,B\r\n";
const SA_HAM: &str = "X-Spam-Status: No, score=0.4 required=5.0 tests=A\r\n";

fn mail(above: &str, below: &str) -> String {
    format!("{above}{LMTP}{BORDER}{below}{BODY}")
}

#[test]
fn golden_fixtures_in_lf_and_crlf() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/spam/fixtures");
    let table = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    let mut ran = 0;
    for line in table.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, border, placement, threshold, expect, score] = f.as_slice() else {
            panic!("bad line in expected.txt: {line}")
        };
        let c = cfg(
            border.parse().expect("border"),
            placement.parse().expect("placement"),
            (*threshold != "-").then(|| threshold.parse().expect("threshold")),
        );
        let text = std::fs::read_to_string(dir.join(format!("{name}.eml"))).expect("fixture");
        let lf = text.replace("\r\n", "\n");
        for raw in [lf.clone(), lf.replace('\n', "\r\n")] {
            let got = verdict_of(&raw, &c);
            let what = format!("{name} with {border} {placement} threshold {threshold}: {got:?}");
            match *expect {
                "none" => assert!(got.is_none(), "{what}"),
                "spam" | "ham" => {
                    let v = got.as_ref().unwrap_or_else(|| panic!("{what}"));
                    assert_eq!(v.spam, *expect == "spam", "{what}");
                    assert_eq!(v.source.code(), format!("border_{border}"), "{what}");
                    let want: Option<f64> = (*score != "-").then(|| score.parse().expect("score"));
                    assert_eq!(v.score, want, "{what}");
                    assert!(!v.reason.is_empty() && !v.reason.contains('\n'), "{what}");
                }
                other => panic!("bad expectation {other:?} in expected.txt"),
            }
            ran += 1;
        }
    }
    assert!(ran >= 58, "only {ran} golden cases ran");
}

#[test]
fn only_headers_above_the_border_count_in_both_directions() {
    // The border's own verdict above its Received line (and above internal
    // hops such as LMTP) counts.
    let v = verdict_of(&mail(SA_SPAM, ""), &sa()).unwrap();
    assert!(v.spam);
    assert_eq!(v.score, Some(7.3));
    assert_eq!(v.source, VerdictSource::Border(Filter::SpamAssassin));
    assert_eq!(v.reason, "SpamAssassin at the border: X-Spam-Status Yes, X-Spam-Flag YES, score 7.3 (required 5)");
    // A forged "clean" below never cleans spam.
    let forged_clean = "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-9.0 required=5.0\r\nX-Spam-Score: -9\r\n";
    let v = verdict_of(&mail(SA_SPAM, forged_clean), &sa()).unwrap();
    assert!(v.spam);
    assert_eq!(v.score, Some(7.3));
    // A forged "spam" below never holds ham.
    let v = verdict_of(&mail(SA_HAM, SA_SPAM), &sa()).unwrap();
    assert!(!v.spam);
    // Forged alone: nothing to believe.
    assert_eq!(verdict_of(&mail("", SA_SPAM), &sa()), None);
    assert_eq!(verdict_of(&mail("", forged_clean), &sa()), None);
    // Above some Received that is not our border's: nothing counts.
    let elsewhere = format!("{SA_SPAM}{}{BODY}", BORDER.replace("by mx.example.test", "by mx.evil.test"));
    assert_eq!(verdict_of(&elsewhere, &sa()), None);
    // No Received at all: nothing counts.
    assert_eq!(verdict_of(&format!("{SA_SPAM}{BODY}"), &sa()), None);
    // No border_host known: nothing counts.
    let no_host = SpamConfig { border_host: None, ..sa() };
    assert_eq!(verdict_of(&mail(SA_SPAM, ""), &no_host), None);
    // border = "none": ticketd believes nobody.
    assert_eq!(verdict_of(&mail(SA_SPAM, ""), &cfg(Border::None, Placement::AboveBorder, None)), None);
}

#[test]
fn the_border_line_is_matched_by_host_not_by_text() {
    // "by mx.example.test" inside a comment of another hop is not a border line.
    let other = "Received: from a (by mx.example.test) by mx.evil.test with SMTP; Mon, 7 Dec 2026 08:00:00 +0000\r\n";
    assert_eq!(verdict_of(&format!("{SA_SPAM}{other}{BODY}"), &sa()), None);
    // Host names compare without case.
    let upper = BORDER.replace("by mx.example.test", "by MX.Example.TEST");
    assert!(verdict_of(&format!("{SA_SPAM}{upper}{BODY}"), &sa()).unwrap().spam);
}

#[test]
fn spamassassin_wrapper_counts_only_as_the_topmost_border_line() {
    let wrapper = "Received: from localhost by mx.example.test\r\n\twith SpamAssassin (version 4.0.1);\r\n\
\tMon, 07 Dec 2026 08:01:49 +0000\r\n";
    let genuine = format!("{wrapper}From: a@example.net\r\nSubject: s\r\n{SA_SPAM}MIME-Version: 1.0\r\n\r\nx\r\n");
    assert!(verdict_of(&genuine, &sa()).unwrap().spam);
    // The same wrapper line written by a sender stands below the border's.
    let forged = format!("{BORDER}{wrapper}{SA_HAM}{BODY}");
    assert_eq!(verdict_of(&forged, &sa()), None);
    // rspamd has no wrapper.
    let r = cfg(Border::Rspamd, Placement::AboveBorder, None);
    let rspamd_style = format!("{wrapper}From: a@example.net\r\nX-Spam: Yes\r\n\r\nx\r\n");
    assert_eq!(verdict_of(&rspamd_style, &r), None);
}

#[test]
fn rspamd_headers_above_the_border() {
    let r = cfg(Border::Rspamd, Placement::AboveBorder, None);
    let above = "X-Spamd-Result: default: False [9.20 / 15.00];\r\n\tLAB_SPAMMY(8.00)[x];\r\n\
X-Rspamd-Action: add header\r\nX-Spam: Yes\r\n";
    let v = verdict_of(&mail(above, ""), &r).unwrap();
    assert!(v.spam);
    assert_eq!(v.score, Some(9.2));
    assert_eq!(v.reason, "rspamd at the border: action add header, score 9.2 / 15");
    let greylist = "X-Spamd-Result: default: False [4.50 / 15.00]\r\nX-Rspamd-Action: greylist\r\n";
    assert!(!verdict_of(&mail(greylist, ""), &r).unwrap().spam, "greylisting is a delay, not a verdict");
    let result_only = "X-Spamd-Result: default: True [16.00 / 15.00]\r\n";
    assert!(verdict_of(&mail(result_only, ""), &r).unwrap().spam);
    let x_spam_no = "X-Spam: No\r\n";
    assert_eq!(verdict_of(&mail(x_spam_no, ""), &r), None, "rspamd never writes No");
    // The threshold decides when a score is known.
    let t = cfg(Border::Rspamd, Placement::AboveBorder, Some(4.0));
    assert!(verdict_of(&mail(greylist, ""), &t).unwrap().spam);
    let t = cfg(Border::Rspamd, Placement::AboveBorder, Some(10.0));
    let v = verdict_of(&mail(above, ""), &t).unwrap();
    assert!(!v.spam);
    assert_eq!(v.reason, "rspamd at the border: score 9.2 < threshold 10");
}

#[test]
fn milter_mode_believes_only_the_header_the_filter_controls() {
    let r = cfg(Border::Rspamd, Placement::Milter, None);
    // rspamd's milter appends X-Spam at the bottom; the sender's
    // X-Spamd-Result/X-Rspamd-Action (which rspamd leaves alone by
    // default) do not count either way.
    let bottom = format!(
        "{BORDER}X-Rspamd-Action: no action\r\nX-Spamd-Result: default: False [0.0 / 15.0]\r\n{}",
        BODY.replace("\r\n\r\n", "\r\nX-Spam: Yes\r\n\r\n")
    );
    let v = verdict_of(&bottom, &r).unwrap();
    assert!(v.spam);
    assert_eq!(v.score, None);
    assert_eq!(v.reason, "rspamd at the border (milter): X-Spam: Yes");
    let forged_spam =
        format!("{BORDER}X-Rspamd-Action: reject\r\nX-Spamd-Result: default: True [99.0 / 15.0]\r\n{BODY}");
    assert_eq!(verdict_of(&forged_spam, &r), None);
    // spamass-milter's headers cannot be told from a sender's: none count.
    let s = cfg(Border::SpamAssassin, Placement::Milter, None);
    let first = format!("{BORDER}X-Spam-Status: Yes, score=8.0 required=5.0\r\nX-Spam-Flag: YES\r\n{BODY}");
    assert_eq!(verdict_of(&first, &s), None);
}

#[test]
fn value_parsers() {
    let st = parse_status("Yes, score=7.3 required=5.0 tests=GTUBE,NO_RELAYS autolearn=no version=4.0.1").unwrap();
    assert_eq!(st, SpamStatus { yes: true, score: Some(7.3), required: Some(5.0) });
    assert_eq!(parse_status("No, hits=-0.1 required=5").unwrap().score, Some(-0.1));
    assert_eq!(parse_status("yes,score=9.20").unwrap(), SpamStatus { yes: true, score: Some(9.2), required: None });
    assert_eq!(
        parse_status("Yes, score=NaN required=inf").unwrap(),
        SpamStatus { yes: true, score: None, required: None }
    );
    assert_eq!(parse_status("Maybe, score=3"), None);
    assert_eq!(parse_status(""), None);
    let r = parse_spamd_result("default: True [12.40 / 15.00]; GTUBE(0.00)[]; R_SPF_NA(0.00)[no SPF record]").unwrap();
    assert_eq!(r, SpamdResult { spam: true, score: 12.4, required: 15.0 });
    assert_eq!(parse_spamd_result("default: False [-1.5/15]").unwrap().score, -1.5);
    for bad in
        ["default: True", "default: Maybe [1 / 2]", "True [1 / 2]", "default: True [x / 2]", "default: True [1 2]"]
    {
        assert_eq!(parse_spamd_result(bad), None, "{bad}");
    }
    assert_eq!(Action::parse("add header"), Some(Action::AddHeader));
    assert_eq!(Action::parse(" Add_Header "), Some(Action::AddHeader));
    assert_eq!(Action::parse("no action"), Some(Action::NoAction));
    assert_eq!(Action::parse("rewrite subject"), Some(Action::RewriteSubject));
    assert_eq!(Action::parse("soft reject"), Some(Action::SoftReject));
    assert_eq!(Action::parse("reject"), Some(Action::Reject));
    assert_eq!(Action::parse("reject now"), None);
    assert_eq!(Action::parse("discard"), None);
    assert!(Action::Reject.is_spam() && !Action::SoftReject.is_spam() && !Action::Greylist.is_spam());
    assert_eq!(number(" 1e999 "), None);
    assert_eq!(number("1".repeat(MAX_NUMBER + 1).as_str()), None);
    assert_eq!(number("-0.5"), Some(-0.5));
    assert_eq!(yes_no("YES"), Some(true));
    assert_eq!(yes_no("yess"), None);
}

#[test]
fn hostile_verdict_headers_are_bounded() {
    // A megabyte of X-Spam-Status above the border: its start is read.
    let long = format!("X-Spam-Status: Yes, score=6.5 required=5.0 tests={}\r\n", "A,".repeat(500_000));
    let v = verdict_of(&mail(&long, ""), &sa()).unwrap();
    assert!(v.spam);
    assert_eq!(v.score, Some(6.5));
    // Garbage values: no verdict, no panic.
    let garbage = "X-Spam-Status: \u{0}\u{ff}=Yes, score=7\r\nX-Spam-Flag: =?UTF-8?B?WUVT?=\r\nX-Spam-Score: 1e400\r\n";
    assert_eq!(verdict_of(&mail(garbage, ""), &sa()), None);
    // Thousands of forged headers below the border change nothing.
    let flood: String = (0..5000)
        .map(|i| format!("X-Spam-Status: No, score=-{i}\r\nX-Spam: No\r\nReceived: by mx.example.test; x\r\n"))
        .collect();
    let v = verdict_of(&mail(SA_SPAM, &flood), &sa()).unwrap();
    assert!(v.spam);
    // rspamd milter: a flood of other verdict headers cannot push its X-Spam out.
    let flood: String =
        (0..5000).map(|_| "X-Spamd-Result: default: False [0 / 15]\r\nX-Rspamd-Action: no action\r\n").collect();
    let raw = format!("{BORDER}{flood}{}", BODY.replace("\r\n\r\n", "\r\nX-Spam: Yes\r\n\r\n"));
    assert!(verdict_of(&raw, &cfg(Border::Rspamd, Placement::Milter, None)).unwrap().spam);
}

fn header_line() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "X-Spam-Flag",
        "X-Spam-Status",
        "X-Spam-Score",
        "X-Spam",
        "X-Spamd-Result",
        "X-Rspamd-Action",
        "Received",
        "x-spam-status",
        "X-Spam-Level",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "YES".to_owned(),
            "No, score=-5.0 required=5.0".to_owned(),
            "Yes, score=50 required=5".to_owned(),
            "default: True [99.0 / 15.0]".to_owned(),
            "default: False [-9 / 15]".to_owned(),
            "reject".to_owned(),
            "no action".to_owned(),
            "by mx.example.test with SpamAssassin; x".to_owned(),
            "from localhost by mx.example.test; x".to_owned(),
        ]),
        "[ -~]{0,80}",
        ".{0,40}",
    ];
    (name, value).prop_map(|(n, v)| format!("{n}: {v}\r\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever a sender writes below the border's line, the verdict stays
    /// what the border's own headers say.
    #[test]
    fn forged_headers_below_the_border_never_change_the_verdict(
        above in prop::sample::select(vec!["", SA_SPAM, SA_HAM, "X-Spam: Yes\r\nX-Rspamd-Action: add header\r\n"]),
        forged in prop::collection::vec(header_line(), 0..40),
        border in prop::sample::select(vec![Border::SpamAssassin, Border::Rspamd]),
        threshold in prop::option::of(-5.0f64..20.0),
    ) {
        let c = cfg(border, Placement::AboveBorder, threshold);
        let clean = verdict_of(&mail(above, ""), &c);
        let attacked = verdict_of(&mail(above, &forged.concat()), &c);
        prop_assert_eq!(clean, attacked);
    }

    #[test]
    fn any_bytes_give_a_verdict_or_none(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        placement in prop::sample::select(vec![Placement::AboveBorder, Placement::Milter]),
        border in prop::sample::select(vec![Border::SpamAssassin, Border::Rspamd]),
    ) {
        let c = cfg(border, placement, Some(5.0));
        for prefix in ["", "X-Spam-Status: ", "X-Spamd-Result: ", "X-Rspamd-Action: ", "Received: "] {
            let mut raw = prefix.as_bytes().to_vec();
            raw.extend_from_slice(&bytes);
            raw.extend_from_slice(BODY.as_bytes());
            if let Ok(m) = InboundMail::parse(&raw) {
                let _ = border_verdict(&m.trace, &c);
            }
        }
        let s = String::from_utf8_lossy(&bytes);
        let _ = (parse_status(&s), parse_spamd_result(&s), Action::parse(&s), number(&s), yes_no(&s));
    }
}

#[test]
fn the_trace_keeps_verdict_headers_in_place_and_bounded() {
    use crate::mail::{MAX_VERDICT_HEADERS, MAX_VERDICT_VALUE};
    let many: String = (0..50).map(|i| format!("X-Spam-Status: No, score={i}\r\n")).collect();
    let long = format!("X-Spamd-Result: default: True [1 / 2]; {}\r\n", "S(1.00)[x]; ".repeat(10_000));
    let raw = format!("X-Spam: Yes\r\n{LMTP}{long}{BORDER}{many}{BODY}");
    let m = InboundMail::parse(raw.as_bytes()).unwrap();
    let kinds: Vec<TraceKind> = m.trace.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds[..4],
        [
            TraceKind::Verdict(VerdictHeader::Spam),
            TraceKind::Received,
            TraceKind::Verdict(VerdictHeader::SpamdResult),
            TraceKind::Received,
        ]
    );
    let statuses = kinds.iter().filter(|k| **k == TraceKind::Verdict(VerdictHeader::SpamStatus)).count();
    assert_eq!(statuses, MAX_VERDICT_HEADERS, "the topmost of each name");
    assert_eq!(m.trace[4].value, "No, score=0");
    assert!(m.trace[2].value.len() <= MAX_VERDICT_VALUE);
    assert!(m.trace[2].value.starts_with("default: True [1 / 2];"));
}
