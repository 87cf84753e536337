//! Structural cut of ticketd's own mail out of replies (issue 8, item 6).
//!
//! `tests/fixtures/quoted/parent/<parent>.parent.txt` is a text ticketd sent;
//! `tests/fixtures/quoted/parent/<parent>/<client>-<style>.txt` is a reply to
//! it as that client quotes it, a `~~~ kept ~~~` line, and the new text that
//! must be all that is left. Each case runs with LF and CRLF line ends, and
//! afterwards none of the parent's lines may be found in what was kept.

use std::fs;
use std::path::{Path, PathBuf};

use ticketd::mail::parent::{contains_lines, cut_parent};

const KEPT_MARKER: &str = "\n~~~ kept ~~~\n";

/// The lines of an agent notification that must never reach a customer.
const INTERNAL: &[&str] = &[
    "Status: open   Priority: medium   Category: general",
    "From: customer@example.test",
    "Reply to this mail to answer the customer. Lines at the top such as",
    "#status resolved, #priority high, #assign me, #tag x or #note change the ticket.",
];

/// Quoting styles issue 8 names; each must have at least one fixture.
const CLIENTS: &[&str] = &["neomutt", "snail", "mailx", "alpine", "thunderbird", "outlook", "gmail", "apple"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quoted/parent")
}

fn parents() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(root())
        .expect("read parent fixtures")
        .map(|e| e.expect("dir entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.strip_suffix(".parent.txt")?.to_string();
            Some((name, fs::read_to_string(&p).expect("read parent")))
        })
        .collect();
    out.sort();
    out
}

/// The parent's own lines of three words or more, which must be gone too.
fn needles(parent: &str) -> Vec<&str> {
    parent.lines().filter(|l| l.split_whitespace().count() >= 3).collect()
}

fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

#[test]
fn parent_fixtures_are_cut_exactly() {
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut names = Vec::new();
    for (parent_name, parent) in parents() {
        let mut cases: Vec<PathBuf> = fs::read_dir(root().join(&parent_name))
            .expect("read parent case dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        cases.sort();
        assert!(!cases.is_empty(), "no replies for parent {parent_name}");
        let mut internal: Vec<&str> = needles(&parent);
        if parent_name == "notification" {
            internal.extend_from_slice(INTERNAL);
        }
        for case in cases {
            let name = format!("{parent_name}/{}", case.file_stem().and_then(|s| s.to_str()).expect("utf-8 name"));
            names.push(name.clone());
            let text = fs::read_to_string(&case).expect("read case").replace("\r\n", "\n");
            let (reply, kept) = text.split_once(KEPT_MARKER).expect("kept marker");
            let expected = kept.trim();
            assert!(
                !contains_lines(reply, &internal).is_empty(),
                "{name}: the raw reply should show the parent's lines"
            );
            for (ending, reply, parent) in [
                ("LF", reply.to_string(), parent.clone()),
                ("CRLF reply", crlf(reply), parent.clone()),
                ("CRLF both", crlf(reply), crlf(&parent)),
            ] {
                runs += 1;
                match cut_parent(&reply, &parent) {
                    None => failures.push(format!("{name} ({ending}): parent not found")),
                    Some(actual) if actual.trim() != expected => {
                        failures.push(format!("{name} ({ending}):\n  expected {expected:?}\n  actual   {actual:?}"));
                    }
                    Some(actual) => {
                        let left = contains_lines(&actual, &internal);
                        if !left.is_empty() {
                            let left: Vec<&str> = left.iter().map(|&i| internal[i]).collect();
                            failures.push(format!("{name} ({ending}): still contains {left:?}"));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {runs} runs failed:\n{}", failures.len(), failures.join("\n"));
    assert!(runs > 0, "no parent fixture ran");
    for client in CLIENTS {
        assert!(names.iter().any(|n| n.contains(client)), "no fixture for {client}");
    }
}

fn notification() -> String {
    fs::read_to_string(root().join("notification.parent.txt")).expect("read notification")
}

#[test]
fn replies_to_other_mail_are_not_cut() {
    let parent = notification();
    let classes = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quoted/classes");
    let mut checked = 0;
    for class in fs::read_dir(classes).expect("read class fixtures") {
        for case in fs::read_dir(class.expect("dir entry").path()).expect("read class") {
            let body = fs::read_to_string(case.expect("dir entry").path()).expect("read fixture");
            let reply = body.split(KEPT_MARKER).next().unwrap_or("");
            assert_eq!(cut_parent(reply, &parent), None, "{reply}");
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn a_quote_of_a_small_part_falls_back() {
    let parent = notification();
    let reply = "Done.\n\nOn Mon, 15 Jan 2024, Example Support wrote:\n> The printer smokes. Log attached.\n";
    assert_eq!(cut_parent(reply, &parent), None);
}

#[test]
fn fail_safe_catches_a_trimmed_quote_left_behind() {
    let parent = notification();
    let reply = "Done.\n\n> Status: open   Priority: medium\n>   Category: general\n";
    assert_eq!(cut_parent(reply, &parent), None);
    assert_eq!(contains_lines(reply, INTERNAL), vec![0]);
}

#[test]
fn large_replies_are_handled_within_the_caps() {
    let parent = notification();
    let filler = "The printer smokes again and again, please advise on the fan.\n".repeat(34 * 1024);
    assert!(filler.len() >= 2 * 1024 * 1024 - 4096);
    let reply = format!("{filler}\nOn Mon, 15 Jan 2024, Example Support wrote:\n> {}", parent.replace('\n', "\n> "));
    let cut = cut_parent(&reply, &parent).expect("parent found below a large reply");
    assert!(contains_lines(&cut, INTERNAL).is_empty());
    assert!(cut.len() >= filler.trim().len());
    let huge = "x".repeat(5 * 1024 * 1024);
    assert_eq!(cut_parent(&huge, &parent), None);
    assert_eq!(contains_lines(&huge, INTERNAL), vec![0, 1, 2, 3], "too large to clear: held");
}
