//! The blocklist (pure): exact addresses and whole domains whose mail is
//! held as spam with the reason "blocked".
//!
//! - `spammer@example.net` blocks that address in any case, with or
//!   without a `+detail` (`Spammer+offers@Example.NET` too). An entry that
//!   itself has a detail (`spammer+x@example.net`) blocks only that one.
//! - `@bad.example` blocks the domain and every subdomain of it
//!   (`x@mail.bad.example`): whoever owns a domain owns its subdomains, and
//!   spam often comes from many of them. `@example` (one label) is allowed
//!   and blocks that whole top-level domain.
//!
//! Addresses compare lower-cased (also non-ASCII ones); internationalised
//! domain names are compared as written, without IDNA mapping (`bücher.example`
//! does not match `xn--bcher-kva.example`). Which address of a mail to test
//! (From, the envelope sender, or both) is the caller's choice.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest domain name (RFC 1035) and local part (RFC 5321) accepted.
const MAX_DOMAIN: usize = 253;
const MAX_LABEL: usize = 63;
const MAX_LOCAL: usize = 64;

/// One validated blocklist entry, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BlockEntry {
    Address(String),
    Domain(String),
}

impl BlockEntry {
    /// Accepts `name@domain` or `@domain`, optionally in angle brackets
    /// and surrounded by white space.
    pub fn parse(text: &str) -> Result<BlockEntry, BlockEntryError> {
        let err = |problem| BlockEntryError { entry: text.chars().take(200).collect(), problem };
        let s = text.trim();
        let s = s.strip_prefix('<').and_then(|s| s.strip_suffix('>')).unwrap_or(s).trim();
        if s.is_empty() {
            return Err(err(BlockProblem::Empty));
        }
        if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace() || crate::text::is_format(*c)) {
            return Err(err(BlockProblem::Character(c)));
        }
        if let Some(c) = s.chars().find(|c| "<>,;:()[]\\\"'`*?!/|=".contains(*c)) {
            return Err(err(if c == '*' { BlockProblem::Wildcard } else { BlockProblem::Character(c) }));
        }
        let Some((local, domain)) = s.rsplit_once('@') else { return Err(err(BlockProblem::NoAt)) };
        let domain = check_domain(domain).map_err(err)?;
        if local.is_empty() {
            return Ok(BlockEntry::Domain(domain));
        }
        if local.contains('@') {
            return Err(err(BlockProblem::TwoAts));
        }
        let local = local.to_lowercase();
        if local.len() > MAX_LOCAL {
            return Err(err(BlockProblem::LocalTooLong));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(err(BlockProblem::LocalDots));
        }
        Ok(BlockEntry::Address(format!("{local}@{domain}")))
    }

    /// Why a mail matched this entry, for the spam list.
    pub fn reason(&self) -> String {
        format!("blocked: {self}")
    }
}

impl fmt::Display for BlockEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockEntry::Address(a) => f.write_str(a),
            BlockEntry::Domain(d) => write!(f, "@{d}"),
        }
    }
}

impl FromStr for BlockEntry {
    type Err = BlockEntryError;
    fn from_str(s: &str) -> Result<BlockEntry, BlockEntryError> {
        BlockEntry::parse(s)
    }
}

impl TryFrom<String> for BlockEntry {
    type Error = BlockEntryError;
    fn try_from(s: String) -> Result<BlockEntry, BlockEntryError> {
        BlockEntry::parse(&s)
    }
}

impl From<BlockEntry> for String {
    fn from(e: BlockEntry) -> String {
        e.to_string()
    }
}

fn check_domain(d: &str) -> Result<String, BlockProblem> {
    let bad = |why: &'static str| Err(BlockProblem::Domain(why));
    let d = d.to_lowercase();
    if d.is_empty() {
        return bad("the domain is missing");
    }
    if d.starts_with('.') {
        return bad("it starts with a dot (subdomains are always included: write @bad.example)");
    }
    if d.ends_with('.') {
        return bad("it ends with a dot");
    }
    if d.len() > MAX_DOMAIN {
        return bad("it is longer than 253 bytes");
    }
    for label in d.split('.') {
        if label.is_empty() {
            return bad("it has an empty label (\"..\")");
        }
        if label.len() > MAX_LABEL {
            return bad("a label is longer than 63 bytes");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
        if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
            return bad("only letters, digits, '-' and '.' belong in a domain");
        }
    }
    Ok(d)
}

/// What is wrong with a blocklist entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockProblem {
    #[error("it is empty")]
    Empty,
    #[error("it contains {0:?}")]
    Character(char),
    #[error("wildcards are not patterns here: write @bad.example for a whole domain and its subdomains")]
    Wildcard,
    #[error("write name@domain for one address or @domain for a whole domain")]
    NoAt,
    #[error("the name part contains '@'")]
    TwoAts,
    #[error("the name part is longer than 64 bytes")]
    LocalTooLong,
    #[error("the name part starts or ends with a dot or has two in a row")]
    LocalDots,
    #[error("not a domain: {0}")]
    Domain(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blocklist entry {entry:?}: {problem}")]
pub struct BlockEntryError {
    /// The entry as given (its first 200 characters).
    pub entry: String,
    pub problem: BlockProblem,
}

/// Entries from the config and those added at run time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockList {
    entries: BTreeSet<BlockEntry>,
}

impl BlockList {
    /// All entries or every problem at once.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<BlockList, Vec<BlockEntryError>> {
        let (ok, bad): (Vec<_>, Vec<_>) =
            entries.iter().map(|e| BlockEntry::parse(e.as_ref())).partition(Result::is_ok);
        if bad.is_empty() {
            Ok(BlockList { entries: ok.into_iter().flatten().collect() })
        } else {
            Err(bad.into_iter().filter_map(Result::err).collect())
        }
    }

    /// `false` when it was there already.
    pub fn insert(&mut self, entry: BlockEntry) -> bool {
        self.entries.insert(entry)
    }

    /// `false` when it was not there.
    pub fn remove(&mut self, entry: &BlockEntry) -> bool {
        self.entries.remove(entry)
    }

    pub fn contains(&self, entry: &BlockEntry) -> bool {
        self.entries.contains(entry)
    }

    /// Sorted: addresses, then domains.
    pub fn iter(&self) -> impl Iterator<Item = &BlockEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromIterator<BlockEntry> for BlockList {
    fn from_iter<I: IntoIterator<Item = BlockEntry>>(iter: I) -> BlockList {
        BlockList { entries: iter.into_iter().collect() }
    }
}

/// A mail's address matched an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub entry: BlockEntry,
}

impl Blocked {
    /// "blocked: @bad.example".
    pub fn reason(&self) -> String {
        self.entry.reason()
    }
}

/// The entry that blocks `address`, if any. The exact address (case
/// folded, with its `+detail` and without it) wins over its domain, the
/// domain over its parents. Work is bounded by the 253 bytes a domain can
/// have, whatever `address` is.
pub fn blocked(address: &str, list: &BlockList) -> Option<Blocked> {
    if list.is_empty() {
        return None;
    }
    candidates(address).into_iter().find(|e| list.contains(e)).map(|entry| Blocked { entry })
}

/// Every entry that would block `address`, the one that wins first: the
/// address itself (lower-cased), the address without its `+detail`, its
/// domain, then each parent domain. This is the question a store of
/// entries is asked (one point look-up each); [`blocked`] asks it of a
/// [`BlockList`]. At most two addresses and one entry per label of a
/// domain of at most 253 bytes, whatever `address` is.
pub fn candidates(address: &str) -> Vec<BlockEntry> {
    let a = address.trim();
    let a = a.strip_prefix('<').and_then(|s| s.strip_suffix('>')).unwrap_or(a).trim();
    let Some((local, domain)) = a.rsplit_once('@') else { return Vec::new() };
    if domain.is_empty() || domain.len() > MAX_DOMAIN + 1 {
        return Vec::new();
    }
    let domain = domain.trim_end_matches('.').to_lowercase();
    let mut out = Vec::new();
    if !local.is_empty() && local.len() <= 4 * MAX_LOCAL {
        let local = local.to_lowercase();
        if let Some((base, _detail)) = local.split_once('+') {
            let base = format!("{base}@{domain}");
            out.push(BlockEntry::Address(format!("{local}@{domain}")));
            out.push(BlockEntry::Address(base));
        } else {
            out.push(BlockEntry::Address(format!("{local}@{domain}")));
        }
    }
    let mut suffix = domain.as_str();
    loop {
        if !suffix.is_empty() {
            out.push(BlockEntry::Domain(suffix.to_owned()));
        }
        match suffix.split_once('.') {
            Some((_, rest)) => suffix = rest,
            None => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> BlockList {
        BlockList::parse(entries).unwrap()
    }

    #[test]
    fn exact_addresses_with_and_without_detail() {
        let l = list(&["Spammer@Example.NET", "only+this@example.net"]);
        for a in ["spammer@example.net", "SPAMMER@example.net", "<spammer+offers@example.net>", " spammer@EXAMPLE.net "]
        {
            assert_eq!(blocked(a, &l).map(|b| b.reason()), Some("blocked: spammer@example.net".to_owned()), "{a}");
        }
        assert!(blocked("spammer2@example.net", &l).is_none());
        assert!(blocked("spammer@example.net.evil", &l).is_none());
        assert!(blocked("spammer@sub.example.net", &l).is_none(), "an address entry is not a domain entry");
        assert!(blocked("only+this@example.net", &l).is_some());
        assert!(blocked("only@example.net", &l).is_none(), "a detail entry blocks only that detail");
        assert!(blocked("only+other@example.net", &l).is_none());
    }

    #[test]
    fn whole_domains_with_their_subdomains() {
        let l = list(&["@bad.example"]);
        for a in ["x@bad.example", "x@BAD.example", "x@mail.bad.example", "x@a.b.c.bad.example", "x@bad.example."] {
            assert_eq!(blocked(a, &l).unwrap().entry, BlockEntry::Domain("bad.example".into()), "{a}");
        }
        for a in ["x@notbad.example", "x@bad.example.org", "x@example", "bad.example", "x@", "@"] {
            assert!(blocked(a, &l).is_none(), "{a}");
        }
        let tld = list(&["@xyz"]);
        assert!(blocked("a@spam.xyz", &tld).is_some());
        assert!(blocked("a@spam.xyz.example", &tld).is_none());
        let idn = list(&["@Bücher.example"]);
        assert!(blocked("a@BÜCHER.example", &idn).is_some());
    }

    #[test]
    fn entries_are_validated_with_reasons() {
        for (bad, why) in [
            ("", "it is empty"),
            ("   ", "it is empty"),
            ("spammer", "write name@domain"),
            ("*@bad.example", "wildcards"),
            ("@.bad.example", "subdomains are always included"),
            ("a@b@c.example", "the name part contains '@'"),
            ("a b@c.example", "contains ' '"),
            ("a@bad..example", "empty label"),
            ("a@-bad.example", "starts or ends with '-'"),
            ("a@bad_example.com", "only letters"),
            ("a\u{202e}@x.example", "contains '\\u{202e}'"),
            ("a,b@x.example", "contains ','"),
            (".a@x.example", "dot"),
            ("@", "the domain is missing"),
        ] {
            let e = BlockEntry::parse(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
        let long = format!("@{}.example", "a".repeat(64));
        assert!(BlockEntry::parse(&long).is_err());
        let errs = BlockList::parse(&["ok@example.net", "bad", "@also bad"]).unwrap_err();
        assert_eq!(errs.len(), 2, "every problem at once");
        assert_eq!(BlockEntry::parse(" <A@B.example> ").unwrap().to_string(), "a@b.example");
    }

    #[test]
    fn run_time_changes() {
        let mut l = list(&["@bad.example"]);
        let e: BlockEntry = "late@example.net".parse().unwrap();
        assert!(l.insert(e.clone()));
        assert!(!l.insert(e.clone()));
        assert!(blocked("late+x@example.net", &l).is_some());
        assert!(l.remove(&e));
        assert!(!l.remove(&e));
        assert!(blocked("late@example.net", &l).is_none());
        assert_eq!(l.iter().map(ToString::to_string).collect::<Vec<_>>(), vec!["@bad.example"]);
        let json = serde_json::to_string(&l.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(json, r#"["@bad.example"]"#);
        assert!(serde_json::from_str::<BlockEntry>(r#""nope""#).is_err());
    }

    #[test]
    fn candidates_are_what_a_store_is_asked_in_order() {
        let c: Vec<String> = candidates("<Ann+Offers@Mail.Bad.Example>").iter().map(ToString::to_string).collect();
        assert_eq!(
            c,
            ["ann+offers@mail.bad.example", "ann@mail.bad.example", "@mail.bad.example", "@bad.example", "@example"]
        );
        assert!(candidates("no-at-sign").is_empty());
        assert!(candidates("x@").is_empty());
        let long = format!("x@{}bad.example", "a.".repeat(100_000));
        assert!(candidates(&long).is_empty(), "longer than any domain: nothing to ask");
    }

    #[test]
    fn hostile_addresses_are_cheap() {
        let l = list(&["@bad.example"]);
        let long = format!("x@{}bad.example", "a.".repeat(100_000));
        assert!(blocked(&long, &l).is_none(), "longer than any domain: no match, no quadratic work");
        let local = format!("{}@bad.example", "x".repeat(100_000));
        assert!(blocked(&local, &l).is_some(), "a silly local part does not save a blocked domain");
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_an_entry_or_a_reason(s in ".{0,80}", a in ".{0,80}") {
            let l = list(&["@bad.example", "x@example.net"]);
            let _ = blocked(&s, &l);
            let _ = blocked(&a, &l);
            if let Ok(e) = BlockEntry::parse(&s) {
                proptest::prop_assert_eq!(BlockEntry::parse(&e.to_string()), Ok(e));
            }
        }
    }
}
