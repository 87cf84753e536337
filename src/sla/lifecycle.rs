//! Tickets that close themselves (#19 item 3): a `pending` ticket the
//! customer never answers gets one reminder, then is resolved; a `resolved`
//! ticket is closed. Each timer is off unless configured: an automatic
//! change to a customer's ticket must be something the admin asked for.
//!
//! Timers run on the wall clock from the moment the ticket entered its
//! status (the writer may pass a later moment, e.g. the last relayed agent
//! reply, to restart the wait). A customer reply moves the ticket out of
//! `pending`/`resolved` and so ends the timer: nothing here needs to know.
//! Whether the reminder went out is the caller's durable flag, so a restart
//! never sends it twice. After downtime that ran past the resolve time the
//! reminder is skipped: reminding a customer of a ticket that is resolved a
//! moment later only adds a mail.

use chrono::{DateTime, TimeDelta, Utc};

use crate::ticket::Status;

/// `desk.pending_reminder_after`, `desk.pending_resolve_after`,
/// `desk.close_resolved_after`; `None` is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleConfig {
    pub pending_reminder_after: Option<TimeDelta>,
    pub pending_resolve_after: Option<TimeDelta>,
    pub close_resolved_after: Option<TimeDelta>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleEvent {
    /// Mail the customer once: we are waiting for you.
    PendingReminder,
    /// pending → resolved, with a notice to the customer.
    PendingResolve,
    /// resolved → closed: a system entry, no mail.
    CloseResolved,
}

impl LifecycleEvent {
    /// A stable name for logs, metrics and system entries.
    pub fn code(self) -> &'static str {
        match self {
            LifecycleEvent::PendingReminder => "pending_reminder",
            LifecycleEvent::PendingResolve => "pending_resolve",
            LifecycleEvent::CloseResolved => "close_resolved",
        }
    }
}

/// The next automatic step for a ticket in `status` since `status_since`,
/// and when it is due; `None` when no timer applies. The caller acts when
/// the instant is `<= now` and indexes the ticket by it otherwise. `now`
/// only decides whether a reminder is still worth sending.
pub fn lifecycle_due(
    cfg: &LifecycleConfig,
    status: Status,
    status_since: DateTime<Utc>,
    reminder_sent: bool,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, LifecycleEvent)> {
    let after = |d: Option<TimeDelta>| d.and_then(|d| status_since.checked_add_signed(d));
    match status {
        Status::Pending => {
            let resolve_at = after(cfg.pending_resolve_after);
            let remind_at = after(cfg.pending_reminder_after)
                .filter(|_| !reminder_sent)
                .filter(|&r| resolve_at.is_none_or(|z| r < z && now < z));
            remind_at
                .map(|r| (r, LifecycleEvent::PendingReminder))
                .or(resolve_at.map(|z| (z, LifecycleEvent::PendingResolve)))
        }
        Status::Resolved => after(cfg.close_resolved_after).map(|c| (c, LifecycleEvent::CloseResolved)),
        Status::Open | Status::InProgress | Status::Closed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn lifecycle_goldens() {
        let d = TimeDelta::days;
        let all = LifecycleConfig {
            pending_reminder_after: Some(d(3)),
            pending_resolve_after: Some(d(7)),
            close_resolved_after: Some(d(7)),
        };
        let only_resolve = LifecycleConfig { pending_resolve_after: Some(d(7)), ..Default::default() };
        let only_remind = LifecycleConfig { pending_reminder_after: Some(d(3)), ..Default::default() };
        let off = LifecycleConfig::default();
        let since = "2026-01-01T10:00:00Z";
        use LifecycleEvent::*;
        use Status::*;
        // (config, status, reminder sent, now, expected)
        type Row<'a> = (&'a LifecycleConfig, Status, bool, &'a str, Option<(&'a str, LifecycleEvent)>);
        let table: Vec<Row> = vec![
            (&all, Pending, false, "2026-01-01T10:00:00Z", Some(("2026-01-04T10:00:00Z", PendingReminder))),
            (&all, Pending, false, "2026-01-05T00:00:00Z", Some(("2026-01-04T10:00:00Z", PendingReminder))),
            (&all, Pending, true, "2026-01-05T00:00:00Z", Some(("2026-01-08T10:00:00Z", PendingResolve))),
            (&all, Pending, false, "2026-01-08T10:00:00Z", Some(("2026-01-08T10:00:00Z", PendingResolve))),
            (&all, Resolved, false, "2026-01-01T10:00:00Z", Some(("2026-01-08T10:00:00Z", CloseResolved))),
            (&all, Open, false, "2026-01-01T10:00:00Z", None),
            (&all, InProgress, false, "2026-01-01T10:00:00Z", None),
            (&all, Closed, false, "2026-01-01T10:00:00Z", None),
            (&only_resolve, Pending, false, "2026-01-01T10:00:00Z", Some(("2026-01-08T10:00:00Z", PendingResolve))),
            (&only_remind, Pending, false, "2026-02-01T10:00:00Z", Some(("2026-01-04T10:00:00Z", PendingReminder))),
            (&only_remind, Pending, true, "2026-02-01T10:00:00Z", None),
            (&off, Pending, false, "2026-02-01T10:00:00Z", None),
            (&off, Resolved, false, "2026-02-01T10:00:00Z", None),
        ];
        assert!(!table.is_empty());
        for (i, (cfg, status, sent, now, want)) in table.into_iter().enumerate() {
            let got = lifecycle_due(cfg, status, t(since), sent, t(now));
            assert_eq!(got, want.map(|(at, ev)| (t(at), ev)), "row {i}: {status} sent={sent} now={now}");
        }
    }
}
