//! The door (pure): what happens to a mail before it may touch the desk.
//!
//! - Held for review ([`Door::Hold`]): spam by a verdict ticketd believes
//!   (its border's, `crate::spam::border_verdict`, or rspamd's when ticketd
//!   asked it), a sender on the blocklist, or, with `spam.unreachable =
//!   "hold"`, a mail rspamd could not be asked about. A held mail makes no
//!   ticket, no client, no acknowledgement, no notification, and nothing
//!   goes to its sender; it is kept raw with the reason, to be released or
//!   dropped by a person.
//! - Threading comes first: a reply to an existing ticket from the ticket's
//!   own customer (or a participant) or from a proven agent is held only
//!   when a verdict's score reaches `spam.reply_hard_limit`; below it, or
//!   with no score, it joins its ticket and the verdict is logged. A
//!   blocked address is held even then (blocking is a person's decision),
//!   except an agent's.
//! - No backscatter ([`ack_refusal`]): with `desk.acks_require_aligned_sender`
//!   no acknowledgement goes to a From address our border's
//!   `Authentication-Results` show failing both SPF and DKIM alignment.
//!
//! The verdicts, the blocklist match and the scan arrive as inputs (the
//! [`Snapshot`]); nothing here does I/O.

use super::identity::{self, AuthResults};
use super::{Context, Decision, Effect, Outcome, Snapshot};
use crate::config::Config;
use crate::mail::{InboundMail, MailAddress};
use crate::record::TicketRecord;
use crate::spam::{Filter, ScanResult, Unreachable, Verdict, VerdictSource, border_verdict};

/// Who decided a mail is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldSource {
    /// A spam verdict (the border's or rspamd's).
    Verdict(VerdictSource),
    /// The sender is on the blocklist.
    Blocked,
    /// rspamd could not be asked and `spam.unreachable = "hold"`.
    Unreachable,
}

impl HoldSource {
    /// Stable identifier for metrics, JSON and the CLI.
    pub fn code(self) -> &'static str {
        match self {
            HoldSource::Verdict(v) => v.code(),
            HoldSource::Blocked => "blocked",
            HoldSource::Unreachable => "rspamd_unreachable",
        }
    }
}

/// A mail held at the door, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub source: HoldSource,
    pub score: Option<f64>,
    /// One line for people.
    pub reason: String,
}

// Scores come from `spam::verdict::number` and rspamd's reply, which admit
// finite numbers only: equality is reflexive.
impl Eq for Hold {}

/// What the door decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Door {
    /// Go on to the desk; the effects (log lines) go with the decision.
    Pass(Vec<Effect>),
    Hold(Decision),
}

/// Who is writing to the ticket the mail threads into.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Party {
    Customer,
    Participant,
    Agent(String),
}

impl Party {
    fn describe(&self) -> String {
        match self {
            Party::Customer => "its customer".into(),
            Party::Participant => "a participant".into(),
            Party::Agent(id) => format!("agent {id}"),
        }
    }
}

fn party(rec: &TicketRecord, from: &MailAddress, agent: Option<&str>) -> Option<Party> {
    if let Some(id) = agent {
        return Some(Party::Agent(id.to_owned()));
    }
    if rec.client_address == from.address {
        return Some(Party::Customer);
    }
    rec.ticket.participants.contains(&from.address).then_some(Party::Participant)
}

fn hold(source: HoldSource, score: Option<f64>, reason: String) -> Door {
    Door::Hold(Decision {
        outcome: Outcome::Held { source },
        effects: vec![Effect::Hold(Box::new(Hold { source, score, reason }))],
    })
}

fn of(v: &Verdict) -> HoldSource {
    HoldSource::Verdict(v.source)
}

/// The door for `mail`, which threads into `target` (if any), from `from`;
/// `agent` is the agent the threading rules found proven for `target` (by
/// one of its notifications, those of a ticket merged into it included, or
/// by DKIM), the same answer that decides whether the mail is an agent's
/// reply.
pub fn judge(
    mail: &InboundMail,
    snap: &Snapshot,
    ctx: &Context<'_>,
    target: Option<&TicketRecord>,
    from: &MailAddress,
    agent: Option<&str>,
) -> Door {
    // A person looked at it and let it in.
    if snap.released {
        return Door::Pass(Vec::new());
    }
    let cfg = &ctx.cfg.spam;
    let party = target.and_then(|rec| party(rec, from, agent).map(|p| (rec.number, p)));
    let mut notes = Vec::new();
    if let Some(entry) = &snap.blocked {
        match &party {
            Some((n, Party::Agent(id))) => notes.push(Effect::Warn(format!(
                "{id}'s address is on the blocklist ({entry}); their mail to ticket #{n} is let in because they proved who they are"
            ))),
            _ => return hold(HoldSource::Blocked, None, entry.reason()),
        }
    }
    let border = border_verdict(&mail.trace, cfg);
    let scanned = match &snap.scan {
        Some(ScanResult::Verdict(v)) => Some(v),
        _ => None,
    };
    if let Some(v) = border.iter().chain(scanned).find(|v| v.spam) {
        let limit = cfg.reply_hard_limit;
        match &party {
            Some((n, p)) if !v.score.is_some_and(|s| s >= limit) => {
                let score = v.score.map_or("no score".to_owned(), |s| format!("score {s}"));
                notes.push(Effect::Warn(format!(
                    "a reply from {} ({}) to ticket #{n} was judged spam ({}) but joins its ticket: {score} is below spam.reply_hard_limit ({limit})",
                    p.describe(),
                    from.address,
                    v.reason
                )));
                return Door::Pass(notes);
            }
            _ => return hold(of(v), v.score, v.reason.clone()),
        }
    }
    if let Some(ScanResult::Failed { reason, .. }) = &snap.scan
        && border.is_none()
        && cfg.unreachable == Unreachable::Hold
    {
        match &party {
            Some((n, p)) => notes.push(Effect::Warn(format!(
                "rspamd could not judge a reply from {} to ticket #{n} ({reason}); it joins its ticket",
                p.describe()
            ))),
            None => {
                return hold(
                    HoldSource::Unreachable,
                    None,
                    format!("rspamd could not be asked ({reason}) and spam.unreachable = \"hold\""),
                );
            }
        }
    }
    Door::Pass(notes)
}

/// Why an acknowledgement was not sent (besides the mail being held).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckRefusal {
    /// `desk.acks_per_sender_per_hour` reached.
    RateLimit,
    /// The border's `Authentication-Results` say `dmarc=fail`.
    DmarcFail,
    /// No DMARC result, and neither SPF nor DKIM passed aligned with the
    /// From domain.
    Unaligned,
}

impl AckRefusal {
    /// Stable identifier for metrics and logs.
    pub fn code(self) -> &'static str {
        match self {
            AckRefusal::RateLimit => "rate_limit",
            AckRefusal::DmarcFail => "dmarc_fail",
            AckRefusal::Unaligned => "unaligned",
        }
    }
}

/// `desk.acks_require_aligned_sender`: whether our border's
/// `Authentication-Results` (believed only where `triage::identity` believes
/// them: above the topmost `Received:` of `desk.trusted_authserv_id`) show
/// the From address failing alignment. No such results: nothing to judge
/// by, the acknowledgement goes.
pub fn ack_refusal(mail: &InboundMail, cfg: &Config) -> Option<AckRefusal> {
    if !cfg.desk.acks_require_aligned_sender {
        return None;
    }
    let authserv = cfg.desk.trusted_authserv_id.as_deref()?;
    let from = mail.from.as_ref()?;
    let results = identity::border_results(mail, authserv).and_then(identity::parse_results)?;
    alignment(&results, &from.address)
}

/// DMARC's question without DNS: `dmarc=fail` fails, `dmarc=pass` passes;
/// otherwise an SPF pass for an aligned `smtp.mailfrom` or a DKIM pass for
/// an aligned `header.d` is needed, once the border checked either.
/// Alignment is relaxed and approximated without the public suffix list:
/// the same domain, or one a subdomain of the other (so `a.example.com`
/// and `b.example.com` count as unaligned: an acknowledgement too few,
/// never one to a forger).
pub fn alignment(r: &AuthResults, from: &str) -> Option<AckRefusal> {
    let domain = from.rsplit_once('@')?.1.trim_end_matches('.').to_ascii_lowercase();
    match r.methods.iter().find(|m| m.method == "dmarc").map(|m| m.result.as_str()) {
        Some("fail") => return Some(AckRefusal::DmarcFail),
        Some("pass") => return None,
        _ => {}
    }
    if !r.methods.iter().any(|m| m.method == "spf" || m.method == "dkim") {
        return None;
    }
    let pass_for = |method: &str, prop: &str| {
        r.methods.iter().any(|m| {
            m.method == method
                && m.result == "pass"
                && m.prop(prop).is_some_and(|v| aligned(v.rsplit_once('@').map_or(v, |(_, d)| d), &domain))
        })
    };
    if pass_for("spf", "smtp.mailfrom") || pass_for("dkim", "header.d") { None } else { Some(AckRefusal::Unaligned) }
}

fn aligned(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    !a.is_empty() && (a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}")))
}

/// The filters a held mail's source names, for people.
pub fn describe(source: HoldSource) -> String {
    match source {
        HoldSource::Verdict(VerdictSource::Border(f)) => format!("{} at the border", f.name()),
        HoldSource::Verdict(VerdictSource::Scanner(f)) => format!("{} (asked by ticketd)", f.name()),
        HoldSource::Blocked => "the blocklist".into(),
        HoldSource::Unreachable => format!("{} unreachable", Filter::Rspamd.name()),
    }
}

#[cfg(test)]
mod tests;
