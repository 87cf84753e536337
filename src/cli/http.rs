//! A small HTTP/1.1 client over TCP or a unix socket (hyper's connection
//! API over tokio streams: no TLS, no pool — the API is local), for the
//! CLI, the tests and the benchmark. One connection per request keeps it
//! simple; on loopback that costs well under a millisecond.
//!
//! Whom it trusts with a token ([`Trust`]): the CLI never sends the admin
//! token to a listener it has not verified — a unix socket must be served
//! by the store's owner (or root), checked on the connected socket
//! (`SO_PEERCRED`); over TCP the daemon must first answer a fresh challenge
//! with a proof only the token's holder can make (`auth::proof`), on the
//! same connection that then carries the token.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::api::auth::{ACT_AS, CHALLENGE, Token, expected_proof};
use crate::config::Listen;

/// Largest response read (a big mbox, a long export page).
pub const MAX_RESPONSE_BYTES: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to the API at {endpoint}: {source}")]
    Connect { endpoint: String, source: std::io::Error },
    #[error("the API at {endpoint}: {message}")]
    Http { endpoint: String, message: String },
    #[error("the API at {endpoint} did not answer within {}s", timeout.as_secs())]
    Timeout { endpoint: String, timeout: Duration },
    #[error(
        "refusing to send the admin token to {endpoint}: {why} (while the daemon is down another program may listen there)"
    )]
    Untrusted { endpoint: String, why: String },
}

impl HttpError {
    /// Nobody listens there: no daemon (or one without an API) runs.
    pub fn nobody_listens(&self) -> bool {
        use std::io::ErrorKind::*;
        matches!(self, HttpError::Connect { source, .. } if matches!(source.kind(), ConnectionRefused | NotFound))
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What a listener must show before a request (and its token) is sent.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Whoever answers (tests and benchmarks talking to a daemon they
    /// started themselves).
    Any,
    /// A unix socket whose serving process runs as one of these users.
    PeerUid(Vec<u32>),
    /// A daemon that proves it holds this admin token (TCP).
    Proof(Token),
}

#[derive(Debug, Clone)]
pub struct HttpClient {
    endpoint: Listen,
    token: Option<Token>,
    act_as: Option<String>,
    timeout: Duration,
    trust: Trust,
}

/// A request body and its type.
pub struct Body {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Body {
    pub fn json<T: serde::Serialize>(v: &T) -> Body {
        Body { content_type: "application/json".into(), bytes: serde_json::to_vec(v).unwrap_or_default() }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open, verified connection.
struct Conn {
    send: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<Result<(), hyper::Error>>,
}

impl HttpClient {
    pub fn new(endpoint: Listen) -> HttpClient {
        HttpClient { endpoint, token: None, act_as: None, timeout: Duration::from_secs(120), trust: Trust::Any }
    }

    pub fn with_token(mut self, token: Token) -> HttpClient {
        self.token = Some(token);
        self
    }

    /// Bound on one request (default two minutes).
    pub fn with_timeout(mut self, timeout: Duration) -> HttpClient {
        self.timeout = timeout;
        self
    }

    pub fn with_trust(mut self, trust: Trust) -> HttpClient {
        self.trust = trust;
        self
    }

    /// Sends `X-Ticketd-Act-As` (honoured for the admin token only).
    pub fn acting_as(&self, agent: Option<String>) -> HttpClient {
        HttpClient { act_as: agent, ..self.clone() }
    }

    pub fn endpoint(&self) -> &Listen {
        &self.endpoint
    }

    fn http_err(&self, message: impl Into<String>) -> HttpError {
        HttpError::Http { endpoint: self.endpoint.to_string(), message: message.into() }
    }

    fn timeout_err(&self) -> HttpError {
        HttpError::Timeout { endpoint: self.endpoint.to_string(), timeout: self.timeout }
    }

    fn untrusted(&self, why: impl Into<String>) -> HttpError {
        HttpError::Untrusted { endpoint: self.endpoint.to_string(), why: why.into() }
    }

    /// Connects, checks whom it reached, and hands back a connection
    /// ready for requests.
    async fn open(&self) -> Result<Conn, HttpError> {
        let endpoint = self.endpoint.to_string();
        let connect_err = |source| HttpError::Connect { endpoint: endpoint.clone(), source };
        let connect = async {
            let (stream, peer): (Box<dyn Stream>, String) = match &self.endpoint {
                Listen::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a).await.map_err(connect_err)?;
                    let _ = s.set_nodelay(true);
                    let peer = s.peer_addr().map_err(connect_err)?.to_string();
                    (Box::new(s), peer)
                }
                Listen::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p).await.map_err(connect_err)?;
                    if let Trust::PeerUid(uids) = &self.trust {
                        let uid = s.peer_cred().map_err(connect_err)?.uid();
                        if !uids.contains(&uid) {
                            return Err(self.untrusted(format!(
                                "the socket is served by uid {uid}, not by the owner of the store (uid {})",
                                uids.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(" or ")
                            )));
                        }
                    }
                    (Box::new(s), format!("unix:{}", p.display()))
                }
            };
            Ok::<_, HttpError>((stream, peer))
        };
        let (stream, peer) = tokio::time::timeout(self.timeout, connect).await.map_err(|_| self.timeout_err())??;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.http_err(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let mut conn = Conn { send, driver };
        if let Trust::Proof(admin) = &self.trust {
            self.challenge(&mut conn, admin, &peer).await?;
        }
        Ok(conn)
    }

    /// Asks the daemon to prove it holds the admin token, on `conn`.
    async fn challenge(&self, conn: &mut Conn, admin: &Token, peer: &str) -> Result<(), HttpError> {
        let challenge = hex::encode(rand::random::<[u8; 32]>());
        let req = Request::builder()
            .method(Method::GET)
            .uri("/api/v1/proof")
            .header(header::HOST, self.host())
            .header(CHALLENGE, challenge.as_str())
            .body(Full::new(Bytes::new()))
            .map_err(|e| self.http_err(e.to_string()))?;
        let res = conn.send.send_request(req).await.map_err(|e| self.http_err(e.to_string()))?;
        let status = res.status();
        let body = Limited::new(res.into_body(), 4096)
            .collect()
            .await
            .map_err(|e| self.untrusted(format!("its answer to the challenge: {e}")))?
            .to_bytes();
        let answer: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("proof").and_then(|p| p.as_str()).map(str::to_owned));
        let want = expected_proof(admin, &challenge, peer);
        let ok = answer.is_some_and(|a| {
            use subtle::ConstantTimeEq;
            bool::from(a.as_bytes().ct_eq(want.as_bytes()))
        });
        if !status.is_success() || !ok {
            return Err(self.untrusted(format!(
                "it could not prove it holds the admin token (answered {status} to the challenge)"
            )));
        }
        conn.send.ready().await.map_err(|e| self.http_err(e.to_string()))?;
        Ok(())
    }

    fn host(&self) -> String {
        match &self.endpoint {
            Listen::Tcp(a) => a.to_string(),
            Listen::Unix(_) => "localhost".to_owned(),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        extra: &[(HeaderName, String)],
        body: Option<Body>,
    ) -> Result<Request<Full<Bytes>>, HttpError> {
        let mut req = Request::builder().method(method).uri(path).header(header::HOST, self.host());
        if let Some(t) = &self.token {
            let v = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                .map_err(|_| self.http_err("the token is not a valid header value"))?;
            req = req.header(header::AUTHORIZATION, v);
        }
        if let Some(a) = &self.act_as {
            req = req.header(ACT_AS, a.as_str());
        }
        for (k, v) in extra {
            req = req.header(k, v.as_str());
        }
        let bytes = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, b.content_type);
                b.bytes
            }
            None => Vec::new(),
        };
        req.body(Full::new(Bytes::from(bytes))).map_err(|e| self.http_err(e.to_string()))
    }

    /// One request; `path` includes the query string.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        extra: &[(HeaderName, String)],
        body: Option<Body>,
    ) -> Result<Reply, HttpError> {
        let req = self.request(method, path, extra, body)?;
        let work = async {
            let mut conn = self.open().await?;
            let res = conn.send.send_request(req).await.map_err(|e| self.http_err(e.to_string()))?;
            let (parts, body) = res.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| self.http_err(format!("reading the answer: {e}")))?
                .to_bytes();
            drop(conn.send);
            let _ = conn.driver.await;
            Ok(Reply { status: parts.status, headers: parts.headers, body })
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| self.timeout_err())?
    }

    pub async fn get(&self, path: &str) -> Result<Reply, HttpError> {
        self.send(Method::GET, path, &[], None).await
    }

    /// GETs `path` into `out` as the body arrives (a backup is as big as
    /// the store): no overall timeout, but each piece must come within the
    /// client's timeout. Returns the status and headers; on a non-2xx
    /// status the (small, JSON) body is returned instead of written.
    pub async fn download(
        &self,
        path: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<(StatusCode, HeaderMap, Option<Bytes>), HttpError> {
        let req = self.request(Method::GET, path, &[(header::TE, "trailers".to_owned())], None)?;
        let mut conn = tokio::time::timeout(self.timeout, self.open()).await.map_err(|_| self.timeout_err())??;
        let res = conn.send.send_request(req).await.map_err(|e| self.http_err(e.to_string()))?;
        let (parts, mut body) = res.into_parts();
        if !parts.status.is_success() {
            let b = Limited::new(body, 1 << 20).collect().await.map_err(|e| self.http_err(e.to_string()))?.to_bytes();
            return Ok((parts.status, parts.headers, Some(b)));
        }
        loop {
            let frame = tokio::time::timeout(self.timeout, body.frame()).await.map_err(|_| self.timeout_err())?;
            match frame {
                None => break,
                Some(f) => {
                    let f = f.map_err(|e| self.http_err(e.to_string()))?;
                    if let Some(data) = f.data_ref() {
                        out.write_all(data).map_err(|e| self.http_err(format!("writing: {e}")))?;
                    }
                    // The server broke off and said why.
                    if let Some(why) = f.trailers_ref().and_then(|t| t.get("x-ticketd-error")) {
                        return Err(self.http_err(format!("it broke off: {}", why.to_str().unwrap_or("(unreadable)"))));
                    }
                }
            }
        }
        drop(conn.send);
        let _ = conn.driver.await;
        Ok((parts.status, parts.headers, None))
    }
}
