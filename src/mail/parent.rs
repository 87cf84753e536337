//! Cuts a mail ticketd sent (an ack, a notification, a relay) out of a reply
//! to it. ticketd knows that parent's exact text, so instead of guessing from
//! shapes it looks for the parent's words in the reply, whatever the client
//! did to them: `>`, `> >`, `|` or TAB prefixes, no prefix under an
//! Outlook header block, re-wrapping, links annotated as `<mailto:…>`.
//!
//! Lines are compared as runs of normalised words (lower case, quote prefix
//! and link annotations removed, edge punctuation trimmed), so a parent line
//! re-wrapped over two reply lines, or two parent lines joined into one,
//! still matches. Unprefixed reply lines only count when several of them
//! continue each other in the parent, so an author repeating one phrase of
//! the parent keeps it. Work is capped; past the cap the answer is "not
//! found" and the caller falls back to the heuristic stripper.
//!
//! [`contains_lines`] is the fail-safe behind it: which internal lines of a
//! notification still appear in a text, under the same normalisation.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::quote::{shapes, strip_quoted};

/// Larger inputs are not searched at all.
const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Word comparisons allowed for one `cut_parent` or `contains_lines` call;
/// linear inputs need a few per word, so only adversarial ones reach it.
const MAX_WORK: usize = 8_000_000;

/// Lines with fewer words and characters than this only match where they
/// continue the previous match, since short lines ("Thanks", "--") occur
/// anywhere.
const MIN_ANCHOR_WORDS: usize = 3;
const MIN_ANCHOR_CHARS: usize = 16;

/// Unprefixed lines are only taken for the parent in runs covering at least
/// this many parent words.
const MIN_UNPREFIXED_RUN_WORDS: usize = 8;

/// Above the first quoted parent line, at most this many lines are looked at
/// for the attribution or header block.
const MAX_HEADER_LINES: usize = 10;

/// An attribution wrapped by the client spans at most this many lines.
const MAX_ATTRIBUTION_LINES: usize = 3;

/// Outlook writes `text<mailto:…>`, converters `text <url>`, old Outlook
/// `[mailto:…]`; none of it was in the parent.
static LINK_ANNOTATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<(?:mailto:|https?://)[^<>\s]*>|\[mailto:[^\[\]\s]*\]").expect("link annotation regex compiles")
});

/// Some(new text) when a substantial part of `parent` was found in `reply`
/// and removed together with its attribution or header block and trailing
/// quote remnants; what is left then goes through `strip_quoted` (other
/// quotes, signature, device line) and may be empty. None when the parent is
/// not recognisably there (or the inputs are beyond the work cap).
pub fn cut_parent(reply: &str, parent: &str) -> Option<String> {
    cut_counted(reply, parent).0
}

fn cut_counted(reply: &str, parent: &str) -> (Option<String>, usize) {
    let mut work = Work::default();
    let out = cut(reply, parent, &mut work);
    (out, work.spent)
}

#[derive(Default)]
struct Work {
    spent: usize,
}

impl Work {
    /// False once the budget is gone.
    fn spend(&mut self, n: usize) -> bool {
        self.spent = self.spent.saturating_add(n);
        self.spent <= MAX_WORK
    }
}

struct ReplyLine<'a> {
    raw: &'a str,
    quoted: bool,
    words: Vec<String>,
}

fn cut(reply: &str, parent: &str, work: &mut Work) -> Option<String> {
    if reply.len() > MAX_INPUT_BYTES || parent.len() > MAX_INPUT_BYTES {
        return None;
    }
    let reply = reply.replace("\r\n", "\n").replace('\r', "\n");
    let parent_words: Vec<String> = parent.lines().flat_map(|l| words(split_prefix(l).1)).collect();
    if parent_words.is_empty() {
        return None;
    }
    let index = Index::new(&parent_words);
    let lines: Vec<ReplyLine> = reply
        .split('\n')
        .map(|raw| {
            let (quoted, content) = split_prefix(raw);
            ReplyLine { raw, quoted, words: words(content) }
        })
        .collect();

    let matches = align(&lines, &parent_words, &index, work)?;
    let parent_line = accept(&lines, &matches);
    let covered: usize = parent_line.iter().zip(&lines).filter(|(m, _)| **m).map(|(_, l)| l.words.len()).sum();
    let total = parent_words.len();
    if covered < total.min(4) || !(covered * 2 >= total || covered >= 40) {
        return None;
    }

    let mut removed = parent_line.clone();
    let first = removed.iter().position(|&r| r)?;
    let last = removed.iter().rposition(|&r| r)?;
    for (i, line) in lines.iter().enumerate().take(last).skip(first) {
        if line.quoted {
            removed[i] = true;
        }
    }
    for (i, line) in lines.iter().enumerate().skip(last + 1) {
        if line.quoted {
            removed[i] = true;
        } else if !line.words.is_empty() {
            break;
        }
    }
    remove_header_above(&lines, first, &mut removed);

    // What is left may still quote other mail (a colleague's reply around
    // the notification); the heuristic stripper handles that as usual.
    let kept: Vec<&str> = lines.iter().zip(&removed).filter(|(_, r)| !**r).map(|(l, _)| l.raw).collect();
    let kept = kept.join("\n");
    Some(if kept.trim().is_empty() { String::new() } else { strip_quoted(&kept) })
}

/// Position in the parent's word stream at which each reply line matched.
fn align(lines: &[ReplyLine], parent: &[String], index: &Index, work: &mut Work) -> Option<Vec<Option<usize>>> {
    let mut matches = vec![None; lines.len()];
    let mut next = 0;
    for (i, line) in lines.iter().enumerate() {
        let r = &line.words;
        if r.is_empty() {
            continue;
        }
        if !work.spend(r.len()) {
            return None;
        }
        if starts_at(parent, next, r) {
            matches[i] = Some(next);
            next += r.len();
            continue;
        }
        let chars: usize = r.iter().map(|w| w.chars().count()).sum();
        if r.len() < MIN_ANCHOR_WORDS && chars < MIN_ANCHOR_CHARS {
            continue;
        }
        // In order first (interleaved replies keep the parent's order), then
        // anywhere, so one early false match cannot hide the real quote.
        let found = match index.find(parent, r, next, work)? {
            Some(p) => Some(p),
            None if next > 0 => index.find(parent, r, 0, work)?,
            None => None,
        };
        if let Some(p) = found {
            matches[i] = Some(p);
            next = p + r.len();
        }
    }
    Some(matches)
}

/// Which matched lines are taken for the parent: every quoted one, and
/// unprefixed ones in runs that continue each other in the parent.
fn accept(lines: &[ReplyLine], matches: &[Option<usize>]) -> Vec<bool> {
    let mut taken = vec![false; lines.len()];
    let mut run: Vec<usize> = Vec::new();
    let mut run_words = 0;
    let mut expected = None;
    let flush = |run: &mut Vec<usize>, run_words: &mut usize, taken: &mut Vec<bool>| {
        if *run_words >= MIN_UNPREFIXED_RUN_WORDS {
            for &j in run.iter() {
                taken[j] = true;
            }
        }
        run.clear();
        *run_words = 0;
    };
    for (i, line) in lines.iter().enumerate() {
        if line.words.is_empty() {
            continue;
        }
        let Some(p) = matches[i] else {
            flush(&mut run, &mut run_words, &mut taken);
            expected = None;
            continue;
        };
        if line.quoted {
            taken[i] = true;
            flush(&mut run, &mut run_words, &mut taken);
            expected = None;
            continue;
        }
        if expected != Some(p) {
            flush(&mut run, &mut run_words, &mut taken);
        }
        run.push(i);
        run_words += line.words.len();
        expected = Some(p + line.words.len());
    }
    flush(&mut run, &mut run_words, &mut taken);
    taken
}

/// Removes the attribution ("On … wrote:", `"Name" <addr> wrote:`) or the
/// header block (From/Sent/To/Subject, under a rule or "Original Message")
/// that introduces the quoted parent.
fn remove_header_above(lines: &[ReplyLine], first: usize, removed: &mut [bool]) {
    let content = |i: usize| split_prefix(lines[i].raw).1.trim();
    let mut j = first;
    while j > 0 && content(j - 1).is_empty() {
        j -= 1;
    }
    if j == 0 {
        return;
    }
    let floor = j.saturating_sub(MAX_HEADER_LINES);
    let mut top = j;
    let mut fields = 0;
    let mut from = false;
    while top > floor && shapes::is_header_field(content(top - 1)) {
        from |= shapes::is_from_field(content(top - 1));
        fields += 1;
        top -= 1;
    }
    if fields >= 2 || from {
        while top > 0 && content(top - 1).is_empty() && top > floor {
            top -= 1;
        }
        if top > 0 && shapes::is_marker(content(top - 1)) {
            top -= 1;
        }
        mark(removed, top, first);
        return;
    }
    if shapes::is_marker(content(j - 1)) {
        mark(removed, j - 1, first);
        return;
    }
    // The largest block that reads as one attribution ending right above,
    // so a Gmail attribution wrapped before "wrote:" goes as a whole.
    let contents: Vec<&str> = lines.iter().map(|l| split_prefix(l.raw).1).collect();
    for top in j.saturating_sub(MAX_ATTRIBUTION_LINES)..j {
        if shapes::attribution_span(&contents, top) == Some(j - top) {
            mark(removed, top, first);
            return;
        }
    }
}

fn mark(removed: &mut [bool], from: usize, to: usize) {
    for r in &mut removed[from..to] {
        *r = true;
    }
}

fn starts_at(parent: &[String], p: usize, r: &[String]) -> bool {
    parent.get(p..p + r.len()).is_some_and(|s| s == r)
}

/// Where each word occurs, so a line is looked up by its rarest word.
struct Index<'a> {
    positions: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Index<'a> {
    fn new(words: &'a [String]) -> Self {
        let mut positions: HashMap<&str, Vec<usize>> = HashMap::new();
        for (p, w) in words.iter().enumerate() {
            positions.entry(w.as_str()).or_default().push(p);
        }
        Index { positions }
    }

    /// First position at or after `from` where `needle` occurs; Err-like
    /// None for the whole search when the work budget runs out.
    fn find(&self, hay: &[String], needle: &[String], from: usize, work: &mut Work) -> Option<Option<usize>> {
        let mut rarest: Option<(usize, &Vec<usize>)> = None;
        for (k, w) in needle.iter().enumerate() {
            let Some(list) = self.positions.get(w.as_str()) else {
                return Some(None);
            };
            if rarest.is_none_or(|(_, best)| list.len() < best.len()) {
                rarest = Some((k, list));
            }
        }
        let (k, list) = rarest?;
        let start = list.partition_point(|&p| p < from + k);
        for &pos in &list[start..] {
            if !work.spend(needle.len()) {
                return None;
            }
            if starts_at(hay, pos - k, needle) {
                return Some(Some(pos - k));
            }
        }
        Some(None)
    }
}

/// Indices of the `needles` that still appear in `text`: compared as word
/// runs after removing quote prefixes and link annotations, ignoring case,
/// spacing and line breaks (so re-wrapped lines are found). Blank needles
/// never match. When the work cap is reached, the needles not yet cleared
/// are reported as present, since the caller uses this to hold a relay.
pub fn contains_lines(text: &str, needles: &[&str]) -> Vec<usize> {
    contains_counted(text, needles).0
}

fn contains_counted(text: &str, needles: &[&str]) -> (Vec<usize>, usize) {
    let mut work = Work::default();
    let all_present = || (0..needles.len()).filter(|&i| !words(needles[i]).is_empty()).collect();
    if text.len() > MAX_INPUT_BYTES {
        return (all_present(), work.spent);
    }
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let stream: Vec<String> = text.split('\n').flat_map(|l| words(split_prefix(l).1)).collect();
    let index = Index::new(&stream);
    let mut found = Vec::new();
    let mut exhausted = false;
    for (n, needle) in needles.iter().enumerate() {
        let needle = words(needle);
        if needle.is_empty() {
            continue;
        }
        if exhausted {
            found.push(n);
            continue;
        }
        match index.find(&stream, &needle, 0, &mut work) {
            Some(None) => {}
            Some(Some(_)) => found.push(n),
            None => {
                exhausted = true;
                found.push(n);
            }
        }
    }
    (found, work.spent)
}

/// Splits off a quote prefix: any run of `>`, `|`, spaces and TABs that
/// contains a `>`, a `|` or starts with a TAB (s-nail and POSIX mailx).
fn split_prefix(line: &str) -> (bool, &str) {
    let rest = line.trim_start_matches(['>', '|', ' ', '\t']);
    let prefix = &line[..line.len() - rest.len()];
    let quoted = prefix.contains(['>', '|']) || prefix.starts_with('\t');
    (quoted, rest)
}

fn words(content: &str) -> Vec<String> {
    let content = if content.contains(['<', '[']) { LINK_ANNOTATION.replace_all(content, " ") } else { content.into() };
    content
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| {
                matches!(c, '"' | '\'' | '(' | ')' | '[' | ']' | '<' | '>' | '*' | '_' | ',' | ';' | ':')
            })
        })
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "New ticket on ticket #2: Printer on fire\nFrom: customer@example.test\nStatus: open   Priority: medium   Category: general\n\nThe printer smokes. Log attached.\n\n-- \nReply to this mail to answer the customer. Lines at the top such as\n#status resolved, #priority high, #assign me, #tag x or #note change the ticket.\n";

    fn quote(text: &str, prefix: &str) -> String {
        text.lines().map(|l| format!("{prefix}{l}")).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn top_post_over_a_quote() {
        let reply = format!(
            "#status resolved\nFixed the fan.\n\nOn Mon, 15 Jan 2024, Support wrote:\n{}\n",
            quote(PARENT, "> ")
        );
        assert_eq!(cut_parent(&reply, PARENT).as_deref(), Some("#status resolved\nFixed the fan."));
    }

    #[test]
    fn unrelated_reply_is_not_cut() {
        let reply =
            "Thanks, the printer works.\n\nOn Mon, 15 Jan 2024, Ann wrote:\n> Something else entirely was said here.\n";
        assert_eq!(cut_parent(reply, PARENT), None);
        assert_eq!(cut_parent("", PARENT), None);
        assert_eq!(cut_parent("anything", ""), None);
    }

    #[test]
    fn a_repeated_phrase_without_prefix_is_kept() {
        let reply = format!("The printer smokes. Log attached.\nWe replaced it.\n\n{}", quote(PARENT, "> "));
        assert_eq!(cut_parent(&reply, PARENT).as_deref(), Some("The printer smokes. Log attached.\nWe replaced it."));
    }

    #[test]
    fn contains_lines_sees_through_prefixes_case_and_wrapping() {
        let needles =
            ["Status: open   Priority: medium   Category: general", "From: customer@example.test", "", "Not there"];
        let text = "> STATUS: open Priority:\n>   medium Category: general\n| from: customer@example.test<mailto:customer@example.test>";
        assert_eq!(contains_lines(text, &needles), vec![0, 1]);
        assert!(contains_lines("clean text", &needles).is_empty());
    }

    #[test]
    fn adversarial_input_hits_the_work_cap_and_gives_up() {
        let parent = "a b ".repeat(50_000);
        let reply = "a a a\n".repeat(100_000);
        let (out, spent) = cut_counted(&reply, &parent);
        assert_eq!(out, None);
        assert!(spent <= MAX_WORK + 3, "spent {spent}");
        let (found, spent) = contains_counted(&reply, &["a b a b a b a b c", "a a a"]);
        assert_eq!(found, vec![1]);
        assert!(spent < 1_000, "a needle with an absent word costs nothing: {spent}");
        let needles = vec!["a a a"; 100];
        let (found, spent) = contains_counted(&parent, &needles);
        assert_eq!(found.last(), Some(&99), "past the cap a needle counts as present");
        assert!(!found.contains(&0), "the first needles were searched in full");
        assert!(spent <= MAX_WORK + 3, "spent {spent}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::{MAX_WORK, contains_counted, cut_counted, cut_parent};
        use super::PARENT;

        fn quoted_reply() -> impl Strategy<Value = String> {
            let parent_lines: Vec<String> = PARENT.lines().map(str::to_string).collect();
            (
                prop::collection::vec("[a-z ,.]{0,60}", 0..6),
                prop::sample::select(vec!["> ", "> > ", "\t", "| ", ""]),
                prop::collection::vec(any::<bool>(), parent_lines.len()),
                prop::collection::vec("[a-z ,.]{0,60}", 0..6),
                any::<bool>(),
            )
                .prop_map(move |(top, prefix, keep, bottom, crlf)| {
                    let quoted: Vec<String> = parent_lines
                        .iter()
                        .zip(&keep)
                        .filter(|(_, k)| **k)
                        .map(|(l, _)| format!("{prefix}{l}"))
                        .collect();
                    let all = [top, vec!["On Mon, 15 Jan 2024, Support wrote:".to_string()], quoted, bottom].concat();
                    all.join(if crlf { "\r\n" } else { "\n" })
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn kept_lines_come_from_the_reply(reply in quoted_reply()) {
                let input: Vec<String> =
                    reply.replace("\r\n", "\n").split('\n').map(|l| l.trim().to_string()).collect();
                if let Some(out) = cut_parent(&reply, PARENT) {
                    prop_assert!(!out.contains('\r'));
                    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
                        prop_assert!(input.iter().any(|i| i.starts_with(line) || i.ends_with(line)), "{:?}", line);
                    }
                }
            }

            #[test]
            fn text_sharing_no_words_with_the_parent_is_not_cut(reply in prop::collection::vec("[0-9 ,.]{1,60}", 1..30)) {
                let reply = reply.join("\n");
                prop_assert_eq!(cut_parent(&reply, PARENT), None);
                prop_assert!(contains_counted(&reply, &["Status: open Priority: medium"]).0.is_empty());
            }

            #[test]
            fn arbitrary_input_never_panics_and_stays_in_budget(reply in "\\PC{0,400}", parent in "\\PC{0,200}") {
                let (_, spent) = cut_counted(&reply, &parent);
                prop_assert!(spent <= MAX_WORK + reply.len());
                let (_, spent) = contains_counted(&reply, &[&parent, "a b c"]);
                prop_assert!(spent <= MAX_WORK + parent.len() + 3);
            }

        }

        proptest! {
            // Large generated inputs: fewer cases keep the suite quick.
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

            #[test]
            fn work_stays_within_a_multiple_of_the_input(words in prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "printer", "fan"]), 0..3_000), width in 1usize..12) {
                let reply: String = words.chunks(width).map(|c| c.join(" ")).collect::<Vec<_>>().join("\n");
                let parent: String = words.iter().rev().take(500).copied().collect::<Vec<_>>().join(" ");
                let (_, spent) = cut_counted(&reply, &parent);
                prop_assert!(spent <= MAX_WORK + width);
            }
        }
    }
}
