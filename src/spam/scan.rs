//! Asking rspamd about a batch of fetched mail before it goes to the
//! writer (whose thread does no network I/O): each message gets a
//! [`ScanResult`] that travels with it. Scans run a few at a time, each
//! bounded by `spam.rspamd_timeout`; once rspamd is found unreachable in a
//! batch, the rest of that batch is not asked again (each would wait for
//! the same timeout) and gets the same answer. What an unreachable rspamd
//! means for a mail is the `spam.unreachable` policy's, decided with the
//! other rules; a mail is never dropped here.

use std::sync::Mutex;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::SpamConfig;
use super::rspamd::{RspamdClient, RspamdError, ScanRequest};
use super::verdict::Verdict;

/// Scans in flight at once.
pub const CONCURRENCY: usize = 8;

/// What asking rspamd about one mail gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum ScanResult {
    /// rspamd answered.
    Verdict(Verdict),
    /// rspamd could not be asked, or answered something that is not a
    /// scan result. `code` is [`RspamdError::code`].
    Failed { code: String, reason: String },
}

impl ScanResult {
    fn failed(e: &RspamdError) -> ScanResult {
        ScanResult::Failed { code: e.code().to_owned(), reason: e.to_string() }
    }

    /// For metrics: `spam`, `ham`, or the failure's code.
    pub fn code(&self) -> &str {
        match self {
            ScanResult::Verdict(v) if v.spam => "spam",
            ScanResult::Verdict(_) => "ham",
            ScanResult::Failed { code, .. } => code,
        }
    }
}

/// rspamd as `[spam]` configures it.
#[derive(Debug, Clone)]
pub struct Scanner {
    client: RspamdClient,
    threshold: Option<f64>,
    /// The support address the mail was sent to (rspamd's `Rcpt`).
    rcpt: String,
}

impl Scanner {
    /// None without `spam.rspamd_url` (the config check made sure a set
    /// URL is usable).
    pub fn from_config(cfg: &SpamConfig, rcpt: &str) -> Option<Scanner> {
        let r = cfg.rspamd.as_ref()?;
        let client = RspamdClient::new(&r.url, r.timeout).ok()?;
        Some(Scanner { client, threshold: cfg.score_threshold, rcpt: rcpt.to_owned() })
    }

    pub fn url(&self) -> &str {
        self.client.url()
    }

    /// One result per message, in order.
    pub async fn scan_all(&self, messages: &[&[u8]]) -> Vec<ScanResult> {
        let down: Mutex<Option<ScanResult>> = Mutex::new(None);
        let mut out: Vec<Option<ScanResult>> = vec![None; messages.len()];
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut next = 0;
        loop {
            while pending.len() < CONCURRENCY && next < messages.len() {
                pending.push(self.scan_one(next, messages[next], &down));
                next += 1;
            }
            match pending.next().await {
                Some((i, r)) => out[i] = Some(r),
                None => break,
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or(ScanResult::Failed { code: "internal".into(), reason: "the scan did not run".into() }))
            .collect()
    }

    /// Scans one message, unless rspamd was found unreachable meanwhile.
    async fn scan_one(&self, i: usize, message: &[u8], down: &Mutex<Option<ScanResult>>) -> (usize, ScanResult) {
        if let Some(r) = down.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return (i, r);
        }
        let req = ScanRequest { message, rcpt: vec![self.rcpt.as_str()], ..ScanRequest::default() };
        let r = match self.client.check(&req).await {
            Ok(reply) => ScanResult::Verdict(reply.verdict(self.threshold)),
            Err(e) => {
                let r = ScanResult::failed(&e);
                if e.is_unreachable() {
                    down.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(r.clone());
                }
                r
            }
        };
        (i, r)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::spam::RspamdConfig;

    #[tokio::test]
    async fn an_unreachable_rspamd_answers_every_mail_of_the_batch_quickly() {
        // A port nobody listens on: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = SpamConfig {
            rspamd: Some(RspamdConfig { url: format!("http://127.0.0.1:{port}"), timeout: Duration::from_secs(5) }),
            ..SpamConfig::default()
        };
        let s = Scanner::from_config(&cfg, "support@example.test").expect("configured");
        let mails: Vec<Vec<u8>> = (0..40).map(|i| format!("Subject: {i}\r\n\r\nx\r\n").into_bytes()).collect();
        let refs: Vec<&[u8]> = mails.iter().map(Vec::as_slice).collect();
        let t = Instant::now();
        let r = s.scan_all(&refs).await;
        assert_eq!(r.len(), 40);
        assert!(r.iter().all(|r| matches!(r, ScanResult::Failed { code, .. } if code == "unreachable")), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(Scanner::from_config(&SpamConfig::default(), "x@example.test").is_none());
    }
}
