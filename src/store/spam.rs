//! The records of mail held at the door ([`Table::Spam`]) and of the
//! blocklist entries added at run time ([`Table::Blocklist`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Get, Scan, Store, StoreError, Table, be, parse};

/// One held mail: its raw copy (a blob named by `raw_sha256`), why it was
/// held and what the filter said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpamEntry {
    pub id: u64,
    pub at: DateTime<Utc>,
    pub mailbox: String,
    pub uid: u32,
    pub raw_sha256: String,
    /// The dedupe record written with it (removed on release).
    pub ingest_key: Vec<u8>,
    /// Who decided: `border_spamassassin`, `border_rspamd`,
    /// `scanner_rspamd`, `blocked`, `rspamd_unreachable`.
    pub source: String,
    /// The filter's score, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// One line for people: the verdict, the blocklist entry, or why
    /// rspamd could not be asked.
    pub reason: String,
    /// What the list shows (cleaned, bounded).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub message_id: Option<String>,
}

/// Who added a run-time blocklist entry, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub by: String,
    pub at: DateTime<Utc>,
    /// The ticket whose sender was blocked (`#block`, the API), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<u64>,
}

/// Typed point reads of the two tables, for anything that can [`Get`].
pub trait SpamRecords: Get {
    fn spam_entry(&self, id: u64) -> Result<Option<SpamEntry>, StoreError> {
        self.get(Table::Spam, &be(id))?.map(|v| parse(Table::Spam, &v)).transpose()
    }
    /// A run-time blocklist entry, by its text (`a@b.example`, `@b.example`).
    fn block_record(&self, entry: &str) -> Result<Option<BlockRecord>, StoreError> {
        self.get(Table::Blocklist, entry.as_bytes())?.map(|v| parse(Table::Blocklist, &v)).transpose()
    }
}

impl<T: Get + ?Sized> SpamRecords for T {}

impl Store {
    /// Held mail, oldest first.
    pub fn spam_entries(&self) -> Result<Vec<SpamEntry>, StoreError> {
        self.backend().scan(Table::Spam, Scan::default()).map(|r| r.and_then(|(_, v)| parse(Table::Spam, &v))).collect()
    }

    /// The run-time blocklist, sorted by entry.
    pub fn block_records(&self) -> Result<Vec<(String, BlockRecord)>, StoreError> {
        self.backend()
            .scan(Table::Blocklist, Scan::default())
            .map(|r| {
                let (k, v) = r?;
                Ok((String::from_utf8_lossy(&k).into_owned(), parse(Table::Blocklist, &v)?))
            })
            .collect()
    }
}
