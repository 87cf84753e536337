//! The SMTP sender task: the one owner of the SMTP connection. It drains the
//! durable outbox in order and reports every outcome — delivered, refused
//! by a recipient, retry later, failed for good — to the desk's writer,
//! which records it (a refusal becomes a `system` entry on the ticket).
//! The sender itself writes nothing: what it reads is committed, so
//! nothing leaves before the ticket it belongs to is durable.

use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls as LettreTls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{OutMail, OutboxEntry, retry_delay};
use crate::config::{SmtpConfig, Tls};
use crate::desk::{Delivery, Desk, DeskError};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("SMTP setup: {0}")]
    Setup(String),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("attachment {0} is missing from the attachment store")]
    MissingAttachment(String),
}

impl SendError {
    /// 5xx and messages that can never be built: retrying will not help.
    pub fn is_permanent(&self) -> bool {
        match self {
            SendError::Smtp(e) => e.is_permanent(),
            SendError::Build(_) | SendError::MissingAttachment(_) => true,
            SendError::Setup(_) => false,
        }
    }
}

pub struct Sender {
    pub smtp: SmtpConfig,
    pub desk: Desk,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

/// Builds the RFC 5322 message for an outbox entry.
pub fn build_message(m: &OutMail, store: &Store) -> Result<Message, SendError> {
    let bad = |e: &dyn std::fmt::Display| SendError::Build(e.to_string());
    let from = Mailbox::new(Some(m.from_name.clone()), m.from_address.parse().map_err(|e| bad(&e))?);
    let mut b =
        Message::builder().from(from).subject(m.subject.clone()).message_id(Some(format!("<{}>", m.message_id)));
    for to in &m.to {
        b = b.to(Mailbox::new(None, to.parse().map_err(|e| bad(&e))?));
    }
    if let Some(parent) = &m.in_reply_to {
        b = b.in_reply_to(format!("<{parent}>"));
    }
    if !m.references.is_empty() {
        b = b.references(m.references.iter().map(|r| format!("<{r}>")).collect::<Vec<_>>().join(" "));
    }
    let header = |name: &'static str, value: String| HeaderValue::new(HeaderName::new_from_ascii_str(name), value);
    b = b.raw_header(header("X-Ticketd-Ticket", m.ticket.to_string()));
    if m.kind.is_automatic() {
        b = b
            .raw_header(header("Auto-Submitted", "auto-replied".into()))
            .raw_header(header("X-Auto-Response-Suppress", "All".into()));
    }
    let text = SinglePart::plain(m.body.clone());
    let built = if m.attachments.is_empty() {
        b.singlepart(text)
    } else {
        let mut mp = MultiPart::mixed().singlepart(text);
        for a in &m.attachments {
            let bytes = store
                .attachment(&a.sha256)
                .ok()
                .flatten()
                .ok_or_else(|| SendError::MissingAttachment(a.filename.clone()))?;
            let ct = ContentType::parse(&a.mime_type)
                .unwrap_or(ContentType::parse("application/octet-stream").map_err(|e| bad(&e))?);
            mp = mp.singlepart(Attachment::new(a.filename.clone()).body(bytes, ct));
        }
        b.multipart(mp)
    };
    built.map_err(|e| bad(&e))
}

pub async fn transport(cfg: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
    let setup = |e: &dyn std::fmt::Display| SendError::Setup(e.to_string());
    let tls_params = || -> Result<TlsParameters, SendError> {
        let mut p = TlsParameters::builder(cfg.host.clone());
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| setup(&format!("{}: {e}", ca.display())))?;
            p = p.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| setup(&e))?);
        }
        p.build_rustls().map_err(|e| setup(&e))
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
        .port(cfg.port)
        .timeout(Some(cfg.timeout));
    b = match cfg.tls {
        Tls::Implicit => b.tls(LettreTls::Wrapper(tls_params()?)),
        Tls::Starttls => b.tls(LettreTls::Required(tls_params()?)),
        Tls::None => b.tls(LettreTls::None),
    };
    if let Some(name) = &cfg.hello_name {
        b = b.hello_name(ClientId::Domain(name.clone()));
    }
    if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
        let pass = pass.resolve().await.map_err(|e| setup(&e))?;
        b = b.credentials(Credentials::new(user.clone(), pass));
    }
    Ok(b.build())
}

impl Sender {
    pub async fn run(self) {
        let mut failing = false;
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            if let Err(e) = self.round(&mut failing).await {
                error!(error = %e, "outbox: cannot record a delivery outcome; will retry");
            }
            let wait = match self.desk.store().next_due_at() {
                Ok(Some(t)) => (t - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .clamp(Duration::from_millis(50), Duration::from_secs(60)),
                _ => Duration::from_secs(60),
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
        debug!("sender stopped");
    }

    /// Sends everything due now. A connection-level failure ends the round:
    /// the rest would fail the same way.
    async fn round(&self, failing: &mut bool) -> Result<(), DeskError> {
        let store = self.desk.store();
        loop {
            let due = store.due(Utc::now(), 32)?;
            if due.is_empty() {
                return Ok(());
            }
            let mailer = match transport(&self.smtp).await {
                Ok(m) => m,
                Err(e) => {
                    self.defer_all(&due, &e.to_string(), failing).await?;
                    return Ok(());
                }
            };
            for (seq, entry) in &due {
                if self.shutdown.is_cancelled() {
                    return Ok(());
                }
                let mut reports = Vec::new();
                match self.send_one(store, &mailer, entry, &mut reports).await {
                    Ok(()) => {
                        self.desk.health().count_send("delivered");
                        reports.push(Delivery::Done);
                        // Durable before the next send: a crash now re-sends nothing.
                        self.desk.delivery(*seq, reports).await?;
                        if *failing {
                            info!("SMTP delivery works again");
                            *failing = false;
                        }
                        debug!(seq, ticket = entry.mail.ticket, kind = ?entry.mail.kind, message_id = %entry.mail.message_id, "sent");
                    }
                    Err(e) if e.is_permanent() => {
                        warn!(seq, ticket = entry.mail.ticket, error = %e, "mail permanently rejected; recorded on the ticket");
                        self.desk.health().count_send("failed");
                        reports.push(Delivery::Failed { error: e.to_string() });
                        self.desk.delivery(*seq, reports).await?;
                    }
                    Err(e) => {
                        self.desk.delivery(*seq, reports).await?;
                        self.defer_all(std::slice::from_ref(&(*seq, entry.clone())), &e.to_string(), failing).await?;
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn defer_all(&self, due: &[(u64, OutboxEntry)], error: &str, failing: &mut bool) -> Result<(), DeskError> {
        if !*failing {
            warn!(
                error,
                pending = self.desk.store().pending_count(),
                "SMTP unavailable; outbox holds mail and retries with backoff"
            );
            *failing = true;
        }
        for (seq, e) in due {
            let next = Utc::now().trunc_subsecs(0)
                + retry_delay(e.attempts, self.smtp.retry_initial, self.smtp.retry_max, rand::random());
            self.desk.health().count_send("deferred");
            self.desk.delivery(*seq, vec![Delivery::Retry { error: error.to_owned(), next }]).await?;
        }
        Ok(())
    }

    /// One SMTP transaction per recipient not yet handled, all with the same
    /// bytes and Message-ID: a refused address is recorded on the ticket and
    /// the others still get the mail. A transient failure stops here; the
    /// retry resumes with the recipients left.
    async fn send_one(
        &self,
        store: &Store,
        mailer: &AsyncSmtpTransport<Tokio1Executor>,
        entry: &OutboxEntry,
        reports: &mut Vec<Delivery>,
    ) -> Result<(), SendError> {
        let msg = build_message(&entry.mail, store)?;
        let bytes = msg.formatted();
        let from: lettre::Address = entry
            .mail
            .from_address
            .parse()
            .map_err(|e: lettre::address::AddressError| SendError::Build(e.to_string()))?;
        for rcpt in entry.mail.to.iter().filter(|r| !entry.done_rcpts.contains(r)) {
            let refuse = |e: &dyn std::fmt::Display| SendError::Build(format!("{rcpt}: {e}"));
            let to: lettre::Address = rcpt.parse().map_err(|e| refuse(&e))?;
            let envelope = lettre::address::Envelope::new(Some(from.clone()), vec![to]).map_err(|e| refuse(&e))?;
            let send = mailer.send_raw(&envelope, &bytes);
            let result = match tokio::time::timeout(self.smtp.timeout + Duration::from_secs(5), send).await {
                Ok(r) => r.map(|_| ()).map_err(SendError::from),
                Err(_) => Err(SendError::Setup("send timed out".into())),
            };
            match result {
                Ok(()) => {
                    crate::failpoint::hit("sent");
                    reports.push(Delivery::Accepted { rcpt: rcpt.clone() });
                }
                Err(e) if e.is_permanent() => {
                    warn!(ticket = entry.mail.ticket, rcpt = %rcpt, error = %e, "recipient permanently refused; recorded on the ticket");
                    self.desk.health().count_send("refused");
                    reports.push(Delivery::Refused { rcpt: rcpt.clone(), error: e.to_string() });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
