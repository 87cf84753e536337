//! The outbox's data and its rules, with no I/O: the mail the pure core
//! renders ([`OutMail`]), a queued entry and its states ([`OutboxEntry`]),
//! what the sender reports about one ([`Delivery`]) and how a report
//! changes the entry ([`OutboxEntry::record`]), the retry schedule, and the
//! templates mail bodies come from. The SMTP side lives in `outbound`.

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
    /// A response target is about to pass, or passed: to the assignee, or
    /// every agent (#19). Carries the agent-only id, like a notification.
    Escalation,
    /// To the customer of a ticket pending too long: we wait for you (#19).
    Reminder,
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
            OutKind::Escalation => "escalation",
            OutKind::Reminder => "reminder",
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

/// What happened to one outbox entry: the SMTP sender's reports, a bounce
/// that came back later, and the admin's retry and drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// One recipient accepted the mail.
    Accepted { rcpt: String },
    /// One recipient refused for good: recorded on the ticket; the others
    /// still get the mail.
    Refused { rcpt: String, error: String },
    /// Every recipient handled: the entry leaves the queue.
    Done,
    /// A transient failure: try again at `next`.
    Retry { error: String, next: DateTime<Utc> },
    /// It can never be sent: it leaves the queue and the ticket says why.
    Failed { error: String },
    /// A delivery report came back for `rcpt` (the ticket has the report
    /// itself as its own entry).
    Bounced { rcpt: String, reason: String },
}

/// What [`OutboxEntry::record`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The entry left the queue (or was never in it): it belongs with the
    /// finished ones.
    pub finished: bool,
    /// A `system` entry for the ticket's history, if the event deserves one.
    pub note: Option<String>,
}

fn has(list: &[String], rcpt: &str) -> bool {
    list.iter().any(|r| r.eq_ignore_ascii_case(rcpt))
}

fn add(list: &mut Vec<String>, rcpt: &str) {
    if !has(list, rcpt) {
        list.push(rcpt.to_ascii_lowercase());
    }
}

impl OutboxEntry {
    /// A fresh entry for `mail`, due at once.
    pub fn queued(mail: OutMail, now: DateTime<Utc>) -> OutboxEntry {
        OutboxEntry {
            mail,
            state: OutState::Queued,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            created: now,
            done_rcpts: Vec::new(),
            failed_rcpts: Vec::new(),
        }
    }

    /// The one set of rules for what a report does to an entry, whoever
    /// reports it (the sender, a bounce, the admin). Recipients compare
    /// without regard to case. `finished` says where the entry was before
    /// (a bounce may come after it was sent).
    pub fn record(&mut self, report: Delivery, finished: bool, now: DateTime<Utc>) -> Recorded {
        match report {
            Delivery::Accepted { rcpt } => {
                add(&mut self.done_rcpts, &rcpt);
                Recorded { finished, note: None }
            }
            Delivery::Refused { rcpt, error } => {
                add(&mut self.done_rcpts, &rcpt);
                add(&mut self.failed_rcpts, &rcpt);
                let note = format!("Mail to {rcpt} could not be delivered: {error}");
                self.last_error = Some(error);
                Recorded { finished, note: Some(note) }
            }
            Delivery::Done => {
                // Every recipient refused: nothing went out.
                let all_refused = !self.mail.to.is_empty() && self.mail.to.iter().all(|t| has(&self.failed_rcpts, t));
                self.state = if all_refused { OutState::Failed } else { OutState::Sent };
                self.attempts += 1;
                self.next_attempt = now;
                Recorded { finished: true, note: None }
            }
            Delivery::Retry { error, next } => {
                self.attempts += 1;
                self.last_error = Some(error);
                self.next_attempt = next;
                Recorded { finished, note: None }
            }
            Delivery::Failed { error } => {
                self.state = OutState::Failed;
                self.attempts += 1;
                let open: Vec<&String> = self.mail.to.iter().filter(|r| !has(&self.done_rcpts, r)).collect();
                let to = if open.is_empty() { self.mail.to.iter().collect() } else { open };
                let names = to.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                let note = format!("Mail to {names} could not be delivered: {error}");
                self.last_error = Some(error);
                Recorded { finished: true, note: Some(note) }
            }
            Delivery::Bounced { rcpt, reason } => {
                // Only the recipient the report names failed; mail still
                // queued for the others keeps waiting.
                add(&mut self.done_rcpts, &rcpt);
                add(&mut self.failed_rcpts, &rcpt);
                self.last_error = Some(reason);
                if self.mail.to.iter().all(|t| has(&self.failed_rcpts, t)) {
                    self.state = OutState::Failed;
                }
                let all_done = self.mail.to.iter().all(|t| has(&self.done_rcpts, t));
                Recorded { finished: finished || all_done, note: None }
            }
        }
    }

    /// The admin's "send it again now": a waiting entry is due at once; a
    /// failed one starts over for every recipient. One that was sent (or
    /// dropped) cannot be.
    pub fn retry_now(&mut self, finished: bool, now: DateTime<Utc>) -> Result<(), String> {
        if finished {
            if self.state != OutState::Failed {
                return Err("it was sent already".into());
            }
            self.state = OutState::Queued;
            self.done_rcpts.clear();
            self.failed_rcpts.clear();
        }
        self.next_attempt = now;
        Ok(())
    }

    /// The admin's "never send it": a waiting entry leaves the queue unsent.
    pub fn drop_unsent(&mut self, by: &str) -> Recorded {
        self.state = OutState::Dropped;
        let to = self.mail.to.join(", ");
        Recorded { finished: true, note: Some(format!("Mail to {to} was dropped from the outbox by {by}, unsent.")) }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(to: &[&str]) -> OutboxEntry {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mail = OutMail {
            ticket: 7,
            kind: OutKind::Relay,
            from_address: "support@x.test".into(),
            from_name: "S".into(),
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            subject: "s".into(),
            body: "b".into(),
            message_id: "m@x.test".into(),
            in_reply_to: None,
            references: vec![],
            attachments: vec![],
            internal_lines: vec![],
        };
        OutboxEntry::queued(mail, t0)
    }

    #[test]
    fn reports_are_recorded_by_one_rule_set_whoever_reports() {
        let now = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let mut e = entry(&["Ann@x.test", "bob@x.test"]);
        assert!(!e.record(Delivery::Accepted { rcpt: "ann@X.test".into() }, false, now).finished);
        let r = e.record(Delivery::Refused { rcpt: "BOB@x.test".into(), error: "550 no".into() }, false, now);
        assert!(r.note.unwrap().contains("BOB@x.test could not be delivered: 550 no"));
        assert!(e.record(Delivery::Done, false, now).finished);
        assert_eq!(e.state, OutState::Sent, "one recipient got it");
        // A bounce that comes later, with another case: the same recipient.
        let mut e = entry(&["Ann@x.test"]);
        e.record(Delivery::Done, false, now);
        let r = e.record(Delivery::Bounced { rcpt: "ann@x.TEST".into(), reason: "5.1.1".into() }, true, now);
        assert!(r.finished && r.note.is_none());
        assert_eq!((e.state, e.failed_rcpts.len()), (OutState::Failed, 1), "case does not make two recipients");
        // A bounce for one of two while the mail still waits for the other.
        let mut e = entry(&["ann@x.test", "bob@x.test"]);
        let r = e.record(Delivery::Bounced { rcpt: "ann@x.test".into(), reason: "r".into() }, false, now);
        assert!(!r.finished, "bob still waits");
        assert_eq!(e.state, OutState::Queued);
        // Failed names only who did not get it.
        let mut e = entry(&["ann@x.test", "bob@x.test"]);
        e.record(Delivery::Accepted { rcpt: "ann@x.test".into() }, false, now);
        let r = e.record(Delivery::Failed { error: "554".into() }, false, now);
        assert_eq!(r.note.as_deref(), Some("Mail to bob@x.test could not be delivered: 554"));
        // The admin's retry and drop.
        assert!(e.retry_now(true, now).is_ok(), "a failed mail starts over");
        assert!(e.failed_rcpts.is_empty() && e.state == OutState::Queued);
        let mut sent = entry(&["ann@x.test"]);
        sent.record(Delivery::Done, false, now);
        assert!(sent.retry_now(true, now).is_err(), "a sent mail is not sent again");
        let r = entry(&["ann@x.test"]).drop_unsent("agent_bob");
        assert_eq!(r.note.as_deref(), Some("Mail to ann@x.test was dropped from the outbox by agent_bob, unsent."));
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
