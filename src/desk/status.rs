//! The desk's standing, one read each (the lists are `query`'s): is the
//! writer alive, how the outbox stands, and which recorded attachment a
//! download URL names (from the attachment index, `Table::Attachments`).
//! `/readyz`, `/metrics` and downloads ask these.

use chrono::{DateTime, Utc};

use super::{Desk, DeskError};
use crate::store::Records;
use crate::ticket::Attachment;

/// Waiting mail by state: `queued` (never tried) and `retrying` (tried,
/// failed transiently, waiting for its next attempt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxSummary {
    pub queued: u64,
    pub retrying: u64,
    pub oldest_queued: Option<DateTime<Utc>>,
    pub oldest_retrying: Option<DateTime<Utc>>,
}

impl OutboxSummary {
    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.oldest_queued.into_iter().chain(self.oldest_retrying).min()
    }
}

impl Desk {
    /// False once the writer thread has ended: every change would fail.
    pub fn writer_running(&self) -> bool {
        !self.jobs.is_closed()
    }

    pub fn outbox_summary(&self) -> Result<OutboxSummary, DeskError> {
        let mut s = OutboxSummary::default();
        for (_, e) in self.store().pending_entries()? {
            let (n, oldest) = if e.attempts == 0 {
                (&mut s.queued, &mut s.oldest_queued)
            } else {
                (&mut s.retrying, &mut s.oldest_retrying)
            };
            *n += 1;
            *oldest = Some(oldest.map_or(e.created, |o| o.min(e.created)));
        }
        Ok(s)
    }

    /// The attachment recorded as `filename` with content `sha256` on some
    /// ticket, if any. Both must match, so a download URL reveals nothing
    /// about a hash unless its file name is known too. One index read.
    pub fn attachment_record(&self, sha256: &str, filename: &str) -> Result<Option<Attachment>, DeskError> {
        let Some(found) = self.store().attachment_index(sha256, filename)? else { return Ok(None) };
        Ok(Some(Attachment {
            filename: filename.to_owned(),
            url: crate::triage::attachment_url(&self.config().attachments.base_url, sha256, filename),
            size: found.size,
            mime_type: found.mime_type,
        }))
    }
}
