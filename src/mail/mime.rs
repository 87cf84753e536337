//! The MIME structure of a raw mail, found in linear time with bounded depth.
//!
//! mail-parser's own walk builds a tree of nested `Message`s for
//! message/rfc822 parts that its recursive `Drop` and `Clone` cannot survive
//! at depth 40,000, and a multipart whose boundary is missing makes it scan
//! to the end of the mail once per such part (quadratic). So the structure is
//! ours: header blocks are still read by mail-parser (`parse_headers`, which
//! never looks at a body), but boundaries are split here, iteratively, with
//! at most [`MAX_DEPTH`] levels and [`MAX_PARTS`] entities, and each level
//! scans its own bytes once. An encapsulated message (message/rfc822) is a
//! leaf: it reaches the ticket whole, as an attachment.

use std::borrow::Cow;
use std::ops::Range;

use mail_parser::{Message, MessageParser, MimeHeaders};

/// Multipart levels opened; a multipart deeper than this is kept whole.
pub const MAX_DEPTH: usize = 20;
/// Entities (multiparts and leaves) read per mail.
pub const MAX_PARTS: usize = 1000;
/// Header bytes read for the mail itself. Past this only the first
/// occurrence of each field ticketd uses is read, so junk cannot hide the
/// Subject, and mail-parser's per-field memory stays bounded.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// One header field is cut after this (an address list at a comma).
pub const MAX_FIELD_BYTES: usize = 256 << 10;
/// The same two limits for the header block of a body part.
const MAX_PART_HEADER_BYTES: usize = 64 << 10;
const MAX_PART_FIELD_BYTES: usize = 16 << 10;

/// The fields read even past the header budget, first occurrence only.
const NEEDED_FIELDS: &[&[u8]] = &[
    b"from",
    b"sender",
    b"reply-to",
    b"return-path",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"content-disposition",
    b"auto-submitted",
    b"precedence",
    b"list-id",
    b"x-autoreply",
    b"x-autorespond",
    b"x-autoresponder",
    b"x-auto-response-suppress",
    b"x-ticketd-ticket",
];
/// RFC 2046 allows 70; anything much longer is not a boundary.
const MAX_BOUNDARY_LEN: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    Identity,
    Base64,
    QuotedPrintable,
}

/// What an entity's headers say about it, owned and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub ctype: String,
    pub subtype: String,
    /// A Content-Type header was there and named a type.
    pub declared: bool,
    pub charset: Option<String>,
    pub boundary: Option<String>,
    pub report_type: Option<String>,
    pub encoding: TransferEncoding,
    /// Content-Disposition: attachment.
    pub attachment: bool,
    /// The file name as mail-parser decoded it (RFC 2231 / 2047).
    pub filename: Option<String>,
}

impl PartInfo {
    /// `type/subtype`, or application/octet-stream when the sender's
    /// tokens hold anything a MIME token may not (it ends up in a header
    /// when the attachment is served).
    pub fn mime_type(&self) -> String {
        let token = |t: &str| {
            !t.is_empty() && t.len() <= 127 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
        };
        if token(&self.ctype) && token(&self.subtype) {
            format!("{}/{}", self.ctype, self.subtype)
        } else {
            "application/octet-stream".to_owned()
        }
    }

    pub fn is(&self, ctype: &str, subtype: &str) -> bool {
        self.ctype == ctype && self.subtype == subtype
    }

    pub fn from_headers(msg: Option<&Message<'_>>, digest_child: bool) -> PartInfo {
        let ct = msg.and_then(|m| m.content_type()).filter(|ct| !ct.ctype().trim().is_empty());
        let (ctype, subtype, declared) = match ct {
            Some(ct) => {
                let ctype = ct.ctype().trim().to_ascii_lowercase();
                let subtype = ct.subtype().map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty());
                let subtype =
                    subtype.unwrap_or_else(|| if ctype == "text" { "plain".into() } else { "octet-stream".into() });
                (ctype, subtype, true)
            }
            None if digest_child => ("message".to_owned(), "rfc822".to_owned(), false),
            None => ("text".to_owned(), "plain".to_owned(), false),
        };
        let attribute = |name: &str| ct.and_then(|c| c.attribute(name)).map(str::to_owned);
        let encoding = match msg.and_then(|m| m.content_transfer_encoding()).map(|e| e.trim().to_ascii_lowercase()) {
            Some(e) if e == "base64" => TransferEncoding::Base64,
            Some(e) if e == "quoted-printable" => TransferEncoding::QuotedPrintable,
            _ => TransferEncoding::Identity,
        };
        PartInfo {
            charset: attribute("charset"),
            boundary: if ctype == "multipart" { attribute("boundary") } else { None },
            report_type: attribute("report-type").map(|r| r.to_ascii_lowercase()),
            encoding,
            attachment: msg.and_then(|m| m.content_disposition()).is_some_and(|d| d.is_attachment()),
            filename: msg.and_then(|m| m.attachment_name()).map(str::to_owned),
            ctype,
            subtype,
            declared,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Leaf,
    Multipart(Vec<usize>),
    /// A multipart below [`MAX_DEPTH`]: not opened, kept as one attachment.
    TooDeep,
}

#[derive(Debug, Clone)]
pub struct Entity<'a> {
    pub depth: usize,
    /// Header block as in the raw mail, or a copy with overlong fields cut
    /// (see [`MAX_HEADER_BYTES`]).
    pub header: Cow<'a, [u8]>,
    pub body: &'a [u8],
    /// Header block and body: what a TooDeep entity is kept as.
    pub whole: &'a [u8],
    pub info: PartInfo,
    pub kind: Kind,
    pub parent: Option<usize>,
}

/// Entities in document order; index 0 is the mail itself.
#[derive(Debug, Clone)]
pub struct Tree<'a> {
    pub entities: Vec<Entity<'a>>,
    pub notes: Vec<&'static str>,
    /// Bytes looked at while splitting, for the linearity tests.
    pub scanned: usize,
}

pub const NOTE_TOO_DEEP: &str = "MIME nesting deeper than 20 levels: the innermost parts were not read";
pub const NOTE_TOO_MANY_PARTS: &str = "more than 1000 MIME parts: the rest were not read; the original mail is kept";
pub const NOTE_NO_BOUNDARY: &str = "multipart without a usable boundary read as text";
pub const NOTE_LONG_HEADERS: &str = "overlong headers were cut; the original mail is kept";

struct Job {
    range: Range<usize>,
    depth: usize,
    parent: Option<usize>,
    digest_child: bool,
}

/// Splits `raw` into its entities.
pub fn walk<'a>(raw: &'a [u8], parser: &MessageParser) -> Tree<'a> {
    let mut tree = Tree { entities: Vec::new(), notes: Vec::new(), scanned: 0 };
    let mut stack = vec![Job { range: 0..raw.len(), depth: 0, parent: None, digest_child: false }];
    while let Some(job) = stack.pop() {
        let bytes = &raw[job.range.clone()];
        let top = job.parent.is_none();
        let (header_start, header_end, body_start) = split_header(bytes, top);
        let (total, field) =
            if top { (MAX_HEADER_BYTES, MAX_FIELD_BYTES) } else { (MAX_PART_HEADER_BYTES, MAX_PART_FIELD_BYTES) };
        let (header, cut) = bounded_header(&bytes[header_start..header_end], total, field);
        if cut {
            note(&mut tree.notes, NOTE_LONG_HEADERS);
        }
        tree.scanned += body_start;
        let parsed = parser.parse_headers(header.as_ref());
        let mut info = PartInfo::from_headers(parsed.as_ref(), job.digest_child);
        let body = &bytes[body_start..];
        let index = tree.entities.len();
        let mut kind = Kind::Leaf;
        if info.ctype == "multipart" {
            let boundary =
                info.boundary.as_deref().map(str::trim).filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY_LEN);
            match boundary {
                None => {
                    text_instead(&mut info);
                    note(&mut tree.notes, NOTE_NO_BOUNDARY);
                }
                Some(_) if job.depth >= MAX_DEPTH => {
                    kind = Kind::TooDeep;
                    note(&mut tree.notes, NOTE_TOO_DEEP);
                }
                Some(b) => {
                    let budget = MAX_PARTS.saturating_sub(tree.entities.len() + 1 + stack.len());
                    let split = split_multipart(body, b.as_bytes(), budget);
                    tree.scanned += split.scanned;
                    if split.parts.is_empty() && !split.closed && !split.truncated {
                        // A boundary that never appears: the body is all there is.
                        text_instead(&mut info);
                        note(&mut tree.notes, NOTE_NO_BOUNDARY);
                    } else {
                        if split.truncated {
                            note(&mut tree.notes, NOTE_TOO_MANY_PARTS);
                        }
                        let offset = job.range.start + body_start;
                        let digest = info.subtype == "digest";
                        for part in split.parts.into_iter().rev() {
                            stack.push(Job {
                                range: offset + part.start..offset + part.end,
                                depth: job.depth + 1,
                                parent: Some(index),
                                digest_child: digest,
                            });
                        }
                        kind = Kind::Multipart(Vec::new());
                    }
                }
            }
        }
        if let Some(Entity { kind: Kind::Multipart(children), .. }) = job.parent.and_then(|p| tree.entities.get_mut(p))
        {
            children.push(index);
        }
        tree.entities.push(Entity { depth: job.depth, header, body, whole: bytes, info, kind, parent: job.parent });
    }
    tree
}

fn text_instead(info: &mut PartInfo) {
    info.ctype = "text".into();
    info.subtype = "plain".into();
    info.boundary = None;
}

fn note(notes: &mut Vec<&'static str>, n: &'static str) {
    if !notes.contains(&n) {
        notes.push(n);
    }
}

/// Where an entity's header block starts and ends and where its body
/// starts. Like mail-parser, the block ends at the first blank line; if the
/// first line is no header field at all, the entity has no headers and that
/// line is already body (a careless part, or not a mail).
pub fn split_header(bytes: &[u8], top: bool) -> (usize, usize, usize) {
    let mut pos = 0;
    if top && bytes.starts_with(b"From ") {
        // An mbox separator line.
        pos = line_end(bytes, 0);
    }
    let first = pos;
    while pos < bytes.len() {
        let next = line_end(bytes, pos);
        let line = &bytes[pos..next];
        if line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
            return (first, pos, next);
        }
        if pos == first && !is_field_line(line) {
            return (first, first, first);
        }
        pos = next;
    }
    (first, bytes.len(), bytes.len())
}

/// The index just past the `\n` ending the line that starts at `pos`.
fn line_end(bytes: &[u8], pos: usize) -> usize {
    memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i + 1)
}

fn is_field_line(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', &line[..line.len().min(200)]) else { return false };
    let name = line[..colon].trim_ascii_end();
    !name.is_empty() && name.iter().all(|b| *b > b' ' && *b != 0x7f)
}

/// The fields of a header block: each line with the folded lines below it.
pub fn fields(block: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < block.len() {
        if pos > start && !matches!(block[pos], b' ' | b'\t') {
            out.push(start..pos);
            start = pos;
        }
        pos = line_end(block, pos);
    }
    if start < block.len() {
        out.push(start..block.len());
    }
    out
}

/// The header block as mail-parser should see it: fields over `field_cap`
/// cut, and past `total_cap` bytes only the first occurrence of each of
/// [`NEEDED_FIELDS`]. Returns whether anything was cut.
fn bounded_header(block: &[u8], total_cap: usize, field_cap: usize) -> (Cow<'_, [u8]>, bool) {
    let ranges = fields(block);
    if block.len() <= total_cap && ranges.iter().all(|r| r.len() <= field_cap) {
        return (Cow::Borrowed(block), false);
    }
    let mut out = Vec::with_capacity(block.len().min(total_cap + NEEDED_FIELDS.len() * field_cap));
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut cut = false;
    for r in ranges {
        let field = &block[r];
        let name = field_name(field);
        let needed = NEEDED_FIELDS.iter().find(|n| name.eq_ignore_ascii_case(n)).filter(|n| !seen.contains(n));
        let kept = cut_field(field, field_cap);
        cut |= kept.len() < field.len();
        if out.len() + kept.len() <= total_cap || needed.is_some() {
            out.extend_from_slice(kept);
            if kept.len() < field.len() {
                out.push(b'\n');
            }
            if let Some(n) = needed {
                seen.push(n);
            }
        } else {
            cut = true;
        }
    }
    (Cow::Owned(out), cut)
}

fn field_name(field: &[u8]) -> &[u8] {
    let end = memchr::memchr(b':', &field[..field.len().min(200)]).unwrap_or(0);
    field[..end].trim_ascii()
}

/// A field cut to at most `cap` bytes, at the last comma (so an address
/// list keeps whole addresses) or else the last space.
fn cut_field(field: &[u8], cap: usize) -> &[u8] {
    if field.len() <= cap {
        return field;
    }
    let head = &field[..cap];
    let late = |i: &usize| *i > cap / 2;
    let at = memchr::memrchr(b',', head)
        .filter(late)
        .or_else(|| memchr::memrchr(b' ', head).filter(late))
        .unwrap_or_else(|| utf8_safe_end(head));
    &field[..at]
}

pub struct Split {
    pub parts: Vec<Range<usize>>,
    /// The closing delimiter was found.
    pub closed: bool,
    /// Parts beyond the budget were left unread.
    pub truncated: bool,
    pub scanned: usize,
}

/// The body parts of a multipart: the ranges between delimiter lines
/// (`--boundary`, optional `--`, optional white space, end of line). The
/// line break before a delimiter belongs to it (RFC 2046 5.1.1).
pub fn split_multipart(body: &[u8], boundary: &[u8], budget: usize) -> Split {
    let mut split = Split { parts: Vec::new(), closed: false, truncated: false, scanned: body.len() };
    let mut open: Option<usize> = None;
    let first = body.starts_with(b"--").then_some(0).into_iter();
    let candidates = first.chain(memchr::memmem::find_iter(body, b"\n--").map(|i| i + 1));
    for line in candidates {
        let after = line + 2;
        if !body[after..].starts_with(boundary) {
            continue;
        }
        let mut rest = after + boundary.len();
        let closing = body[rest..].starts_with(b"--");
        if closing {
            rest += 2;
        }
        let tail =
            body[rest..].iter().position(|b| !matches!(b, b' ' | b'\t' | b'\r')).map_or(body.len(), |i| rest + i);
        if tail < body.len() && body[tail] != b'\n' {
            continue;
        }
        if let Some(start) = open.take() {
            let mut end = line.saturating_sub(1).max(start);
            if end > start && body[end - 1] == b'\r' {
                end -= 1;
            }
            split.parts.push(start..end);
        }
        let next = (tail + 1).min(body.len());
        if closing || split.parts.len() >= budget {
            split.closed = closing;
            split.truncated = !closing;
            split.scanned = next;
            break;
        }
        open = Some(next);
    }
    if let Some(start) = open {
        split.parts.push(start..body.len());
    }
    split
}

/// Undoes the Content-Transfer-Encoding, leniently: stray characters in
/// base64 are skipped and a `=` that starts no escape in quoted-printable is
/// kept, because a readable body beats a refused one. Stops after `limit`
/// output bytes (cut back to a UTF-8 character start). Returns the bytes,
/// whether anything was malformed, and whether the limit cut it.
pub fn decode_transfer(body: &[u8], encoding: TransferEncoding, limit: usize) -> (Cow<'_, [u8]>, bool, bool) {
    let (bytes, problem, cut): (Cow<'_, [u8]>, bool, bool) = match encoding {
        TransferEncoding::Identity => {
            if body.len() > limit {
                (Cow::Borrowed(&body[..limit]), false, true)
            } else {
                (Cow::Borrowed(body), false, false)
            }
        }
        TransferEncoding::Base64 => {
            let (v, problem, cut) = base64(body, limit);
            (Cow::Owned(v), problem, cut)
        }
        TransferEncoding::QuotedPrintable => {
            let (v, cut) = quoted_printable(body, limit);
            (Cow::Owned(v), false, cut)
        }
    };
    if !cut {
        return (bytes, problem, cut);
    }
    let end = utf8_safe_end(&bytes);
    let bytes = match bytes {
        Cow::Borrowed(b) => Cow::Borrowed(&b[..end]),
        Cow::Owned(mut v) => {
            v.truncate(end);
            Cow::Owned(v)
        }
    };
    (bytes, problem, cut)
}

/// The end of `b` without a UTF-8 sequence that a cut split in two.
fn utf8_safe_end(b: &[u8]) -> usize {
    let len = b.len();
    for back in 1..=len.min(4) {
        let c = b[len - back];
        if c & 0xC0 == 0x80 {
            continue;
        }
        let need = match c {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if back < need { len - back } else { len };
    }
    len
}

fn base64(input: &[u8], limit: usize) -> (Vec<u8>, bool, bool) {
    let mut out = Vec::with_capacity((input.len() / 4 * 3).min(limit.saturating_add(3)));
    let mut acc: u32 = 0;
    let mut n = 0;
    let mut problem = false;
    for &b in input {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                // Padding ends a quantum; encoders that concatenate chunks
                // continue after it.
                flush_base64(&mut out, acc, n);
                acc = 0;
                n = 0;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => {
                problem = true;
                continue;
            }
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
            if out.len() > limit {
                out.truncate(limit);
                return (out, problem, true);
            }
        }
    }
    flush_base64(&mut out, acc, n);
    let cut = out.len() > limit;
    out.truncate(limit);
    (out, problem, cut)
}

fn flush_base64(out: &mut Vec<u8>, acc: u32, n: u32) {
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
}

fn quoted_printable(input: &[u8], limit: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(input.len().min(limit.saturating_add(1)));
    let mut i = 0;
    while i < input.len() {
        if out.len() > limit {
            out.truncate(limit);
            return (out, true);
        }
        let b = input[i];
        match b {
            b'=' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (input.get(i + 1).copied().and_then(hex), input.get(i + 2).copied().and_then(hex)) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        // A soft line break: "=" then optional white space
                        // and the end of the line.
                        let rest = &input[i + 1..];
                        let ws = rest.iter().take_while(|c| matches!(c, b' ' | b'\t' | b'\r')).count();
                        if rest.get(ws) == Some(&b'\n') {
                            i += 1 + ws + 1;
                        } else if ws == rest.len() {
                            i = input.len();
                        } else {
                            out.push(b'=');
                            i += 1;
                        }
                    }
                }
            }
            b'\n' => {
                // Trailing white space before a hard break is transport
                // padding (RFC 2045 6.7 rule 3).
                let keep_cr = out.last() == Some(&b'\r');
                if keep_cr {
                    out.pop();
                }
                while matches!(out.last(), Some(b' ' | b'\t')) {
                    out.pop();
                }
                if keep_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(raw: &[u8]) -> Tree<'_> {
        walk(raw, &MessageParser::default())
    }

    #[test]
    fn splits_parts_at_delimiter_lines_only() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n--b\r\n\r\none\r\n--b1 not ours\r\n--b  \r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n--b--\r\nepilogue";
        let t = tree(raw);
        assert_eq!(t.entities.len(), 3);
        assert_eq!(t.entities[0].kind, Kind::Multipart(vec![1, 2]));
        assert_eq!(t.entities[1].body, b"one\r\n--b1 not ours");
        assert!(!t.entities[1].info.declared);
        assert_eq!(t.entities[2].info.mime_type(), "text/html");
        assert_eq!(t.entities[2].body, b"<p>two</p>");
    }

    #[test]
    fn nesting_is_bounded_and_scanning_linear() {
        let n = 5_000;
        let mut raw = String::from("Content-Type: multipart/mixed; boundary=b0\n\n");
        for i in 0..n {
            raw.push_str(&format!("--b{i}\nContent-Type: multipart/mixed; boundary=b{}\n\n", i + 1));
        }
        raw.push_str("--b5000\n\ndeep\n");
        let t = tree(raw.as_bytes());
        assert_eq!(t.entities.len(), MAX_DEPTH + 1);
        assert_eq!(t.entities.last().unwrap().kind, Kind::TooDeep);
        assert_eq!(t.notes, vec![NOTE_TOO_DEEP]);
        assert!(t.scanned <= (MAX_DEPTH + 2) * raw.len(), "{} for {}", t.scanned, raw.len());
    }

    #[test]
    fn missing_boundaries_cost_one_scan_each() {
        let n = 3_000;
        let mut raw = String::from("Content-Type: multipart/mixed; boundary=B\n\n");
        for _ in 0..n {
            raw.push_str("--B\nContent-Type: multipart/mixed; boundary=nowhere\n\nsome text here\n");
        }
        raw.push_str("--B--\n");
        let t = tree(raw.as_bytes());
        assert_eq!(t.entities.len(), MAX_PARTS);
        assert!(t.notes.contains(&NOTE_TOO_MANY_PARTS) && t.notes.contains(&NOTE_NO_BOUNDARY));
        assert!(t.entities[1].info.is("text", "plain"));
        assert!(t.scanned <= 3 * raw.len(), "{} for {}", t.scanned, raw.len());
    }

    #[test]
    fn headers_end_at_a_blank_line_or_are_absent() {
        assert_eq!(split_header(b"A: b\r\n c\r\n\r\nbody", false), (0, 10, 12));
        assert_eq!(split_header(b"just text\nmore", false), (0, 0, 0));
        assert_eq!(split_header(b"From a@b Mon\nX: y\n\nz", true), (13, 18, 19));
        assert_eq!(split_header(b"X: y", false), (0, 4, 4));
    }

    #[test]
    fn transfer_decoding_is_lenient_and_capped() {
        let (b, problem, cut) = decode_transfer(b"aGVs\r\nbG8=\r\n!d29y bGQ=", TransferEncoding::Base64, 100);
        assert_eq!((b.as_ref(), problem, cut), (&b"helloworld"[..], true, false));
        let (b, _, _) =
            decode_transfer(b"caf=C3=A9 =\r\nau lait=3D ok = x  \r\nend=", TransferEncoding::QuotedPrintable, 100);
        assert_eq!(b.as_ref(), "café au lait= ok = x\r\nend".as_bytes());
        let (b, _, cut) = decode_transfer("ééé".as_bytes(), TransferEncoding::Identity, 5);
        assert_eq!((b.as_ref(), cut), ("éé".as_bytes(), true));
    }
}
