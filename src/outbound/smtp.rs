//! One SMTP connection, owned by the sender task and reused across messages.
//!
//! Built on lettre's low-level `AsyncSmtpConnection`, not its transport:
//! the transport opens its own sockets (no way to set `TCP_NODELAY`, which
//! measured ~42 ms of Nagle/delayed-ACK stall per transaction) and sends a
//! transaction as a whole, aborting the connection at the first refused
//! RCPT. The connection API takes a stream we connected ourselves
//! (`connect_with_transport`) and runs single commands, so lettre still does
//! the reply parsing (bounded in size), EHLO, STARTTLS and AUTH, and only
//! this is written here:
//!
//! - the socket (`TCP_NODELAY`) and, for implicit TLS, the TLS session
//!   (tokio-rustls with the same roots as IMAP), which lettre can only do on
//!   a socket of its own;
//! - the transaction: MAIL, one RCPT per recipient with each refusal kept
//!   (4xx/5xx per recipient), DATA only when someone was accepted, RSET after
//!   a transaction that did not reach the end of data;
//! - reuse: one connection across messages, replaced after any error whose
//!   state is unknown, after `max_idle`, or when a reused connection turns
//!   out to be dead before anything was sent (retried once on a fresh one,
//!   which cannot duplicate a message);
//! - a timeout on every step (connect, TLS, greeting, each command, and the
//!   message data scaled by its size).
//!
//! Not done: PIPELINING (RFC 2920). lettre's connection cannot write a
//! command without waiting for its reply; with `TCP_NODELAY` a round trip on
//! a LAN costs far less than the server's own work per command, and the
//! benchmark (benches/outbound.rs) measures the result against a plain
//! client that does not pipeline either.
//!
//! Credentials: lettre writes every command, AUTH included, and whole
//! messages to `tracing` at debug when its `tracing` feature is on, so
//! ticketd builds it without that feature; nothing here logs a secret or a
//! command line. rustls logs handshake steps only (no key material).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::debug;

use super::build::check_address;
use crate::config::{SmtpConfig, Tls};

pub use lettre::Address;

/// Reuse a connection that has been idle at most this long; servers drop
/// idle clients after 1 to 5 minutes, often without telling.
pub const DEFAULT_MAX_IDLE: Duration = Duration::from_secs(30);

/// Time allowed per MiB of message data on top of the step timeout.
const DATA_TIME_PER_MIB: Duration = Duration::from_secs(2);

/// A server's reply, as text safe to log and to put on a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// 5xx: the same request will be refused again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    fn from_lettre(e: &lettre::transport::smtp::Error) -> Option<Reply> {
        let code = u16::from(e.status()?);
        let text = match std::error::Error::source(e) {
            Some(said) => format!("{code} {said}"),
            None => code.to_string(),
        };
        Some(Reply { code, text: super::build::sanitize_header_text(&text, 500) })
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What happened to one recipient of a transaction that reached its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    /// The server took responsibility for the message for this recipient.
    Delivered,
    /// RCPT refused; `Reply::is_permanent` tells whether to try again later.
    Refused(Reply),
}

/// The step of a transaction a reply belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Data,
    /// The reply to the message data itself.
    Message,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Mail => "MAIL FROM",
            Stage::Data => "DATA",
            Stage::Message => "end of data",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Local configuration that cannot be used as it is (CA file, password
    /// source): transient, so the outbox keeps the mail until it is fixed.
    #[error("SMTP setup: {0}")]
    Setup(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("TLS with {host}: {detail}")]
    Tls { host: String, detail: String },
    #[error("SMTP AUTH as {user}: {detail}")]
    Auth { user: String, detail: String },
    /// The server refused the session (greeting, EHLO) rather than the mail.
    #[error("SMTP server refused the session: {0}")]
    Session(Reply),
    #[error("SMTP {stage} timed out after {}s", after.as_secs())]
    Timeout { stage: &'static str, after: Duration },
    #[error("SMTP connection lost during {stage}: {detail}")]
    Connection { stage: &'static str, detail: String },
    /// The server refused the transaction for every recipient.
    #[error("SMTP {stage} refused: {reply}")]
    Rejected { stage: Stage, reply: Reply },
}

impl SendError {
    /// A 5xx for the message itself; everything else (4xx, I/O, timeouts,
    /// TLS, AUTH, setup) may succeed later and leaves the mail queued.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Rejected { reply, .. } if reply.is_permanent())
    }
}

/// Parses an envelope address, accepting only what [`check_address`] does.
pub fn address(s: &str) -> Result<Address, String> {
    check_address(s)?;
    s.parse().map_err(|e: lettre::address::AddressError| e.to_string())
}

struct Live {
    conn: AsyncSmtpConnection,
    last_used: Instant,
}

pub struct SmtpClient {
    cfg: SmtpConfig,
    hello: ClientId,
    live: Option<Live>,
    max_idle: Duration,
    connections: u64,
}

impl SmtpClient {
    /// Does no I/O: the connection is opened by the first [`SmtpClient::send`].
    pub fn new(cfg: &SmtpConfig) -> SmtpClient {
        let hello = match &cfg.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        SmtpClient { cfg: cfg.clone(), hello, live: None, max_idle: DEFAULT_MAX_IDLE, connections: 0 }
    }

    pub fn with_max_idle(mut self, max_idle: Duration) -> SmtpClient {
        self.max_idle = max_idle;
        self
    }

    pub fn is_connected(&self) -> bool {
        self.live.is_some()
    }

    /// Connections opened so far (each one greeted, upgraded and logged in).
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// Sends `message` (CRLF line ends, as [`super::build::build`] writes it)
    /// to `rcpts`. `Ok` means the transaction ended: one result per
    /// recipient, in order. `Err` means no recipient got it, either because
    /// the server refused the transaction (`Rejected`) or because the
    /// outcome is unknown (connection lost, timeout): then the message may,
    /// rarely, have been delivered when the final reply was lost.
    pub async fn send(
        &mut self,
        from: &Address,
        rcpts: &[Address],
        message: &[u8],
    ) -> Result<Vec<RcptResult>, SendError> {
        if rcpts.is_empty() {
            return Ok(Vec::new());
        }
        if self.live.as_ref().is_some_and(|l| l.last_used.elapsed() > self.max_idle) {
            debug!(host = %self.cfg.host, "SMTP connection idle too long; replacing it");
            self.quit().await;
        }
        let reused = self.live.is_some();
        match self.attempt(from, rcpts, message).await {
            Err(Failure { error, before_mail: true }) if reused && !matches!(error, SendError::Rejected { .. }) => {
                debug!(host = %self.cfg.host, error = %error, "reused SMTP connection was dead; reconnecting");
                self.attempt(from, rcpts, message).await.map_err(|f| f.error)
            }
            r => r.map_err(|f| f.error),
        }
    }

    /// Connects, greets, upgrades and logs in as a send would, then quits:
    /// `check-config --connect`.
    pub async fn check(&mut self) -> Result<(), SendError> {
        self.quit().await;
        let conn = self.connect().await?;
        self.connections += 1;
        self.live = Some(Live { conn, last_used: Instant::now() });
        self.quit().await;
        Ok(())
    }

    /// Ends the session politely; the connection is gone either way.
    pub async fn quit(&mut self) {
        if let Some(mut live) = self.live.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), live.conn.command(Quit)).await;
        }
    }

    async fn attempt(&mut self, from: &Address, rcpts: &[Address], message: &[u8]) -> Result<Vec<RcptResult>, Failure> {
        let step = self.cfg.timeout;
        let live = match self.live.take() {
            Some(live) => self.live.insert(live),
            None => {
                let conn = self.connect().await.map_err(|error| Failure { error, before_mail: false })?;
                self.connections += 1;
                self.live.insert(Live { conn, last_used: Instant::now() })
            }
        };
        let result = transaction(&mut live.conn, step, from, rcpts, message).await;
        live.last_used = Instant::now();
        // A transaction that stopped before the end of data may have left an
        // envelope on the server; RSET clears it, and a connection that cannot
        // even do that is not worth keeping.
        let open_envelope = match &result {
            Ok(results) => results.iter().all(|r| matches!(r, RcptResult::Refused(_))),
            Err(Failure { error: SendError::Rejected { stage, .. }, .. }) => *stage != Stage::Message,
            Err(_) => {
                self.live = None;
                return result;
            }
        };
        if open_envelope && !matches!(timed("RSET", step, live.conn.command(Rset)).await, Ok(Ok(_))) {
            self.live = None;
        }
        result
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let cfg = &self.cfg;
        let step = cfg.timeout;
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let tcp = timed("connect", step, TcpStream::connect((cfg.host.as_str(), cfg.port)))
            .await?
            .map_err(|source| SendError::Connect { addr: addr.clone(), source })?;
        tcp.set_nodelay(true).map_err(|source| SendError::Connect { addr: addr.clone(), source })?;
        let tls_err = |detail: String| SendError::Tls { host: cfg.host.clone(), detail };
        let greeted = |r: Result<AsyncSmtpConnection, lettre::transport::smtp::Error>| {
            r.map_err(|e| session_error("greeting/EHLO", &e))
        };
        let mut conn = match cfg.tls {
            Tls::Implicit => {
                let tls = crate::tls::client_config(cfg.ca_file.as_deref()).map_err(SendError::Setup)?;
                let name =
                    rustls::pki_types::ServerName::try_from(cfg.host.clone()).map_err(|e| tls_err(e.to_string()))?;
                let stream = timed("TLS handshake", step, tokio_rustls::TlsConnector::from(tls).connect(name, tcp))
                    .await?
                    .map_err(|e| tls_err(e.to_string()))?;
                let stream: Box<dyn AsyncTokioStream> = Box::new(ImplicitTls(stream));
                greeted(
                    timed("greeting", step, AsyncSmtpConnection::connect_with_transport(stream, &self.hello)).await?,
                )?
            }
            Tls::Starttls => {
                let params = self.starttls_params().await?;
                let mut conn = greeted(
                    timed("greeting", step, AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello))
                        .await?,
                )?;
                if !conn.can_starttls() {
                    return Err(tls_err("the server does not offer STARTTLS".into()));
                }
                timed("STARTTLS", step, conn.starttls(params, &self.hello))
                    .await?
                    .map_err(|e| tls_err(e.to_string()))?;
                conn
            }
            Tls::None => greeted(
                timed("greeting", step, AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello))
                    .await?,
            )?,
        };
        if let Some(user) = &cfg.username {
            let auth_err = |detail: String| SendError::Auth { user: user.clone(), detail };
            let secret = cfg.password.as_ref().ok_or_else(|| auth_err("no password configured".into()))?;
            let password = secret.resolve().await.map_err(|e| SendError::Setup(e.to_string()))?;
            let mechanisms: &[Mechanism] =
                if secret.is_oauth2() { &[Mechanism::Xoauth2] } else { &[Mechanism::Plain, Mechanism::Login] };
            let creds = Credentials::new(user.clone(), password);
            timed("AUTH", step, conn.auth(mechanisms, &creds)).await?.map_err(|e| {
                // The reply text only: lettre's error never holds the command.
                auth_err(Reply::from_lettre(&e).map_or_else(|| e.to_string(), |r| r.text))
            })?;
        }
        debug!(host = %cfg.host, port = cfg.port, tls = ?cfg.tls, encrypted = conn.is_encrypted(), "SMTP connected");
        Ok(conn)
    }

    async fn starttls_params(&self) -> Result<TlsParameters, SendError> {
        let setup = |e: String| SendError::Setup(e);
        let mut p = TlsParameters::builder(self.cfg.host.clone());
        if let Some(ca) = &self.cfg.ca_file {
            let pem = tokio::fs::read(ca).await.map_err(|e| setup(format!("{}: {e}", ca.display())))?;
            p = p.add_root_certificate(
                Certificate::from_pem(&pem).map_err(|e| setup(format!("{}: {e}", ca.display())))?,
            );
        }
        p.build_rustls().map_err(|e| setup(e.to_string()))
    }
}

/// A failed attempt; `before_mail` says nothing of this message reached
/// the server, so it may be retried on a new connection without risk.
struct Failure {
    error: SendError,
    before_mail: bool,
}

async fn transaction(
    conn: &mut AsyncSmtpConnection,
    step: Duration,
    from: &Address,
    rcpts: &[Address],
    message: &[u8],
) -> Result<Vec<RcptResult>, Failure> {
    let fail = |stage_name: &'static str, stage: Option<Stage>, before_mail: bool| {
        move |e: lettre::transport::smtp::Error| Failure { error: command_error(stage_name, stage, &e), before_mail }
    };
    let cmd = Mail::new(Some(from.clone()), vec![]);
    timed("MAIL FROM", step, conn.command(cmd))
        .await
        .map_err(|error| Failure { error, before_mail: true })?
        .map_err(fail("MAIL FROM", Some(Stage::Mail), true))?;

    let mut results = Vec::with_capacity(rcpts.len());
    for rcpt in rcpts {
        let r = timed("RCPT TO", step, conn.command(Rcpt::new(rcpt.clone(), vec![])))
            .await
            .map_err(|error| Failure { error, before_mail: false })?;
        match r {
            Ok(_) => results.push(None),
            Err(e) => match Reply::from_lettre(&e) {
                // 421: the server is closing the channel, not judging the address.
                Some(reply) if reply.code != 421 => results.push(Some(reply)),
                _ => return Err(fail("RCPT TO", None, false)(e)),
            },
        }
    }
    if results.iter().all(Option::is_some) {
        return Ok(results.into_iter().map(|r| RcptResult::Refused(r.expect("all refused"))).collect());
    }

    timed("DATA", step, conn.command(Data))
        .await
        .map_err(|error| Failure { error, before_mail: false })?
        .map_err(fail("DATA", Some(Stage::Data), false))?;
    // lettre ends the data with CRLF . CRLF itself; a message that already
    // ends in CRLF would otherwise gain an empty last line.
    let data = message.strip_suffix(b"\r\n").unwrap_or(message);
    let mib = u32::try_from(data.len() >> 20).unwrap_or(u32::MAX);
    let limit = step.saturating_add(DATA_TIME_PER_MIB.saturating_mul(mib));
    timed("message data", limit, conn.message(data))
        .await
        .map_err(|error| Failure { error, before_mail: false })?
        .map_err(fail("message data", Some(Stage::Message), false))?;
    Ok(results.into_iter().map(|r| r.map_or(RcptResult::Delivered, RcptResult::Refused)).collect())
}

/// A negative reply to a transaction step is a verdict on the message
/// (`Rejected`), except 421, which only says the server is going away.
fn command_error(stage_name: &'static str, stage: Option<Stage>, e: &lettre::transport::smtp::Error) -> SendError {
    match (Reply::from_lettre(e), stage) {
        (Some(reply), Some(stage)) if reply.code != 421 => SendError::Rejected { stage, reply },
        (Some(reply), _) => SendError::Connection { stage: stage_name, detail: reply.text },
        (None, _) => SendError::Connection { stage: stage_name, detail: e.to_string() },
    }
}

fn session_error(stage: &'static str, e: &lettre::transport::smtp::Error) -> SendError {
    match Reply::from_lettre(e) {
        Some(reply) => SendError::Session(reply),
        None => SendError::Connection { stage, detail: e.to_string() },
    }
}

async fn timed<T>(stage: &'static str, limit: Duration, fut: impl Future<Output = T>) -> Result<T, SendError> {
    tokio::time::timeout(limit, fut).await.map_err(|_| SendError::Timeout { stage, after: limit })
}

/// lettre accepts a stream it did not connect only as a plain one; this is
/// a TLS session made before the greeting, which lettre then treats as such.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for ImplicitTls {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> Reply {
        Reply { code, text: format!("{code} x") }
    }

    #[test]
    fn only_a_5xx_verdict_on_the_message_is_permanent() {
        for stage in [Stage::Mail, Stage::Data, Stage::Message] {
            assert!(SendError::Rejected { stage, reply: reply(550) }.is_permanent());
            assert!(!SendError::Rejected { stage, reply: reply(451) }.is_permanent());
        }
        assert!(!SendError::Session(reply(554)).is_permanent(), "a refused session says nothing about the mail");
        assert!(!SendError::Auth { user: "u".into(), detail: "535".into() }.is_permanent());
        assert!(!SendError::Timeout { stage: "DATA", after: Duration::from_secs(1) }.is_permanent());
        assert!(!SendError::Connection { stage: "RCPT TO", detail: "421".into() }.is_permanent());
        assert!(reply(550).is_permanent() && !reply(452).is_permanent());
    }

    /// The sender task is spawned on the runtime: a `send` that is not `Send`
    /// would not compile there, so it must not compile here.
    #[allow(dead_code)]
    fn send_can_run_in_a_spawned_task(client: &mut SmtpClient, a: &Address) {
        fn spawnable<T: Send>(_: T) {}
        spawnable(client.send(a, std::slice::from_ref(a), b""));
    }

    #[test]
    fn envelope_addresses_are_plain_addr_specs() {
        assert!(address("support@example.test").is_ok());
        assert!(address("a@b>\r\nRCPT TO:<c@d").is_err());
        assert!(address("Name <a@b>").is_err());
    }
}
