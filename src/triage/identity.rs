//! Who is writing: our own generated Message-IDs, the agent-only ids that
//! carry an HMAC (and expire), and the DKIM verdict our own border MTA
//! recorded in `Authentication-Results`.
//!
//! What a DKIM pass proves, and what it does not: that the domain in
//! `header.d` signed the mail, i.e. the domain vouches for the From. It
//! does not prove which person of that domain wrote it unless the signature
//! names the address (`header.i`). So it counts for an agent only when the
//! signing domain is the From's domain and, when `header.i` names an
//! address, that address is the From.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::{Agent, Config};
use crate::mail::{InboundMail, TraceKind, normalise_id};

/// Message-IDs of the first format (`ticketd.<n>.<kind>.<tag>@domain` and
/// `ticketd.<n>.n.<agent>.<tag>.<day>.<mac>@domain`): still recognised as
/// ours, and old notifications still prove an agent until they expire.
const OLD_PREFIX: &str = "ticketd.";

/// The current format: `t` and 32 to 40 base32 characters of
/// `[kind][number as LEB128][day u16][tag 4][mac 12]`, at most 64
/// characters with the brackets for a domain of up to 24, so an
/// `In-Reply-To:` line never has to be folded (Python's `email` folds it as
/// an encoded word past 78 columns). Every id carries a MAC (96 bits) under
/// the desk secret over its kind, ticket, day, tag and, for an agent
/// notification, the agent: only someone who received the mail can name
/// it, so a delivery report about it, or an agent's answer quoting it,
/// proves it saw it.
const PREFIX: &str = "t";
const MAC_BYTES: usize = 12;
const TAG_BYTES: usize = 4;

/// What kind of mail an id names (part of the MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Ack = 1,
    /// An agent notification: its MAC covers the agent too.
    Notify = 2,
    Relay = 3,
    Resolved = 4,
    CommandError = 5,
    Receipt = 6,
    /// Any other notice about a ticket (reminders, escalations, digests).
    Notice = 7,
}

impl IdKind {
    /// What the Message-ID of a mail of this kind says it is.
    pub fn of(kind: crate::outbox::OutKind) -> IdKind {
        use crate::outbox::OutKind;
        match kind {
            OutKind::Ack => IdKind::Ack,
            OutKind::AgentNotify => IdKind::Notify,
            OutKind::Relay => IdKind::Relay,
            OutKind::Resolved => IdKind::Resolved,
            OutKind::CommandError => IdKind::CommandError,
            OutKind::Receipt => IdKind::Receipt,
            OutKind::Digest => IdKind::Notice,
            OutKind::Escalation => IdKind::Notify,
            OutKind::Reminder => IdKind::Notice,
        }
    }

    fn from_byte(b: u8) -> Option<IdKind> {
        Some(match b {
            1 => IdKind::Ack,
            2 => IdKind::Notify,
            3 => IdKind::Relay,
            4 => IdKind::Resolved,
            5 => IdKind::CommandError,
            6 => IdKind::Receipt,
            7 => IdKind::Notice,
            _ => return None,
        })
    }
}

/// A deterministic tag for the mail we generate in answer to one change,
/// from a seed that names the change (the inbound mail's dedupe key, an
/// API change's ticket and version) and the mail's place in it.
pub fn tag(seed: &str, kind: &str, n: usize) -> [u8; TAG_BYTES] {
    let d = Sha256::digest(format!("{seed}\n{kind}\n{n}").as_bytes());
    [d[0], d[1], d[2], d[3]]
}

fn day_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

fn id_mac(secret: &[u8], kind: IdKind, number: u64, day: u16, tag: &[u8], agent: &str) -> [u8; MAC_BYTES] {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"ticketd message-id 1\n");
    m.update(&[kind as u8]);
    m.update(&number.to_be_bytes());
    m.update(&day.to_be_bytes());
    m.update(tag);
    m.update(agent.to_ascii_lowercase().as_bytes());
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_BYTES];
    out.copy_from_slice(&full[..MAC_BYTES]);
    out
}

/// One of our Message-IDs, written at `issued`. `agent` is the recipient
/// of an agent notification (and nothing for the other kinds).
pub fn message_id(
    secret: &[u8],
    kind: IdKind,
    number: u64,
    tag: [u8; TAG_BYTES],
    issued: DateTime<Utc>,
    agent: &str,
    domain: &str,
) -> String {
    let day = u16::try_from(day_of(issued).max(0)).unwrap_or(u16::MAX);
    let mut b = vec![kind as u8];
    let mut n = number;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            b.push(byte);
            break;
        }
        b.push(byte | 0x80);
    }
    b.extend_from_slice(&day.to_be_bytes());
    b.extend_from_slice(&tag);
    b.extend_from_slice(&id_mac(secret, kind, number, day, &tag, agent));
    let local = data_encoding::BASE32_NOPAD.encode(&b).to_ascii_lowercase();
    format!("{PREFIX}{local}@{}", domain.to_ascii_lowercase())
}

/// The parts of an id of the current format, not yet checked.
struct Parsed {
    kind: IdKind,
    number: u64,
    day: u16,
    tag: [u8; TAG_BYTES],
    mac: [u8; MAC_BYTES],
}

fn parse_id(id: &str) -> Option<Parsed> {
    let id = normalise_id(id);
    let local = id.split('@').next()?.strip_prefix(PREFIX)?;
    if !(30..=50).contains(&local.len()) {
        return None;
    }
    let b = data_encoding::BASE32_NOPAD.decode(local.to_ascii_uppercase().as_bytes()).ok()?;
    let kind = IdKind::from_byte(*b.first()?)?;
    let (mut number, mut shift, mut i) = (0u64, 0u32, 1usize);
    loop {
        let byte = *b.get(i)?;
        i += 1;
        number |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let rest = b.get(i..)?;
    if rest.len() != 2 + TAG_BYTES + MAC_BYTES {
        return None;
    }
    let day = u16::from_be_bytes([rest[0], rest[1]]);
    let tag = rest[2..2 + TAG_BYTES].try_into().ok()?;
    let mac = rest[2 + TAG_BYTES..].try_into().ok()?;
    Some(Parsed { kind, number, day, tag, mac })
}

fn mac_ok(secret: &[u8], p: &Parsed, agent: &str) -> bool {
    use subtle::ConstantTimeEq;
    // Constant-time: the MAC is a credential.
    bool::from(id_mac(secret, p.kind, p.number, p.day, &p.tag, agent).ct_eq(&p.mac))
}

/// The ticket and kind of a mail we really sent under `secret`, if `id`
/// names one: the check a delivery report must pass before it counts.
/// `agents` are the configured agent ids (a notification's MAC names one).
pub fn verify_ours<'a>(secret: &[u8], id: &str, agents: impl IntoIterator<Item = &'a str>) -> Option<(u64, IdKind)> {
    let p = parse_id(id)?;
    let ok = match p.kind {
        IdKind::Notify => agents.into_iter().any(|a| mac_ok(secret, &p, a)),
        _ => mac_ok(secret, &p, ""),
    };
    ok.then_some((p.number, p.kind))
}

fn old_mac(secret: &[u8], number: u64, agent_id: &str, tag: &str, day: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(format!("{number}:{}:{tag}:{day}", agent_id.to_ascii_lowercase()).as_bytes());
    hex::encode(&m.finalize().into_bytes()[..12])
}

/// The agent-only Message-ID of a notification sent at `issued`: only
/// someone who received it can reference it, which is the proof an agent's
/// reply carries, for [`Config`]'s `desk.agent_proof_days` after `issued`.
pub fn agent_message_id(
    secret: &[u8],
    number: u64,
    agent_id: &str,
    tag: [u8; TAG_BYTES],
    issued: DateTime<Utc>,
    domain: &str,
) -> String {
    message_id(secret, IdKind::Notify, number, tag, issued, agent_id, domain)
}

/// Does `id` prove that `agent_id` received a notification for ticket
/// `number` no more than `max_age_days` before `now`?
pub fn verify_agent_id(
    secret: &[u8],
    id: &str,
    number: u64,
    agent_id: &str,
    now: DateTime<Utc>,
    max_age_days: u32,
) -> bool {
    let fresh = |issued: i64| (0..=i64::from(max_age_days)).contains(&(day_of(now) - issued));
    if let Some(p) = parse_id(id) {
        return p.kind == IdKind::Notify
            && p.number == number
            && fresh(i64::from(p.day))
            && mac_ok(secret, &p, agent_id);
    }
    let id = normalise_id(id);
    let Some(local) = id.strip_prefix(OLD_PREFIX).and_then(|s| s.split('@').next()) else { return false };
    let parts: Vec<&str> = local.split('.').collect();
    let [n, "n", agent, tag, day, given] = parts.as_slice() else { return false };
    if n.parse::<u64>().ok() != Some(number) || !agent.eq_ignore_ascii_case(agent_id) {
        return false;
    }
    let Ok(issued) = i64::from_str_radix(day, 16) else { return false };
    if !fresh(issued) {
        return false;
    }
    let want = old_mac(secret, number, agent, tag, day);
    use subtle::ConstantTimeEq;
    want.len() == given.len() && bool::from(want.as_bytes().ct_eq(given.as_bytes()))
}

/// A Message-ID that looks like one ticketd generates (under our domain);
/// whether we really sent it is the store's to say.
pub fn is_our_id(id: &str, domain: &str) -> bool {
    let id = normalise_id(id);
    let ours = id.starts_with(OLD_PREFIX) || parse_id(&id).is_some();
    ours && id.ends_with(&format!("@{}", domain.to_ascii_lowercase()))
}

/// How an agent proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// References a notification sent to them (not expired).
    Notification,
    /// Our border MTA recorded a DKIM pass aligned with the From.
    Dkim,
    /// `desk.trust_from_header`: the From alone.
    FromHeader,
}

/// The configured agent this mail is provably from, if any, and how.
pub fn proven_agent<'c>(
    mail: &InboundMail,
    ticket: Option<u64>,
    cfg: &'c Config,
    secret: &[u8],
    now: DateTime<Utc>,
) -> Option<(&'c Agent, Proof)> {
    let from = mail.from.as_ref()?;
    let agent = cfg.agent_by_email(&from.address)?;
    if let Some(n) = ticket
        && mail.parent_ids().any(|id| verify_agent_id(secret, id, n, &agent.id, now, cfg.desk.agent_proof_days))
    {
        return Some((agent, Proof::Notification));
    }
    if let Some(authserv) = &cfg.desk.trusted_authserv_id
        && dkim_pass(mail, authserv, &from.address)
    {
        return Some((agent, Proof::Dkim));
    }
    if cfg.desk.trust_from_header {
        return Some((agent, Proof::FromHeader));
    }
    None
}

/// The host a `Received:` header says received the mail (`by HOST`).
fn received_by(value: &str) -> Option<String> {
    let clean = strip_comments(value);
    let mut words = clean.split_whitespace();
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case("by") {
            return words.next().map(|h| h.trim_end_matches(';').to_ascii_lowercase());
        }
    }
    None
}

/// Our border's own results: an `Authentication-Results` with our
/// authserv-id standing above the topmost `Received:` our border wrote
/// (`by <authserv-id>`). A sender can put any header into a mail, but only
/// below the border's Received line; and with no such line we cannot tell
/// ours from a forgery, so nothing counts.
pub fn border_results<'m>(mail: &'m InboundMail, authserv_id: &str) -> Option<&'m str> {
    let id = authserv_id.to_ascii_lowercase();
    let border = mail
        .trace
        .iter()
        .position(|t| t.kind == TraceKind::Received && received_by(&t.value).is_some_and(|h| h == id))?;
    mail.trace[..border]
        .iter()
        .filter(|t| t.kind == TraceKind::AuthResults)
        .map(|t| t.value.as_str())
        .find(|v| parse_results(v).is_some_and(|r| r.authserv_id.eq_ignore_ascii_case(authserv_id)))
}

/// DKIM pass recorded by our own border, aligned with the From address.
pub fn dkim_pass(mail: &InboundMail, authserv_id: &str, from: &str) -> bool {
    let Some((_, domain)) = from.rsplit_once('@') else { return false };
    let Some(header) = border_results(mail, authserv_id) else { return false };
    let Some(results) = parse_results(header) else { return false };
    results.methods.iter().any(|m| {
        m.method == "dkim"
            && m.result == "pass"
            && m.prop("header.d").is_some_and(|d| d.eq_ignore_ascii_case(domain))
            && m.prop("header.i").is_none_or(|i| match i.rsplit_once('@') {
                // `@domain` (or `@sub.domain`) vouches for the domain only.
                Some(("", d)) => d.eq_ignore_ascii_case(domain),
                Some(_) => i.eq_ignore_ascii_case(from),
                None => false,
            })
    })
}

/// One `method=result ptype.property=value …` clause of RFC 8601.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    pub method: String,
    pub result: String,
    pub props: Vec<(String, String)>,
}

impl MethodResult {
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.props.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    pub authserv_id: String,
    pub methods: Vec<MethodResult>,
}

/// Removes RFC 5322 comments (nested parentheses), leaving quoted strings
/// intact, so `(dkim=pass)` in a comment is never read as a result.
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => {
                depth += 1;
                if depth == 1 {
                    out.push(' ');
                }
            }
            ')' if !quoted && depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Splits on `sep` outside quoted strings.
fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quoted {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(String::new());
            continue;
        }
        if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

/// Tokens separated by whitespace outside quoted strings, quotes removed,
/// each with the offset where its first quote began (a quote before the
/// `=` means the name itself was quoted: not a property).
fn tokens(s: &str) -> Vec<(String, Option<usize>)> {
    let mut out: Vec<(String, Option<usize>)> = Vec::new();
    let mut cur = String::new();
    let mut first_quote: Option<usize> = None;
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
            first_quote.get_or_insert(cur.len());
        } else if c.is_whitespace() && !quoted {
            if !cur.is_empty() || first_quote.is_some() {
                out.push((std::mem::take(&mut cur), first_quote.take()));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() || first_quote.is_some() {
        out.push((cur, first_quote));
    }
    out
}

/// Parses an `Authentication-Results` value (RFC 8601): the authserv-id
/// (and an optional version), then `;`-separated results. Comments are
/// ignored and quoted strings are values, never results.
pub fn parse_results(value: &str) -> Option<AuthResults> {
    let clean = strip_comments(value);
    let mut clauses = split_unquoted(&clean, ';').into_iter();
    let head = clauses.next()?;
    let head = tokens(&head);
    let (authserv_id, quoted) = head.first()?.clone();
    if quoted.is_some() || authserv_id.is_empty() {
        return None;
    }
    let mut methods = Vec::new();
    for clause in clauses {
        let toks = tokens(&clause);
        let Some((first, None)) = toks.first().cloned() else { continue };
        let Some((method, result)) = first.split_once('=') else { continue };
        // `method/version=result`.
        let method = method.split('/').next().unwrap_or(method).trim().to_ascii_lowercase();
        let mut props = Vec::new();
        for (t, quote) in toks.iter().skip(1) {
            let Some((k, v)) = t.split_once('=') else { continue };
            if quote.is_some_and(|q| q <= k.len()) {
                continue;
            }
            let k = k.to_ascii_lowercase();
            if k.contains('.') {
                props.push((k, v.to_owned()));
            }
        }
        methods.push(MethodResult { method, result: result.trim().to_ascii_lowercase(), props });
    }
    Some(AuthResults { authserv_id, methods })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(days: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap() + chrono::Duration::days(days)
    }

    #[test]
    fn agent_ids_verify_only_for_their_ticket_agent_and_time() {
        let s = b"0123456789abcdef0123";
        let t = tag("seed", "notify", 0);
        let id = agent_message_id(s, 42, "agent_Alice", t, at(0), "example.test");
        assert!(verify_agent_id(s, &format!("<{id}>"), 42, "agent_alice", at(0), 30));
        assert!(verify_agent_id(s, &id.to_uppercase(), 42, "agent_alice", at(0), 30), "ids are compared lower-cased");
        assert!(verify_agent_id(s, &id, 42, "agent_alice", at(30), 30));
        assert!(!verify_agent_id(s, &id, 42, "agent_alice", at(31), 30), "expired");
        assert!(!verify_agent_id(s, &id, 42, "agent_alice", at(-2), 30), "from the future");
        assert!(!verify_agent_id(s, &id, 43, "agent_alice", at(0), 30));
        assert!(!verify_agent_id(s, &id, 42, "agent_bob", at(0), 30));
        assert!(!verify_agent_id(b"another-secret-entirely", &id, 42, "agent_alice", at(0), 30));
        // Any change to the id breaks it.
        let local = id.split('@').next().unwrap();
        for i in 1..local.len() {
            let mut b = id.clone().into_bytes();
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            let forged = String::from_utf8(b).unwrap();
            assert!(!verify_agent_id(s, &forged, 42, "agent_alice", at(0), 30), "{forged}");
        }
        // Moving the date forward to escape the expiry breaks the MAC.
        let later = agent_message_id(b"guess", 42, "agent_alice", t, at(40), "example.test");
        assert!(!verify_agent_id(s, &later, 42, "agent_alice", at(40), 30));
        assert!(is_our_id(&id, "EXAMPLE.test"));
        assert!(!is_our_id(&id.replace("example.test", "evil.test"), "example.test"));
        assert!(!is_our_id("t123@example.test", "example.test"), "a look-alike is not ours");
    }

    #[test]
    fn ids_fit_an_unfolded_in_reply_to_line_and_keep_their_proof() {
        let s = b"0123456789abcdef0123";
        for number in [1u64, 42, 99_999, 2_000_000, u64::from(u32::MAX)] {
            let id = message_id(s, IdKind::Ack, number, tag("x", "ack", 0), at(0), "", "support.example.com");
            let header = format!("In-Reply-To: <{id}>");
            assert!(id.len() + 2 <= 64, "{} characters: {id}", id.len() + 2);
            assert!(header.len() <= 78, "{header}");
            assert_eq!(verify_ours(s, &id, []), Some((number, IdKind::Ack)));
            assert_eq!(verify_ours(b"other-secret-0123456", &id, []), None, "a report about it proves it saw it");
        }
        // The longest domain the config accepts, and ticket numbers up to
        // the bound it names: still 64.
        let domain = format!("{}.test", "d".repeat(crate::config::defaults::MAX_MESSAGE_ID_DOMAIN_CHARS - 5));
        for number in [1u64, 2_097_151] {
            let id = agent_message_id(s, number, "agent_bob", tag("x", "notify", 1), at(40_000), &domain);
            assert!(id.len() + 2 <= 64, "{} characters: {id}", id.len() + 2);
        }
        let n = agent_message_id(s, 7, "agent_bob", tag("x", "notify", 1), at(0), "example.test");
        assert_eq!(verify_ours(s, &n, ["agent_alice", "agent_bob"]), Some((7, IdKind::Notify)));
        assert_eq!(verify_ours(s, &n, ["agent_alice"]), None);
    }

    #[test]
    fn old_agent_ids_still_prove_until_they_expire() {
        let s = b"0123456789abcdef0123";
        let day = format!("{:x}", day_of(at(0)));
        let mac = old_mac(s, 42, "agent_alice", "abc123", &day);
        let id = format!("ticketd.42.n.agent_alice.abc123.{day}.{mac}@example.test");
        assert!(verify_agent_id(s, &id, 42, "agent_alice", at(1), 30));
        assert!(!verify_agent_id(s, &id, 42, "agent_alice", at(31), 30));
        assert!(!verify_agent_id(s, &id.replace("abc123", "abc124"), 42, "agent_alice", at(1), 30));
        assert!(is_our_id(&id, "example.test"));
        assert_eq!(verify_ours(s, &id, ["agent_alice"]), None, "old ids prove nothing about a report");
    }

    fn mail(headers: &str) -> InboundMail {
        let raw = format!("{headers}From: alice@corp.test\r\nSubject: x\r\nMessage-ID: <m@corp.test>\r\n\r\nhi\r\n");
        InboundMail::parse(raw.as_bytes()).unwrap()
    }

    const BORDER: &str = "Received: from sender.corp.test by mx.example.test (Postfix) with ESMTPS id 1; Mon, 1 Jan 2026 10:00:00 +0000\r\n";

    #[test]
    fn only_our_borders_results_count() {
        let ours = "Authentication-Results: mx.example.test; dkim=pass header.d=corp.test header.s=sel; spf=pass\r\n";
        assert!(dkim_pass(&mail(&format!("{ours}{BORDER}")), "mx.example.test", "alice@corp.test"));
        assert!(
            !dkim_pass(&mail(&format!("{ours}{BORDER}")), "mx.example.test", "alice@other.test"),
            "aligned with From"
        );
        assert!(!dkim_pass(&mail(&format!("{ours}{BORDER}")), "mx.evil.test", "alice@corp.test"));
        // A sender-supplied header sits below the border's Received line.
        assert!(
            !dkim_pass(&mail(&format!("{BORDER}{ours}")), "mx.example.test", "alice@corp.test"),
            "below the border"
        );
        // No Received line of our border at all: nothing can be told apart.
        assert!(!dkim_pass(&mail(ours), "mx.example.test", "alice@corp.test"), "no border line");
        // Internal hops may add Received lines above.
        let inner = "Received: from mx.example.test by imap.example.test with LMTP; Mon, 1 Jan 2026 10:00:01 +0000\r\n";
        assert!(dkim_pass(&mail(&format!("{inner}{ours}{BORDER}")), "mx.example.test", "alice@corp.test"));
        let fail = "Authentication-Results: mx.example.test; dkim=fail header.d=corp.test\r\n";
        assert!(!dkim_pass(&mail(&format!("{fail}{BORDER}")), "mx.example.test", "alice@corp.test"));
    }

    #[test]
    fn quoted_strings_and_comments_are_not_results() {
        for v in [
            "mx.example.test; none reason=\"dkim=pass header.d=corp.test\"",
            "mx.example.test; dkim=fail (dkim=pass header.d=corp.test) header.d=corp.test",
            "mx.example.test (dkim=pass header.d=corp.test); spf=pass smtp.mailfrom=corp.test",
        ] {
            let h = format!("Authentication-Results: {v}\r\n{BORDER}");
            assert!(!dkim_pass(&mail(&h), "mx.example.test", "alice@corp.test"), "{v}");
        }
        let r =
            parse_results("mx.example.test 1; dkim/1=pass (good) header.d=corp.test header.b=\"ab;cd\"; spf=neutral")
                .unwrap();
        assert_eq!(r.authserv_id, "mx.example.test");
        assert_eq!(r.methods.len(), 2);
        assert_eq!(r.methods[0].method, "dkim");
        assert_eq!(r.methods[0].prop("header.b"), Some("ab;cd"));
    }

    #[test]
    fn an_identity_in_header_i_must_be_the_from() {
        let h = |i: &str| {
            mail(&format!(
                "Authentication-Results: mx.example.test; dkim=pass header.d=corp.test header.i={i}\r\n{BORDER}"
            ))
        };
        assert!(dkim_pass(&h("alice@corp.test"), "mx.example.test", "alice@corp.test"));
        assert!(dkim_pass(&h("@corp.test"), "mx.example.test", "alice@corp.test"), "domain-level identity");
        assert!(
            !dkim_pass(&h("mallory@corp.test"), "mx.example.test", "alice@corp.test"),
            "someone else of the domain"
        );
    }
}
