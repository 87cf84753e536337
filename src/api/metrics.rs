//! `/metrics` in the Prometheus text exposition format (version 0.0.4),
//! named after Prometheus' guide: a `ticketd_` prefix, base units
//! (seconds, bytes), `_total` on counters, labels for dimensions. Counts
//! come from what the loops report ([`crate::health`]); outbox, quarantine
//! and store size are read from the store at scrape time.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::desk::status::OutboxSummary;
use crate::health::{LATENCY_BUCKETS, Readings};

/// Everything one scrape shows.
pub struct Scrape {
    pub readings: Readings,
    /// Configured mailboxes: each gets its series even before it reports.
    pub mailboxes: Vec<String>,
    pub outbox: OutboxSummary,
    pub quarantine: u64,
    pub store_bytes: u64,
    /// Tickets with a response target past due and unmet (#19).
    pub overdue: u64,
    /// Tickets the desk's clock should have looked at by now and has not
    /// yet (a backlog; 0 in a healthy desk between ticks).
    pub timers_due: u64,
    pub now: DateTime<Utc>,
    /// A node of a cluster on PostgreSQL.
    pub cluster: Option<crate::cluster::Status>,
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
    let snap = &s.readings;

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

    door(&mut o, snap);
    let priorities = ["low", "medium", "high", "urgent"];
    let targets = ["first_response", "resolution"];
    for (kind, name, help) in [
        (
            "breach",
            "ticketd_sla_breaches_total",
            "Response targets that passed unmet (one notice each), by priority and target.",
        ),
        (
            "warning",
            "ticketd_sla_warnings_total",
            "Warnings that a response target is about to pass, by priority and target.",
        ),
    ] {
        o.head(name, "counter", help);
        for p in priorities {
            for t in targets {
                let n = snap.sla.iter().find(|(k, pp, tt, _)| k == kind && pp == p && tt == t).map_or(0, |x| x.3);
                o.sample(name, &[("priority", p), ("target", t)], n as f64);
            }
        }
    }
    o.head(
        "ticketd_automations_total",
        "counter",
        "Automatic lifecycle steps: pending reminders, pending tickets resolved, resolved tickets closed.",
    );
    for event in ["pending_reminder", "pending_resolve", "close_resolved"] {
        let n = snap.automations.iter().find(|(e, _)| e == event).map_or(0, |x| x.1);
        o.sample("ticketd_automations_total", &[("event", event)], n as f64);
    }
    o.head("ticketd_sla_overdue_tickets", "gauge", "Tickets with a response target past due and unmet.");
    o.sample("ticketd_sla_overdue_tickets", &[], s.overdue as f64);
    o.head(
        "ticketd_timers_due",
        "gauge",
        "Tickets the desk's clock should have looked at by now and has not yet (0 between ticks when all is well).",
    );
    o.sample("ticketd_timers_due", &[], s.timers_due as f64);

    o.head("ticketd_quarantine_messages", "gauge", "Messages kept in quarantine.");
    o.sample("ticketd_quarantine_messages", &[], s.quarantine as f64);
    o.head("ticketd_store_size_bytes", "gauge", "Bytes the store occupies on disk, database and attachments.");
    o.sample("ticketd_store_size_bytes", &[], s.store_bytes as f64);
    if let Some(c) = &s.cluster {
        cluster(&mut o, c);
    }
    o.0
}

/// Sources a mail is held for (besides the blocklist); present from the
/// start so `rate()` sees the first one.
const HELD_SOURCES: &[&str] = &["border_spamassassin", "border_rspamd", "scanner_rspamd", "rspamd_unreachable"];
const ACK_REFUSALS: &[&str] = &["rate_limit", "dmarc_fail", "unaligned"];

/// The door: held mail by verdict source, blocked mail, releases,
/// acknowledgements not sent by reason, rspamd scans by result.
fn door(o: &mut Out, snap: &Readings) {
    let n = |what: &str, label: &str| {
        snap.door.iter().filter(|(w, l, _)| w == what && l == label).map(|(_, _, n)| *n).sum::<u64>() as f64
    };
    let labels = |what: &str, fixed: &[&str]| {
        let mut v: Vec<String> = fixed.iter().map(|s| (*s).to_owned()).collect();
        for (w, l, _) in &snap.door {
            if w == what && !v.contains(l) {
                v.push(l.clone());
            }
        }
        v
    };
    o.head("ticketd_spam_held_total", "counter", "Mail held for review as spam, by who judged it.");
    for s in labels("held", HELD_SOURCES) {
        o.sample("ticketd_spam_held_total", &[("source", &s)], n("held", &s));
    }
    o.head("ticketd_spam_blocked_total", "counter", "Mail held for review because its sender is on the blocklist.");
    o.sample("ticketd_spam_blocked_total", &[], n("blocked", ""));
    o.head("ticketd_spam_released_total", "counter", "Held mail released into the desk by a person.");
    o.sample("ticketd_spam_released_total", &[], n("released", ""));
    o.head("ticketd_acks_suppressed_total", "counter", "Acknowledgements not sent, by reason (held mail aside).");
    for r in labels("acks_refused", ACK_REFUSALS) {
        o.sample("ticketd_acks_suppressed_total", &[("reason", &r)], n("acks_refused", &r));
    }
    o.head("ticketd_rspamd_scans_total", "counter", "Mail ticketd asked rspamd about, by result.");
    for r in labels("scans", &["ham", "spam", "unreachable", "timeout"]) {
        o.sample("ticketd_rspamd_scans_total", &[("result", &r)], n("scans", &r));
    }
}

/// The cluster's families (DESIGN section 11), on a node of one.
fn cluster(o: &mut Out, c: &crate::cluster::Status) {
    let node = [("node", c.node.as_str())];
    o.head("ticketd_leader", "gauge", "1 while this node leads the cluster (writes, fetches and sends mail), else 0.");
    o.sample("ticketd_leader", &node, if c.leading { 1.0 } else { 0.0 });
    o.head("ticketd_lease_epoch", "gauge", "The writer's lease epoch as this node last saw it.");
    o.sample("ticketd_lease_epoch", &node, c.epoch as f64);
    o.head(
        "ticketd_fence_refusals_total",
        "counter",
        "Commits of this node refused because its epoch was not (or no longer) the current one.",
    );
    o.sample("ticketd_fence_refusals_total", &node, c.fence_refusals as f64);
    o.head(
        "ticketd_takeover_seconds",
        "gauge",
        "This node's last takeover: from the previous leader's last heartbeat to this node's first commit.",
    );
    if let Some(t) = c.takeover_seconds {
        o.sample("ticketd_takeover_seconds", &node, t);
    }
    o.head("ticketd_takeovers_total", "counter", "Terms this node started as leader after another holder.");
    o.sample("ticketd_takeovers_total", &node, c.takeovers as f64);
    o.head(
        "ticketd_lease_connection_up",
        "gauge",
        "1 when the lease's connection to the database answered its last call recently, else 0.",
    );
    o.sample("ticketd_lease_connection_up", &node, if c.lock_ok { 1.0 } else { 0.0 });
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
        h.count_door("held", "border_rspamd");
        h.count_door("acks_refused", "dmarc_fail");
        h.count_sla("breach", "urgent", "first_response");
        h.count_automation("close_resolved");
        let text = render(&Scrape {
            readings: h.readings(),
            mailboxes: vec!["support".into(), "billing".into()],
            outbox: OutboxSummary { queued: 2, ..OutboxSummary::default() },
            quarantine: 1,
            store_bytes: 4096,
            overdue: 3,
            timers_due: 0,
            now: Utc::now(),
            cluster: None,
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
            "ticketd_spam_held_total{source=\"border_rspamd\"} 1",
            "ticketd_spam_held_total{source=\"scanner_rspamd\"} 0",
            "ticketd_spam_blocked_total 0",
            "ticketd_spam_released_total 0",
            "ticketd_acks_suppressed_total{reason=\"dmarc_fail\"} 1",
            "ticketd_rspamd_scans_total{result=\"unreachable\"} 0",
            "ticketd_sla_breaches_total{priority=\"urgent\",target=\"first_response\"} 1",
            "ticketd_sla_breaches_total{priority=\"low\",target=\"resolution\"} 0",
            "ticketd_sla_warnings_total{priority=\"urgent\",target=\"first_response\"} 0",
            "ticketd_automations_total{event=\"close_resolved\"} 1",
            "ticketd_automations_total{event=\"pending_reminder\"} 0",
            "ticketd_sla_overdue_tickets 3",
            "ticketd_timers_due 0",
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want:?} in:\n{text}");
        }
        assert!(text.contains("ticketd_imap_last_fetch_timestamp_seconds{mailbox=\"support\"}"));
        assert!(!text.contains("ticketd_imap_last_fetch_timestamp_seconds{mailbox=\"billing\"}"));
        assert!(!text.contains("ticketd_leader"), "a single node has no cluster families");
    }

    #[test]
    fn a_cluster_node_says_its_role_epoch_and_refusals() {
        let mut o = Out(String::new());
        cluster(
            &mut o,
            &crate::cluster::Status {
                node: "n2".into(),
                leading: false,
                epoch: 7,
                leader: Some("n1".into()),
                leader_address: Some("http://10.0.0.11:8025".into()),
                lock_ok: true,
                fence_refusals: 3,
                takeover_seconds: Some(1.25),
                takeovers: 2,
            },
        );
        for want in [
            "ticketd_leader{node=\"n2\"} 0",
            "ticketd_lease_epoch{node=\"n2\"} 7",
            "ticketd_fence_refusals_total{node=\"n2\"} 3",
            "ticketd_takeover_seconds{node=\"n2\"} 1.25",
            "ticketd_lease_connection_up{node=\"n2\"} 1",
        ] {
            assert!(o.0.lines().any(|l| l == want), "missing {want:?} in:\n{}", o.0);
        }
    }
}
