//! Golden test for reply-quote stripping: every `tests/fixtures/quoted/*.eml`
//! is parsed like an inbound mail and its stripped body must equal the
//! sibling `*.expected.txt`. All mismatches are reported together so a
//! change to the stripper shows its full effect in one run.

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
        // A panic in one fixture must not hide the results of the others.
        let outcome = panic::catch_unwind(|| {
            let body = InboundMail::parse(&raw).expect("parse").body;
            strip_quoted(&body)
        });
        let Ok(stripped) = outcome else {
            failures.push(format!("{name}: panicked while parsing or stripping"));
            continue;
        };
        let actual = normalise(&stripped);
        let expected = normalise(&expected);
        if actual != expected {
            failures
                .push(format!("{name}: stripped body differs (- expected, + actual)\n{}", diff(&expected, &actual)));
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
