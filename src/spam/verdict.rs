//! The border's spam verdict, believed only from where the border writes
//! it (pure; findings behind the rules in `docs/spam-borders.md`).
//!
//! A sender can put any header into a mail, `X-Spam-Flag: NO` included, but
//! only into the part our border received: below the `Received:` line the
//! border wrote. So with [`Placement::AboveBorder`] a verdict header counts
//! only above the topmost `Received: … by <border_host>`; the same header
//! anywhere else is ignored, whatever it says, so a forged "clean" never
//! cleans spam and a forged "spam" never holds ham. With no such line
//! nothing counts. One more anchor is believed: SpamAssassin's
//! `report_safe` wrapper starts with its own `Received: … by <host> with
//! SpamAssassin`, and when that line is the topmost of the border, the
//! header block below it is SpamAssassin's own (it copies only From, To,
//! Cc, Subject, Date and Message-Id into it).
//!
//! Milters append their headers at the bottom, after the sender's, so
//! placement cannot tell them apart; [`Placement::Milter`] believes only the
//! one header the filter is known to control: rspamd's `X-Spam` (its milter
//! removes every copy a sender supplied, whoever the client). spamass-milter
//! rewrites or appends depending on the sender's copies and leaves the
//! others, so its headers never count.
//!
//! Parsing is bounded (values are cut to [`MAX_VALUE`] bytes, numbers to
//! [`MAX_NUMBER`] bytes and must be finite) and total: any bytes give a
//! verdict or none, never a panic.

use serde::{Deserialize, Serialize};

use super::{Border, Placement, SpamConfig};
use crate::mail::{Trace, TraceKind, VerdictHeader};

/// Bytes of a header value looked at.
pub const MAX_VALUE: usize = 1024;
/// Bytes of a number looked at (`-12345.678` needs ten).
pub const MAX_NUMBER: usize = 24;

/// What a spam filter said about one mail, and who said it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub spam: bool,
    pub score: Option<f64>,
    pub source: VerdictSource,
    /// One line for people: who said what, e.g. "SpamAssassin at the
    /// border: X-Spam-Status Yes, score 7.3 (required 5.0)".
    pub reason: String,
}

/// The spam filters ticketd understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    SpamAssassin,
    Rspamd,
}

impl Filter {
    pub fn name(self) -> &'static str {
        match self {
            Filter::SpamAssassin => "SpamAssassin",
            Filter::Rspamd => "rspamd",
        }
    }
}

/// Where a verdict came from: headers our border's filter wrote, or a
/// filter ticketd asked itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictSource {
    Border(Filter),
    Scanner(Filter),
}

impl VerdictSource {
    /// Stable identifier for metrics and JSON.
    pub fn code(self) -> &'static str {
        match self {
            VerdictSource::Border(Filter::SpamAssassin) => "border_spamassassin",
            VerdictSource::Border(Filter::Rspamd) => "border_rspamd",
            VerdictSource::Scanner(Filter::SpamAssassin) => "scanner_spamassassin",
            VerdictSource::Scanner(Filter::Rspamd) => "scanner_rspamd",
        }
    }
}

/// rspamd's actions (`X-Rspamd-Action`, the scan result's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Reject,
    SoftReject,
    RewriteSubject,
    AddHeader,
    Greylist,
    NoAction,
}

impl Action {
    /// `reject`, `add header` (or `add_header`), any case and spacing.
    pub fn parse(s: &str) -> Option<Action> {
        let s = cut(s, 64).trim();
        let mut words = s.split(|c: char| c.is_whitespace() || c == '_').filter(|w| !w.is_empty());
        let first = words.next()?.to_ascii_lowercase();
        let second = words.next().map(str::to_ascii_lowercase);
        if words.next().is_some() {
            return None;
        }
        Some(match (first.as_str(), second.as_deref()) {
            ("reject", None) => Action::Reject,
            ("soft", Some("reject")) => Action::SoftReject,
            ("rewrite", Some("subject")) => Action::RewriteSubject,
            ("add", Some("header")) => Action::AddHeader,
            ("greylist", None) => Action::Greylist,
            ("no", Some("action")) => Action::NoAction,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reject => "reject",
            Action::SoftReject => "soft reject",
            Action::RewriteSubject => "rewrite subject",
            Action::AddHeader => "add header",
            Action::Greylist => "greylist",
            Action::NoAction => "no action",
        }
    }

    /// rspamd judged the mail spam. Greylisting and soft rejects are
    /// delays (rate limits, greylisting), not verdicts.
    pub fn is_spam(self) -> bool {
        matches!(self, Action::Reject | Action::RewriteSubject | Action::AddHeader)
    }
}

/// The border's verdict from `trace` (an [`crate::mail::InboundMail`]'s
/// trace headers, top first), counting only headers in the trusted
/// placement ([`SpamConfig::placement`]). `None`: the border said nothing
/// ticketd can believe.
pub fn border_verdict(trace: &[Trace], cfg: &SpamConfig) -> Option<Verdict> {
    let filter = match cfg.border {
        Border::SpamAssassin => Filter::SpamAssassin,
        Border::Rspamd => Filter::Rspamd,
        Border::None => return None,
    };
    let trusted = match cfg.placement {
        Placement::AboveBorder => above_border(trace, cfg.border_host.as_deref()?, filter)?,
        Placement::Milter => milter_headers(trace, filter),
    };
    let how = match cfg.placement {
        Placement::AboveBorder => "at the border",
        Placement::Milter => "at the border (milter)",
    };
    let judged = match filter {
        Filter::SpamAssassin => spamassassin(&trusted, cfg.score_threshold),
        Filter::Rspamd => rspamd(&trusted, cfg.score_threshold),
    }?;
    Some(Verdict {
        spam: judged.spam,
        score: judged.score,
        source: VerdictSource::Border(filter),
        reason: format!("{} {how}: {}", filter.name(), judged.why),
    })
}

type Trusted<'t> = Vec<(VerdictHeader, &'t str)>;

fn verdict_headers<'t>(t: impl IntoIterator<Item = &'t Trace>) -> impl Iterator<Item = (VerdictHeader, &'t str)> {
    t.into_iter().filter_map(|t| match t.kind {
        TraceKind::Verdict(h) => Some((h, t.value.as_str())),
        TraceKind::Received | TraceKind::AuthResults => None,
    })
}

/// Verdict headers above the topmost `Received` of the border, plus those
/// of a SpamAssassin wrapper whose own line that topmost one is.
fn above_border<'t>(trace: &'t [Trace], host: &str, filter: Filter) -> Option<Trusted<'t>> {
    let b = trace.iter().position(|t| t.kind == TraceKind::Received && is_by(&t.value, host))?;
    let mut trusted: Trusted<'t> = verdict_headers(&trace[..b]).collect();
    if filter == Filter::SpamAssassin && with_spamassassin(&trace[b].value) {
        let block = trace[b + 1..].iter().take_while(|t| t.kind != TraceKind::Received);
        trusted.extend(verdict_headers(block));
    }
    Some(trusted)
}

/// rspamd's `X-Spam`, wherever it stands. spamass-milter leaves copies a
/// sender wrote that cannot be told from its own, so nothing of it counts
/// (see [`super::check_placement`]).
fn milter_headers(trace: &[Trace], filter: Filter) -> Trusted<'_> {
    match filter {
        Filter::Rspamd => verdict_headers(trace).filter(|(h, _)| *h == VerdictHeader::Spam).collect(),
        Filter::SpamAssassin => Vec::new(),
    }
}

/// The topmost value of header `h` among the trusted ones.
fn first<'t>(trusted: &Trusted<'t>, h: VerdictHeader) -> Option<&'t str> {
    trusted.iter().find(|(k, _)| *k == h).map(|(_, v)| *v)
}

struct Judged {
    spam: bool,
    score: Option<f64>,
    why: String,
}

fn by_threshold(score: Option<f64>, threshold: Option<f64>) -> Option<Judged> {
    let (s, t) = (score?, threshold?);
    let spam = s >= t;
    let cmp = if spam { ">=" } else { "<" };
    Some(Judged { spam, score, why: format!("score {s} {cmp} threshold {t}") })
}

fn spamassassin(trusted: &Trusted<'_>, threshold: Option<f64>) -> Option<Judged> {
    let status = first(trusted, VerdictHeader::SpamStatus).and_then(parse_status);
    let flag = first(trusted, VerdictHeader::SpamFlag).and_then(yes_no);
    let score = first(trusted, VerdictHeader::SpamScore).and_then(number).or(status.as_ref().and_then(|s| s.score));
    if let Some(j) = by_threshold(score, threshold) {
        return Some(j);
    }
    let mut why = Vec::new();
    if let Some(st) = &status {
        why.push(format!("X-Spam-Status {}", if st.yes { "Yes" } else { "No" }));
    }
    if let Some(f) = flag {
        why.push(format!("X-Spam-Flag {}", if f { "YES" } else { "NO" }));
    }
    if let Some(s) = score {
        let required = status.as_ref().and_then(|s| s.required).map(|r| format!(" (required {r})")).unwrap_or_default();
        why.push(format!("score {s}{required}"));
    }
    let spam = match (&status, flag) {
        (None, None) => return None,
        (st, f) => st.as_ref().is_some_and(|s| s.yes) || f == Some(true),
    };
    Some(Judged { spam, score, why: why.join(", ") })
}

fn rspamd(trusted: &Trusted<'_>, threshold: Option<f64>) -> Option<Judged> {
    let action = first(trusted, VerdictHeader::RspamdAction).and_then(Action::parse);
    let result = first(trusted, VerdictHeader::SpamdResult).and_then(parse_spamd_result);
    // rspamd writes `X-Spam: Yes` only for spam; any other value is no
    // verdict of rspamd's.
    let x_spam = trusted.iter().any(|(h, v)| *h == VerdictHeader::Spam && yes_no(v) == Some(true));
    let score = result.as_ref().map(|r| r.score);
    if let Some(j) = by_threshold(score, threshold) {
        return Some(j);
    }
    let with_score = |what: String| match &result {
        Some(r) => format!("{what}, score {} / {}", r.score, r.required),
        None => what,
    };
    if let Some(a) = action {
        return Some(Judged { spam: a.is_spam(), score, why: with_score(format!("action {}", a.as_str())) });
    }
    if x_spam {
        return Some(Judged { spam: true, score, why: with_score("X-Spam: Yes".to_owned()) });
    }
    let r = result.as_ref()?;
    let why = format!("X-Spamd-Result {}", if r.spam { "True" } else { "False" });
    Some(Judged { spam: r.spam, score, why: with_score(why) })
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// A finite number of at most [`MAX_NUMBER`] bytes.
pub fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.len() > MAX_NUMBER {
        return None;
    }
    // Rust also reads "inf", "NaN" and "1e999" (infinite); filters never
    // write them.
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// `Yes`/`No` (any case) as the first word.
pub fn yes_no(s: &str) -> Option<bool> {
    let word = cut(s, MAX_VALUE).trim().split(|c: char| c == ',' || c.is_whitespace()).next()?;
    if word.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if word.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        None
    }
}

/// `X-Spam-Status: Yes, score=7.3 required=5.0 tests=… version=4.0.1`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpamStatus {
    pub yes: bool,
    pub score: Option<f64>,
    pub required: Option<f64>,
}

/// Reads SpamAssassin's `X-Spam-Status` (also rspamd's `Yes, score=9.20`
/// and SpamAssassin 2's `hits=`).
pub fn parse_status(value: &str) -> Option<SpamStatus> {
    let value = cut(value, MAX_VALUE);
    let yes = yes_no(value)?;
    let (mut score, mut required) = (None, None);
    for token in value.split(|c: char| c == ',' || c.is_whitespace()) {
        let Some((k, v)) = token.split_once('=') else { continue };
        match k.to_ascii_lowercase().as_str() {
            "score" | "hits" if score.is_none() => score = number(v),
            "required" if required.is_none() => required = number(v),
            _ => {}
        }
    }
    Some(SpamStatus { yes, score, required })
}

/// `X-Spamd-Result: default: True [12.40 / 15.00]; SYMBOL(1.00)[…]; …`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpamdResult {
    /// rspamd's "is spam" (score at or above the reject score).
    pub spam: bool,
    pub score: f64,
    pub required: f64,
}

pub fn parse_spamd_result(value: &str) -> Option<SpamdResult> {
    let head = cut(value, MAX_VALUE).split(';').next()?;
    let (_metric, rest) = head.split_once(':')?;
    let rest = rest.trim();
    let (word, rest) = rest.split_once('[')?;
    let spam = match word.trim() {
        w if w.eq_ignore_ascii_case("true") => true,
        w if w.eq_ignore_ascii_case("false") => false,
        _ => return None,
    };
    let (numbers, _) = rest.split_once(']')?;
    let (score, required) = numbers.split_once('/')?;
    Some(SpamdResult { spam, score: number(score)?, required: number(required)? })
}

/// The first token after `by` (comments removed) is `host`.
fn is_by(received: &str, host: &str) -> bool {
    let clean = strip_comments(cut(received, 4096));
    let mut words = clean.split_whitespace();
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case("by") {
            return words.next().is_some_and(|h| h.trim_end_matches(';').eq_ignore_ascii_case(host));
        }
    }
    false
}

/// SpamAssassin's `report_safe` line: `from localhost by HOST with
/// SpamAssassin (version …); date`.
fn with_spamassassin(received: &str) -> bool {
    let clean = strip_comments(cut(received, 4096));
    let mut words = clean.split_whitespace();
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case("with") {
            return words.next().is_some_and(|p| p.trim_end_matches(';').eq_ignore_ascii_case("SpamAssassin"));
        }
    }
    false
}

/// Removes RFC 5322 comments (nested parentheses).
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if depth > 0 => escaped = true,
            '(' => {
                depth += 1;
                if depth == 1 {
                    out.push(' ');
                }
            }
            ')' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
