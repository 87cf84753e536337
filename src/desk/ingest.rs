//! Mail into the desk: for each fetched message, parse → look up what the
//! store knows → [`decide`] → apply, inside the writer's unit of work.
//!
//! One message must never stop the desk. A panic is contained to its
//! message (quarantined with the reason), and a crash the process cannot
//! survive (stack overflow, abort, a kill while stuck) is caught on the
//! next start: after an unclean stop the first batch of each mailbox is
//! handled one message at a time, each marked in hand durably before the
//! work starts, and a message found in hand after [`POISON_DEATHS`] such
//! deaths is quarantined instead of read again.

use chrono::{DateTime, SubsecRound, Utc};
use tracing::{error, info, warn};

use super::Rules;
use super::apply::{Origin, apply};
use super::tx::Tx;
use super::writer::RetryOutcome;
use crate::health::Health;
use crate::mail::InboundMail;
use crate::store::{IngestRecord, Records, StoreError, Table, json, keys};
use crate::triage::{Decision, Effect, Outcome, Snapshot, ack_key, agent_notify_key, decide, notify_key};

/// Deaths with one message in hand (in careful mode) before it is
/// quarantined unread. Two: one crash may be bad luck (a kill, a power cut),
/// the same message in hand at two is the message.
pub const POISON_DEATHS: u32 = 2;

#[derive(Debug)]
pub enum Item {
    /// A fetched message.
    Mail { uid: u32, raw: Vec<u8> },
    /// Over `desk.max_message_bytes`: only its header was fetched.
    TooLarge { uid: u32, size: u64, header: Vec<u8> },
    /// Already read when ticketd first met the mailbox (`initial =
    /// "unseen"`): history, not work; only the cursor moves past it.
    Skip { uid: u32 },
    /// A fetched message and what rspamd said about it (`spam.rspamd_url`,
    /// asked before the writer: see `desk::spam::scan`).
    Scanned { uid: u32, raw: Vec<u8>, scan: crate::spam::ScanResult },
}

impl Item {
    pub fn uid(&self) -> u32 {
        match self {
            Item::Mail { uid, .. } | Item::TooLarge { uid, .. } | Item::Skip { uid } | Item::Scanned { uid, .. } => {
                *uid
            }
        }
    }
}

/// Live mail is answered; quiet mail (history being imported) is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Live,
    Quiet,
}

#[derive(Debug)]
pub struct BatchResult {
    /// Durable: safe for the post-action.
    pub done: Vec<u32>,
    /// Set when the batch stopped early; the rest must be fetched again.
    pub error: Option<String>,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b))
}

/// What identifies the content a person sees, for telling a second copy of
/// one mail from a different mail that reuses its Message-ID.
pub(super) fn content_of(mail: &InboundMail) -> &str {
    &mail.content_sha256
}

/// What [`lookup`] found: the snapshot for `decide` and the dedupe key this
/// mail is (or would be) recorded under.
pub(super) struct Lookup {
    pub(super) snap: Snapshot,
    pub(super) dedupe_key: String,
    pub(super) duplicate_of: Option<IngestRecord>,
}

/// Dedupe: a Message-ID seen before with the same content is a copy (a
/// re-fetch, a second mailbox, a resend); with different content it is a
/// different mail (ServiceNow and Jira reuse ids) and gets a key of its own.
fn dedupe(tx: &Tx<'_>, mail: &InboundMail) -> Result<(String, Option<IngestRecord>), StoreError> {
    let content = content_of(mail);
    let same = |r: &IngestRecord| r.content_sha256.as_deref().unwrap_or(&r.raw_sha256) == content;
    let Some(id) = &mail.message_id else {
        let key = format!("content:{content}");
        let dup = tx.ingested(key.as_bytes())?;
        return Ok((key, dup));
    };
    let first = format!("id:{}", crate::mail::normalise_id(id));
    match tx.ingested(first.as_bytes())? {
        None => Ok((first, None)),
        Some(r) if same(&r) => Ok((first, Some(r))),
        Some(_) => {
            let key = format!("{first}#{}", &content[..16.min(content.len())]);
            let dup = tx.ingested(key.as_bytes())?;
            Ok((key, dup))
        }
    }
}

pub(super) fn lookup(w: &Rules, tx: &Tx<'_>, mail: &InboundMail, now: DateTime<Utc>) -> Result<Lookup, StoreError> {
    let (dedupe_key, duplicate_of) = dedupe(tx, mail)?;
    // Which ids to ask about, and in which order, is triage's.
    let q = crate::triage::thread::questions(mail, &w.tokens, &w.cfg.desk.message_id_domain);
    let own_mail = match q.own_id {
        Some(id) => tx.our_mail(id)?.is_some(),
        None => false,
    };
    let mut by_thread = None;
    for id in &q.thread {
        if let Some(n) = tx.ticket_by_message_id(id)? {
            by_thread = tx.ticket(n)?;
            if by_thread.is_some() {
                break;
            }
        }
    }
    let by_token = match q.token {
        Some(n) if by_thread.as_ref().is_none_or(|t| t.number != n) => tx.ticket(n)?,
        _ => None,
    };
    // A merged ticket's mail goes to the ticket it was merged into.
    let mut merged_via = Vec::new();
    let by_thread = by_thread.map(|r| super::merge::follow(tx, r, &mut merged_via)).transpose()?;
    let by_token = by_token
        .map(|r| super::merge::follow(tx, r, &mut merged_via))
        .transpose()?
        .filter(|t| by_thread.as_ref().is_none_or(|b| b.number != t.number));
    let merge_into = match crate::triage::commands::merge_target(&mail.body) {
        Some(n) => tx.ticket(n)?,
        None => None,
    };
    let merge_chain = match &merge_into {
        Some(t) => super::merge::chain(tx, t)?,
        None => Vec::new(),
    };
    let sender = mail.from.as_ref().map(|f| f.address.as_str()).unwrap_or("");
    let recent = |key: &str| -> Result<u32, StoreError> { Ok(tx.recent(key)?.count(now)) };
    let target = by_thread.as_ref().or(by_token.as_ref()).map(|r| r.number);
    let bounced_mail = match q.bounced {
        Some(id) => tx.our_mail(id)?.map(|(_, e)| Box::new(e.mail)),
        None => None,
    };
    let mut parent_mail = None;
    for id in &q.ours {
        if let Some((_, e)) = tx.our_mail(id)? {
            parent_mail = Some(Box::new(e.mail));
            break;
        }
    }
    let snap = Snapshot {
        duplicate: duplicate_of.is_some(),
        dedupe_key: dedupe_key.clone(),
        by_thread,
        by_token,
        sender_client: tx.client(sender)?,
        next_client: tx.counter(keys::NEXT_CLIENT)?,
        next_ticket: tx.counter(keys::NEXT_TICKET)?,
        acks_last_hour: recent(&ack_key(sender))?,
        notifies_last_hour: match target {
            Some(n) => recent(&notify_key(n))?,
            None => 0,
        },
        agent_notifies_last_hour: w
            .cfg
            .agents
            .iter()
            .map(|a| Ok((a.id.clone(), recent(&agent_notify_key(&a.id))?)))
            .collect::<Result<_, StoreError>>()?,
        own_mail,
        parent_mail,
        bounced_mail,
        scan: None,
        blocked: super::spam::blocked(&w.cfg, tx, sender)?,
        released: false,
        merged_via,
        merge_into: merge_into.map(Box::new),
        merge_chain,
    };
    Ok(Lookup { snap, dedupe_key, duplicate_of })
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// One batch in the group's unit of work. Returns the UIDs handled, the
/// error that stopped the batch early (if any), and whether mail was queued.
pub(super) fn ingest_batch(
    rules: &Rules,
    health: &Health,
    tx: &mut Tx<'_>,
    mailbox: &str,
    uid_validity: u32,
    items: &[Item],
    mode: Mode,
) -> (Vec<u32>, Option<StoreError>, bool) {
    let mut done = Vec::with_capacity(items.len());
    let mut queued = false;
    for item in items {
        match ingest_one(rules, health, tx, mailbox, uid_validity, item, false, mode) {
            Ok(q) => {
                queued |= q;
                done.push(item.uid());
            }
            Err(e) => return (done, Some(e), queued),
        }
    }
    (done, None, queued)
}

/// A stored raw mail through ingest again, in the writer's unit of work: a
/// quarantine entry retried, or a held mail released (`released`: a person
/// let it past the door). The same parse, lookup, rules and effects as a
/// fetched mail, and the door's metrics counted the same way; only the
/// mailbox's cursor does not move. Returns what became of it and whether
/// mail was queued.
pub(super) fn reingest(
    rules: &Rules,
    health: &Health,
    tx: &mut Tx<'_>,
    mailbox: &str,
    uid: u32,
    raw: &[u8],
    released: bool,
) -> Result<(RetryOutcome, bool), StoreError> {
    let now = Utc::now().trunc_subsecs(0);
    let (quarantined, held) = (tx.counter(keys::NEXT_QUARANTINE)?, tx.counter(keys::NEXT_SPAM)?);
    let uid_validity = tx.cursor(mailbox)?.map(|c| c.uid_validity).unwrap_or(0);
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| InboundMail::parse(raw)));
    let (mail, decision, found_key) = match parsed {
        Ok(Ok(mail)) => {
            let mut found = lookup(rules, tx, &mail, now)?;
            found.snap.released = released;
            let ctx = rules.context(rules.mailbox(mailbox), false);
            let d = decide(&mail, &found.snap, &ctx, now);
            (Some(mail), d, Some(found.dedupe_key))
        }
        Ok(Err(e)) => (None, Decision::quarantine(format!("unparseable: {e}")), None),
        Err(panic) => {
            let what = panic_text(panic.as_ref());
            error!(mailbox, uid, panic = %what, "internal error while reading a message again: quarantined");
            (None, Decision::quarantine(format!("internal error while reading this message: {what}")), None)
        }
    };
    // Parsing hashed the bytes already.
    let raw_sha256 = mail.as_ref().map(|m| m.raw_sha256.clone()).unwrap_or_else(|| sha256_hex(raw));
    let origin = Origin {
        mailbox,
        uid_validity,
        uid,
        raw,
        dedupe_key: found_key.unwrap_or_else(|| format!("sha256:{raw_sha256}")),
        raw_sha256,
        content_sha256: mail.as_ref().map(|m| content_of(m).to_owned()),
        advance_cursor: false,
        clear_in_hand: false,
    };
    let queued = !apply(tx, Some(&origin), mail.as_ref(), &decision, now)?.is_empty();
    super::spam::count(health, &decision);
    let outcome = if tx.counter(keys::NEXT_QUARANTINE)? > quarantined {
        let q = tx.quarantined(quarantined)?.ok_or_else(|| StoreError::Corrupt {
            table: Table::Quarantine.name(),
            detail: format!("entry {quarantined} vanished"),
        })?;
        RetryOutcome::Quarantined { id: q.id, reason: q.reason }
    } else if tx.counter(keys::NEXT_SPAM)? > held {
        use crate::store::spam::SpamRecords as _;
        let e = tx.spam_entry(held)?.ok_or_else(|| StoreError::Corrupt {
            table: Table::Spam.name(),
            detail: format!("entry {held} vanished"),
        })?;
        RetryOutcome::Held { id: e.id, reason: e.reason }
    } else {
        RetryOutcome::Ingested { ticket: decision.saved().map(|r| r.number) }
    };
    Ok((outcome, queued))
}

/// A message that was in hand when ticketd died [`POISON_DEATHS`] times:
/// quarantined without being read again, so the mailbox goes on.
pub(super) fn quarantine_unread(
    health: &Health,
    tx: &mut Tx<'_>,
    mailbox: &str,
    uid_validity: u32,
    item: &Item,
    deaths: u32,
) -> Result<(), StoreError> {
    let uid = item.uid();
    error!(mailbox, uid, deaths, "a message keeps stopping ticketd: quarantined without reading it");
    let raw: &[u8] = match item {
        Item::Mail { raw, .. } | Item::TooLarge { header: raw, .. } | Item::Scanned { raw, .. } => raw,
        Item::Skip { .. } => &[],
    };
    let raw_sha256 = sha256_hex(raw);
    let origin = Origin {
        mailbox,
        uid_validity,
        uid,
        raw,
        dedupe_key: format!("poison:{raw_sha256}"),
        raw_sha256,
        content_sha256: None,
        advance_cursor: true,
        clear_in_hand: true,
    };
    let reason = format!(
        "ticketd stopped unexpectedly {deaths} times while handling this message; it is kept here unread so the mailbox can go on"
    );
    apply(tx, Some(&origin), None, &Decision::quarantine(reason), Utc::now().trunc_subsecs(0))?;
    health.count_message(mailbox, Outcome::Quarantined.code());
    Ok(())
}

/// One message into the unit of work: parse, look up, decide, apply.
/// Returns whether mail was queued (to wake the sender).
#[allow(clippy::too_many_arguments)]
pub(super) fn ingest_one(
    rules: &Rules,
    health: &Health,
    tx: &mut Tx<'_>,
    mailbox: &str,
    uid_validity: u32,
    item: &Item,
    clear_in_hand: bool,
    mode: Mode,
) -> Result<bool, StoreError> {
    // Whole seconds, as in the ticket object's examples.
    let now = Utc::now().trunc_subsecs(0);
    let quiet = mode == Mode::Quiet;
    let cfg = rules.cfg.clone();
    let mb = rules.mailbox(mailbox);
    let mut scan = None;
    let (uid, raw) = match item {
        Item::TooLarge { uid, size, header } => {
            let reason = format!(
                "message of {size} bytes is over desk.max_message_bytes ({}); only its header was kept",
                cfg.desk.max_message_bytes
            );
            let raw_sha256 = sha256_hex(header);
            let dedupe_key = format!("toolarge:{raw_sha256}");
            // Known only by its bytes: the same bytes again (an import
            // run twice, a mailbox read anew) are a copy.
            let decision = if tx.ingested(dedupe_key.as_bytes())?.is_some() {
                Decision::duplicate()
            } else {
                Decision::quarantine(reason)
            };
            let origin = Origin {
                mailbox,
                uid_validity,
                uid: *uid,
                raw: header,
                dedupe_key,
                raw_sha256,
                content_sha256: None,
                advance_cursor: true,
                clear_in_hand,
            };
            let sp = tx.savepoint();
            apply(tx, Some(&origin), None, &decision, now).inspect_err(|_| tx.rollback(sp))?;
            health.count_message(mailbox, decision.outcome.code());
            if decision.outcome == Outcome::Quarantined {
                warn!(mailbox, uid, size, "message too large: quarantined");
            }
            return Ok(false);
        }
        Item::Mail { uid, raw } => (*uid, raw.as_slice()),
        Item::Scanned { uid, raw, scan: s } => {
            scan = Some(s.clone());
            (*uid, raw.as_slice())
        }
        Item::Skip { uid } => {
            let mut cursor = match tx.cursor(mailbox)? {
                Some(c) if c.uid_validity == uid_validity => c,
                _ => crate::store::Cursor { uid_validity, last_uid: 0, acked_uid: Some(0), ..Default::default() },
            };
            cursor.last_uid = cursor.last_uid.max(*uid);
            // Nothing to do on IMAP for it either.
            cursor.acked_uid = Some(cursor.acked_uid.unwrap_or(0).max(*uid));
            tx.put(Table::Cursors, mailbox.as_bytes(), json(&cursor));
            if clear_in_hand {
                tx.delete(Table::Meta, keys::in_hand(mailbox));
            }
            health.count_message(mailbox, "skipped");
            return Ok(false);
        }
    };
    let sla = &cfg.sla;
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::failpoint::poison(raw);
        InboundMail::parse(raw).map(|mail| {
            let mut found = lookup(rules, tx, &mail, now)?;
            found.snap.scan = scan;
            let ctx = rules.context(mb, quiet);
            // History keeps its own dates (never later than now).
            let when = if quiet { mail.date.filter(|d| *d <= now).unwrap_or(now) } else { now };
            let mut d = decide(&mail, &found.snap, &ctx, when);
            if quiet {
                // Belt and braces: history sends nothing, whatever it decided.
                d.effects.retain(|e| {
                    !matches!(
                        e,
                        Effect::Send(_)
                            | Effect::CountAck { .. }
                            | Effect::CountNotify { .. }
                            | Effect::CountAgentNotify { .. }
                            | Effect::HoldForDigest { .. }
                    )
                });
                // Decided at the mail's date: what is already due is history.
                crate::triage::timers::history(&mut d, sla, now);
            }
            Ok::<_, StoreError>((mail, found, d))
        })
    }));
    let (mail, found, decision) = match read {
        Ok(Ok(Ok((mail, found, d)))) => (Some(mail), Some(found), d),
        Ok(Ok(Err(e))) => return Err(e),
        Ok(Err(e)) => (None, None, Decision::quarantine(format!("unparseable: {e}"))),
        Err(panic) => {
            let what = panic_text(panic.as_ref());
            error!(mailbox, uid, panic = %what, "internal error while reading a message: quarantined, the mailbox goes on");
            (None, None, Decision::quarantine(format!("internal error while reading this message: {what}")))
        }
    };
    // Parsing hashed the bytes already.
    let raw_sha256 = mail.as_ref().map(|m| m.raw_sha256.clone()).unwrap_or_else(|| sha256_hex(raw));
    let dedupe_key = match &found {
        Some(f) => f.dedupe_key.clone(),
        None => format!("sha256:{raw_sha256}"),
    };
    let decision =
        if found.is_none() && tx.ingested(dedupe_key.as_bytes())?.is_some() { Decision::duplicate() } else { decision };
    let origin = Origin {
        mailbox,
        uid_validity,
        uid,
        raw,
        raw_sha256,
        dedupe_key,
        content_sha256: mail.as_ref().map(|m| content_of(m).to_owned()),
        advance_cursor: true,
        clear_in_hand,
    };
    let sp = tx.savepoint();
    let queued = apply(tx, Some(&origin), mail.as_ref(), &decision, now).inspect_err(|_| tx.rollback(sp))?;
    crate::failpoint::hit("committed");
    let queued = !queued.is_empty();
    let message_id = mail.as_ref().and_then(|m| m.message_id.as_deref()).unwrap_or("");
    health.count_message(mailbox, decision.outcome.code());
    super::spam::count(health, &decision);
    match &decision.outcome {
        Outcome::Created { ticket, follow_up_of } => {
            info!(mailbox, uid, message_id, ticket, ?follow_up_of, "new ticket")
        }
        Outcome::Replied { ticket, agent } => info!(mailbox, uid, message_id, ticket, ?agent, "reply added"),
        Outcome::Rejected { ticket } => info!(mailbox, uid, message_id, ticket, "agent command rejected"),
        Outcome::Bounce { ticket } => info!(mailbox, uid, message_id, ticket, "bounce recorded"),
        Outcome::Quarantined => warn!(mailbox, uid, message_id, "message quarantined"),
        Outcome::Duplicate => {
            let first = found.as_ref().and_then(|f| f.duplicate_of.as_ref());
            info!(
                mailbox,
                uid,
                message_id,
                first_uid = first.map(|r| r.uid),
                ticket = first.and_then(|r| r.ticket),
                "skipped: a copy of a mail already ingested (same Message-ID and content)"
            )
        }
        Outcome::OwnMail => info!(mailbox, uid, message_id, "skipped: our own mail came back"),
        Outcome::Acted { ticket, .. } => info!(mailbox, uid, message_id, ticket, "changed"),
        Outcome::Held { source } => {
            info!(mailbox, uid, message_id, source = source.code(), "held for review (spam list)")
        }
    }
    Ok(queued)
}
