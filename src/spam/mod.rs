//! Spam at the door: whose verdict to believe, whom to block, and how to
//! ask rspamd directly. This module decides and scans; it does not route
//! mail (holding, listing and releasing spam is the ingest's and the
//! store's).
//!
//! - [`verdict`] (pure): the border filter's verdict from an inbound mail's
//!   trace headers ([`crate::mail::Trace`], in header order), counting only
//!   headers that stand where a sender cannot have put them
//!   ([`Placement`], findings in `docs/spam-borders.md`).
//! - [`block`] (pure): the blocklist of addresses and whole domains.
//! - [`rspamd`]: a client for rspamd's HTTP scanning API (`POST /checkv2`),
//!   bounded in time and size, whose errors tell "rspamd unreachable"
//!   (→ [`Unreachable`] policy) from "rspamd answered garbage".
//!
//! [`SpamConfig`] holds the `[spam]` section as runtime values. Parsing the
//! config file is `config`'s; the pieces here ([`Border`], [`Placement`],
//! [`Unreachable`] via `FromStr`, [`check_placement`], [`BlockList::parse`],
//! [`rspamd::RspamdClient::new`]) report each bad value with its reason so
//! they can be collected with the other config problems.

pub mod block;
pub mod rspamd;
pub mod scan;
pub mod verdict;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use block::{BlockEntry, BlockEntryError, BlockList, Blocked, blocked};
pub use scan::{ScanResult, Scanner};
pub use verdict::{Action, Filter, Verdict, VerdictSource, border_verdict};

/// `[spam]`: what ticketd believes about spam and whom it asks.
#[derive(Debug, Clone, PartialEq)]
pub struct SpamConfig {
    /// `border`: whose verdict headers to believe. Default `"none"`.
    pub border: Border,
    /// `placement`: where the border's filter puts its headers, i.e. how a
    /// header of the border is told from a sender's copy. Default
    /// `"above-border"`.
    pub placement: Placement,
    /// `border_host`: the host our border names in its `Received: … by
    /// HOST` line. Default: `desk.trusted_authserv_id`. Without it no
    /// [`Placement::AboveBorder`] verdict counts.
    pub border_host: Option<String>,
    /// `score_threshold`: when set, a trusted score at or above it is spam
    /// and below it is not, whatever the filter's own yes/no said (the
    /// desk's own bar). Unset (default): the filter's own decision.
    pub score_threshold: Option<f64>,
    /// `reply_hard_limit`: a reply to an existing ticket from its own
    /// customer (or a participant) or from a proven agent is held as spam
    /// only when a verdict's score is at least this; below it (or with no
    /// score at all) it joins its ticket and the verdict is logged.
    /// Default 15 (rspamd's reject score).
    pub reply_hard_limit: f64,
    /// `rspamd_url` (and `rspamd_timeout`, default 10 s): ask rspamd
    /// directly. Unset (default): ticketd asks nobody.
    pub rspamd: Option<RspamdConfig>,
    /// `unreachable`: what happens to mail when rspamd cannot be asked.
    /// Default `"accept"`.
    pub unreachable: Unreachable,
    /// `retention_days`: held spam older than this is removed. Default 30.
    pub retention_days: u32,
    /// `block`: addresses and `@domains` (with their subdomains) whose
    /// mail is held as spam with the reason "blocked".
    pub block: BlockList,
}

impl Default for SpamConfig {
    fn default() -> SpamConfig {
        SpamConfig {
            border: Border::None,
            placement: Placement::AboveBorder,
            border_host: None,
            score_threshold: None,
            reply_hard_limit: DEFAULT_REPLY_HARD_LIMIT,
            rspamd: None,
            unreachable: Unreachable::Accept,
            retention_days: DEFAULT_RETENTION_DAYS,
            block: BlockList::default(),
        }
    }
}

pub const DEFAULT_RETENTION_DAYS: u32 = 30;
pub const DEFAULT_REPLY_HARD_LIMIT: f64 = 15.0;
pub const DEFAULT_RSPAMD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RspamdConfig {
    /// `http://HOST:PORT` of rspamd's normal worker (port 11333 by default).
    pub url: String,
    pub timeout: Duration,
}

/// `spam.border`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    SpamAssassin,
    Rspamd,
    None,
}

/// `spam.placement`: how the border's own verdict headers are told from
/// copies a sender wrote. See `docs/spam-borders.md` for which filter
/// setups put them where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `"above-border"`: only headers above the topmost `Received: … by
    /// <border_host>` count (everything a sender wrote is below it). For a
    /// filter that runs after the border received the mail and prepends
    /// its headers: `spamc` at delivery (Dovecot Sieve `filter`, procmail,
    /// maildrop). SpamAssassin's `report_safe` wrapper is recognised by
    /// its own `Received: … by <border_host> with SpamAssassin` line.
    AboveBorder,
    /// `"milter"` (rspamd only): rspamd's milter appends its headers at the
    /// bottom, so position tells nothing; only `X-Spam` counts (`Yes`:
    /// spam), because rspamd removes every copy a sender supplied, for
    /// every client. Its score is not believed. Not for spamass-milter
    /// ([`check_placement`]).
    Milter,
}

/// `spam.unreachable`: mail is never dropped because rspamd is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Ingest it as if rspamd had said nothing.
    Accept,
    /// Hold it for review with the reason "rspamd unreachable".
    Hold,
}

/// A config value outside its vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {expected}")]
pub struct VocabError {
    pub value: String,
    pub expected: &'static str,
}

macro_rules! vocabulary {
    ($name:ident, $expected:literal, { $($text:literal => $variant:ident),+ $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = VocabError;
            fn from_str(s: &str) -> Result<Self, VocabError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(VocabError { value: s.to_owned(), expected: $expected }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(Border, "\"spamassassin\", \"rspamd\", \"none\"", {
    "spamassassin" => SpamAssassin,
    "rspamd" => Rspamd,
    "none" => None,
});

vocabulary!(Placement, "\"above-border\", \"milter\"", {
    "above-border" => AboveBorder,
    "milter" => Milter,
});

vocabulary!(Unreachable, "\"accept\", \"hold\"", {
    "accept" => Accept,
    "hold" => Hold,
});

/// Whether ticketd can tell this border's verdict from a sender's copies
/// (`docs/spam-borders.md`); the message is for the config error.
pub fn check_placement(border: Border, placement: Placement) -> Result<(), &'static str> {
    match (border, placement) {
        (Border::SpamAssassin, Placement::Milter) => {
            Err("spamass-milter keeps copies of X-Spam-* that the sender wrote, and they cannot be told from its \
own; run spamc at delivery (e.g. a Sieve filter) with placement = \"above-border\", or let ticketd ask rspamd \
(rspamd_url)")
        }
        _ => Ok(()),
    }
}

/// A usable `score_threshold`: a finite number.
pub fn check_threshold(t: f64) -> Result<f64, String> {
    if t.is_finite() { Ok(t) } else { Err(format!("{t} is not a usable score")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_round_trip_and_name_the_choices() {
        for b in [Border::SpamAssassin, Border::Rspamd, Border::None] {
            assert_eq!(b.as_str().parse::<Border>(), Ok(b));
        }
        for p in [Placement::AboveBorder, Placement::Milter] {
            assert_eq!(p.to_string().parse::<Placement>(), Ok(p));
        }
        let e = "SpamAssassin".parse::<Border>().unwrap_err();
        assert_eq!(e.to_string(), "\"SpamAssassin\" is not one of \"spamassassin\", \"rspamd\", \"none\"");
        assert!("drop".parse::<Unreachable>().is_err(), "dropping mail is not a policy");
        assert!(check_threshold(f64::NAN).is_err());
        assert!(check_placement(Border::SpamAssassin, Placement::Milter).is_err());
        assert!(check_placement(Border::Rspamd, Placement::Milter).is_ok());
        assert!(check_placement(Border::SpamAssassin, Placement::AboveBorder).is_ok());
        assert_eq!(check_threshold(5.0), Ok(5.0));
    }
}
