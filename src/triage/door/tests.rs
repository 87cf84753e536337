//! The door's decisions, pure: which verdicts hold a mail, in which
//! direction a forgery fails, threading before the verdict, the blocklist,
//! rspamd's unreachable policy, release, `#block`, and no acknowledgement
//! to a sender failing alignment.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::mail::InboundMail;
use crate::outbox::OutKind;
use crate::outbox::templates::Templates;
use crate::spam::{BlockEntry, Filter};
use crate::ticket::Status;
use crate::triage::token::TokenMatcher;
use crate::triage::{Context, decide};

const SECRET: &[u8] = b"test-secret-0123456789";

/// `spam` without a `border` key is SpamAssassin's.
fn config(desk: &str, spam: &str) -> Config {
    let spam = if spam.contains("border =") { spam.to_owned() } else { format!("border = \"spamassassin\"\n{spam}") };
    let toml = format!(
        r#"
[store]
path = "/tmp/unused/db"
[desk]
display_name = "Example Support"
trusted_authserv_id = "mx.example.test"
{desk}
[smtp]
host = "127.0.0.1"
tls = "none"
[[mailboxes]]
name = "support"
address = "support@example.test"
host = "127.0.0.1"
tls = "none"
password = "x"
[[agents]]
id = "agent_alice"
email = "alice@example.test"
[spam]
{spam}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, toml).unwrap();
    Config::load_with_env(&p, Some(HashMap::new())).unwrap_or_else(|e| panic!("{e}"))
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
}

fn run(cfg: &Config, raw: &str, snap: &Snapshot) -> Decision {
    let mail = InboundMail::parse(raw.as_bytes()).unwrap();
    let templates = Templates::default();
    let tokens = TokenMatcher::new("Ticket");
    let ctx = Context {
        cfg,
        mailbox: &cfg.mailboxes[0],
        secret: SECRET,
        templates: &templates,
        tokens: &tokens,
        quiet: false,
    };
    decide(&mail, snap, &ctx, now())
}

fn snap() -> Snapshot {
    Snapshot { next_client: 7, next_ticket: 42, dedupe_key: "id:test@x".into(), ..Snapshot::default() }
}

const BORDER: &str = "Received: from client.example.net (client.example.net [203.0.113.7])\r\n\tby mx.example.test (Postfix) with ESMTP id 5B5F098C21A\r\n\tfor <support@example.test>; Mon,  7 Dec 2026 08:00:00 +0000 (UTC)\r\n";
const SA_SPAM: &str = "X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=7.3 required=5.0 tests=LAB autolearn=no\r\n";
const SA_HAM: &str = "X-Spam-Status: No, score=1.3 required=5.0 tests=LAB autolearn=no\r\n";
const FORGED_CLEAN: &str = "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-9.0 required=5.0\r\n";

/// A mail as our border delivers it: `above` the border's Received line
/// (written by the border), `below` it (written by the sender).
fn mail(above: &str, below: &str, from: &str, extra: &str) -> String {
    format!(
        "{above}{BORDER}{below}From: {from}\r\nTo: support@example.test\r\nSubject: Printer\r\nMessage-ID: <m1@example.net>\r\n{extra}\r\nIt smokes.\r\n"
    )
}

fn held(d: &Decision) -> Option<&Hold> {
    d.effects.iter().find_map(|e| match e {
        Effect::Hold(h) => Some(h.as_ref()),
        _ => None,
    })
}

fn nothing_else(d: &Decision) {
    assert_eq!(d.effects.len(), 1, "a held mail does nothing but wait: {:?}", d.effects);
    assert_eq!(d.outbox().count(), 0);
}

fn acks(d: &Decision) -> usize {
    d.outbox().filter(|m| m.kind == OutKind::Ack).count()
}

fn existing(cfg: &Config) -> TicketRecord {
    run(cfg, &mail(SA_HAM, "", "Ann <ann@example.net>", ""), &snap()).saved().unwrap().clone()
}

#[test]
fn the_borders_verdict_holds_spam_and_only_from_above_the_border() {
    let cfg = config("", "");
    let d = run(&cfg, &mail(SA_SPAM, "", "Spammer <s@spam.example>", ""), &snap());
    assert_eq!(d.outcome, Outcome::Held { source: HoldSource::Verdict(VerdictSource::Border(Filter::SpamAssassin)) });
    nothing_else(&d);
    let h = held(&d).unwrap();
    assert_eq!(h.score, Some(7.3));
    assert!(h.reason.starts_with("SpamAssassin at the border: X-Spam-Status Yes"), "{}", h.reason);
    assert_eq!(h.source.code(), "border_spamassassin");

    // The same headers written by the sender (below the border) hold nothing.
    let d = run(&cfg, &mail("", SA_SPAM, "Ann <ann@example.net>", ""), &snap());
    assert!(matches!(d.outcome, Outcome::Created { .. }), "{:?}", d.outcome);
    assert_eq!(acks(&d), 1);
    // A forged "clean" below never cleans the border's spam.
    let d = run(&cfg, &mail(SA_SPAM, FORGED_CLEAN, "Spammer <s@spam.example>", ""), &snap());
    assert!(matches!(d.outcome, Outcome::Held { .. }));
    // Ham at the border is ham.
    let d = run(&cfg, &mail(SA_HAM, SA_SPAM, "Ann <ann@example.net>", ""), &snap());
    assert!(matches!(d.outcome, Outcome::Created { .. }));
    // score_threshold is the desk's own bar.
    let strict = config("", "score_threshold = 1.0");
    let d = run(&strict, &mail(SA_HAM, "", "Ann <ann@example.net>", ""), &snap());
    assert_eq!(held(&d).unwrap().score, Some(1.3));
}

#[test]
fn threading_first_a_customers_reply_is_held_only_past_the_hard_limit() {
    let cfg = config("", "reply_hard_limit = 10.0");
    let rec = existing(&cfg);
    let s = Snapshot { by_thread: Some(rec.clone()), sender_client: Some("client_7".into()), ..snap() };
    let reply = |above: &str, from: &str| mail(above, "", from, "In-Reply-To: <t1@example.test>\r\n");
    let d = run(&cfg, &reply(SA_SPAM, "ann@example.net"), &s);
    assert_eq!(d.outcome, Outcome::Replied { ticket: 42, agent: None });
    let warned = d.effects.iter().any(|e| matches!(e, Effect::Warn(w) if w.contains("below spam.reply_hard_limit")));
    assert!(warned, "the verdict is logged: {:?}", d.effects);
    // Past the hard limit it is held even so.
    let heavy = "X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=12.5 required=5.0\r\n";
    assert!(matches!(run(&cfg, &reply(heavy, "ann@example.net"), &s).outcome, Outcome::Held { .. }));
    // A stranger threading into the ticket is no customer: held.
    let d = run(&cfg, &reply(SA_SPAM, "mallory@evil.test"), &Snapshot { by_thread: Some(rec.clone()), ..snap() });
    assert!(matches!(d.outcome, Outcome::Held { .. }));
    // rspamd's milter verdict has no score: a customer's reply is never held on it.
    let milter = config("", "border = \"rspamd\"\nplacement = \"milter\"");
    let x_spam = format!(
        "{BORDER}From: ann@example.net\r\nIn-Reply-To: <t1@example.test>\r\nSubject: s\r\nX-Spam: Yes\r\n\r\nx\r\n"
    );
    assert!(matches!(run(&milter, &x_spam, &s).outcome, Outcome::Replied { .. }));
    let stranger = x_spam.replace("ann@example.net", "new@example.org");
    let d = run(&milter, &stranger, &snap());
    assert_eq!(d.outcome, Outcome::Held { source: HoldSource::Verdict(VerdictSource::Border(Filter::Rspamd)) });
}

/// An agent answering a notification of ticket #5, which was merged into
/// #42, is proven for #42 by the threading rules (their notifications name
/// the old ticket): the door must see the same agent, or their reply would
/// be held on a score below the hard limit, or on the blocklist.
#[test]
fn an_agents_reply_through_a_merged_ticket_is_an_agents_reply_at_the_door() {
    let cfg = config("", "");
    let rec = existing(&cfg);
    let old = crate::triage::identity::agent_message_id(
        SECRET,
        5,
        "agent_alice",
        crate::triage::identity::tag("abc", "agent_notify", 0),
        now(),
        &cfg.desk.message_id_domain,
    );
    let s = Snapshot { by_thread: Some(rec), merged_via: vec![5], ..snap() };
    let raw = format!(
        "{SA_SPAM}{BORDER}From: alice@example.test\r\nTo: support@example.test\r\nIn-Reply-To: <{old}>\r\nSubject: Re: Printer\r\n\r\nWe are on it.\r\n"
    );
    let d = run(&cfg, &raw, &s);
    assert_eq!(d.outcome, Outcome::Replied { ticket: 42, agent: Some("agent_alice".into()) }, "{:?}", d.effects);
    let warned = d.effects.iter().any(|e| matches!(e, Effect::Warn(w) if w.contains("agent agent_alice")));
    assert!(warned, "the verdict is logged as an agent's: {:?}", d.effects);
    let entry = BlockEntry::parse("@example.test").unwrap();
    let d = run(&cfg, &raw.replace(SA_SPAM, SA_HAM), &Snapshot { blocked: Some(entry), ..s });
    assert_eq!(d.outcome, Outcome::Replied { ticket: 42, agent: Some("agent_alice".into()) }, "{:?}", d.effects);
}

#[test]
fn rspamds_own_verdict_and_the_unreachable_policy() {
    let spam = crate::spam::Verdict {
        spam: true,
        score: Some(15.0),
        source: VerdictSource::Scanner(Filter::Rspamd),
        reason: "rspamd: reject, score 15 / 15 (GTUBE 0)".into(),
    };
    let cfg = config("", "border = \"none\"");
    let plain = mail("", "", "Ann <ann@example.net>", "");
    let d = run(&cfg, &plain, &Snapshot { scan: Some(ScanResult::Verdict(spam.clone())), ..snap() });
    assert_eq!(d.outcome, Outcome::Held { source: HoldSource::Verdict(VerdictSource::Scanner(Filter::Rspamd)) });
    assert_eq!(held(&d).unwrap().score, Some(15.0));
    let ham = crate::spam::Verdict { spam: false, score: Some(1.0), ..spam };
    assert!(matches!(
        run(&cfg, &plain, &Snapshot { scan: Some(ScanResult::Verdict(ham)), ..snap() }).outcome,
        Outcome::Created { .. }
    ));

    let down = Snapshot {
        scan: Some(ScanResult::Failed { code: "unreachable".into(), reason: "connection refused".into() }),
        ..snap()
    };
    let d = run(&cfg, &plain, &down);
    assert!(matches!(d.outcome, Outcome::Created { .. }), "accept (the default) ingests it");
    assert_eq!(acks(&d), 1);
    let hold_cfg = config("", "border = \"none\"\nunreachable = \"hold\"");
    let d = run(&hold_cfg, &plain, &down);
    assert_eq!(d.outcome, Outcome::Held { source: HoldSource::Unreachable });
    assert!(held(&d).unwrap().reason.contains("connection refused"));
    // A customer's reply is not held because rspamd was away.
    let rec = existing(&hold_cfg);
    let s = Snapshot { by_thread: Some(rec), sender_client: Some("client_7".into()), ..down };
    let reply = mail("", "", "ann@example.net", "In-Reply-To: <t1@example.test>\r\n");
    assert!(matches!(run(&hold_cfg, &reply, &s).outcome, Outcome::Replied { .. }));
}

#[test]
fn blocked_senders_are_held_and_released_mail_goes_in() {
    let cfg = config("", "");
    let entry = BlockEntry::parse("@spam.example").unwrap();
    let raw = mail(SA_HAM, "", "s@mail.spam.example", "");
    let d = run(&cfg, &raw, &Snapshot { blocked: Some(entry.clone()), ..snap() });
    assert_eq!(d.outcome, Outcome::Held { source: HoldSource::Blocked });
    assert_eq!(held(&d).unwrap().reason, "blocked: @spam.example");
    nothing_else(&d);
    // Released by a person: a ticket and, the ordinary rules allowing, an ack.
    let spam = mail(SA_SPAM, "", "s@mail.spam.example", "");
    let d = run(&cfg, &spam, &Snapshot { blocked: Some(entry), released: true, ..snap() });
    assert!(matches!(d.outcome, Outcome::Created { .. }));
    assert_eq!(acks(&d), 1);
}

#[test]
fn an_agent_blocks_the_sender_with_block() {
    let cfg = config("trust_from_header = true", "");
    let rec = existing(&cfg);
    let s = Snapshot { by_thread: Some(rec), ..snap() };
    let raw = "From: alice@example.test\r\nTo: support@example.test\r\nIn-Reply-To: <t1@example.test>\r\nSubject: Re: Printer\r\n\r\n#block\r\nThis is a phishing run.\r\n".to_owned();
    let d = run(&cfg, &raw, &s);
    assert_eq!(d.outcome, Outcome::Replied { ticket: 42, agent: Some("agent_alice".into()) });
    let t = &d.saved().unwrap().ticket;
    assert_eq!(t.status, Status::Closed);
    assert!(t.tags.contains(&"spam".to_owned()));
    assert!(
        t.threads.iter().any(|e| e.message.contains("sender ann@example.net blocked by agent_alice")),
        "{:?}",
        t.threads
    );
    let block = BlockEntry::parse("ann@example.net").unwrap();
    assert!(d.effects.contains(&Effect::Block { entry: block, by: "agent_alice".into(), ticket: Some(42) }));
    assert!(d.outbox().all(|m| m.kind != OutKind::Relay), "nothing more goes to a blocked sender");
    assert!(t.threads.iter().any(|e| e.message.contains("phishing run") && e.internal), "the text is a note");
    // `#block` with a value is refused, nothing changes.
    let bad = raw.replace("#block\r\n", "#block now\r\n");
    assert!(matches!(run(&cfg, &bad, &s).outcome, Outcome::Rejected { .. }));
    // An agent on the blocklist is still let in (and it is logged).
    let entry = BlockEntry::parse("@example.test").unwrap();
    let note = raw.replace("#block\r\n", "#note\r\n");
    let d = run(&cfg, &note, &Snapshot { blocked: Some(entry), ..s });
    assert!(matches!(d.outcome, Outcome::Replied { .. }));
    assert!(d.effects.iter().any(|e| matches!(e, Effect::Warn(w) if w.contains("blocklist"))));
}

#[test]
fn no_acknowledgement_to_a_sender_failing_alignment() {
    let fail = "Authentication-Results: mx.example.test; spf=fail smtp.mailfrom=ann@example.net; dkim=none; dmarc=fail header.from=example.net\r\n";
    let pass = "Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=ann@example.net; dkim=none; dmarc=pass header.from=example.net\r\n";
    let on = config("", "");
    assert!(on.desk.acks_require_aligned_sender, "on by default where trusted_authserv_id is set");
    let d = run(&on, &mail(fail, "", "ann@example.net", ""), &snap());
    assert!(matches!(d.outcome, Outcome::Created { .. }), "the mail is a ticket all the same");
    assert_eq!(acks(&d), 0);
    assert!(d.effects.contains(&Effect::AckRefused(AckRefusal::DmarcFail)));
    assert!(d.outbox().any(|m| m.kind == OutKind::AgentNotify), "the agents are told");
    assert_eq!(acks(&run(&on, &mail(pass, "", "ann@example.net", ""), &snap())), 1);
    // Results written by the sender (below the border) count for nothing.
    assert_eq!(acks(&run(&on, &mail("", fail, "ann@example.net", ""), &snap())), 1);
    // With the setting off, the acknowledgement goes.
    let off = config("acks_require_aligned_sender = false", "");
    assert_eq!(acks(&run(&off, &mail(fail, "", "ann@example.net", ""), &snap())), 1);
    // The rate limit is counted the same way.
    let d = run(&off, &mail("", "", "ann@example.net", ""), &Snapshot { acks_last_hour: 99, ..snap() });
    assert!(d.effects.contains(&Effect::AckRefused(AckRefusal::RateLimit)));
}

fn results(v: &str) -> AuthResults {
    identity::parse_results(v).unwrap()
}

#[test]
fn alignment_follows_dmarc_then_spf_and_dkim() {
    let from = "ann@example.net";
    let r = |v: &str| alignment(&results(&format!("mx.example.test; {v}")), from);
    assert_eq!(r("dmarc=fail header.from=example.net"), Some(AckRefusal::DmarcFail));
    assert_eq!(r("spf=pass smtp.mailfrom=example.net; dmarc=fail"), Some(AckRefusal::DmarcFail));
    assert_eq!(r("spf=fail smtp.mailfrom=evil.test; dkim=none; dmarc=pass"), None);
    assert_eq!(r("spf=pass smtp.mailfrom=bounce@mail.example.net; dkim=none"), None, "a subdomain aligns");
    assert_eq!(r("spf=none smtp.mailfrom=x@example.net; dkim=pass header.d=example.net"), None);
    assert_eq!(r("spf=pass smtp.mailfrom=x@esp.test; dkim=pass header.d=esp.test"), Some(AckRefusal::Unaligned));
    assert_eq!(
        r("spf=softfail smtp.mailfrom=example.net; dkim=fail header.d=example.net"),
        Some(AckRefusal::Unaligned)
    );
    assert_eq!(r("spf=none; dkim=none; dmarc=none"), Some(AckRefusal::Unaligned));
    assert_eq!(r("iprev=pass"), None, "the border checked neither: nothing to judge");
    assert_eq!(r("spf=pass smtp.mailfrom=notexample.net"), Some(AckRefusal::Unaligned), "not a suffix match");
}
