//! IMAP: connecting (implicit TLS, STARTTLS, or plain when written out),
//! logging in, and the per-mailbox worker that fetches past the cursor,
//! hands messages to ingest and performs the post-action only after the
//! store has flushed them.

pub mod worker;

use std::fmt::Debug;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{MailboxConfig, SecretError, Tls};

pub trait ImapIo: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> ImapIo for T {}
pub type ImapConn = Box<dyn ImapIo>;
pub type ImapSession = async_imap::Session<ImapConn>;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("TLS with {host}: {detail}")]
    Tls { host: String, detail: String },
    #[error("{what} timed out after {secs}s")]
    Timeout { what: &'static str, secs: u64 },
    #[error("login as {user} refused: {detail}")]
    Login { user: String, detail: String },
    #[error("credentials: {0}")]
    Secret(#[from] SecretError),
    #[error("IMAP: {0}")]
    Protocol(#[from] async_imap::error::Error),
    #[error("IMAP {what}: {source}")]
    During { what: &'static str, source: async_imap::error::Error },
    #[error("server closed the connection (greeting missing or stream ended early)")]
    Closed,
    #[error("SELECT {0} returned no UIDVALIDITY (connection lost?)")]
    NoUidValidity(String),
    #[error("asked for {asked} messages, got {got}; the connection is suspect")]
    ShortFetch { asked: usize, got: usize },
    #[error("ingest failed: {0}")]
    Ingest(String),
}

impl ImapError {
    /// The server answered NO (e.g. a missing folder): the connection is fine.
    pub fn is_no(&self) -> bool {
        matches!(
            self,
            ImapError::Protocol(async_imap::error::Error::No(_))
                | ImapError::During { source: async_imap::error::Error::No(_), .. }
        )
    }

    /// Wrong credentials stay wrong: worth a louder log line, not a faster retry.
    pub fn is_auth(&self) -> bool {
        matches!(self, ImapError::Login { .. } | ImapError::Secret(_))
    }
}

pub(crate) async fn timed<T, E: Into<ImapError>>(
    what: &'static str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| match e.into() {
            ImapError::Protocol(source) => ImapError::During { what, source },
            other => other,
        }),
        Err(_) => Err(ImapError::Timeout { what, secs: limit.as_secs() }),
    }
}

impl From<std::io::Error> for ImapError {
    fn from(e: std::io::Error) -> Self {
        ImapError::Protocol(async_imap::error::Error::Io(e))
    }
}

async fn tls_wrap(tcp: TcpStream, host: &str, ca: Option<&Path>) -> Result<ImapConn, ImapError> {
    let tls_err = |detail: String| ImapError::Tls { host: host.to_owned(), detail };
    let cfg = crate::tls::client_config(ca).map_err(tls_err)?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| tls_err(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await.map_err(|e| tls_err(e.to_string()))?;
    Ok(Box::new(stream))
}

struct XOAuth2 {
    user: String,
    token: String,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token)
    }
}

struct Plain {
    user: String,
    pass: String,
}

impl async_imap::Authenticator for Plain {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        format!("\0{}\0{}", self.user, self.pass)
    }
}

/// Connects, upgrades as configured and logs in. Every wait is bounded by
/// the mailbox's `timeout`.
pub async fn connect(mb: &MailboxConfig) -> Result<ImapSession, ImapError> {
    let limit = mb.timeout;
    let addr = format!("{}:{}", mb.host, mb.port);
    let tcp = match tokio::time::timeout(limit, TcpStream::connect((mb.host.as_str(), mb.port))).await {
        Ok(Ok(t)) => t,
        Ok(Err(source)) => return Err(ImapError::Connect { addr, source }),
        Err(_) => return Err(ImapError::Timeout { what: "connect", secs: limit.as_secs() }),
    };
    tcp.set_nodelay(true)?;
    let mut client = match mb.tls {
        Tls::Implicit => {
            let conn = timed("TLS handshake", limit, tls_wrap(tcp, &mb.host, mb.ca_file.as_deref())).await?;
            async_imap::Client::new(conn)
        }
        Tls::Starttls => {
            let mut c = async_imap::Client::new(tcp);
            timed("greeting", limit, c.read_response()).await?.ok_or(ImapError::Closed)?;
            timed("STARTTLS", limit, c.run_command_and_check_ok("STARTTLS", None)).await?;
            let conn = timed("TLS handshake", limit, tls_wrap(c.into_inner(), &mb.host, mb.ca_file.as_deref())).await?;
            // No second greeting after STARTTLS.
            let c = async_imap::Client::new(conn);
            return login(c, mb).await;
        }
        Tls::None => async_imap::Client::new(Box::new(tcp) as ImapConn),
    };
    timed("greeting", limit, client.read_response()).await?.ok_or(ImapError::Closed)?;
    login(client, mb).await
}

async fn login(client: async_imap::Client<ImapConn>, mb: &MailboxConfig) -> Result<ImapSession, ImapError> {
    let secret = mb.password.resolve().await?;
    let user = mb.username.clone();
    let refused = |e: async_imap::error::Error| ImapError::Login { user: mb.username.clone(), detail: e.to_string() };
    let attempt = async {
        if mb.password.is_oauth2() {
            client.authenticate("XOAUTH2", XOAuth2 { user, token: secret }).await.map_err(|(e, _)| refused(e))
        } else if secret.is_ascii() {
            client.login(&user, &secret).await.map_err(|(e, _)| refused(e))
        } else {
            // LOGIN cannot carry 8-bit passwords cleanly; SASL PLAIN can.
            client.authenticate("PLAIN", Plain { user, pass: secret }).await.map_err(|(e, _)| refused(e))
        }
    };
    match tokio::time::timeout(mb.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ImapError::Timeout { what: "login", secs: mb.timeout.as_secs() }),
    }
}
