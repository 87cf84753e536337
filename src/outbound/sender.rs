//! The SMTP sender task: the one owner of the SMTP connection. It drains the
//! durable outbox in order and reports every outcome — delivered, refused
//! by a recipient, retry later, failed for good — to the desk's writer,
//! which records it (a refusal becomes a `system` entry on the ticket).
//! The sender itself writes nothing: what it reads is committed, so
//! nothing leaves before the ticket it belongs to is durable; and each
//! outcome is durable before the next mail goes out, so a crash re-sends
//! at most the one mail in flight.

use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::build::{BuildOptions, build};
use super::smtp::{RcptResult, SmtpClient, address};
use crate::config::SmtpConfig;
use crate::desk::{Delivery, Desk, DeskError};
use crate::outbox::{OutboxEntry, retry_delay};

pub struct Sender {
    pub smtp: SmtpConfig,
    pub desk: Desk,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

/// Why one entry did not go out this time.
enum Stop {
    /// The connection or the server is the problem: the rest would fail alike.
    Transient(String),
    /// This node's lease is in doubt (a cluster): nothing is sent until it
    /// is confirmed or another node leads.
    Paused,
}

/// The sender's name for the watchdog (see [`crate::health::Health::beat`]).
const OWNER: &str = "smtp sender";

impl Sender {
    /// How long one step may take before the sender counts as stuck: one
    /// SMTP transaction (connect, greet, send, each bounded by `timeout`)
    /// and recording its outcome.
    fn slack(&self) -> Duration {
        self.smtp.timeout * 4 + Duration::from_secs(60)
    }

    pub async fn run(self) {
        let mut client = SmtpClient::new(&self.smtp);
        let mut failing = false;
        // Consecutive rounds the server could not be reached: while it is
        // down, new mail does not make us knock again before the backoff.
        let mut outage = 0u32;
        let health = self.desk.health().clone();
        loop {
            health.beat(OWNER, self.slack());
            if self.shutdown.is_cancelled() {
                break;
            }
            if !self.desk.may_act() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = self.shutdown.cancelled() => break,
                }
                continue;
            }
            let hold = match self.round(&mut client, &mut failing).await {
                Ok(true) => {
                    outage = outage.saturating_add(1);
                    retry_delay(outage - 1, self.smtp.retry_initial, self.smtp.retry_max, rand::random()).to_std().ok()
                }
                Ok(false) => {
                    outage = 0;
                    None
                }
                Err(e) => {
                    error!(error = %e, "outbox: cannot record a delivery outcome; will retry");
                    Some(Duration::from_secs(1))
                }
            };
            if let Some(hold) = hold {
                debug!(?hold, "SMTP unavailable: holding the outbox");
                health.beat(OWNER, hold + self.slack());
                tokio::select! {
                    _ = tokio::time::sleep(hold) => {}
                    _ = self.shutdown.cancelled() => break,
                }
                continue;
            }
            let wait = match self.desk.store().next_due_at() {
                Ok(Some(t)) => (t - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .clamp(Duration::from_millis(50), Duration::from_secs(60)),
                _ => Duration::from_secs(60),
            };
            health.beat(OWNER, wait + self.slack());
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
        health.quiet(OWNER);
        client.quit().await;
        debug!("sender stopped");
    }

    /// Sends everything due now, one mail at a time over one connection.
    /// True when the server could not take mail (the round stopped early).
    async fn round(&self, client: &mut SmtpClient, failing: &mut bool) -> Result<bool, DeskError> {
        let store = self.desk.store();
        loop {
            let due = store.due(Utc::now(), 32)?;
            debug!(due = due.len(), "outbox round");
            if due.is_empty() {
                return Ok(false);
            }
            for (seq, entry) in &due {
                if self.shutdown.is_cancelled() {
                    return Ok(false);
                }
                self.desk.health().beat(OWNER, self.slack());
                let started = std::time::Instant::now();
                match self.send_one(client, entry).await {
                    Ok(reports) => {
                        let retry_for = reports.iter().any(|r| matches!(r, Delivery::Retry { .. }));
                        let sent = started.elapsed();
                        self.desk.delivery(*seq, reports).await?;
                        tracing::trace!(
                            send_us = sent.as_micros() as u64,
                            record_us = (started.elapsed() - sent).as_micros() as u64,
                            "outcome recorded"
                        );
                        if !retry_for && *failing {
                            info!("SMTP delivery works again");
                            *failing = false;
                        }
                        debug!(seq, ticket = entry.mail.ticket, kind = ?entry.mail.kind, message_id = %entry.mail.message_id, "sent");
                    }
                    Err(Stop::Transient(error)) => {
                        self.defer(*seq, entry, &error, failing).await?;
                        return Ok(true);
                    }
                    Err(Stop::Paused) => return Ok(false),
                }
            }
        }
    }

    async fn defer(&self, seq: u64, e: &OutboxEntry, error: &str, failing: &mut bool) -> Result<(), DeskError> {
        if !*failing {
            warn!(
                error,
                pending = self.desk.store().pending_count(),
                "SMTP unavailable; outbox holds mail and retries with backoff"
            );
            *failing = true;
        }
        self.desk.health().count_send("deferred");
        let next = Utc::now().trunc_subsecs(0)
            + retry_delay(e.attempts, self.smtp.retry_initial, self.smtp.retry_max, rand::random());
        self.desk.delivery(seq, vec![Delivery::Retry { error: error.to_owned(), next }]).await
    }

    /// One SMTP transaction for every recipient not yet handled, with the
    /// bytes built from the entry (the same on every retry, so the same
    /// Message-ID and Date). A refused address is recorded on the ticket and
    /// the others still get the mail; an entry that can never be built or
    /// is refused as a whole fails with a system entry, and the sender goes on.
    async fn send_one(&self, client: &mut SmtpClient, entry: &OutboxEntry) -> Result<Vec<Delivery>, Stop> {
        let health = self.desk.health();
        let failed = |error: String| {
            health.count_send("failed");
            warn!(ticket = entry.mail.ticket, error = %error, "mail cannot be sent; recorded on the ticket");
            Ok(vec![Delivery::Failed { error }])
        };
        let store = self.desk.store().clone();
        let mail = entry.mail.clone();
        let opts = BuildOptions::new(entry.created);
        let started = std::time::Instant::now();
        // Building a large mail is CPU work: off the runtime.
        let built = tokio::task::spawn_blocking(move || {
            let mut load = |a: &crate::outbox::OutAttachment| -> std::io::Result<Vec<u8>> {
                store
                    .attachment(&a.sha256)
                    .map_err(|e| match e {
                        // Damaged bytes will not heal by waiting: never sent.
                        e @ crate::store::StoreError::BlobMismatch { .. } => {
                            std::io::Error::new(std::io::ErrorKind::InvalidData, e)
                        }
                        e => std::io::Error::other(e),
                    })?
                    .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not in the attachment store"))
            };
            build(&mail, &mut load, &opts)
        })
        .await;
        tracing::trace!(us = started.elapsed().as_micros() as u64, "built");
        let bytes = match built {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if e.is_permanent() => return failed(format!("cannot build the message: {e}")),
            Ok(Err(e)) => return Err(Stop::Transient(format!("cannot build the message: {e}"))),
            Err(e) => return failed(format!("cannot build the message: {e}")),
        };
        let from = match address(&entry.mail.from_address) {
            Ok(a) => a,
            Err(e) => return failed(format!("invalid sender {:?}: {e}", entry.mail.from_address)),
        };
        let mut reports = Vec::new();
        let mut rcpts = Vec::new();
        let mut names = Vec::new();
        for r in entry.mail.to.iter().filter(|r| !entry.done_rcpts.contains(r)) {
            match address(r) {
                Ok(a) => {
                    rcpts.push(a);
                    names.push(r.clone());
                }
                Err(e) => {
                    health.count_send("refused");
                    reports.push(Delivery::Refused { rcpt: r.clone(), error: format!("not a usable address: {e}") });
                }
            }
        }
        if rcpts.is_empty() {
            reports.push(Delivery::Done);
            return Ok(reports);
        }
        // The guard right before the send (a cluster's lease in doubt).
        if !self.desk.may_act() {
            return Err(Stop::Paused);
        }
        let results = match client.send(&from, &rcpts, &bytes).await {
            Ok(r) => r,
            Err(e) if e.is_permanent() => return failed(e.to_string()),
            Err(e) => return Err(Stop::Transient(e.to_string())),
        };
        crate::failpoint::hit("sent");
        let mut later = None;
        for (rcpt, result) in names.into_iter().zip(results) {
            match result {
                RcptResult::Delivered => {
                    health.count_send("delivered");
                    reports.push(Delivery::Accepted { rcpt });
                }
                RcptResult::Refused(reply) if reply.is_permanent() => {
                    health.count_send("refused");
                    warn!(ticket = entry.mail.ticket, rcpt = %rcpt, reply = %reply, "recipient permanently refused; recorded on the ticket");
                    reports.push(Delivery::Refused { rcpt, error: reply.text });
                }
                RcptResult::Refused(reply) => later = Some(format!("{rcpt}: {reply}")),
            }
        }
        match later {
            // Some recipient said "try later": the others are done, it is not.
            Some(error) => {
                let next = Utc::now().trunc_subsecs(0)
                    + retry_delay(entry.attempts, self.smtp.retry_initial, self.smtp.retry_max, rand::random());
                health.count_send("deferred");
                reports.push(Delivery::Retry { error, next });
            }
            None => reports.push(Delivery::Done),
        }
        Ok(reports)
    }
}
