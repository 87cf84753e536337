//! `/metrics` in the Prometheus text exposition format (version 0.0.4),
//! named after Prometheus' guide: a `ticketd_` prefix, base units
//! (seconds, bytes), `_total` on counters, labels for dimensions. Counts
//! come from what the loops report ([`crate::health`]); outbox, quarantine
//! and store size are read from the store at scrape time.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::desk::probe::OutboxSummary;
use crate::health::{LATENCY_BUCKETS, Snapshot};

/// Everything one scrape shows.
pub struct Scrape {
    pub snapshot: Snapshot,
    /// Configured mailboxes: each gets its series even before it reports.
    pub mailboxes: Vec<String>,
    pub outbox: OutboxSummary,
    pub quarantine: u64,
    pub store_bytes: u64,
    pub now: DateTime<Utc>,
}

/// Results the sender reports; present from the start so `rate()` sees the
/// first one.
const SEND_RESULTS: &[&str] = &["delivered", "deferred", "refused", "failed"];

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
            let _ = write!(self.0, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn age(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> f64 {
    t.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
}

pub fn render(s: &Scrape) -> String {
    let mut o = Out(String::new());
    let snap = &s.snapshot;

    o.head("ticketd_build_info", "gauge", "The running ticketd version (always 1).");
    o.sample("ticketd_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);

    o.head("ticketd_messages_total", "counter", "Messages ingested, by mailbox and outcome.");
    for (mailbox, outcome, n) in &snap.messages {
        o.sample("ticketd_messages_total", &[("mailbox", mailbox), ("outcome", outcome)], *n as f64);
    }

    let name = "ticketd_ingest_latency_seconds";
    o.head(name, "histogram", "Seconds from a message's fetch to its durable commit.");
    let bucket_name = format!("{name}_bucket");
    for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
        let n = snap.latency.buckets.get(i).copied().unwrap_or(0);
        o.sample(&bucket_name, &[("le", &le.to_string())], n as f64);
    }
    o.sample(&bucket_name, &[("le", "+Inf")], snap.latency.count as f64);
    o.sample(&format!("{name}_sum"), &[], snap.latency.sum);
    o.sample(&format!("{name}_count"), &[], snap.latency.count as f64);

    o.head(
        "ticketd_outbox_messages",
        "gauge",
        "Mail waiting in the outbox, by state (queued: not tried yet; retrying: waiting after a transient failure).",
    );
    o.sample("ticketd_outbox_messages", &[("state", "queued")], s.outbox.queued as f64);
    o.sample("ticketd_outbox_messages", &[("state", "retrying")], s.outbox.retrying as f64);
    o.head(
        "ticketd_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest waiting mail by state (0 when none waits).",
    );
    o.sample("ticketd_outbox_oldest_age_seconds", &[("state", "queued")], age(s.now, s.outbox.oldest_queued));
    o.sample("ticketd_outbox_oldest_age_seconds", &[("state", "retrying")], age(s.now, s.outbox.oldest_retrying));

    o.head("ticketd_smtp_sends_total", "counter", "SMTP transactions by result.");
    let mut results: Vec<(String, u64)> = SEND_RESULTS.iter().map(|r| ((*r).to_owned(), 0)).collect();
    for (r, n) in &snap.sends {
        match results.iter_mut().find(|(x, _)| x == r) {
            Some(slot) => slot.1 = *n,
            None => results.push((r.clone(), *n)),
        }
    }
    for (r, n) in &results {
        o.sample("ticketd_smtp_sends_total", &[("result", r)], *n as f64);
    }

    o.head(
        "ticketd_console_csp_reports_total",
        "counter",
        "Content-Security-Policy violations browsers reported, by where (console: the desk console's own pages; mail: a mail's HTML frame).",
    );
    for source in ["console", "mail"] {
        let n = snap.csp_reports.iter().find(|(s, _)| s == source).map_or(0, |(_, n)| *n);
        o.sample("ticketd_console_csp_reports_total", &[("source", source)], n as f64);
    }

    o.head("ticketd_imap_up", "gauge", "1 when the mailbox's IMAP connection is logged in and working, else 0.");
    for m in &s.mailboxes {
        let up = snap.mailboxes.get(m).is_some_and(|st| st.state.is_up());
        o.sample("ticketd_imap_up", &[("mailbox", m)], if up { 1.0 } else { 0.0 });
    }
    o.head("ticketd_imap_last_fetch_timestamp_seconds", "gauge", "Unix time of the mailbox's last successful fetch.");
    for m in &s.mailboxes {
        if let Some(t) = snap.mailboxes.get(m).and_then(|st| st.last_fetch) {
            o.sample("ticketd_imap_last_fetch_timestamp_seconds", &[("mailbox", m)], t.timestamp() as f64);
        }
    }

    o.head("ticketd_quarantine_messages", "gauge", "Messages kept in quarantine.");
    o.sample("ticketd_quarantine_messages", &[], s.quarantine as f64);
    o.head("ticketd_store_size_bytes", "gauge", "Bytes the store occupies on disk, database and attachments.");
    o.sample("ticketd_store_size_bytes", &[], s.store_bytes as f64);
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Health, LinkState};

    #[test]
    fn a_scrape_has_every_family_and_escapes_labels() {
        let h = Health::default();
        h.link("support", LinkState::Idle, None, None);
        h.fetched("support");
        h.count_message("sup\"port", "new_ticket");
        h.observe_ingest(0.02);
        h.count_send("delivered");
        let text = render(&Scrape {
            snapshot: h.snapshot(),
            mailboxes: vec!["support".into(), "billing".into()],
            outbox: OutboxSummary { queued: 2, ..OutboxSummary::default() },
            quarantine: 1,
            store_bytes: 4096,
            now: Utc::now(),
        });
        for want in [
            "ticketd_messages_total{mailbox=\"sup\\\"port\",outcome=\"new_ticket\"} 1",
            "ticketd_ingest_latency_seconds_bucket{le=\"0.025\"} 1",
            "ticketd_ingest_latency_seconds_bucket{le=\"0.01\"} 0",
            "ticketd_ingest_latency_seconds_bucket{le=\"+Inf\"} 1",
            "ticketd_ingest_latency_seconds_count 1",
            "ticketd_outbox_messages{state=\"queued\"} 2",
            "ticketd_smtp_sends_total{result=\"delivered\"} 1",
            "ticketd_smtp_sends_total{result=\"refused\"} 0",
            "ticketd_console_csp_reports_total{source=\"console\"} 0",
            "ticketd_imap_up{mailbox=\"support\"} 1",
            "ticketd_imap_up{mailbox=\"billing\"} 0",
            "ticketd_quarantine_messages 1",
            "ticketd_store_size_bytes 4096",
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want:?} in:\n{text}");
        }
        assert!(text.contains("ticketd_imap_last_fetch_timestamp_seconds{mailbox=\"support\"}"));
        assert!(!text.contains("ticketd_imap_last_fetch_timestamp_seconds{mailbox=\"billing\"}"));
    }
}
