//! The door's side of the desk: mail held for review (the spam list), the
//! run-time blocklist, and rspamd scans of fetched mail before it goes to
//! the writer. The rules (`triage::door`) decide; this records what they
//! decided, answers their questions (is this sender blocked?), and serves
//! the list to people.
//!
//! A held mail keeps its raw copy, its dedupe record (so the mailbox is
//! not read into the list twice) and its verdict. Releasing it deletes the
//! entry and its dedupe record and runs the raw mail through ingest again
//! with the door open, in one unit of work: it becomes a ticket, with an
//! acknowledgement if the ordinary rules allow one then. Dropping it
//! forgets it (its dedupe record stays, marked pruned, so it is not
//! ingested again) and removes the raw copy. Retention removes held mail
//! older than `spam.retention_days` the same way.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::apply::{Origin, take_counter};
use super::ingest::Item;
use super::tx::Tx;
use super::writer::{Job, RetryOutcome};
use super::{ActorRef, Desk, DeskError, Rules};
use crate::config::Config;
use crate::health::Health;
use crate::mail::InboundMail;
use crate::spam::{BlockEntry, ScanResult, Scanner};
use crate::store::spam::{BlockRecord, SpamEntry, SpamRecords};
use crate::store::{BlobKind, Get, Records, Store, StoreError, Table, be, json, keys};
use crate::triage::door::{Hold, HoldSource};
use crate::triage::{Decision, Effect, Outcome};

/// Longest From and Subject kept on an entry for the list.
const SHOWN_CHARS: usize = 200;

/// The entry (config or run time) that blocks `address`, asked the way
/// `spam::block::candidates` says: the address, then its domains.
pub(super) fn blocked(cfg: &Config, tx: &Tx<'_>, address: &str) -> Result<Option<BlockEntry>, StoreError> {
    for entry in crate::spam::block::candidates(address) {
        if cfg.spam.block.contains(&entry) || tx.get(Table::Blocklist, entry.to_string().as_bytes())?.is_some() {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Records a held mail ([`Effect::Hold`]); returns its id.
pub(super) fn hold(
    tx: &mut Tx<'_>,
    origin: Option<&Origin<'_>>,
    mail: Option<&InboundMail>,
    h: &Hold,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let id = take_counter(tx, keys::NEXT_SPAM)?;
    let shown = |s: &str| crate::text::truncate_chars(&crate::text::clean_line(s), SHOWN_CHARS);
    let (mailbox, uid, raw_sha256, ingest_key) = match origin {
        Some(o) => (o.mailbox.to_owned(), o.uid, o.raw_sha256.clone(), o.dedupe_key.clone().into_bytes()),
        None => (String::new(), 0, String::new(), Vec::new()),
    };
    let entry = SpamEntry {
        id,
        at: now,
        mailbox,
        uid,
        raw_sha256,
        ingest_key,
        source: h.source.code().to_owned(),
        score: h.score,
        reason: h.reason.clone(),
        from: mail.and_then(|m| m.from.as_ref()).map(|f| shown(&f.address)),
        subject: mail.map(|m| shown(&m.subject)).unwrap_or_default(),
        message_id: mail.and_then(|m| m.message_id.as_deref()).map(shown),
    };
    tx.put(Table::Spam, be(id), json(&entry));
    Ok(id)
}

/// Puts `entry` on the run-time blocklist ([`Effect::Block`]); false when
/// it was there already (the first record is kept).
pub(super) fn put_block(
    tx: &mut Tx<'_>,
    entry: &BlockEntry,
    by: &str,
    ticket: Option<u64>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let key = entry.to_string();
    if tx.block_record(&key)?.is_some() {
        return Ok(false);
    }
    tx.put(Table::Blocklist, key.into_bytes(), json(&BlockRecord { by: by.to_owned(), at: now, ticket }));
    Ok(true)
}

/// What a decision means for the door's metrics, once it is applied.
pub(super) fn count(health: &Health, d: &Decision) {
    if let Outcome::Held { source } = &d.outcome {
        match source {
            HoldSource::Blocked => health.count_door("blocked", ""),
            s => health.count_door("held", s.code()),
        }
    }
    for e in &d.effects {
        if let Effect::AckRefused(r) = e {
            health.count_door("acks_refused", r.code());
        }
    }
}

/// Runs the held mail `id` through ingest again, the door open, in the
/// same unit of work (if that fails, the entry stays as it was): the
/// ordinary rules of `super::ingest::reingest`. Returns what became of it
/// and whether mail was queued.
pub(super) fn release(
    rules: &Rules,
    health: &Health,
    store: &Store,
    tx: &mut Tx<'_>,
    id: u64,
) -> Result<(RetryOutcome, bool), DeskError> {
    let e = tx.spam_entry(id)?.ok_or_else(|| DeskError::NotFound(format!("spam entry {id}")))?;
    let raw = store
        .raw(&e.raw_sha256)?
        .ok_or_else(|| DeskError::NotFound(format!("the raw mail of spam entry {id} (was it pruned?)")))?;
    tx.delete(Table::Spam, be(id));
    if !e.ingest_key.is_empty() {
        tx.delete(Table::Ingested, e.ingest_key.clone());
    }
    let (outcome, queued) = super::ingest::reingest(rules, health, tx, &e.mailbox, e.uid, &raw, true)?;
    health.count_door("released", "");
    info!(id, outcome = ?outcome, "spam entry released");
    Ok((outcome, queued))
}

/// Forgets the held mail `id`: the entry goes, and its raw copy unless a
/// backup is copying blobs (`copying`: then the copy stays, named by the
/// dedupe record, as a dropped quarantine entry's does). The dedupe record
/// stays, so the mail is not ingested again.
pub(super) fn drop_entry(tx: &mut Tx<'_>, id: u64, actor: &ActorRef, copying: bool) -> Result<(), DeskError> {
    let e = tx.spam_entry(id)?.ok_or_else(|| DeskError::NotFound(format!("spam entry {id}")))?;
    tx.delete(Table::Spam, be(id));
    info!(id, by = actor.label(), "spam entry dropped");
    if !copying {
        forget_raw(tx, &e, Utc::now().trunc_subsecs(0))?;
    }
    Ok(())
}

/// Marks the entry's dedupe record pruned and deletes its raw copy, unless
/// a quarantine entry names the same bytes.
pub(super) fn forget_raw(tx: &mut Tx<'_>, e: &SpamEntry, now: DateTime<Utc>) -> Result<bool, StoreError> {
    if e.raw_sha256.is_empty() {
        return Ok(false);
    }
    if let Some(mut r) = tx.ingested(&e.ingest_key)?
        && r.raw_sha256 == e.raw_sha256
        && r.ticket.is_none()
        && r.pruned.is_none()
    {
        r.pruned = Some(now);
        tx.put(Table::Ingested, e.ingest_key.clone(), json(&r));
    }
    if tx.store().quarantine_entries()?.iter().any(|q| q.raw_sha256 == e.raw_sha256) {
        return Ok(false);
    }
    tx.delete_blob(BlobKind::Raw, &e.raw_sha256);
    Ok(true)
}

/// Adds (`add`) or removes a run-time blocklist entry; false when there
/// was nothing to do (already there). An entry of the config file cannot
/// be removed here.
pub(super) fn change_block(
    cfg: &Config,
    tx: &mut Tx<'_>,
    entry: &BlockEntry,
    add: bool,
    actor: &ActorRef,
) -> Result<bool, DeskError> {
    let now = Utc::now().trunc_subsecs(0);
    let in_config = cfg.spam.block.contains(entry);
    if add {
        if in_config {
            return Ok(false);
        }
        let added = put_block(tx, entry, actor.label(), None, now)?;
        if added {
            info!(entry = %entry, by = actor.label(), "blocklist entry added");
        }
        return Ok(added);
    }
    if in_config {
        return Err(DeskError::invalid(
            "entry",
            format!("{entry} is in the config file (spam.block): remove it there and restart ticketd"),
        ));
    }
    if tx.block_record(&entry.to_string())?.is_none() {
        return Err(DeskError::NotFound(format!("blocklist entry {entry}")));
    }
    tx.delete(Table::Blocklist, entry.to_string().into_bytes());
    info!(entry = %entry, by = actor.label(), "blocklist entry removed");
    Ok(true)
}

/// Asks rspamd about every fetched mail of a batch (see
/// [`crate::spam::scan`]); what it said travels with the mail.
pub async fn scan(items: Vec<Item>, scanner: &Scanner, health: &Health) -> Vec<Item> {
    let messages: Vec<&[u8]> = items
        .iter()
        .filter_map(|i| match i {
            Item::Mail { raw, .. } => Some(raw.as_slice()),
            _ => None,
        })
        .collect();
    if messages.is_empty() {
        return items;
    }
    let mut results = scanner.scan_all(&messages).await.into_iter();
    let mut failed = None;
    let out: Vec<Item> = items
        .into_iter()
        .map(|item| match item {
            Item::Mail { uid, raw } => {
                let scan = results
                    .next()
                    .unwrap_or(ScanResult::Failed { code: "internal".into(), reason: "no scan result".into() });
                health.count_door("scans", scan.code());
                if let ScanResult::Failed { reason, .. } = &scan {
                    failed.get_or_insert_with(|| reason.clone());
                }
                Item::Scanned { uid, raw, scan }
            }
            other => other,
        })
        .collect();
    if let Some(reason) = failed {
        warn!(
            url = scanner.url(),
            reason, "rspamd could not judge this batch; spam.unreachable decides what happens to it"
        );
    }
    out
}

/// One held mail as the list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpamView {
    pub id: u64,
    #[serde(with = "crate::ticket::rfc3339")]
    pub at: DateTime<Utc>,
    pub mailbox: String,
    pub uid: u32,
    /// `border_spamassassin`, `border_rspamd`, `scanner_rspamd`, `blocked`,
    /// `rspamd_unreachable`.
    pub source: String,
    #[serde(default)]
    pub score: Option<f64>,
    pub reason: String,
    #[serde(default)]
    pub from: Option<String>,
    pub subject: String,
    #[serde(default)]
    pub message_id: Option<String>,
    pub raw_sha256: String,
}

impl From<&SpamEntry> for SpamView {
    fn from(e: &SpamEntry) -> SpamView {
        SpamView {
            id: e.id,
            at: e.at,
            mailbox: e.mailbox.clone(),
            uid: e.uid,
            source: e.source.clone(),
            score: e.score,
            reason: e.reason.clone(),
            from: e.from.clone(),
            subject: e.subject.clone(),
            message_id: e.message_id.clone(),
            raw_sha256: e.raw_sha256.clone(),
        }
    }
}

/// A list of held mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpamList {
    pub entries: Vec<SpamView>,
}

/// One blocklist entry, from the config or added at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    pub entry: String,
    /// `config` (spam.block) or `runtime` (the API, the CLI, `#block`).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::ticket::rfc3339_opt")]
    pub at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<u64>,
}

/// The whole blocklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocklist {
    pub entries: Vec<BlockView>,
}

/// What a blocklist change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockChanged {
    pub entry: String,
    /// False: nothing to do (it was there already).
    pub changed: bool,
}

impl Desk {
    /// Held mail, oldest first.
    pub fn spam(&self) -> Result<Vec<SpamView>, DeskError> {
        Ok(self.store().spam_entries()?.iter().map(SpamView::from).collect())
    }

    /// One held mail and its raw bytes (empty when the copy is gone).
    pub fn spam_entry(&self, id: u64) -> Result<Option<(SpamView, Vec<u8>)>, DeskError> {
        let store = self.store();
        let Some(e) = store.spam_entry(id)? else { return Ok(None) };
        let raw = store.raw(&e.raw_sha256)?.unwrap_or_default();
        Ok(Some((SpamView::from(&e), raw)))
    }

    /// Ingests the held mail as ordinary mail.
    pub async fn spam_release(&self, id: u64, actor: ActorRef) -> Result<RetryOutcome, DeskError> {
        self.ask(|reply| Job::SpamRelease { id, actor, reply }).await?
    }

    /// Forgets the held mail (it is not ingested again).
    pub async fn spam_drop(&self, id: u64, actor: ActorRef) -> Result<(), DeskError> {
        self.ask(|reply| Job::SpamDrop { id, actor, reply }).await?
    }

    /// The config's entries, then the run-time ones.
    pub fn blocklist(&self) -> Result<Vec<BlockView>, DeskError> {
        let mut out: Vec<BlockView> = self
            .config()
            .spam
            .block
            .iter()
            .map(|e| BlockView { entry: e.to_string(), source: "config".into(), by: None, at: None, ticket: None })
            .collect();
        for (entry, r) in self.store().block_records()? {
            if out.iter().any(|v| v.entry == entry) {
                continue;
            }
            out.push(BlockView { entry, source: "runtime".into(), by: Some(r.by), at: Some(r.at), ticket: r.ticket });
        }
        Ok(out)
    }

    /// Adds (`add`) or removes a run-time blocklist entry.
    pub async fn block(&self, entry: BlockEntry, add: bool, actor: ActorRef) -> Result<BlockChanged, DeskError> {
        let text = entry.to_string();
        let changed = self.ask(|reply| Job::Block { entry, add, actor, reply }).await??;
        Ok(BlockChanged { entry: text, changed })
    }
}
