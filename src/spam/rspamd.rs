//! Asking rspamd directly: its HTTP scanning API (`POST /checkv2` on the
//! normal worker, port 11333 by default), with the raw message as the body.
//!
//! One connection per scan over hyper's client connection API (as the
//! API's own client in `crate::api::http` does): no pool, no TLS (rspamd's
//! workers speak plain HTTP; keep it on loopback or a private network).
//! Every scan is bounded: connecting, sending and reading the answer must
//! finish within the timeout, and the answer may be at most
//! [`MAX_REPLY_BYTES`] long.
//!
//! [`RspamdError::is_unreachable`] tells the failures the `unreachable`
//! policy is for (nobody listens, the connection broke, no answer in time,
//! rspamd itself says 5xx) from an answer that is not a scan result
//! (another program on that port, a proxy's error page): the mail is never
//! dropped either way, the caller decides.

use std::net::IpAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::verdict::{Action, Filter, Verdict, VerdictSource};

/// Largest scan result read; rspamd's are a few kilobytes.
pub const MAX_REPLY_BYTES: usize = 1 << 20;
/// Symbols named in a verdict's reason (the highest scores).
pub const REASON_SYMBOLS: usize = 5;
/// Symbols kept from a scan result (the highest scores).
pub const MAX_SYMBOLS: usize = 50;
/// Longest value sent in a request header (`From`, `Rcpt`, `Helo`, …).
const MAX_HEADER_VALUE: usize = 512;

/// A bad `rspamd_url`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rspamd_url {url:?}: {problem}")]
pub struct RspamdUrlError {
    pub url: String,
    pub problem: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum RspamdError {
    #[error("rspamd at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("rspamd at {url} did not answer within {}s", after.as_secs_f32())]
    Timeout { url: String, after: Duration },
    #[error("rspamd at {url} answered {status}: {message}")]
    Status { url: String, status: u16, message: String },
    #[error("rspamd at {url} answered something that is not a scan result: {reason}")]
    Garbage { url: String, reason: String },
}

impl RspamdError {
    /// rspamd could not be asked now (→ `spam.unreachable`): nobody
    /// listens, the connection broke, no answer in time, or rspamd said
    /// 5xx. `false`: something answered, but not with a scan result.
    pub fn is_unreachable(&self) -> bool {
        match self {
            RspamdError::Unreachable { .. } | RspamdError::Timeout { .. } => true,
            RspamdError::Status { status, .. } => *status >= 500,
            RspamdError::Garbage { .. } => false,
        }
    }

    /// Stable identifier for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            RspamdError::Unreachable { .. } => "unreachable",
            RspamdError::Timeout { .. } => "timeout",
            RspamdError::Status { .. } => "status",
            RspamdError::Garbage { .. } => "garbage",
        }
    }
}

/// What rspamd is told besides the message (all optional; without `ip`
/// the IP-based checks are skipped).
#[derive(Debug, Clone, Default)]
pub struct ScanRequest<'a> {
    pub message: &'a [u8],
    /// Envelope sender (`From` of rspamd's protocol).
    pub from: Option<&'a str>,
    /// The client that handed the mail to our border.
    pub ip: Option<IpAddr>,
    pub rcpt: Vec<&'a str>,
    pub helo: Option<&'a str>,
    pub queue_id: Option<&'a str>,
}

/// One symbol of a scan result.
#[derive(Debug, Clone, PartialEq)]
pub struct Symbol {
    pub name: String,
    pub score: f64,
}

/// rspamd's answer to `/checkv2`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanReply {
    pub action: Action,
    pub score: f64,
    /// The reject score.
    pub required_score: f64,
    /// A pre-filter decided without the other checks (GTUBE, a settings
    /// rule, a whitelist).
    pub is_skipped: bool,
    /// At most [`MAX_SYMBOLS`], highest score first.
    pub symbols: Vec<Symbol>,
}

impl ScanReply {
    /// The verdict: the score against `threshold` when it is set,
    /// otherwise rspamd's action (`reject`, `add header` and `rewrite
    /// subject` are spam; `greylist` and `soft reject` are delays).
    pub fn verdict(&self, threshold: Option<f64>) -> Verdict {
        let spam = match threshold {
            Some(t) => self.score >= t,
            None => self.action.is_spam(),
        };
        let mut reason = format!("rspamd: {}, score {} / {}", self.action.as_str(), self.score, self.required_score);
        if let Some(t) = threshold {
            reason.push_str(&format!(" (threshold {t})"));
        }
        let top: Vec<String> = self
            .symbols
            .iter()
            .filter(|s| s.score != 0.0 || self.symbols.len() == 1)
            .take(REASON_SYMBOLS)
            .map(|s| format!("{} {}", s.name, s.score))
            .collect();
        if !top.is_empty() {
            reason.push_str(&format!(" ({})", top.join(", ")));
        }
        if self.is_skipped {
            reason.push_str(" [pre-filter]");
        }
        Verdict { spam, score: Some(self.score), source: VerdictSource::Scanner(Filter::Rspamd), reason }
    }
}

#[derive(Deserialize)]
struct RawReply {
    action: String,
    score: f64,
    required_score: f64,
    #[serde(default)]
    is_skipped: bool,
    #[serde(default)]
    symbols: std::collections::HashMap<String, RawSymbol>,
}

#[derive(Deserialize)]
struct RawSymbol {
    #[serde(default)]
    score: f64,
}

/// Reads a `/checkv2` answer (pure). The error says what is wrong.
pub fn parse_reply(body: &[u8]) -> Result<ScanReply, String> {
    let raw: RawReply = serde_json::from_slice(body).map_err(|e| format!("not a scan result: {e}"))?;
    let action = Action::parse(&raw.action)
        .ok_or_else(|| format!("unknown action {:?}", raw.action.chars().take(40).collect::<String>()))?;
    if !raw.score.is_finite() || !raw.required_score.is_finite() {
        return Err("score is not a finite number".to_owned());
    }
    let mut symbols: Vec<Symbol> = raw
        .symbols
        .into_iter()
        .filter(|(_, s)| s.score.is_finite())
        .map(|(name, s)| Symbol { name: symbol_name(&name), score: s.score })
        .collect();
    symbols.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()).then_with(|| a.name.cmp(&b.name)));
    symbols.truncate(MAX_SYMBOLS);
    Ok(ScanReply { action, score: raw.score, required_score: raw.required_score, is_skipped: raw.is_skipped, symbols })
}

/// Symbol names are rspamd's (`R_SPF_ALLOW`); anything else is replaced.
fn symbol_name(s: &str) -> String {
    s.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '?' }).collect()
}

/// A client for one rspamd worker.
#[derive(Debug, Clone)]
pub struct RspamdClient {
    url: String,
    host: String,
    port: u16,
    authority: String,
    path: String,
    timeout: Duration,
}

impl RspamdClient {
    /// `url` is `http://HOST:PORT` with an optional path prefix (a proxy
    /// in front of rspamd); the port must be given (rspamd's normal worker
    /// listens on 11333).
    pub fn new(url: &str, timeout: Duration) -> Result<RspamdClient, RspamdUrlError> {
        let err = |problem| RspamdUrlError { url: url.chars().take(200).collect(), problem };
        let uri: Uri = url.parse().map_err(|_| err("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(err("only http:// is supported (rspamd's workers speak plain HTTP)"));
        }
        let authority = uri.authority().ok_or_else(|| err("no host"))?;
        if authority.as_str().contains('@') {
            return Err(err("user names or passwords in the URL are not supported"));
        }
        let port = authority.port_u16().ok_or_else(|| err("no port (rspamd's normal worker listens on 11333)"))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(err("no host"));
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(err("a query or fragment has no meaning here"));
        }
        if timeout.is_zero() {
            return Err(err("the timeout must be greater than zero"));
        }
        let prefix = uri.path().trim_end_matches('/');
        Ok(RspamdClient {
            url: format!("http://{}{prefix}", authority.as_str()),
            authority: authority.as_str().to_owned(),
            host,
            port,
            path: format!("{prefix}/checkv2"),
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Scans one message; the whole exchange is bounded by the timeout.
    pub async fn check(&self, req: &ScanRequest<'_>) -> Result<ScanReply, RspamdError> {
        let request = self.request(req);
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(r) => r,
            Err(_) => Err(RspamdError::Timeout { url: self.url.clone(), after: self.timeout }),
        }
    }

    fn request(&self, req: &ScanRequest<'_>) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str());
        let ip = req.ip.map(|ip| ip.to_string());
        let fields = [("From", req.from), ("IP", ip.as_deref()), ("Helo", req.helo), ("Queue-Id", req.queue_id)];
        let rcpt = req.rcpt.iter().map(|r| ("Rcpt", Some(*r)));
        for (name, value) in fields.into_iter().chain(rcpt) {
            // Values from a mail may be anything: one that is not a clean
            // header value is left out rather than failing the scan.
            if let Some(v) = value.filter(|v| v.len() <= MAX_HEADER_VALUE)
                && let Ok(v) = hyper::header::HeaderValue::from_str(v)
            {
                builder = builder.header(name, v);
            }
        }
        let body = Full::new(Bytes::copy_from_slice(req.message));
        // Every part of the request is valid by construction; `body` only
        // fails on an invalid method, URI or header, none of which can
        // happen here, but an error is still better than a panic.
        builder.body(body.clone()).unwrap_or_else(|_| Request::new(body))
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<ScanReply, RspamdError> {
        let unreachable = |reason: String| RspamdError::Unreachable { url: self.url.clone(), reason };
        let garbage = |reason: String| RspamdError::Garbage { url: self.url.clone(), reason };
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _driver = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let classify = |e: hyper::Error| if e.is_parse() { garbage(e.to_string()) } else { unreachable(e.to_string()) };
        let res = send.send_request(request).await.map_err(classify)?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_REPLY_BYTES).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                garbage(format!("an answer longer than {MAX_REPLY_BYTES} bytes"))
            } else {
                unreachable(format!("reading the answer: {e}"))
            }
        })?;
        let body = body.to_bytes();
        if status != StatusCode::OK {
            return Err(RspamdError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        parse_reply(&body).map_err(garbage)
    }
}

/// rspamd's `{"error": "…"}`, or the start of whatever came, as one clean line.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct E {
        error: String,
    }
    let text = match serde_json::from_slice::<E>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    crate::text::truncate_chars(&crate::text::clean_line(&text), 200)
}

/// Stops the connection task when the scan ends, early or not.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const GTUBE_REPLY: &str = r#"{"is_skipped":true,"score":15.0,"required_score":15.0,"action":"reject","symbols":{"GTUBE":{"name":"GTUBE","score":0.0,"metric_score":0.0}},"messages":{"smtp_message":"Gtube pattern"},"message-id":"1@example.net","time_real":0.063766}"#;
    const HAM_REPLY: &str = r#"{"is_skipped":false,"score":1.2,"required_score":15.0,"action":"no action","symbols":{"AUTH_NA":{"name":"AUTH_NA","score":1.0,"metric_score":1.0,"description":"Authenticating message via SPF/DKIM/DMARC/ARC not available"},"MIME_GOOD":{"name":"MIME_GOOD","score":-0.1,"options":["text/plain"]},"ARC_NA":{"name":"ARC_NA","score":0.0}},"messages":{},"milter":{"remove_headers":{"X-Spam":0}}}"#;

    #[test]
    fn replies_become_verdicts() {
        let g = parse_reply(GTUBE_REPLY.as_bytes()).unwrap();
        assert_eq!(g.action, Action::Reject);
        assert!(g.is_skipped);
        let v = g.verdict(None);
        assert!(v.spam);
        assert_eq!(v.score, Some(15.0));
        assert_eq!(v.source, VerdictSource::Scanner(Filter::Rspamd));
        assert_eq!(v.reason, "rspamd: reject, score 15 / 15 (GTUBE 0) [pre-filter]");
        let h = parse_reply(HAM_REPLY.as_bytes()).unwrap();
        assert_eq!(h.symbols.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["AUTH_NA", "MIME_GOOD", "ARC_NA"]);
        let v = h.verdict(None);
        assert!(!v.spam);
        assert_eq!(v.reason, "rspamd: no action, score 1.2 / 15 (AUTH_NA 1, MIME_GOOD -0.1)");
        assert!(h.verdict(Some(1.0)).spam, "the threshold decides when set");
        assert!(!g.verdict(Some(20.0)).spam);
    }

    #[test]
    fn garbage_replies_are_errors() {
        for bad in [
            "",
            "<html>502 Bad Gateway</html>",
            "{}",
            r#"{"action":"discard","score":1,"required_score":15}"#,
            r#"{"action":"reject","score":"high","required_score":15}"#,
            r#"{"action":"reject","score":1e999,"required_score":15}"#,
            r#"{"error":"bad request"}"#,
        ] {
            assert!(parse_reply(bad.as_bytes()).is_err(), "{bad}");
        }
        let weird = r#"{"action":"add header","score":7,"required_score":15,"symbols":{"A\u001b[31m":{"score":7}}}"#;
        assert_eq!(parse_reply(weird.as_bytes()).unwrap().symbols[0].name, "A??31m");
    }

    #[test]
    fn urls() {
        let c = RspamdClient::new("http://127.0.0.1:11333", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str(), c.url()),
            ("127.0.0.1", 11333, "/checkv2", "http://127.0.0.1:11333")
        );
        let c = RspamdClient::new("http://[::1]:8080/rspamd/", Duration::from_secs(1)).unwrap();
        assert_eq!((c.host.as_str(), c.path.as_str()), ("::1", "/rspamd/checkv2"));
        for (bad, why) in [
            ("https://127.0.0.1:11333", "only http://"),
            ("http://127.0.0.1", "no port"),
            ("127.0.0.1:11333", "only http://"),
            ("http://u:p@127.0.0.1:11333", "user names"),
            ("http://127.0.0.1:11333/?x=1", "query"),
            ("not a url", "not a URL"),
        ] {
            let e = RspamdClient::new(bad, Duration::from_secs(1)).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        assert!(RspamdClient::new("http://127.0.0.1:1", Duration::ZERO).is_err());
    }

    #[test]
    fn request_headers_from_mail_data_are_checked() {
        let c = RspamdClient::new("http://127.0.0.1:11333", Duration::from_secs(1)).unwrap();
        let r = c.request(&ScanRequest {
            message: b"Subject: x\r\n\r\nbody",
            from: Some("a@example.net\r\nX-Evil: 1"),
            ip: Some("203.0.113.7".parse().unwrap()),
            rcpt: vec!["support@example.test", "help@example.test"],
            helo: Some("client.example.net"),
            queue_id: None,
        });
        assert_eq!(r.uri(), "/checkv2");
        assert!(r.headers().get("From").is_none(), "a value with a line break is left out");
        assert_eq!(r.headers()["IP"], "203.0.113.7");
        assert_eq!(r.headers().get_all("Rcpt").iter().count(), 2);
        assert_eq!(r.headers()["Host"], "127.0.0.1:11333");
    }

    /// A one-shot server on loopback that answers `reply` (raw HTTP) after
    /// reading the request headers, or never when `reply` is `None`.
    async fn fake(reply: Option<Vec<u8>>) -> (String, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let _ = s.read(&mut buf).await;
            match reply {
                Some(r) => {
                    let _ = s.write_all(&r).await;
                    let _ = s.shutdown().await;
                }
                None => tokio::time::sleep(Duration::from_secs(30)).await,
            }
        });
        (url, task)
    }

    fn http(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r =
            format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn scan() -> ScanRequest<'static> {
        ScanRequest { message: b"From: a@example.net\r\nSubject: x\r\n\r\nhello\r\n", ..ScanRequest::default() }
    }

    #[tokio::test]
    async fn failures_are_told_apart() {
        let t = Duration::from_millis(300);
        // Nobody listens.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let e = RspamdClient::new(&closed, t).unwrap().check(&scan()).await.unwrap_err();
        assert!(e.is_unreachable() && e.code() == "unreachable", "{e}");
        // Accepts, never answers.
        let (url, task) = fake(None).await;
        let started = std::time::Instant::now();
        let e = RspamdClient::new(&url, t).unwrap().check(&scan()).await.unwrap_err();
        assert!(e.is_unreachable() && e.code() == "timeout", "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        task.abort();
        // Something else answers.
        let (url, _) = fake(Some(http("200 OK", b"<html>hello</html>"))).await;
        let e = RspamdClient::new(&url, t).unwrap().check(&scan()).await.unwrap_err();
        assert!(!e.is_unreachable() && e.code() == "garbage", "{e}");
        let (url, _) = fake(Some(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec())).await;
        let e = RspamdClient::new(&url, t).unwrap().check(&scan()).await.unwrap_err();
        assert!(!e.is_unreachable(), "{e}");
        // An endless answer is cut.
        let (url, _) = fake(Some(http("200 OK", &vec![b'x'; MAX_REPLY_BYTES + 10]))).await;
        let e = RspamdClient::new(&url, Duration::from_secs(5)).unwrap().check(&scan()).await.unwrap_err();
        assert_eq!(e.code(), "garbage", "{e}");
        // rspamd's own error statuses.
        let (url, _) = fake(Some(http("503 Service Unavailable", br#"{"error":"overloaded"}"#))).await;
        let e = RspamdClient::new(&url, t).unwrap().check(&scan()).await.unwrap_err();
        assert!(e.is_unreachable(), "{e}");
        assert_eq!(e.to_string(), format!("rspamd at {url} answered 503: overloaded"));
        let (url, _) = fake(Some(http("400 Bad Request", br#"{"error":"bad\nrequest"}"#))).await;
        let e = RspamdClient::new(&url, t).unwrap().check(&scan()).await.unwrap_err();
        assert!(!e.is_unreachable() && e.to_string().ends_with("bad request"), "{e}");
        // And a real-looking answer.
        let (url, _) = fake(Some(http("200 OK", GTUBE_REPLY.as_bytes()))).await;
        let r = RspamdClient::new(&url, t).unwrap().check(&scan()).await.unwrap();
        assert_eq!(r.action, Action::Reject);
    }
}
