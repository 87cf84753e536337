//! `ticketd store stats`: what the store holds and how big it is, read
//! from committed state (a query; the writer is not involved).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Desk, DeskError};
use crate::outbox::{OutState, OutboxEntry};
use crate::store::{BlobKind, Cursor, Scan, Table, parse};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStats {
    pub count: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketAt {
    pub id: String,
    #[serde(with = "crate::ticket::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorStats {
    pub mailbox: String,
    pub uid_validity: u32,
    pub last_uid: u32,
    pub acked_uid: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStats {
    pub pending: u64,
    #[serde(with = "crate::ticket::rfc3339_opt", default)]
    pub oldest_pending: Option<DateTime<Utc>>,
    pub sent: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionStats {
    /// `store.retention_days`; 0 keeps everything.
    pub days: u32,
    pub pruned_tickets: u64,
    pub pruned_raw_copies: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Records per table.
    pub tables: BTreeMap<String, u64>,
    /// Count and bytes per kind (`raw`, `attachment`).
    pub blobs: BTreeMap<String, BlobStats>,
    pub size_on_disk: u64,
    pub tickets_by_status: BTreeMap<String, u64>,
    /// By `createdAt` (imported tickets keep their old dates).
    pub oldest_ticket: Option<TicketAt>,
    pub newest_ticket: Option<TicketAt>,
    pub quarantine: u64,
    pub outbox: OutboxStats,
    pub cursors: Vec<CursorStats>,
    pub retention: RetentionStats,
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

impl StoreStats {
    /// For a person.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let fmt = crate::ticket::rfc3339::format;
        let mut s = String::new();
        let _ = writeln!(s, "size on disk      {}", bytes(self.size_on_disk));
        let _ = writeln!(s, "tables (records)");
        for (name, n) in &self.tables {
            let _ = writeln!(s, "  {name:<15} {n}");
        }
        let _ = writeln!(s, "blobs");
        for (kind, b) in &self.blobs {
            let _ = writeln!(s, "  {kind:<15} {} ({})", b.count, bytes(b.bytes));
        }
        let status: Vec<String> = self.tickets_by_status.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(s, "tickets           {}", if status.is_empty() { "none".into() } else { status.join(", ") });
        for (label, t) in [("oldest ticket", &self.oldest_ticket), ("newest ticket", &self.newest_ticket)] {
            if let Some(t) = t {
                let _ = writeln!(s, "{label:<17} {} (created {})", t.id, fmt(&t.created_at));
            }
        }
        let _ = writeln!(s, "quarantine        {}", self.quarantine);
        let o = &self.outbox;
        let oldest = o.oldest_pending.map(|t| format!(", oldest queued {}", fmt(&t))).unwrap_or_default();
        let _ = writeln!(s, "outbox            {} waiting{oldest}; {} sent, {} failed", o.pending, o.sent, o.failed);
        for c in &self.cursors {
            let _ = writeln!(
                s,
                "cursor {:<10} uidvalidity {} last uid {} acked {}",
                crate::text::clean_line(&c.mailbox),
                c.uid_validity,
                c.last_uid,
                c.acked_uid.map_or("-".into(), |u| u.to_string())
            );
        }
        let r = &self.retention;
        let keep = if r.days == 0 { "keep forever".to_owned() } else { format!("{} days after closing", r.days) };
        let _ = writeln!(
            s,
            "retention         {keep}; pruned so far: {} ticket(s), {} raw cop(ies)",
            r.pruned_tickets, r.pruned_raw_copies
        );
        s
    }
}

impl Desk {
    pub fn stats(&self) -> Result<StoreStats, DeskError> {
        let store = self.store();
        let b = store.backend();
        let mut tables = BTreeMap::new();
        for t in Table::ALL {
            tables.insert(t.name().to_owned(), b.count(*t)?);
        }
        let mut blobs = BTreeMap::new();
        for (kind, name) in [(BlobKind::Raw, "raw"), (BlobKind::Attachment, "attachment")] {
            let mut st = BlobStats::default();
            for item in b.blobs(kind) {
                let (_, size) = item?;
                st.count += 1;
                st.bytes += size;
            }
            blobs.insert(name.to_owned(), st);
        }
        let mut by_status = BTreeMap::new();
        let mut oldest: Option<TicketAt> = None;
        let mut newest: Option<TicketAt> = None;
        for rec in store.tickets_from(None, false) {
            let t = rec?.ticket;
            *by_status.entry(t.status.as_str().to_owned()).or_default() += 1;
            if oldest.as_ref().is_none_or(|o| t.created_at < o.created_at) {
                oldest = Some(TicketAt { id: t.id.clone(), created_at: t.created_at });
            }
            if newest.as_ref().is_none_or(|o| t.created_at >= o.created_at) {
                newest = Some(TicketAt { id: t.id.clone(), created_at: t.created_at });
            }
        }
        let mut outbox = OutboxStats::default();
        for item in b.scan(Table::Outbox, Scan::default()) {
            let e: OutboxEntry = parse(Table::Outbox, &item?.1)?;
            outbox.pending += 1;
            outbox.oldest_pending = Some(outbox.oldest_pending.map_or(e.created, |t| t.min(e.created)));
        }
        for item in b.scan(Table::Sent, Scan::default()) {
            let e: OutboxEntry = parse(Table::Sent, &item?.1)?;
            match e.state {
                OutState::Failed => outbox.failed += 1,
                _ => outbox.sent += 1,
            }
        }
        let mut cursors = Vec::new();
        for item in b.scan(Table::Cursors, Scan::default()) {
            let (k, v) = item?;
            let c: Cursor = parse(Table::Cursors, &v)?;
            cursors.push(CursorStats {
                mailbox: String::from_utf8_lossy(&k).into_owned(),
                uid_validity: c.uid_validity,
                last_uid: c.last_uid,
                acked_uid: c.acked_uid,
            });
        }
        let (pruned_tickets, pruned_raw_copies) = super::retention::pruned_counts(store)?;
        Ok(StoreStats {
            tables,
            blobs,
            size_on_disk: b.size_on_disk()?,
            tickets_by_status: by_status,
            oldest_ticket: oldest,
            newest_ticket: newest,
            quarantine: b.count(Table::Quarantine)?,
            outbox,
            cursors,
            retention: RetentionStats { days: self.config().store.retention_days, pruned_tickets, pruned_raw_copies },
        })
    }
}
