//! Outgoing mail: the durable outbox entry type, templates, and the SMTP
//! sender task that drains the outbox.

pub mod build;
pub mod sender;
pub mod smtp;
pub mod templates;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutKind {
    /// "We got your mail" to the customer.
    Ack,
    /// New ticket or customer reply, to the agents; carries the agent-only id.
    AgentNotify,
    /// An agent's reply relayed to the customer and participants.
    Relay,
    /// "Your ticket was resolved".
    Resolved,
    /// A command an agent sent could not be applied.
    CommandError,
    /// Optional receipt for applied commands.
    Receipt,
    /// To an agent past `desk.notifications_per_agent_per_hour`: the
    /// notifications held back, in one mail (about no single ticket).
    Digest,
}

impl OutKind {
    /// The one stable name of a kind: in logs, views, metrics and the seed
    /// of its Message-ID (serde writes the same).
    pub fn code(self) -> &'static str {
        match self {
            OutKind::Ack => "ack",
            OutKind::AgentNotify => "agent_notify",
            OutKind::Relay => "relay",
            OutKind::Resolved => "resolved",
            OutKind::CommandError => "command_error",
            OutKind::Receipt => "receipt",
            OutKind::Digest => "digest",
        }
    }

    /// Automatic notices carry RFC 3834 headers; human replies do not.
    pub fn is_automatic(self) -> bool {
        !matches!(self, OutKind::Relay)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutAttachment {
    pub filename: String,
    pub mime_type: String,
    pub sha256: String,
}

/// One message to send, fully rendered by the pure core so a retry sends
/// exactly the same bytes and Message-ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutMail {
    pub ticket: u64,
    pub kind: OutKind,
    pub from_address: String,
    pub from_name: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    /// Without angle brackets.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    #[serde(default)]
    pub attachments: Vec<OutAttachment>,
    /// Lines of this mail that must never reach a customer (a
    /// notification's status line and instructions): a reply that still
    /// quotes one is held, not relayed. Not part of the mail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub internal_lines: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutState {
    Queued,
    Sent,
    /// Permanently rejected, or bounced later.
    Failed,
    /// Taken out of the queue by the admin, unsent.
    Dropped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub mail: OutMail,
    pub state: OutState,
    pub attempts: u32,
    pub next_attempt: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created: DateTime<Utc>,
    /// Recipients already handled (delivered, or refused for good): a retry
    /// goes only to the others, and one bad address never holds back the rest.
    #[serde(default)]
    pub done_rcpts: Vec<String>,
    #[serde(default)]
    pub failed_rcpts: Vec<String>,
}

/// Capped exponential backoff with ±25 % jitter, as a pure function of the
/// attempt count and a jitter sample in [0, 1).
pub fn retry_delay(
    attempts: u32,
    initial: std::time::Duration,
    max: std::time::Duration,
    jitter: f64,
) -> chrono::Duration {
    let exp = initial.saturating_mul(1u32 << attempts.min(20)).min(max);
    let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
    chrono::Duration::from_std(exp.mul_f64(factor)).unwrap_or(chrono::Duration::hours(1))
}

/// At most `max_bytes` of `text`, cut after the last line break in the
/// second half of that budget when there is one (else on a char boundary), so
/// a notification about a huge body stays small. The bool is true when
/// something was cut.
pub fn excerpt(text: &str, max_bytes: usize) -> (String, bool) {
    if text.len() <= max_bytes {
        return (text.to_owned(), false);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if let Some(nl) = text[..end].rfind('\n').filter(|&nl| nl >= max_bytes / 2) {
        end = nl + 1;
    }
    (text[..end].to_owned(), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn excerpts_cut_on_line_or_char_boundaries() {
        assert_eq!(excerpt("short", 10), ("short".to_owned(), false));
        assert_eq!(excerpt("line one\nline two\nline three", 20), ("line one\nline two\n".to_owned(), true));
        let (cut, was_cut) = excerpt(&"ä".repeat(10), 5);
        assert!(was_cut);
        assert_eq!(cut, "ää");
        let (cut, _) = excerpt(&format!("a\n{}", "b".repeat(50)), 20);
        assert_eq!(cut.len(), 20, "a break in the first half is not worth losing the rest for");
    }

    #[test]
    fn retries_back_off_to_a_cap() {
        let (i, m) = (Duration::from_secs(30), Duration::from_secs(3600));
        assert_eq!(retry_delay(0, i, m, 0.5), chrono::Duration::seconds(30));
        assert_eq!(retry_delay(3, i, m, 0.5), chrono::Duration::seconds(240));
        assert_eq!(retry_delay(30, i, m, 0.5), chrono::Duration::seconds(3600));
        assert!(retry_delay(0, i, m, 0.0) < retry_delay(0, i, m, 0.99));
    }
}
