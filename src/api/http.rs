//! A small HTTP/1.1 client over TCP or a unix socket (hyper's connection
//! API over tokio streams: no TLS, no pool — the API is local), for the
//! CLI, the tests and the benchmark. One connection per request keeps it
//! simple; on loopback that costs well under a millisecond.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::auth::{ACT_AS, Token};
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

#[derive(Debug, Clone)]
pub struct HttpClient {
    endpoint: Listen,
    token: Option<Token>,
    act_as: Option<String>,
    timeout: Duration,
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

async fn exchange<S>(stream: S, req: Request<Full<Bytes>>, endpoint: &str) -> Result<Reply, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| HttpError::Http { endpoint: endpoint.to_owned(), message: e.to_string() };
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
    let driver = tokio::spawn(conn);
    let res = send.send_request(req).await.map_err(http)?;
    let (parts, body) = res.into_parts();
    let body = Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| HttpError::Http { endpoint: endpoint.to_owned(), message: format!("reading the answer: {e}") })?
        .to_bytes();
    drop(send);
    let _ = driver.await;
    Ok(Reply { status: parts.status, headers: parts.headers, body })
}

impl HttpClient {
    pub fn new(endpoint: Listen) -> HttpClient {
        HttpClient { endpoint, token: None, act_as: None, timeout: Duration::from_secs(120) }
    }

    pub fn with_token(mut self, token: Token) -> HttpClient {
        self.token = Some(token);
        self
    }

    /// Sends `X-Ticketd-Act-As` (honoured for the admin token only).
    pub fn acting_as(&self, agent: Option<String>) -> HttpClient {
        HttpClient { act_as: agent, ..self.clone() }
    }

    pub fn endpoint(&self) -> &Listen {
        &self.endpoint
    }

    /// Whether something accepts connections there, within two seconds.
    pub async fn probe(&self) -> Result<(), HttpError> {
        let connect = async {
            match &self.endpoint {
                Listen::Tcp(a) => tokio::net::TcpStream::connect(a).await.map(drop),
                Listen::Unix(p) => tokio::net::UnixStream::connect(p).await.map(drop),
            }
        };
        match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(r) => r.map_err(|source| HttpError::Connect { endpoint: self.endpoint.to_string(), source }),
            Err(_) => Err(HttpError::Timeout { endpoint: self.endpoint.to_string(), timeout: Duration::from_secs(2) }),
        }
    }

    /// One request; `path` includes the query string.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        extra: &[(HeaderName, String)],
        body: Option<Body>,
    ) -> Result<Reply, HttpError> {
        let endpoint = self.endpoint.to_string();
        let bad = |message: String| HttpError::Http { endpoint: endpoint.clone(), message };
        let mut req = Request::builder().method(method).uri(path);
        let host = match &self.endpoint {
            Listen::Tcp(a) => a.to_string(),
            Listen::Unix(_) => "localhost".to_owned(),
        };
        req = req.header(header::HOST, host);
        if let Some(t) = &self.token {
            let v = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                .map_err(|_| bad("the token is not a valid header value".into()))?;
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
        let req = req.body(Full::new(Bytes::from(bytes))).map_err(|e| bad(e.to_string()))?;
        let work = async {
            match &self.endpoint {
                Listen::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a)
                        .await
                        .map_err(|source| HttpError::Connect { endpoint: endpoint.clone(), source })?;
                    let _ = s.set_nodelay(true);
                    exchange(s, req, &endpoint).await
                }
                Listen::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p)
                        .await
                        .map_err(|source| HttpError::Connect { endpoint: endpoint.clone(), source })?;
                    exchange(s, req, &endpoint).await
                }
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| HttpError::Timeout { endpoint: endpoint.clone(), timeout: self.timeout })?
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
        let endpoint = self.endpoint.to_string();
        let bad = |message: String| HttpError::Http { endpoint: endpoint.clone(), message };
        let host = match &self.endpoint {
            Listen::Tcp(a) => a.to_string(),
            Listen::Unix(_) => "localhost".to_owned(),
        };
        let mut req = Request::builder().method(Method::GET).uri(path).header(header::HOST, host);
        if let Some(t) = &self.token {
            let v = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                .map_err(|_| bad("the token is not a valid header value".into()))?;
            req = req.header(header::AUTHORIZATION, v);
        }
        let req = req.body(Full::new(Bytes::new())).map_err(|e| bad(e.to_string()))?;
        let http = |e: hyper::Error| HttpError::Http { endpoint: endpoint.clone(), message: e.to_string() };
        let connect = async {
            match &self.endpoint {
                Listen::Tcp(a) => tokio::net::TcpStream::connect(a).await.map(|s| Box::new(s) as Box<dyn Stream>),
                Listen::Unix(p) => tokio::net::UnixStream::connect(p).await.map(|s| Box::new(s) as Box<dyn Stream>),
            }
            .map_err(|source| HttpError::Connect { endpoint: endpoint.clone(), source })
        };
        let stream = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| HttpError::Timeout { endpoint: endpoint.clone(), timeout: self.timeout })??;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
        let driver = tokio::spawn(conn);
        let res = send.send_request(req).await.map_err(http)?;
        let (parts, mut body) = res.into_parts();
        if !parts.status.is_success() {
            let b = Limited::new(body, 1 << 20).collect().await.map_err(|e| bad(e.to_string()))?.to_bytes();
            return Ok((parts.status, parts.headers, Some(b)));
        }
        loop {
            let frame = tokio::time::timeout(self.timeout, body.frame())
                .await
                .map_err(|_| HttpError::Timeout { endpoint: endpoint.clone(), timeout: self.timeout })?;
            match frame {
                None => break,
                Some(f) => {
                    let f = f.map_err(http)?;
                    if let Some(data) = f.data_ref() {
                        out.write_all(data).map_err(|e| bad(format!("writing: {e}")))?;
                    }
                }
            }
        }
        drop(send);
        let _ = driver.await;
        Ok((parts.status, parts.headers, None))
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
