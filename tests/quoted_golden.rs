//! Golden tests for reply-quote stripping, each fixture run with LF and with
//! CRLF line ends:
//!
//! - every `tests/fixtures/quoted/*.eml` is parsed like an inbound mail and
//!   its stripped body must equal the sibling `*.expected.txt`;
//! - every `tests/fixtures/quoted/classes/<class>/<lang>-<case>.txt` holds a
//!   body, a `~~~ kept ~~~` line and the text that must be kept, one folder
//!   per failure class of issue 8.
//!
//! All mismatches are reported together so a change to the stripper shows
//! its full effect in one run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use ticketd::mail::InboundMail;
use ticketd::mail::quote::strip_quoted;

/// Guards against the glob silently matching nothing (moved directory,
/// renamed extension) and the test passing vacuously.
const MIN_FIXTURES: usize = 16;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quoted")
}

/// Expected files are edited by hand, so line-ending and edge-whitespace
/// differences are not what this test is about.
fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").trim().to_string()
}

fn diff(expected: &str, actual: &str) -> String {
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => {
                let _ = writeln!(out, "    {e}");
            }
            (e, a) => {
                if let Some(e) = e {
                    let _ = writeln!(out, "  - {e:?}");
                }
                if let Some(a) = a {
                    let _ = writeln!(out, "  + {a:?}");
                }
            }
        }
    }
    out
}

#[test]
fn quoted_fixtures_match_expected() {
    let mut emls: Vec<PathBuf> = fs::read_dir(fixture_dir())
        .expect("read tests/fixtures/quoted")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    emls.sort();

    let mut failures = Vec::new();
    for eml in &emls {
        let name = eml.file_stem().and_then(|s| s.to_str()).expect("utf-8 fixture name").to_string();
        let raw = fs::read(eml).expect("read .eml");
        let expected_path = eml.with_file_name(format!("{name}.expected.txt"));
        let Ok(expected) = fs::read_to_string(&expected_path) else {
            failures.push(format!("{name}: missing {}", expected_path.display()));
            continue;
        };
        let expected = normalise(&expected);
        for (ending, raw) in [("LF", lf(&raw)), ("CRLF", crlf(&raw))] {
            // A panic in one fixture must not hide the results of the others.
            let outcome = panic::catch_unwind(|| {
                let body = InboundMail::parse(&raw).expect("parse").body;
                strip_quoted(&body)
            });
            let Ok(stripped) = outcome else {
                failures.push(format!("{name} ({ending}): panicked while parsing or stripping"));
                continue;
            };
            let actual = normalise(&stripped);
            if actual != expected {
                failures.push(format!(
                    "{name} ({ending}): stripped body differs (- expected, + actual)\n{}",
                    diff(&expected, &actual)
                ));
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} quote fixtures failed:\n\n{}",
        failures.len(),
        emls.len(),
        failures.join("\n")
    );
    assert!(
        emls.len() >= MIN_FIXTURES,
        "only {} fixtures found in {}, expected more than 15",
        emls.len(),
        fixture_dir().display()
    );
}

fn lf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        if !(b == b'\r' && raw.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 16);
    for &b in &lf(raw) {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The failure classes of issue 8, item 7; each must have fixtures.
const CLASSES: &[&str] = &[
    "locale",
    "multiline",
    "date_first",
    "no_colon",
    "two_fields",
    "in_paragraph",
    "lost_prefix",
    "same_line",
    "device_separator",
    "not_a_quote",
];

/// Languages the class fixtures must cover between them.
const LANGUAGES: &[&str] =
    &["en", "de", "fr", "es", "it", "pt", "nl", "da", "sv", "nb", "fi", "pl", "cs", "ru", "tr", "ja", "zh", "ko"];

const KEPT_MARKER: &str = "\n~~~ kept ~~~\n";

#[test]
fn class_fixtures_match_expected() {
    let root = fixture_dir().join("classes");
    let mut per_class: BTreeMap<String, usize> = BTreeMap::new();
    let mut languages: BTreeSet<String> = BTreeSet::new();
    let mut failures = Vec::new();
    let mut runs = 0;
    for class in fs::read_dir(&root).expect("read tests/fixtures/quoted/classes") {
        let class = class.expect("dir entry").path();
        let class_name = class.file_name().and_then(|s| s.to_str()).expect("utf-8 class name").to_string();
        let mut cases: Vec<PathBuf> = fs::read_dir(&class)
            .expect("read class dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        cases.sort();
        for case in cases {
            let name = format!("{class_name}/{}", case.file_stem().and_then(|s| s.to_str()).expect("utf-8 name"));
            let text = fs::read_to_string(&case).expect("read fixture").replace("\r\n", "\n");
            let Some((body, kept)) = text.split_once(KEPT_MARKER) else {
                failures.push(format!("{name}: no `~~~ kept ~~~` line"));
                continue;
            };
            let lang = name.rsplit('/').next().and_then(|n| n.split('-').next()).unwrap_or("").to_string();
            languages.insert(lang);
            *per_class.entry(class_name.clone()).or_default() += 1;
            let expected = normalise(kept);
            for (ending, input) in [("LF", body.to_string()), ("CRLF", body.replace('\n', "\r\n"))] {
                runs += 1;
                let Ok(stripped) = panic::catch_unwind(|| strip_quoted(&input)) else {
                    failures.push(format!("{name} ({ending}): panicked"));
                    continue;
                };
                let actual = normalise(&stripped);
                if actual != expected {
                    failures.push(format!(
                        "{name} ({ending}): differs (- expected, + actual)\n{}",
                        diff(&expected, &actual)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {runs} class fixture runs failed:\n\n{}", failures.len(), failures.join("\n"));
    assert!(runs > 0, "no class fixture ran");
    for class in CLASSES {
        assert!(per_class.get(*class).copied().unwrap_or(0) > 0, "no fixture for failure class {class}");
    }
    let missing: Vec<&str> = LANGUAGES.iter().copied().filter(|l| !languages.contains(*l)).collect();
    assert!(missing.is_empty(), "no class fixture in {missing:?}");
}
