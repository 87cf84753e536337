//! Raw RFC 5322 bytes → [`InboundMail`], the owned, parser-independent view
//! the rest of ticketd works with. mail-parser stays inside this module.
//!
//! Parsing is bounded and never fatal: the MIME structure is split by
//! [`mime`] (linear, at most [`MAX_MIME_DEPTH`] levels and [`MAX_PARTS`]
//! entities), charsets are checked and guessed by [`charset`], HTML is
//! rendered by [`html`], and every cap that cuts something, every guess and
//! every fallback leaves a short note in [`InboundMail::notes`]. Text that
//! leaves this module is cleaned: no `\r`, no NUL or other control
//! characters, no bidi overrides in single-line values.

pub mod charset;
pub mod html;
pub mod mailbox;
pub mod mime;
pub mod parent;
pub mod quote;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

use mime::{Entity, Kind, Tree};

pub use html::MAX_HTML_INPUT;
pub use mime::{MAX_DEPTH as MAX_MIME_DEPTH, MAX_HEADER_BYTES, MAX_PARTS};

/// Attachments kept per mail.
pub const MAX_ATTACHMENTS: usize = 100;
/// Addresses read from each of To and Cc.
pub const MAX_ADDRESSES: usize = 500;
/// Subject length in characters; triage caps titles further.
pub const MAX_SUBJECT_CHARS: usize = 2000;
/// Display name length in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Body text kept; the raw mail is stored whole elsewhere.
pub const MAX_BODY_BYTES: usize = 2 << 20;
/// Message-IDs kept from References (the newest).
pub const MAX_REFERENCES: usize = 100;
/// Message-IDs longer than this are dropped: no real client makes them and
/// they would break the headers of every reply.
pub const MAX_ID_LEN: usize = 250;
/// Authentication-Results headers kept (the topmost, added last).
pub const MAX_AUTH_RESULTS: usize = 20;
/// Received and Authentication-Results headers kept, from the top.
pub const MAX_TRACE: usize = 100;

/// Verdict headers kept per header name (the topmost), for [`crate::spam`].
pub const MAX_VERDICT_HEADERS: usize = 10;
/// Bytes of a verdict header's raw value kept; the verdict and the score
/// stand at its start.
pub const MAX_VERDICT_VALUE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    Received,
    AuthResults,
    /// A spam filter's verdict header; which of them count is
    /// [`crate::spam::verdict`]'s to decide from where they stand.
    Verdict(VerdictHeader),
}

/// The verdict headers of SpamAssassin and rspamd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerdictHeader {
    /// `X-Spam-Flag: YES` (SpamAssassin, spam only).
    SpamFlag,
    /// `X-Spam-Status: Yes, score=7.3 required=5.0 tests=...` (SpamAssassin; rspamd optionally).
    SpamStatus,
    /// `X-Spam-Score: 7.3` (SpamAssassin when configured, amavis).
    SpamScore,
    /// `X-Spam: Yes` (rspamd's milter for "add header").
    Spam,
    /// `X-Spamd-Result: default: True [12.40 / 15.00]; SYMBOL(1.00)...` (rspamd).
    SpamdResult,
    /// `X-Rspamd-Action: add header` (rspamd).
    RspamdAction,
}

impl VerdictHeader {
    pub const ALL: [VerdictHeader; 6] = [
        VerdictHeader::SpamFlag,
        VerdictHeader::SpamStatus,
        VerdictHeader::SpamScore,
        VerdictHeader::Spam,
        VerdictHeader::SpamdResult,
        VerdictHeader::RspamdAction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VerdictHeader::SpamFlag => "X-Spam-Flag",
            VerdictHeader::SpamStatus => "X-Spam-Status",
            VerdictHeader::SpamScore => "X-Spam-Score",
            VerdictHeader::Spam => "X-Spam",
            VerdictHeader::SpamdResult => "X-Spamd-Result",
            VerdictHeader::RspamdAction => "X-Rspamd-Action",
        }
    }

    pub fn from_name(name: &str) -> Option<VerdictHeader> {
        VerdictHeader::ALL.into_iter().find(|h| h.name().eq_ignore_ascii_case(name))
    }
}

/// One trace header: who handled the mail, or what they found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub kind: TraceKind,
    pub value: String,
}
/// Notes kept per mail.
const MAX_NOTES: usize = 30;
const MAX_IN_REPLY_TO: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    #[error("empty message")]
    Empty,
    #[error("not an email: no From, Message-ID, Subject or Date header could be parsed")]
    NotAMessage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAddress {
    /// Lower-cased, the normalised form clients are keyed by.
    pub address: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundAttachment {
    pub filename: String,
    pub mime_type: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// The usual signs that a mail was sent by a machine (RFC 3834 and the
/// de-facto headers autoresponders and list servers add).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoSigns {
    pub auto_submitted: Option<String>,
    pub precedence: Option<String>,
    pub list_id: bool,
    pub x_autoreply: bool,
    /// `X-Auto-Response-Suppress` (Exchange) asks for no automatic answer
    /// of the kinds `All`, `OOF` or `AutoReply`.
    pub auto_response_suppress: bool,
    pub null_return_path: bool,
    pub daemon_sender: bool,
}

impl AutoSigns {
    pub fn is_automatic(&self) -> bool {
        self.auto_submitted.as_deref().is_some_and(|v| v != "no")
            || matches!(self.precedence.as_deref(), Some("bulk" | "junk" | "list" | "auto_reply"))
            || self.list_id
            || self.x_autoreply
            || self.null_return_path
            || self.daemon_sender
    }
}

/// What a `multipart/report; report-type=delivery-status` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Message-ID of the mail that failed, from the returned message or headers.
    pub original_message_id: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub final_recipient: Option<String>,
    pub diagnostic: Option<String>,
}

impl DeliveryReport {
    pub fn is_failure(&self) -> bool {
        self.action.as_deref().is_none_or(|a| a.eq_ignore_ascii_case("failed"))
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "Delivery {} for {}",
            self.action.as_deref().unwrap_or("failed"),
            self.final_recipient.as_deref().unwrap_or("an unknown recipient")
        );
        if let Some(st) = &self.status {
            s.push_str(&format!(" (status {st})"));
        }
        if let Some(d) = &self.diagnostic {
            s.push_str(&format!(": {d}"));
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMail {
    /// Without angle brackets, as the sender wrote it.
    pub message_id: Option<String>,
    pub raw_sha256: String,
    /// The first usable address of From, else of Sender, Reply-To or
    /// Return-Path (a note says which); `None` with [`Self::from_problem`].
    pub from: Option<MailAddress>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub date: Option<DateTime<Utc>>,
    /// Every inline text/plain and text/html part in order (HTML converted),
    /// joined by a blank line; of a multipart/alternative the plain part
    /// unless it is blank. Clean: no `\r`, no control characters but `\n`
    /// and `\t`.
    pub body: String,
    pub attachments: Vec<InboundAttachment>,
    pub auto: AutoSigns,
    pub report: Option<DeliveryReport>,
    /// Raw values of every `Authentication-Results` header, top first.
    pub auth_results: Vec<String>,
    /// `Received`, `Authentication-Results` and spam verdict headers in
    /// order, top first.
    pub trace: Vec<Trace>,
    /// What was cut, guessed or changed while parsing, one short sentence
    /// each, for `system` thread entries.
    pub notes: Vec<String>,
    /// Why `from` is `None`.
    pub from_problem: Option<String>,
    /// SHA-256 over what a person sees: From address, Subject, Date, body
    /// and the attachments' hashes. Copies of one mail that travelled
    /// different paths compare equal; different mails that share a
    /// Message-ID do not.
    pub content_sha256: String,
}

impl InboundMail {
    /// Every id this mail points back to: In-Reply-To first, then References
    /// newest first (the closest ancestor is the best match).
    pub fn parent_ids(&self) -> impl Iterator<Item = &str> {
        self.in_reply_to.iter().chain(self.references.iter().rev()).map(String::as_str)
    }

    /// Never panics; time and memory are linear in `raw.len()`.
    pub fn parse(raw: &[u8]) -> Result<InboundMail, MailError> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(MailError::Empty);
        }
        let parser = MessageParser::default();
        let tree = mime::walk(raw, &parser);
        let mut notes = Notes::default();
        for n in &tree.notes {
            notes.push(*n);
        }
        let root_header: &[u8] = &tree.entities[0].header;
        let decoded_header: Vec<u8>;
        let header: &[u8] = if charset::header_block_needs_decoding(root_header) {
            let tld = parser.parse_headers(root_header).as_ref().and_then(sender_tld);
            let (block, enc) = charset::transcode_header_block(root_header, body_charset_hint(&tree), tld.as_deref());
            notes.push(format!("raw 8-bit header text read as {}", enc.name()));
            decoded_header = block;
            &decoded_header
        } else {
            root_header
        };
        let Some(msg) = parser.parse_headers(header) else { return Err(MailError::NotAMessage) };
        if msg.from().is_none()
            && msg.sender().is_none()
            && msg.message_id().is_none()
            && msg.subject().is_none()
            && msg.date().is_none()
        {
            return Err(MailError::NotAMessage);
        }
        let tld = sender_tld(&msg);
        let (from, from_problem) = resolve_from(&msg, &mut notes);

        let header_text =
            |name: &str| msg.header(name).and_then(|v| v.as_text()).map(|s| clean_line(s).to_ascii_lowercase());
        let from_local = from.as_ref().map(|f| f.address.rsplit_once('@').map_or("", |(l, _)| l).to_owned());
        let auto = AutoSigns {
            auto_submitted: header_text("Auto-Submitted").map(|v| v.split(';').next().unwrap_or("").trim().to_owned()),
            precedence: header_text("Precedence"),
            list_id: msg.header(HeaderName::ListId).is_some(),
            x_autoreply: msg.header("X-Autoreply").is_some()
                || msg.header("X-Autorespond").is_some()
                || msg.header("X-Autoresponder").is_some(),
            auto_response_suppress: header_text("X-Auto-Response-Suppress")
                .is_some_and(|v| v.split([',', ' ', ';']).any(|t| matches!(t.trim(), "all" | "oof" | "autoreply"))),
            null_return_path: matches!(msg.header(HeaderName::ReturnPath), Some(HeaderValue::Empty))
                || msg.header_raw(HeaderName::ReturnPath).is_some_and(|r| r.trim() == "<>"),
            daemon_sender: from_local.as_deref().is_some_and(|l| {
                let l = l.to_ascii_lowercase();
                l == "mailer-daemon" || l == "postmaster"
            }),
        };

        // Received and Authentication-Results in order, top first: which
        // results our own border added is told by where they stand. The
        // spam verdict headers go in between where they stand, under their
        // own bound per name, so a flood of one kind never pushes out
        // another.
        let mut kept = (0usize, [0usize; VerdictHeader::ALL.len()]);
        let trace: Vec<Trace> = msg
            .headers()
            .iter()
            .filter_map(|h| {
                let (kind, limit, max_value) = if h.name().eq_ignore_ascii_case("Authentication-Results") {
                    (TraceKind::AuthResults, MAX_TRACE, usize::MAX)
                } else if h.name().eq_ignore_ascii_case("Received") {
                    (TraceKind::Received, MAX_TRACE, usize::MAX)
                } else if let Some(v) = VerdictHeader::from_name(h.name()) {
                    (TraceKind::Verdict(v), MAX_VERDICT_HEADERS, MAX_VERDICT_VALUE)
                } else {
                    return None;
                };
                let count = match kind {
                    TraceKind::Verdict(v) => &mut kept.1[v as usize],
                    TraceKind::Received | TraceKind::AuthResults => &mut kept.0,
                };
                if *count >= limit {
                    return None;
                }
                let raw = header.get(h.offset_start() as usize..h.offset_end() as usize)?;
                let raw = &raw[..raw.len().min(max_value)];
                *count += 1;
                Some(Trace { kind, value: clean_line(&String::from_utf8_lossy(raw)) })
            })
            .collect();
        let mut auth_results: Vec<String> =
            trace.iter().filter(|t| t.kind == TraceKind::AuthResults).map(|t| t.value.clone()).collect();
        if auth_results.len() > MAX_AUTH_RESULTS {
            notes.push(format!(
                "{} Authentication-Results headers over the limit of {MAX_AUTH_RESULTS} were ignored",
                auth_results.len() - MAX_AUTH_RESULTS
            ));
            auth_results.truncate(MAX_AUTH_RESULTS);
        }

        let message_id = msg.message_id().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let message_id = match message_id {
            Some(id) if !usable_id(&id) => {
                notes.push(format!("Message-ID longer than {MAX_ID_LEN} characters or with spaces was ignored"));
                None
            }
            other => other,
        };
        let mut in_reply_to = ids(msg.in_reply_to(), msg.header_raw("In-Reply-To"), "In-Reply-To", &mut notes);
        in_reply_to.truncate(MAX_IN_REPLY_TO);
        let mut references = ids(msg.references(), msg.header_raw("References"), "References", &mut notes);
        if references.len() > MAX_REFERENCES {
            notes.push(format!(
                "{} References ids over the limit of {MAX_REFERENCES} were dropped (the oldest)",
                references.len() - MAX_REFERENCES
            ));
            references.drain(..references.len() - MAX_REFERENCES);
        }

        let mut subject = msg.subject().map(clean_line).unwrap_or_default();
        if subject.chars().count() > MAX_SUBJECT_CHARS {
            subject = subject.chars().take(MAX_SUBJECT_CHARS).collect();
            notes.push(format!("subject longer than {MAX_SUBJECT_CHARS} characters was cut"));
        }

        let mut assembly = Assembly { tree: &tree, notes: &mut notes, tld, used: 0, cut: false };
        let body = assembly.body();
        let report = delivery_report(&tree);
        let attachments = if report.is_some() { Vec::new() } else { assembly.attachments(&parser) };

        let date_raw = msg.header_raw(HeaderName::Date).map(clean_line).unwrap_or_default();
        let content_sha256 = content_hash(from.as_ref(), &subject, &date_raw, &body, &attachments);
        Ok(InboundMail {
            message_id,
            raw_sha256: hex::encode(Sha256::digest(raw)),
            to: address_list(msg.to(), "To", &mut notes),
            cc: address_list(msg.cc(), "Cc", &mut notes),
            subject,
            in_reply_to,
            references,
            date: msg.date().and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
            body,
            attachments,
            auto,
            report,
            auth_results,
            trace,
            notes: notes.0,
            from_problem,
            content_sha256,
            from,
        })
    }
}

/// Notes in first-seen order, each once, at most [`MAX_NOTES`].
#[derive(Default)]
struct Notes(Vec<String>);

impl Notes {
    fn push(&mut self, note: impl Into<String>) {
        let note = note.into();
        if self.0.len() < MAX_NOTES && !self.0.contains(&note) {
            self.0.push(note);
        }
    }
}

/// Message-IDs compare case-insensitively here: some MTAs and clients change
/// the case of the domain part, and a false match on case alone is harmless.
pub fn normalise_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase()
}

/// The bidi controls that reorder text: embeddings, overrides, isolates and
/// the marks. "invoice\u{202E}fdp.exe" shows as "invoiceexe.pdf".
pub use crate::text::{clean_line, clean_text};

/// HTML as ticket text; see [`html`].
pub fn html_to_text(html: &str) -> String {
    clean_text(&html::render(html, MAX_BODY_BYTES).text)
}

fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// An address a reply can go to and a client can be keyed by: a non-empty
/// local part and a plausible domain, lower-cased.
pub fn usable_address(a: &str) -> Option<String> {
    let a = a.trim().trim_start_matches('<').trim_end_matches('>').trim();
    let (local, domain) = a.rsplit_once('@')?;
    let bad = |c: char| c.is_control() || crate::text::is_format(c);
    let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
    let local_ok = !local.is_empty() && !local.chars().any(|c| bad(c) || (!quoted && c.is_whitespace()));
    let domain_ok = !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !domain.chars().any(|c| bad(c) || c.is_whitespace() || "@<>,;:\"()\\".contains(c));
    (local_ok && domain_ok).then(|| a.to_ascii_lowercase())
}

fn first_usable(a: Option<&Address<'_>>) -> Option<MailAddress> {
    a?.iter().find_map(|addr| {
        let address = usable_address(addr.address()?)?;
        let name = addr.name().map(|n| cut_chars(&clean_line(n), MAX_NAME_CHARS)).filter(|n| !n.is_empty());
        Some(MailAddress { address, name })
    })
}

/// From, else Sender, Reply-To, Return-Path: the first with a usable address.
fn resolve_from(msg: &Message<'_>, notes: &mut Notes) -> (Option<MailAddress>, Option<String>) {
    if let Some(from) = first_usable(msg.from()) {
        return (Some(from), None);
    }
    let return_path = match msg.return_path() {
        HeaderValue::Text(t) => usable_address(t).map(|address| MailAddress { address, name: None }),
        _ => None,
    };
    let fallbacks = [
        ("Sender", first_usable(msg.sender())),
        ("Reply-To", first_usable(msg.reply_to())),
        ("Return-Path", return_path),
    ];
    let raw_from = msg.header_raw(HeaderName::From).map(|r| cut_chars(&clean_line(r), 100));
    let why = match &raw_from {
        Some(r) if !r.is_empty() => format!("From has no usable address ({r})"),
        _ => "no From address".to_owned(),
    };
    for (name, found) in fallbacks {
        if let Some(found) = found {
            notes.push(format!("{why}; {name} used instead"));
            return (Some(found), None);
        }
    }
    (None, Some(format!("{why} and no Sender, Reply-To or Return-Path address")))
}

fn address_list(a: Option<&Address<'_>>, field: &str, notes: &mut Notes) -> Vec<String> {
    let Some(a) = a else { return Vec::new() };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut over = 0;
    for address in a.iter().filter_map(|x| x.address()).filter_map(usable_address) {
        if out.len() >= MAX_ADDRESSES {
            over += 1;
        } else if seen.insert(address.clone()) {
            out.push(address);
        }
    }
    if over > 0 {
        notes.push(format!("{over} {field} addresses over the limit of {MAX_ADDRESSES} were not read"));
    }
    out
}

fn usable_id(id: &str) -> bool {
    id.len() <= MAX_ID_LEN && !id.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn ids(v: &HeaderValue<'_>, raw: Option<&str>, field: &str, notes: &mut Notes) -> Vec<String> {
    // Python's `email` package writes a line that would pass 78 columns as
    // RFC 2047 encoded words, ids and all: decoded, they are ids again.
    let decoded = raw.filter(|r| r.contains("=?")).and_then(decode_id_list);
    let all: Vec<&str> = match (&decoded, v) {
        (Some(d), _) => d.iter().map(String::as_str).collect(),
        (None, HeaderValue::Text(t)) => vec![t.as_ref()],
        (None, HeaderValue::TextList(l)) => l.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(all.len());
    let mut dropped = 0;
    for id in all.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
        if usable_id(id) {
            out.push(id.to_owned());
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        notes.push(format!("{dropped} {field} ids longer than {MAX_ID_LEN} characters or with spaces were dropped"));
    }
    out
}

/// The Message-IDs of an `In-Reply-To` or `References` value written
/// (partly) as RFC 2047 encoded words: decoded as unstructured text by
/// mail-parser, then read as `<id>` tokens (or bare words with an `@`
/// when there are none). None when nothing usable comes out.
fn decode_id_list(raw: &str) -> Option<Vec<String>> {
    let header = format!("Subject:{raw}\r\n\r\n");
    let parsed = MessageParser::default().parse_headers(header.as_bytes())?;
    let text = parsed.subject()?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else { break };
        let id = rest[start + 1..start + len].trim();
        if !id.is_empty() {
            out.push(id.to_owned());
        }
        rest = &rest[start + len + 1..];
    }
    if out.is_empty() {
        out = text.split_whitespace().filter(|w| w.contains('@')).map(str::to_owned).collect();
    }
    (!out.is_empty()).then_some(out)
}

/// The sender domain's last label, which sharpens charset guesses (.jp,
/// .ru, .cz...).
fn sender_tld(msg: &Message<'_>) -> Option<String> {
    let from = msg.from()?.first()?.address()?;
    let domain = from.rsplit_once('@')?.1.trim().trim_end_matches('>');
    let tld = domain.rsplit('.').next()?.to_ascii_lowercase();
    (!tld.is_empty() && tld.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(tld)
}

/// The charset the body declares, which old clients also used for raw
/// 8-bit headers and unlabelled parts.
fn body_charset_hint(tree: &Tree<'_>) -> Option<&'static encoding_rs::Encoding> {
    tree.entities
        .iter()
        .filter(|e| e.info.ctype == "text")
        .filter_map(|e| e.info.charset.as_deref().and_then(charset::for_label))
        .find(|enc| *enc != encoding_rs::UTF_8 && enc.is_ascii_compatible())
}

/// `<meta charset=...>` or `<meta http-equiv content="...; charset=...">`
/// near the top of an HTML part that has no MIME charset.
fn meta_charset(html: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = html.get(..html.len().min(2048)).unwrap_or(html).to_ascii_lowercase();
    let at = memchr::memmem::find(&head, b"charset=")? + 8;
    let rest = &head[at..];
    let rest = &rest[rest.iter().take_while(|b| matches!(b, b'"' | b'\'' | b' ')).count()..];
    let len = rest.iter().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.')).count();
    charset::for_label(std::str::from_utf8(&rest[..len]).ok()?)
}

/// Text parts that belong in the body rather than among the attachments.
fn is_body_part(e: &Entity<'_>) -> bool {
    e.kind == Kind::Leaf
        && (e.info.is("text", "plain") || e.info.is("text", "html"))
        && !e.info.attachment
        && (e.parent.is_none() || e.info.filename.is_none())
}

pub const NOTE_BODY_CUT: &str = "text after 2 MiB was cut; the original mail is kept";
pub const NOTE_HTML_CUT: &str = "HTML after 8 MiB was not converted; the original mail is kept";
pub const NOTE_NO_CONTENT_TYPE: &str = "part without Content-Type read as text/plain";
pub const NOTE_EMPTY_MULTIPART: &str = "empty multipart: the mail has no text";
pub const NOTE_BAD_TRANSFER: &str = "a part with broken base64 was decoded as far as possible";

struct Assembly<'t, 'a, 'n> {
    tree: &'t Tree<'a>,
    notes: &'n mut Notes,
    tld: Option<String>,
    /// Body bytes taken so far.
    used: usize,
    cut: bool,
}

impl Assembly<'_, '_, '_> {
    fn body(&mut self) -> String {
        let mut pieces = Vec::new();
        self.collect(0, &mut pieces);
        if self.cut {
            self.notes.push(NOTE_BODY_CUT);
        }
        let body = pieces.join("\n\n");
        html::cut_str(&body, MAX_BODY_BYTES).0.to_owned()
    }

    /// Depth is bounded by [`MAX_MIME_DEPTH`], so this recursion is too.
    fn collect(&mut self, index: usize, out: &mut Vec<String>) {
        let e = &self.tree.entities[index];
        match &e.kind {
            Kind::Leaf if is_body_part(e) => {
                if let Some(text) = self.leaf_text(e) {
                    self.accept(text, out);
                }
            }
            Kind::Multipart(children) if children.is_empty() => self.notes.push(NOTE_EMPTY_MULTIPART),
            Kind::Multipart(children) if e.info.subtype == "alternative" => {
                let plain = |c: &usize| {
                    let ce = &self.tree.entities[*c];
                    is_body_part(ce) && ce.info.subtype == "plain"
                };
                for &c in children.iter().filter(|c| plain(c)) {
                    if let Some(text) = self.leaf_text(&self.tree.entities[c]).filter(|t| !t.trim().is_empty()) {
                        self.accept(text, out);
                        return;
                    }
                }
                for &c in children.iter().filter(|c| !plain(c)) {
                    let mut texts = Vec::new();
                    self.collect(c, &mut texts);
                    if !texts.is_empty() {
                        out.extend(texts);
                        return;
                    }
                }
            }
            Kind::Multipart(children) => {
                for &c in children {
                    self.collect(c, out);
                }
            }
            Kind::Leaf | Kind::TooDeep => {}
        }
    }

    fn accept(&mut self, text: String, out: &mut Vec<String>) {
        if !text.is_empty() {
            self.used += text.len() + 2;
            out.push(text);
        }
    }

    /// The cleaned text of a body part, cut to what the body has room for.
    fn leaf_text(&mut self, e: &Entity<'_>) -> Option<String> {
        let room = MAX_BODY_BYTES.saturating_sub(self.used);
        if room == 0 {
            self.cut = true;
            return None;
        }
        if e.parent.is_some() && !e.info.declared {
            self.notes.push(NOTE_NO_CONTENT_TYPE);
        }
        let is_html = e.info.subtype == "html";
        // Plain text is read past the room: cleaning drops every `\r` of
        // CRLF text, and a cut must be seen.
        let limit = if is_html { MAX_HTML_INPUT } else { room.saturating_mul(2).saturating_add(8) };
        let (bytes, problem, cut) = mime::decode_transfer(e.body, e.info.encoding, limit);
        if problem {
            self.notes.push(NOTE_BAD_TRANSFER);
        }
        let hint = if is_html && e.info.charset.is_none() { meta_charset(&bytes) } else { None };
        let decoded = charset::decode_body(&bytes, e.info.charset.as_deref(), hint, self.tld.as_deref());
        drop(bytes);
        if let Some(n) = decoded.note {
            self.notes.push(n);
        }
        let text = if is_html {
            let r = html::render(&decoded.text, room + 8);
            if cut || r.input_cut {
                self.notes.push(NOTE_HTML_CUT);
            }
            self.cut |= r.output_cut;
            clean_text(&r.text)
        } else {
            self.cut |= cut;
            clean_text(&decoded.text)
        };
        let text = text.trim();
        let (text, over) = html::cut_str(text, room);
        self.cut |= over;
        Some(text.trim_end().to_owned())
    }

    fn attachments(&mut self, parser: &MessageParser) -> Vec<InboundAttachment> {
        let mut out = Vec::new();
        let mut over = 0;
        for e in &self.tree.entities {
            let keep = match e.kind {
                Kind::Leaf => !is_body_part(e),
                Kind::TooDeep => true,
                Kind::Multipart(_) => false,
            };
            if !keep {
                continue;
            }
            if out.len() >= MAX_ATTACHMENTS {
                over += 1;
                continue;
            }
            let (bytes, mime_type, fallback) = if e.kind == Kind::TooDeep {
                (e.whole.to_vec(), "message/rfc822".to_owned(), "nested-parts.eml")
            } else {
                let (bytes, problem, _) = mime::decode_transfer(e.body, e.info.encoding, usize::MAX);
                if problem {
                    self.notes.push(NOTE_BAD_TRANSFER);
                }
                let mime_type = e.info.mime_type();
                let fallback = fallback_name(&mime_type);
                (bytes.into_owned(), mime_type, fallback)
            };
            let name = self.filename(e, parser);
            out.push(InboundAttachment {
                filename: safe_filename(name.as_deref().unwrap_or(""), fallback),
                sha256: hex::encode(Sha256::digest(&bytes)),
                mime_type,
                bytes,
            });
        }
        if over > 0 {
            self.notes.push(format!("{over} attachments over the limit of {MAX_ATTACHMENTS} were not kept"));
        }
        out
    }

    /// The part's file name; raw 8-bit names are decoded like raw headers.
    fn filename(&mut self, e: &Entity<'_>, parser: &MessageParser) -> Option<String> {
        if !charset::header_block_needs_decoding(&e.header) {
            return e.info.filename.clone();
        }
        let hint = e.info.charset.as_deref().and_then(charset::for_label).or_else(|| body_charset_hint(self.tree));
        let (block, enc) = charset::transcode_header_block(&e.header, hint, self.tld.as_deref());
        self.notes.push(format!("raw 8-bit header text read as {}", enc.name()));
        let msg = parser.parse_headers(&block);
        msg.as_ref().and_then(|m| m.attachment_name()).map(str::to_owned).or_else(|| e.info.filename.clone())
    }
}

fn fallback_name(mime_type: &str) -> &'static str {
    match mime_type {
        "message/rfc822" | "message/global" => "message.eml",
        "text/html" => "attachment.html",
        "text/calendar" => "invite.ics",
        "message/delivery-status" | "message/global-delivery-status" => "delivery-status.txt",
        "application/pdf" => "attachment.pdf",
        "image/png" => "image.png",
        "image/jpeg" => "image.jpg",
        "image/gif" => "image.gif",
        t if t.starts_with("text/") => "attachment.txt",
        _ => "attachment.bin",
    }
}

/// A name that is safe as one path component and in a URL's last segment:
/// no separators, no control or bidi characters, no leading dots, bounded
/// length.
pub fn safe_filename(name: &str, fallback: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut s: String = last
        .chars()
        .filter(|c| !crate::text::is_format(*c))
        .map(|c| if c.is_control() || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') { '_' } else { c })
        .collect();
    s = s.trim().trim_start_matches('.').trim().to_owned();
    if s.len() > 200 {
        s = html::cut_str(&s, 200).0.to_owned();
    }
    if s.is_empty() { fallback.to_owned() } else { s }
}

fn content_hash(
    from: Option<&MailAddress>,
    subject: &str,
    date: &str,
    body: &str,
    attachments: &[InboundAttachment],
) -> String {
    let mut h = Sha256::new();
    // Length prefixes keep the fields apart: ("ab", "c") ≠ ("a", "bc").
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(from.map_or("", |f| f.address.as_str()).as_bytes());
    field(subject.as_bytes());
    field(date.as_bytes());
    field(body.as_bytes());
    for a in attachments {
        field(a.sha256.as_bytes());
    }
    hex::encode(h.finalize())
}

fn delivery_report(tree: &Tree<'_>) -> Option<DeliveryReport> {
    let root = &tree.entities[0].info;
    let is_report =
        root.is("multipart", "report") && root.report_type.as_deref().is_none_or(|t| t == "delivery-status");
    if !is_report {
        return None;
    }
    let mut report = DeliveryReport::default();
    let parser = MessageParser::default();
    for e in tree.entities.iter().filter(|e| e.kind == Kind::Leaf) {
        let (bytes, _, _) = mime::decode_transfer(e.body, e.info.encoding, 1 << 20);
        match e.info.mime_type().as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let value = |v: &str| cut_chars(&clean_line(v.rsplit(';').next().unwrap_or(v)), 500);
                for line in text.lines() {
                    let Some((k, v)) = line.split_once(':') else { continue };
                    match k.trim().to_ascii_lowercase().as_str() {
                        "action" if report.action.is_none() => report.action = Some(value(v)),
                        "status" if report.status.is_none() => report.status = Some(value(v)),
                        "final-recipient" if report.final_recipient.is_none() => {
                            report.final_recipient = Some(value(v))
                        }
                        "diagnostic-code" if report.diagnostic.is_none() => report.diagnostic = Some(value(v)),
                        _ => {}
                    }
                }
            }
            "message/rfc822" | "message/global" | "text/rfc822-headers" | "message/global-headers"
                if report.original_message_id.is_none() =>
            {
                // A header block cut off by the boundary has no line end
                // after its last field; give it one, and the blank line.
                let mut block = bytes.to_vec();
                block.extend_from_slice(b"\r\n\r\n");
                let inner = parser.parse_headers(&block);
                report.original_message_id =
                    inner.as_ref().and_then(|m| m.message_id()).map(|s| s.trim().to_owned()).filter(|s| usable_id(s));
            }
            _ => {}
        }
    }
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_basics() {
        let raw = b"From: \"Ann\" <Ann@Example.TEST>\r\nTo: support@example.test, Bob <bob@example.test>\r\n\
Subject: =?UTF-8?Q?Printer_=E2=80=94_broken?=\r\nMessage-ID: <abc@x>\r\nIn-Reply-To: <p1@x>\r\n\
References: <p0@x> <p1@x>\r\n\r\nHello\r\n";
        let m = InboundMail::parse(raw).unwrap();
        assert_eq!(m.from.as_ref().unwrap().address, "ann@example.test");
        assert_eq!(m.subject, "Printer — broken");
        assert_eq!(m.message_id.as_deref(), Some("abc@x"));
        assert_eq!(m.to, vec!["support@example.test", "bob@example.test"]);
        assert_eq!(m.parent_ids().collect::<Vec<_>>(), vec!["p1@x", "p1@x", "p0@x"]);
        assert_eq!(m.body, "Hello");
        assert!(!m.auto.is_automatic());
    }

    #[test]
    fn html_only_becomes_text_and_garbage_is_refused() {
        let raw = b"From: a@b.test\nContent-Type: text/html\n\n<p>Hi <b>there</b></p>";
        assert_eq!(InboundMail::parse(raw).unwrap().body, "Hi there");
        assert_eq!(InboundMail::parse(b"   \r\n"), Err(MailError::Empty));
        assert_eq!(InboundMail::parse(b"not an email at all"), Err(MailError::NotAMessage));
    }

    #[test]
    fn automatic_signs() {
        for h in [
            "Auto-Submitted: auto-replied",
            "Precedence: bulk",
            "List-Id: <x.example.test>",
            "X-Autoreply: yes",
            "Return-Path: <>",
        ] {
            let raw = format!("From: a@b.test\n{h}\nSubject: x\n\nbody");
            assert!(InboundMail::parse(raw.as_bytes()).unwrap().auto.is_automatic(), "{h}");
        }
        let raw = b"From: MAILER-DAEMON@b.test\nSubject: x\n\nbody";
        assert!(InboundMail::parse(raw).unwrap().auto.is_automatic());
        let raw = b"From: a@b.test\nAuto-Submitted: no\nSubject: x\n\nbody";
        assert!(!InboundMail::parse(raw).unwrap().auto.is_automatic());
    }

    #[test]
    fn attachments_get_safe_names() {
        assert_eq!(safe_filename("../../etc/passwd", "x"), "passwd");
        assert_eq!(safe_filename("C:\\a\\b.txt", "x"), "b.txt");
        assert_eq!(safe_filename("..", "x"), "x");
        assert_eq!(safe_filename("a\u{0}b\nc.txt", "x"), "a_b_c.txt");
        let raw = b"From: a@b.test\nSubject: s\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n\
--XX\nContent-Type: text/plain\n\nsee attached\n--XX\nContent-Type: text/plain\n\
Content-Disposition: attachment; filename*=UTF-8''%2E%2E%2Fr%C3%A9sum%C3%A9.txt\n\nlog line\n--XX--\n";
        let m = InboundMail::parse(raw).unwrap();
        assert_eq!(m.body, "see attached");
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].filename, "résumé.txt");
        assert_eq!(m.attachments[0].mime_type, "text/plain");
        assert_eq!(m.attachments[0].bytes, b"log line");
    }

    #[test]
    fn delivery_reports_name_the_original() {
        let raw = b"From: MAILER-DAEMON@mx.test\nTo: support@example.test\nSubject: Undelivered\n\
MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\n\n\
--B\nContent-Type: text/plain\n\nfailed\n--B\nContent-Type: message/delivery-status\n\n\
Reporting-MTA: dns; mx.test\n\nFinal-Recipient: rfc822; nobody@example.test\nAction: failed\n\
Status: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n--B\nContent-Type: message/rfc822\n\n\
From: support@example.test\nMessage-ID: <ticketd.1.ack@example.test>\nSubject: [Ticket #1] x\n\nhi\n--B--\n";
        let m = InboundMail::parse(raw).unwrap();
        let r = m.report.unwrap();
        assert_eq!(r.original_message_id.as_deref(), Some("ticketd.1.ack@example.test"));
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.final_recipient.as_deref(), Some("nobody@example.test"));
        assert!(r.is_failure());
        assert!(m.auto.is_automatic());
    }

    const LONG_ID: &str =
        "CAF=first.long.message.id.from.a.corporate.mail.system.0123456789abcdef0123@mail.example.net";

    fn encoded_ids_are_read(raw: &[u8]) {
        let m = InboundMail::parse(raw).unwrap();
        assert_eq!(m.in_reply_to, vec![LONG_ID], "notes: {:?}", m.notes);
        assert_eq!(m.references, vec!["start@example.net", LONG_ID]);
        assert!(!m.notes.iter().any(|n| n.contains("dropped")), "{:?}", m.notes);
    }

    /// `tests/fixtures/python-email/reply-encoded-ids.eml` is what
    /// `reply.py` beside it printed (Python 3.11's `email`): In-Reply-To and
    /// References as RFC 2047 encoded words. Where python3 is installed the
    /// script runs again, so a newer `email` package is checked too.
    #[test]
    fn ids_written_as_encoded_words_by_python_email_are_decoded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/python-email");
        let fixture = std::fs::read(format!("{dir}/reply-encoded-ids.eml")).unwrap();
        assert!(String::from_utf8_lossy(&fixture).contains("In-Reply-To: =?utf-8?q?=3CCAF"));
        encoded_ids_are_read(&fixture);
        encoded_ids_are_read(&fixture.iter().copied().filter(|b| *b != b'\r').collect::<Vec<u8>>());
        let fresh = std::process::Command::new("python3")
            .arg(format!("{dir}/reply.py"))
            .arg(format!("<{LONG_ID}>"))
            .arg("<start@example.net>")
            .output();
        match fresh {
            Ok(out) if out.status.success() => encoded_ids_are_read(&out.stdout),
            Ok(out) => panic!("reply.py failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("python3 not run ({e}); the committed output was checked"),
        }
        // Plain ids, and an encoded word that holds no id, are read as before.
        let plain = InboundMail::parse(b"From: a@x.test\r\nIn-Reply-To: <p1@x>\r\n\r\nhi\r\n").unwrap();
        assert_eq!(plain.in_reply_to, vec!["p1@x"]);
        let word = InboundMail::parse(b"From: a@x.test\r\nIn-Reply-To: =?utf-8?q?hello_world?=\r\n\r\nhi\r\n").unwrap();
        assert!(!word.in_reply_to.iter().any(|i| i.starts_with("hello")), "{:?}", word.in_reply_to);
    }
}
