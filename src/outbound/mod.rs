//! Outgoing mail: the durable outbox entry type, templates, and the SMTP
//! sender task that drains the outbox.

pub mod sender;
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
}

impl OutKind {
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutState {
    Queued,
    Sent,
    /// Permanently rejected, or bounced later.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub mail: OutMail,
    pub state: OutState,
    pub attempts: u32,
    pub next_attempt: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created: DateTime<Utc>,
}

/// Capped exponential backoff with ±25 % jitter, as a pure function of the
/// attempt count and a jitter sample in [0, 1).
pub fn retry_delay(attempts: u32, jitter: f64) -> chrono::Duration {
    let base = 30i64.saturating_mul(1i64 << attempts.min(10));
    let capped = base.min(3600) as f64;
    let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
    chrono::Duration::milliseconds((capped * factor * 1000.0) as i64)
}
