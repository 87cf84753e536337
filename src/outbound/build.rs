//! The RFC 5322 writer for [`OutMail`]: a pure function of the entry, the
//! attachment bytes and the options (the Date is passed in, so a retry of the
//! same entry with the same options gives the same headers).
//!
//! Serialisation (folding at whitespace to 78 columns, address lists folded
//! between addresses, RFC 2047 encoded-words split on char boundaries, RFC 2231
//! filenames, quoted-printable or base64 body, CRLF throughout) is Stalwart's
//! `mail-builder` 2.x: measured linear (benches/outbound.rs: an 80 MiB body
//! in a few hundred ms, twice the size about twice the time) and correct on
//! every case in tests/outbound_build.rs, whereas lettre's builder took ~130 s
//! for a 20 MiB body and left long header lines unfolded. What the library cannot
//! know is ticketd's policy, so this module does it before handing values over:
//!
//! - text from outside (names, subjects, filenames) loses control characters
//!   and bidi overrides, runs of whitespace become one space, and it is capped,
//!   so no input can add a header line or push a line past 998 octets (the
//!   library would otherwise keep an unbreakable 2,000-char token on one line);
//! - addresses must be plain ASCII dot-atom addr-specs, or the mail is refused
//!   with a [`BuildError`] (permanent: the same entry can never be built);
//! - foreign Message-IDs that are absurdly long or contain characters outside
//!   a msg-id are dropped from References/In-Reply-To instead of breaking the
//!   mail, and References keeps the first id and the newest ones;
//! - attachments are always base64 (the library would send a text/* attachment
//!   as 7bit with its line ends normalised, which is not byte-exact).
//!
//! The body is left to the library's choice between quoted-printable (mostly
//! ASCII text stays readable and small) and base64 (when that is shorter, e.g.
//! CJK text); both keep every encoded line at 76 characters and the message
//! 7-bit clean, so no relay needs 8BITMIME.

use std::borrow::Cow;
use std::io;

use chrono::{DateTime, Utc};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};

use crate::outbox::{OutAttachment, OutMail};

/// Subject characters kept after the `[Ticket #N]` token.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Display names longer than this are cut (with an ellipsis).
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_FILENAME_CHARS: usize = 150;
/// Foreign Message-IDs longer than this are dropped, not sent.
pub const MAX_MSGID_LEN: usize = 250;
pub const MAX_REFERENCES: usize = 20;
/// Longest value [`check_header_text`] accepts for a configured string.
pub const MAX_CONFIG_TEXT_CHARS: usize = 200;

/// Where a subject token may start: `Not applied: [Ticket #42] …` must keep
/// its token, a token buried deep inside a title need not.
const TOKEN_SEARCH_BYTES: usize = 128;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Value of the Date header. Pass the same instant on a retry to send the
    /// same bytes, or `Utc::now()` to date the mail when it leaves.
    pub date: DateTime<Utc>,
    pub max_subject_chars: usize,
    pub max_references: usize,
}

impl BuildOptions {
    pub fn new(date: DateTime<Utc>) -> BuildOptions {
        BuildOptions { date, max_subject_chars: MAX_SUBJECT_CHARS, max_references: MAX_REFERENCES }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid {field} address {value:?}: {why}")]
    Address { field: &'static str, value: String, why: String },
    #[error("no recipients")]
    NoRecipients,
    #[error("invalid Message-ID {0:?}")]
    MessageId(String),
    #[error("attachment {name:?}: {source}")]
    Attachment { name: String, source: io::Error },
}

impl BuildError {
    /// True when building this entry again cannot succeed. An attachment
    /// that could not be read for a passing reason (EMFILE, EIO) may be
    /// there next time; one that is gone or unreadable as data is not.
    pub fn is_permanent(&self) -> bool {
        match self {
            BuildError::Attachment { source, .. } => {
                matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidData)
            }
            _ => true,
        }
    }
}

/// Writes `mail` as an RFC 5322 message with CRLF line ends, every line at
/// most 998 octets. `attachment` returns the bytes of one attachment (the
/// only I/O, left to the caller).
pub fn build(
    mail: &OutMail,
    attachment: &mut dyn FnMut(&OutAttachment) -> io::Result<Vec<u8>>,
    opts: &BuildOptions,
) -> Result<Vec<u8>, BuildError> {
    check_address(&mail.from_address).map_err(|why| address_error("From", &mail.from_address, why))?;
    if mail.to.is_empty() {
        return Err(BuildError::NoRecipients);
    }
    for to in &mail.to {
        check_address(to).map_err(|why| address_error("To", to, why))?;
    }
    if !is_usable_msgid(&mail.message_id) {
        return Err(BuildError::MessageId(sanitize_header_text(&mail.message_id, 80)));
    }

    let from_name = sanitize_header_text(&mail.from_name, MAX_NAME_CHARS);
    let from = Address::new_address((!from_name.is_empty()).then_some(from_name), mail.from_address.as_str());
    let to =
        Address::new_list(mail.to.iter().map(|a| Address::new_address(None::<&str>, a.as_str())).collect::<Vec<_>>());
    let mut m = MessageBuilder::new()
        .from(from)
        .to(to)
        .subject(Text::new(cap_subject(&mail.subject, opts.max_subject_chars)))
        .date(opts.date.timestamp())
        .message_id(mail.message_id.as_str());
    if let Some(parent) = mail.in_reply_to.as_deref().filter(|id| is_usable_msgid(id)) {
        m = m.in_reply_to(parent);
    }
    let refs = references(&mail.references, opts.max_references);
    if !refs.is_empty() {
        m = m.references(MessageId::new_list(refs.into_iter()));
    }
    m = m.header("MIME-Version", Raw::new("1.0")).header("X-Ticketd-Ticket", Raw::new(mail.ticket.to_string()));
    if mail.kind.is_automatic() {
        m = m.header("Auto-Submitted", Raw::new("auto-replied")).header("X-Auto-Response-Suppress", Raw::new("All"));
    }
    // A lone CR would reach the wire bare (RFC 5322 forbids it): the
    // builder fixes lone LFs only. Stored text is clean already; a body
    // from elsewhere (a template, an API client) may not be.
    let body_text: Cow<'_, str> = if mail.body.contains('\r') {
        Cow::Owned(mail.body.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(mail.body.as_str())
    };
    let text = MimePart::new("text/plain", BodyPart::Text(body_text));
    let body = if mail.attachments.is_empty() {
        text
    } else {
        let mut parts = Vec::with_capacity(mail.attachments.len() + 1);
        parts.push(text);
        for a in &mail.attachments {
            let bytes = attachment(a).map_err(|source| BuildError::Attachment { name: a.filename.clone(), source })?;
            parts.push(attachment_part(a, &bytes));
        }
        MimePart::new("multipart/mixed", parts)
    };
    let mut out = Vec::with_capacity(mail.body.len() + mail.body.len() / 3 + 4096);
    m.body(body).serialize(&mut out);
    Ok(out)
}

/// Base64 whatever the type: the library would send a text/* attachment as
/// 7bit with normalised line ends, which is not the stored bytes.
fn attachment_part(a: &OutAttachment, bytes: &[u8]) -> MimePart<'static> {
    let mut encoded = encodify::base64::MIME.encode(bytes);
    // The part's closing delimiter brings its own CRLF; a second one would
    // be an empty line inside the part.
    while encoded.ends_with(['\r', '\n']) {
        encoded.pop();
    }
    MimePart::new(ContentType::new(mime_type(&a.mime_type)), BodyPart::Text(Cow::Owned(encoded)))
        .attachment(safe_filename(&a.filename))
        .transfer_encoding("base64")
}

/// `type/subtype` in lower case when it is made of MIME token characters,
/// else `application/octet-stream`. Parameters are dropped: the bytes are
/// sent base64, exactly as stored.
fn mime_type(s: &str) -> String {
    let bare = s.split(';').next().unwrap_or("").trim();
    let token = |t: &str| {
        !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    match bare.split_once('/') {
        Some((t, st)) if token(t) && token(st) => bare.to_ascii_lowercase(),
        _ => "application/octet-stream".to_owned(),
    }
}

fn safe_filename(s: &str) -> String {
    let name = sanitize_header_text(&s.replace(['/', '\\'], "_"), MAX_FILENAME_CHARS);
    if name.is_empty() { "attachment".to_owned() } else { name }
}

fn address_error(field: &'static str, value: &str, why: String) -> BuildError {
    BuildError::Address { field, value: sanitize_header_text(value, 80), why }
}

/// Characters that never go into a header: they could end the line, move
/// the cursor of a terminal, or reorder what a reader sees.
fn is_removed(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}

/// Header-safe text: controls and bidi marks removed (line breaks and tabs
/// become spaces first, so words do not run together), whitespace collapsed,
/// at most `max_chars` characters, with an ellipsis when cut.
pub fn sanitize_header_text(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars.saturating_mul(4)));
    let mut pending_space = false;
    let mut n = 0;
    for c in s.chars() {
        if c.is_whitespace() || c == '\u{2028}' || c == '\u{2029}' {
            pending_space = !out.is_empty();
            continue;
        }
        if is_removed(c) {
            continue;
        }
        if pending_space {
            if n + 1 >= max_chars {
                return cut(out);
            }
            out.push(' ');
            n += 1;
            pending_space = false;
        }
        if n + 1 > max_chars {
            return cut(out);
        }
        out.push(c);
        n += 1;
    }
    out
}

/// Replaces the last character with an ellipsis, so the result stays within
/// the limit it was cut at.
fn cut(mut s: String) -> String {
    s.pop();
    let trimmed = s.trim_end().len();
    s.truncate(trimmed);
    s.push('…');
    s
}

/// Sanitised subject; the leading `[Tag #N]` token (possibly after a prefix
/// such as `Not applied:`) is kept whole and at most `max_chars` follow it.
fn cap_subject(subject: &str, max_chars: usize) -> String {
    // Enough for any token plus the rest, without copying a 1 MB title.
    let clean = sanitize_header_text(subject, (TOKEN_SEARCH_BYTES + 81).saturating_add(max_chars).saturating_add(1));
    let end = token_end(&clean).unwrap_or(0);
    let (head, rest) = clean.split_at(end);
    let rest = sanitize_header_text(rest, max_chars.max(1));
    match (head.is_empty(), rest.is_empty()) {
        (true, _) => rest,
        (false, true) => head.to_owned(),
        (false, false) => format!("{head} {rest}"),
    }
}

/// Byte offset just past the first `[… #digits]` token that starts within
/// the first [`TOKEN_SEARCH_BYTES`].
fn token_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len().min(TOKEN_SEARCH_BYTES) {
        if b[i] == b'[' {
            let close = b[i..].iter().take(80).position(|&c| c == b']').map(|p| i + p);
            if let Some(close) = close {
                let inner = &s[i + 1..close];
                if let Some((_, num)) = inner.rsplit_once('#') {
                    let num = num.trim();
                    if !num.is_empty() && num.bytes().all(|c| c.is_ascii_digit()) {
                        return Some(close + 1);
                    }
                }
            }
        }
        i += 1;
    }
    None
}

/// A Message-ID (without brackets) that can be written as `<id>`: printable
/// ASCII from the msg-id grammar (dot-atom text, `@`, domain literals) and
/// not absurdly long.
pub fn is_usable_msgid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MSGID_LEN
        && id.bytes().all(|b| is_atext(b) || matches!(b, b'.' | b'@' | b'[' | b']'))
}

/// The ids to write in References: unusable ones dropped, duplicates once,
/// and beyond `max` the first (the thread's root) plus the newest.
fn references(ids: &[String], max: usize) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    let usable: Vec<&str> =
        ids.iter().map(String::as_str).filter(|id| is_usable_msgid(id) && seen.insert(*id)).collect();
    if usable.len() <= max || max == 0 {
        return if max == 0 { Vec::new() } else { usable };
    }
    let mut out = vec![usable[0]];
    out.extend_from_slice(&usable[usable.len() - (max - 1)..]);
    out
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// For check-config: a configured string that goes into a header as it is
/// written (display names, the subject tag) must be safe there unchanged.
pub fn check_header_text(s: &str) -> Result<(), String> {
    if let Some(c) = s.chars().find(|&c| is_removed(c)) {
        return Err(format!("contains the control or bidi character U+{:04X}", c as u32));
    }
    let n = s.chars().count();
    if n > MAX_CONFIG_TEXT_CHARS {
        return Err(format!("is {n} characters long; at most {MAX_CONFIG_TEXT_CHARS} are allowed"));
    }
    Ok(())
}

/// A plain ASCII addr-spec, `local@domain`: a dot-atom local part (no
/// quoted strings, no comments, no display name) and a host name.
pub fn check_address(s: &str) -> Result<(), String> {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err("not of the form local@domain".into());
    };
    if s.len() > 254 {
        return Err(format!("is {} octets long; at most 254 are allowed", s.len()));
    }
    if local.is_empty() || local.len() > 64 {
        return Err("the local part must be 1 to 64 characters".into());
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("the local part has a misplaced dot".into());
    }
    if let Some(c) = local.chars().find(|&c| !(c.is_ascii() && (is_atext(c as u8) || c == '.'))) {
        return Err(format!("the local part contains {c:?}"));
    }
    if domain.is_empty() || domain.len() > 253 {
        return Err("the domain must be 1 to 253 characters".into());
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("the domain has an empty or over-long label".into());
        }
        if let Some(c) = label.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '-')) {
            return Err(format!("the domain contains {c:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a domain label starts or ends with '-'".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitising_removes_line_breaks_controls_and_bidi() {
        assert_eq!(sanitize_header_text("a\r\nBcc: x@evil", 100), "a Bcc: x@evil");
        assert_eq!(sanitize_header_text("\u{202E}gpj.exe\u{1b}[2J\u{7}", 100), "gpj.exe[2J");
        assert_eq!(sanitize_header_text("  two\t\tspaces  ", 100), "two spaces");
        assert_eq!(sanitize_header_text("abcdef", 4), "abc…");
        assert_eq!(sanitize_header_text("ab cdef", 4), "ab…");
        assert_eq!(sanitize_header_text("äöüß", 4), "äöüß");
        assert_eq!(sanitize_header_text("äöüßx", 4).chars().count(), 4);
    }

    #[test]
    fn subjects_keep_the_token_and_cap_the_rest() {
        let long = format!("[Ticket #42] {}", "word ".repeat(100));
        let s = cap_subject(&long, 200);
        assert!(s.starts_with("[Ticket #42] word"));
        assert!(s.ends_with('…'));
        assert_eq!(s.chars().count(), "[Ticket #42] ".len() + 200 - 1);
        let s = cap_subject(&format!("Not applied: [Ticket #7] {}", "x".repeat(500)), 10);
        assert_eq!(s, "Not applied: [Ticket #7] xxxxxxxxx…");
        assert_eq!(cap_subject("no token here", 5), "no t…");
        assert_eq!(cap_subject("[Ticket #9]", 5), "[Ticket #9]");
    }

    #[test]
    fn references_drop_unusable_ids_and_keep_root_and_newest() {
        let mut ids: Vec<String> = (0..30).map(|i| format!("m{i}@x")).collect();
        ids.insert(3, "y".repeat(2000));
        ids.insert(4, "has space@x".into());
        ids.insert(5, "m1@x".into());
        let r = references(&ids, 20);
        assert_eq!(r.len(), 20);
        assert_eq!(r[0], "m0@x");
        assert_eq!(r[1], "m11@x");
        assert_eq!(r[19], "m29@x");
        assert!(references(&["<bad>".into()], 20).is_empty());
    }

    #[test]
    fn addresses_are_plain_addr_specs() {
        for ok in ["a@b", "first.last+tag@example.test", "x_y-z@sub.example.com", "o'neil@e.ie"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@b",
            "a@",
            "a..b@c",
            ".a@c",
            "a@b\r\nBcc: x@evil",
            "A <a@b>",
            "\"q\"@b",
            "a b@c",
            "a@-b",
            "a@b_c",
            "ü@b",
            "a@b..c",
            "a@[127.0.0.1]",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
        assert!(check_address(&format!("{}@b", "a".repeat(65))).is_err());
    }

    #[test]
    fn configured_header_text_is_checked_unchanged() {
        assert_eq!(check_header_text("Example Support"), Ok(()));
        assert_eq!(check_header_text("Support Köln"), Ok(()));
        assert!(check_header_text("Support\nBcc: x@evil").unwrap_err().contains("U+000A"));
        assert!(check_header_text("Support\u{202E}").unwrap_err().contains("U+202E"));
        assert!(check_header_text(&"x".repeat(201)).is_err());
    }

    #[test]
    fn mime_types_and_filenames_are_made_safe() {
        assert_eq!(mime_type("Text/Plain; charset=utf-8"), "text/plain");
        assert_eq!(mime_type("text/plain\r\nX: y"), "application/octet-stream");
        assert_eq!(mime_type("nonsense"), "application/octet-stream");
        assert_eq!(safe_filename("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(safe_filename("\u{202E}fdp.exe"), "fdp.exe");
        assert_eq!(safe_filename("\r\n"), "attachment");
    }
}
