//! Raw RFC 5322 bytes → [`InboundMail`], the owned, parser-independent view
//! the rest of ticketd works with. mail-parser stays inside this module.

pub mod parent;
pub mod quote;

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

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
    pub raw_len: usize,
    pub from: Option<MailAddress>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub date: Option<DateTime<Utc>>,
    /// text/plain, else the HTML part converted to text.
    pub body: String,
    pub attachments: Vec<InboundAttachment>,
    pub auto: AutoSigns,
    pub report: Option<DeliveryReport>,
    /// Raw values of every `Authentication-Results` header, top first.
    pub auth_results: Vec<String>,
    /// The `X-Ticketd-Ticket` header we put on our own mail.
    pub ticketd_header: Option<String>,
    /// mail-parser met undecodable content somewhere.
    pub encoding_problem: bool,
}

impl InboundMail {
    /// Every id this mail points back to: In-Reply-To first, then References
    /// newest first (the closest ancestor is the best match).
    pub fn parent_ids(&self) -> impl Iterator<Item = &str> {
        self.in_reply_to.iter().chain(self.references.iter().rev()).map(String::as_str)
    }

    /// The key that makes a re-fetched copy of this mail a duplicate.
    pub fn dedupe_key(&self) -> String {
        match &self.message_id {
            Some(id) => format!("id:{}", normalise_id(id)),
            None => format!("sha256:{}", self.raw_sha256),
        }
    }

    pub fn parse(raw: &[u8]) -> Result<InboundMail, MailError> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(MailError::Empty);
        }
        let msg = MessageParser::default().parse(raw).ok_or(MailError::Empty)?;
        let from = msg.from().and_then(first_addr);
        if from.is_none() && msg.message_id().is_none() && msg.subject().is_none() && msg.date().is_none() {
            return Err(MailError::NotAMessage);
        }
        let sha = hex::encode(Sha256::digest(raw));
        let header_text =
            |name: &str| msg.header(name).and_then(|v| v.as_text()).map(|s| s.trim().to_ascii_lowercase());
        let from_local = from.as_ref().map(|f| f.address.split('@').next().unwrap_or("").to_owned());
        let auto = AutoSigns {
            auto_submitted: header_text("Auto-Submitted").map(|v| v.split(';').next().unwrap_or("").trim().to_owned()),
            precedence: header_text("Precedence"),
            list_id: msg.header(HeaderName::ListId).is_some(),
            x_autoreply: msg.header("X-Autoreply").is_some()
                || msg.header("X-Autorespond").is_some()
                || msg.header("X-Autoresponder").is_some(),
            auto_response_suppress: msg.header("X-Auto-Response-Suppress").is_some(),
            null_return_path: matches!(msg.header(HeaderName::ReturnPath), Some(HeaderValue::Empty))
                || msg.header_raw(HeaderName::ReturnPath).is_some_and(|r| r.trim() == "<>"),
            daemon_sender: from_local.as_deref().is_some_and(|l| {
                let l = l.to_ascii_lowercase();
                l == "mailer-daemon" || l == "postmaster"
            }),
        };
        let auth_results = msg
            .headers()
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case("Authentication-Results"))
            .filter_map(|h| raw.get(h.offset_start() as usize..h.offset_end() as usize))
            .map(|b| unfold(&String::from_utf8_lossy(b)))
            .collect();
        let encoding_problem = msg.parts.iter().any(|p| p.is_encoding_problem);
        let report = delivery_report(&msg);
        Ok(InboundMail {
            message_id: msg.message_id().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()),
            raw_sha256: sha,
            raw_len: raw.len(),
            to: addresses(msg.to()),
            cc: addresses(msg.cc()),
            subject: msg.subject().map(clean_line).unwrap_or_default(),
            in_reply_to: id_list(msg.in_reply_to()),
            references: id_list(msg.references()),
            date: msg.date().and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
            body: body_text(&msg),
            attachments: if report.is_some() { Vec::new() } else { attachments(&msg) },
            auto,
            report,
            auth_results,
            ticketd_header: msg.header("X-Ticketd-Ticket").and_then(|v| v.as_text()).map(|s| s.trim().to_owned()),
            encoding_problem,
            from,
        })
    }
}

/// Message-IDs compare case-insensitively here: some MTAs and clients change
/// the case of the domain part, and a false match on case alone is harmless.
pub fn normalise_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase()
}

fn first_addr(a: &Address<'_>) -> Option<MailAddress> {
    a.iter().find_map(|addr| {
        let address = addr.address()?.trim().to_ascii_lowercase();
        (!address.is_empty())
            .then(|| MailAddress { address, name: addr.name().map(clean_line).filter(|n| !n.is_empty()) })
    })
}

fn addresses(a: Option<&Address<'_>>) -> Vec<String> {
    let Some(a) = a else { return Vec::new() };
    let mut out: Vec<String> = a
        .iter()
        .filter_map(|x| x.address())
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| s.contains('@'))
        .collect();
    out.dedup();
    out
}

fn id_list(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.trim().to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.trim().to_string()).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect()
}

/// Control characters (NUL included) never reach titles or names.
fn clean_line(s: &str) -> String {
    let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn unfold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clean_body(s: &str) -> String {
    let s = s.replace("\r\n", "\n").replace('\0', "");
    s.trim().to_owned()
}

pub fn html_to_text(html: &str) -> String {
    html2text::from_read(html.as_bytes(), 80)
}

fn body_text(msg: &Message<'_>) -> String {
    let plain: Vec<&str> = msg
        .text_bodies()
        .filter_map(|p| match &p.body {
            PartType::Text(t) => Some(t.as_ref()),
            _ => None,
        })
        .collect();
    if !plain.is_empty() && plain.iter().any(|t| !t.trim().is_empty()) {
        return clean_body(&plain.join("\n\n"));
    }
    let html: Vec<String> = msg
        .html_bodies()
        .filter_map(|p| match &p.body {
            PartType::Html(h) => Some(html_to_text(h)),
            _ => None,
        })
        .collect();
    clean_body(&html.join("\n\n"))
}

fn attachments(msg: &Message<'_>) -> Vec<InboundAttachment> {
    msg.attachments()
        .map(|part| {
            let mime_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase();
            let bytes = match &part.body {
                PartType::Message(m) => m.raw_message().to_vec(),
                _ => part.contents().to_vec(),
            };
            let fallback = if mime_type == "message/rfc822" { "message.eml" } else { "attachment.bin" };
            InboundAttachment {
                filename: safe_filename(part.attachment_name().unwrap_or(""), fallback),
                sha256: hex::encode(Sha256::digest(&bytes)),
                mime_type,
                bytes,
            }
        })
        .collect()
}

/// A name that is safe as one path component and in a URL's last segment:
/// no separators, no control characters, no leading dots, bounded length.
pub fn safe_filename(name: &str, fallback: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut s: String = last
        .chars()
        .map(|c| if c.is_control() || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') { '_' } else { c })
        .collect();
    s = s.trim().trim_start_matches('.').trim().to_owned();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    if s.is_empty() { fallback.to_owned() } else { s }
}

fn delivery_report(msg: &Message<'_>) -> Option<DeliveryReport> {
    let ct = msg.content_type()?;
    let is_report = ct.ctype().eq_ignore_ascii_case("multipart")
        && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
        && ct.attribute("report-type").is_none_or(|t| t.eq_ignore_ascii_case("delivery-status"));
    if !is_report {
        return None;
    }
    let mut report = DeliveryReport::default();
    for part in msg.parts.iter() {
        let Some(pct) = part.content_type() else { continue };
        let kind = format!("{}/{}", pct.ctype(), pct.subtype().unwrap_or("")).to_ascii_lowercase();
        match kind.as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                let text = String::from_utf8_lossy(part.contents()).into_owned();
                for line in text.lines() {
                    let Some((k, v)) = line.split_once(':') else { continue };
                    let v = v.trim().to_owned();
                    match k.trim().to_ascii_lowercase().as_str() {
                        "action" if report.action.is_none() => report.action = Some(v),
                        "status" if report.status.is_none() => report.status = Some(v),
                        "final-recipient" if report.final_recipient.is_none() => {
                            report.final_recipient = Some(v.rsplit(';').next().unwrap_or(&v).trim().to_owned())
                        }
                        "diagnostic-code" if report.diagnostic.is_none() => {
                            report.diagnostic = Some(v.rsplit(';').next().unwrap_or(&v).trim().to_owned())
                        }
                        _ => {}
                    }
                }
            }
            "message/rfc822" | "message/global" => {
                if let Some(inner) = part.message() {
                    report.original_message_id = report.original_message_id.or(inner.message_id().map(str::to_owned));
                }
            }
            "text/rfc822-headers" | "message/global-headers" if report.original_message_id.is_none() => {
                let inner = MessageParser::default().parse_headers(part.contents());
                report.original_message_id = inner.as_ref().and_then(|m| m.message_id()).map(str::to_owned);
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
        assert_eq!(m.dedupe_key(), "id:abc@x");
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
}
