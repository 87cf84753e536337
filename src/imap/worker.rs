//! One task per mailbox owns its IMAP connection: connect, SELECT, fetch
//! everything past the UID cursor in batches, wait for ingest to make each
//! batch durable, then apply the post-action; IDLE (or poll) for more.

use std::time::Duration;

use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{ImapError, ImapSession, connect, timed};
use crate::config::{AfterAction, Initial, MailboxConfig};
use crate::desk::{Desk, Item, Mode};
use crate::health::LinkState;
use crate::store::{Cursor, Records};

/// IDLE is re-issued at least this often (RFC 2177 allows 29 minutes).
const IDLE_REISSUE: Duration = Duration::from_secs(300);

/// Capped exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap, attempt: 0 }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let capped = exp.min(self.cap);
        capped.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }
}

/// A batch handed to the writer whose answer is still to come.
struct InFlight {
    reply: tokio::sync::oneshot::Receiver<crate::desk::BatchResult>,
    /// UIDs skipped as history (ascending): no post-action for them.
    skipped: Vec<u32>,
}

/// What first contact decided about the mail that was already there.
#[derive(Debug, Clone, Copy, Default)]
struct FirstContact {
    skip_seen_until: Option<u32>,
    quiet_until: Option<u32>,
}

/// Worker connections, numbered from 1 (0 means "not a worker").
static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How often a login that keeps failing is mentioned again at WARN.
const LOGIN_REMINDER: Duration = Duration::from_secs(3600);

pub struct Worker {
    pub mb: MailboxConfig,
    pub desk: Desk,
    pub max_message_bytes: u64,
    pub shutdown: CancellationToken,
}

/// What the log last said about the mailbox: one line per change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    New,
    Up,
    Down,
    /// Connected fine, but the store refused the last batch.
    StoreWait,
}

enum Wake {
    Check,
    Shutdown,
}

impl Worker {
    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut link = Link::New;
        let health = self.desk.health().clone();
        let name = self.mb.name.clone();
        let owner = self.owner();
        // A login that keeps failing is an ERROR once, then a reminder now and then.
        let mut reminded = std::time::Instant::now();
        loop {
            health.beat(&owner, self.slack());
            health.link(&name, LinkState::Connecting, None, None);
            let result = self.session(&mut backoff, &mut link).await;
            let Err(e) = result else { break };
            if self.shutdown.is_cancelled() {
                break;
            }
            let mut delay = backoff.next_delay();
            let state = match &e {
                ImapError::Ingest(_) => LinkState::StoreWait,
                e if e.is_auth() => LinkState::LoginFailed,
                _ => LinkState::Down,
            };
            if let ImapError::Ingest(_) = e {
                delay = delay.min(Duration::from_secs(15));
            }
            health.link(&name, state, Some(e.to_string()), Some(delay));
            if link == Link::Down && e.is_auth() && reminded.elapsed() > LOGIN_REMINDER {
                reminded = std::time::Instant::now();
                warn!(mailbox = %self.mb.name, error = %e, "mailbox login still failing; retrying with backoff until fixed");
            }
            // One line per state change, not one per retry.
            if let ImapError::Ingest(_) = e {
                // The writer has logged it, once per state change; space
                // coming back should be noticed soon, not minutes later.
                link = Link::StoreWait;
                debug!(mailbox = %self.mb.name, error = %e, ?delay, "waiting for the store");
            } else if link != Link::Down {
                link = Link::Down;
                if e.is_auth() {
                    reminded = std::time::Instant::now();
                    error!(mailbox = %self.mb.name, error = %e, "mailbox login failed; retrying with backoff until fixed");
                } else {
                    warn!(mailbox = %self.mb.name, error = %e, "mailbox unavailable; reconnecting with backoff");
                }
            } else {
                debug!(mailbox = %self.mb.name, error = %e, ?delay, "still unavailable");
            }
            health.beat(&owner, delay + self.slack());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
        health.quiet(&owner);
        health.link(&name, LinkState::Stopped, None, None);
        debug!(mailbox = %self.mb.name, "worker stopped");
    }

    /// This worker's name for the watchdog (see [`crate::health::Health::beat`]).
    fn owner(&self) -> String {
        format!("imap worker {}", self.mb.name)
    }

    /// How long one step may take before the worker counts as stuck: a few
    /// IMAP round trips, each bounded by `timeout`, and the writer taking a
    /// batch.
    fn slack(&self) -> Duration {
        self.mb.timeout * 4 + Duration::from_secs(60)
    }

    async fn session(&self, backoff: &mut Backoff, link: &mut Link) -> Result<(), ImapError> {
        let mb = &self.mb;
        // Names this connection to the writer (see `Desk::submit`).
        let session = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut s = tokio::select! {
            r = connect(mb) => r?,
            _ = self.shutdown.cancelled() => return Ok(()),
        };
        let caps = timed("CAPABILITY", mb.timeout, s.capabilities()).await?;
        let can_idle = mb.idle && caps.has_str("IDLE");
        let can_move = caps.has_str("MOVE");
        let uidplus = caps.has_str("UIDPLUS");
        let selected = timed("SELECT", mb.timeout, s.select(&mb.folder)).await?;
        let uid_validity = selected.uid_validity.ok_or_else(|| ImapError::NoUidValidity(mb.folder.clone()))?;
        let store_err = |e: crate::store::StoreError| ImapError::Ingest(e.to_string());
        let desk_err = |e: crate::desk::DeskError| ImapError::Ingest(e.to_string());
        let cursor = match self.desk.store().cursor(&mb.name).map_err(store_err)? {
            Some(c) if c.uid_validity == uid_validity => c,
            Some(c) => {
                // The folder is new to us: what ticketd stored is a duplicate
                // by Message-ID and content, and read mail it never stored is
                // history (first contact skipped it, or a migration brought
                // it): answering it now would flood its senders.
                warn!(mailbox = %mb.name, old = c.uid_validity, new = uid_validity, "UIDVALIDITY changed: re-reading the folder's unread mail; Message-ID and content dedupe prevent duplicates, read mail is skipped as history");
                let top = self.top_uid(&mut s, selected.uid_next).await?;
                let c = Cursor {
                    uid_validity,
                    last_uid: 0,
                    acked_uid: Some(0),
                    skip_seen_until: Some(top),
                    ..Default::default()
                };
                self.desk.set_cursor(&mb.name, c).await.map_err(desk_err)?;
                c
            }
            None => {
                let c = self.first_contact(&mut s, uid_validity, selected.uid_next, selected.exists).await?;
                self.desk.set_cursor(&mb.name, c).await.map_err(desk_err)?;
                c
            }
        };
        let first = FirstContact { skip_seen_until: cursor.skip_seen_until, quiet_until: cursor.quiet_until };
        let (mut last_uid, acked_uid) = (cursor.last_uid, cursor.acked_uid.unwrap_or(cursor.last_uid));
        match *link {
            Link::New => info!(mailbox = %mb.name, folder = %mb.folder, idle = can_idle, "connected"),
            Link::Down => info!(mailbox = %mb.name, "mailbox reachable again"),
            Link::Up | Link::StoreWait => debug!(mailbox = %mb.name, "reconnected"),
        }
        if *link != Link::StoreWait {
            backoff.reset();
        }
        let post = PostAction { after: mb.after, move_to: mb.move_to.clone(), can_move, uidplus, timeout: mb.timeout };
        if acked_uid < last_uid {
            // A crash between commit and post-action left stored mail unmarked.
            let leftover = uids_in(&mut s, &format!("{}:{last_uid}", acked_uid + 1), mb.timeout).await?;
            let leftover: Vec<u32> = leftover.into_iter().filter(|u| *u > acked_uid && *u <= last_uid).collect();
            if !leftover.is_empty() {
                info!(mailbox = %mb.name, count = leftover.len(), "finishing post-actions interrupted before");
                self.may_act()?;
                post.apply(&mut s, &leftover).await?;
            }
            self.desk.acked(&mb.name, uid_validity, last_uid).await.map_err(desk_err)?;
        }
        let health = self.desk.health();
        let owner = self.owner();
        loop {
            health.beat(&owner, self.slack());
            health.link(&mb.name, LinkState::Fetching, None, None);
            last_uid = self.fetch_new(&mut s, uid_validity, last_uid, &post, first, session).await?;
            health.fetched(&mb.name);
            health.link(&mb.name, LinkState::Idle, None, None);
            if *link != Link::Up {
                *link = Link::Up;
                backoff.reset();
            }
            if self.shutdown.is_cancelled() {
                let _ = timed("LOGOUT", mb.timeout, s.logout()).await;
                return Ok(());
            }
            let wait = if can_idle { self.mb.poll_interval.min(IDLE_REISSUE) } else { self.mb.poll_interval };
            health.beat(&owner, wait + self.slack());
            let (next, wake) = if can_idle { self.idle(s).await? } else { self.poll(s).await? };
            s = next;
            if let Wake::Shutdown = wake {
                let _ = timed("LOGOUT", mb.timeout, s.logout()).await;
                return Ok(());
            }
        }
    }

    /// The highest UID in the selected folder now.
    async fn top_uid(&self, s: &mut ImapSession, uid_next: Option<u32>) -> Result<u32, ImapError> {
        Ok(match uid_next {
            Some(n) => n.saturating_sub(1),
            // No UIDNEXT in the SELECT answer: the highest UID there is.
            None => uids_in(s, "1:*", self.mb.timeout).await?.last().copied().unwrap_or(0),
        })
    }

    /// No cursor yet: what the mail already in the folder is, by `initial`.
    async fn first_contact(
        &self,
        s: &mut ImapSession,
        uid_validity: u32,
        uid_next: Option<u32>,
        exists: u32,
    ) -> Result<Cursor, ImapError> {
        let mb = &self.mb;
        let top = self.top_uid(s, uid_next).await?;
        let mut c = Cursor { uid_validity, last_uid: 0, acked_uid: Some(0), ..Default::default() };
        match mb.initial {
            Initial::New => {
                c.last_uid = top;
                c.acked_uid = Some(top);
            }
            Initial::Unseen => c.skip_seen_until = Some(top),
            Initial::Import => c.quiet_until = Some(top),
        }
        info!(mailbox = %mb.name, messages = exists, initial = ?mb.initial, "first contact with this mailbox: {}", mb.initial.describe());
        Ok(c)
    }

    /// Fetches and ingests everything past `last_uid`; returns the new cursor.
    async fn fetch_new(
        &self,
        s: &mut ImapSession,
        uid_validity: u32,
        mut last_uid: u32,
        post: &PostAction,
        first: FirstContact,
        session: u64,
    ) -> Result<u32, ImapError> {
        let mb = &self.mb;
        let skip_until = first.skip_seen_until.filter(|u| *u > last_uid);
        let (listed, seen) = list_sizes(s, last_uid, skip_until.is_some(), mb.timeout).await?;
        if listed.is_empty() {
            return Ok(last_uid);
        }
        debug!(mailbox = %mb.name, count = listed.len(), "new messages");
        // History (`initial`) and live mail never share a batch: one is quiet.
        let split = first.quiet_until.map_or(0, |q| listed.partition_point(|(u, _)| *u <= q));
        let (quiet, live) = listed.split_at(split);
        let mut runs: Vec<(&[(u32, u64)], Mode)> = Vec::new();
        for chunk in batches(quiet, mb.batch_size as usize, BATCH_BYTES, self.max_message_bytes) {
            runs.push((chunk, Mode::Quiet));
        }
        for chunk in batches(live, mb.batch_size as usize, BATCH_BYTES, self.max_message_bytes) {
            runs.push((chunk, Mode::Live));
        }
        let mut inflight: Option<InFlight> = None;
        let mut post_due: Vec<u32> = Vec::new();
        for (chunk, mode) in runs {
            self.desk.health().beat(&self.owner(), self.slack());
            let is_history = |u: &u32| skip_until.is_some_and(|s| *u <= s) && seen.binary_search(u).is_ok();
            let (skipped, chunk): (Vec<_>, Vec<_>) = chunk.iter().copied().partition(|(u, _)| is_history(u));
            let (small, large): (Vec<_>, Vec<_>) = chunk.iter().partition(|(_, size)| *size <= self.max_message_bytes);
            let mut items: Vec<Item> = skipped.iter().map(|(uid, _)| Item::Skip { uid: *uid }).collect();
            if !small.is_empty() {
                let set = uid_set(small.iter().map(|(u, _)| *u));
                let started = std::time::Instant::now();
                let fetched = fetch(s, &set, "(UID BODY.PEEK[])", mb.timeout).await?;
                tracing::trace!(count = fetched.len(), us = started.elapsed().as_micros() as u64, "fetched");
                if fetched.len() < small.len() {
                    // A short answer may be a silent NO or a clean EOF. Moving the
                    // cursor past a message that still exists would lose it.
                    let missing: Vec<u32> =
                        small.iter().map(|(u, _)| *u).filter(|u| !fetched.iter().any(|(f, _)| f == u)).collect();
                    let still_there = uids_in(s, &uid_set(missing.iter().copied()), mb.timeout).await?;
                    // An empty answer proves nothing on a dead connection.
                    timed("NOOP", mb.timeout, s.run_command_and_check_ok("NOOP")).await?;
                    if still_there.iter().any(|u| missing.contains(u)) {
                        return Err(ImapError::ShortFetch { asked: small.len(), got: fetched.len() });
                    }
                    debug!(mailbox = %mb.name, ?missing, "messages expunged before they could be fetched");
                }
                items.extend(fetched.into_iter().map(|(uid, raw)| Item::Mail { uid, raw }));
            }
            if !large.is_empty() {
                let set = uid_set(large.iter().map(|(u, _)| *u));
                let headers = fetch(s, &set, "(UID BODY.PEEK[HEADER])", mb.timeout).await?;
                for (uid, header) in headers {
                    let size = large.iter().find(|(u, _)| *u == uid).map(|(_, s)| *s).unwrap_or(0);
                    items.push(Item::TooLarge { uid, size, header });
                }
            }
            crate::failpoint::hit("fetched");
            items.sort_by_key(Item::uid);
            // rspamd is asked here, not by the writer (whose thread does no
            // network I/O); history is not live mail and is not scanned.
            if mode == Mode::Live
                && let Some(scanner) = crate::spam::Scanner::from_config(&self.desk.config().spam, &mb.address)
            {
                items = crate::desk::spam::scan(items, &scanner, self.desk.health()).await;
            }
            // Queued behind the previous batch, so the writer goes straight
            // on to it while the previous one is marked processed on IMAP.
            // Bounded: when the writer is busy the worker waits; nothing is dropped.
            let reply = self
                .desk
                .submit(&mb.name, uid_validity, items, mode, session)
                .await
                .map_err(|e| ImapError::Ingest(e.to_string()))?;
            let next = InFlight { reply, skipped: skipped.iter().map(|(u, _)| *u).collect() };
            if let Some(prev) = inflight.replace(next) {
                last_uid = self.finish(s, uid_validity, last_uid, post, prev, &mut post_due).await?;
                if post_due.len() >= POST_ACTION_UIDS {
                    self.post_actions(s, uid_validity, last_uid, post, &mut post_due).await?;
                }
                if self.shutdown.is_cancelled() {
                    break;
                }
            }
        }
        if let Some(prev) = inflight.take() {
            last_uid = self.finish(s, uid_validity, last_uid, post, prev, &mut post_due).await?;
        }
        self.post_actions(s, uid_validity, last_uid, post, &mut post_due).await?;
        Ok(last_uid)
    }

    /// Waits for a batch to be durable; its post-actions join `post_due`.
    /// On an error the stored part of the batch still counts (the cursor
    /// is past it) and its post-actions are finished on reconnect.
    async fn finish(
        &self,
        s: &mut ImapSession,
        uid_validity: u32,
        mut last_uid: u32,
        post: &PostAction,
        f: InFlight,
        post_due: &mut Vec<u32>,
    ) -> Result<u32, ImapError> {
        let started = std::time::Instant::now();
        let result = f.reply.await.map_err(|_| ImapError::Ingest("the desk is stopping".into()))?;
        tracing::trace!(us = started.elapsed().as_micros() as u64, "waited for the writer");
        // Skipped history keeps its flags and its folder.
        post_due.extend(result.done.iter().copied().filter(|u| f.skipped.binary_search(u).is_err()));
        last_uid = last_uid.max(result.done.iter().copied().max().unwrap_or(0));
        match result.error {
            Some(e) => {
                // What was stored is marked now, as far as the link allows.
                let _ = self.post_actions(s, uid_validity, last_uid, post, post_due).await;
                Err(ImapError::Ingest(e))
            }
            None => Ok(last_uid),
        }
    }

    /// Marks stored mail processed on IMAP (`after`), then tells the desk
    /// that everything up to `last_uid` is done. Consecutive batches share
    /// one command: on a large Maildir folder every STORE costs the server
    /// a rescan of the folder, and one per batch of 50 made Dovecot, not
    /// ticketd, the limit at 20,000 messages. Delaying is safe: the mail is
    /// durable already, and until `acked` moves, a restart redoes the
    /// (idempotent) post-actions.
    async fn post_actions(
        &self,
        s: &mut ImapSession,
        uid_validity: u32,
        last_uid: u32,
        post: &PostAction,
        post_due: &mut Vec<u32>,
    ) -> Result<(), ImapError> {
        if !post_due.is_empty() {
            self.may_act()?;
            let started = std::time::Instant::now();
            post.apply(s, post_due).await?;
            tracing::trace!(count = post_due.len(), us = started.elapsed().as_micros() as u64, "post-action done");
            post_due.clear();
            crate::failpoint::hit("post-action");
        }
        self.desk.acked(&self.mb.name, uid_validity, last_uid).await.map_err(|e| ImapError::Ingest(e.to_string()))
    }

    /// The guard right before a post-action: in a cluster whose lease is in
    /// doubt, stored mail stays unmarked (it is marked once the lease is
    /// confirmed, or by the next leader, from the cursor's `acked_uid`).
    fn may_act(&self) -> Result<(), ImapError> {
        if self.desk.may_act() {
            return Ok(());
        }
        Err(ImapError::Ingest("this node's lease is in doubt: post-actions wait".into()))
    }

    async fn idle(&self, s: ImapSession) -> Result<(ImapSession, Wake), ImapError> {
        use async_imap::extensions::idle::IdleResponse;
        let limit = self.mb.timeout;
        let mut h = s.idle();
        timed("IDLE", limit, h.init()).await?;
        // Re-issued well before the 29-minute limit: half-open connections
        // are noticed sooner, and the poll interval stays a fallback.
        let wait_for = self.mb.poll_interval.min(IDLE_REISSUE);
        let (fut, stop) = h.wait_with_timeout(wait_for);
        let outcome = tokio::select! {
            r = fut => Some(r?),
            _ = self.shutdown.cancelled() => None,
        };
        drop(stop);
        if let Some(IdleResponse::ManualInterrupt) = outcome {
            return Err(ImapError::Closed);
        }
        let s = timed("DONE", limit, h.done()).await?;
        Ok((s, if outcome.is_some() { Wake::Check } else { Wake::Shutdown }))
    }

    async fn poll(&self, mut s: ImapSession) -> Result<(ImapSession, Wake), ImapError> {
        tokio::select! {
            _ = tokio::time::sleep(self.mb.poll_interval) => {}
            _ = self.shutdown.cancelled() => return Ok((s, Wake::Shutdown)),
        }
        timed("NOOP", self.mb.timeout, s.run_command_and_check_ok("NOOP")).await?;
        Ok((s, Wake::Check))
    }
}

struct PostAction {
    after: AfterAction,
    move_to: Option<String>,
    can_move: bool,
    uidplus: bool,
    timeout: Duration,
}

impl PostAction {
    async fn apply(&self, s: &mut ImapSession, uids: &[u32]) -> Result<(), ImapError> {
        let set = uid_set(uids.iter().copied());
        let t = self.timeout;
        match self.after {
            AfterAction::Seen => store_flags(s, &set, "+FLAGS.SILENT (\\Seen)", t).await,
            AfterAction::Move => {
                let folder = self.move_to.as_deref().unwrap_or("Processed");
                if self.can_move {
                    match timed("UID MOVE", t, s.uid_mv(&set, folder)).await {
                        Err(e) if e.is_no() => {
                            // Folder missing: create it once and retry.
                            let _ = timed("CREATE", t, s.create(folder)).await;
                            timed("UID MOVE", t, s.uid_mv(&set, folder)).await
                        }
                        r => r,
                    }
                } else {
                    if timed("UID COPY", t, s.uid_copy(&set, folder)).await.is_err() {
                        let _ = timed("CREATE", t, s.create(folder)).await;
                        timed("UID COPY", t, s.uid_copy(&set, folder)).await?;
                    }
                    self.delete(s, &set).await
                }
            }
            AfterAction::Delete => self.delete(s, &set).await,
        }
    }

    async fn delete(&self, s: &mut ImapSession, set: &str) -> Result<(), ImapError> {
        let t = self.timeout;
        store_flags(s, set, "+FLAGS.SILENT (\\Deleted)", t).await?;
        if self.uidplus {
            let fut = async { s.uid_expunge(set).await?.try_collect::<Vec<_>>().await };
            timed("UID EXPUNGE", t, fut).await?;
        } else {
            let fut = async { s.expunge().await?.try_collect::<Vec<_>>().await };
            timed("EXPUNGE", t, fut).await?;
        }
        Ok(())
    }
}

async fn store_flags(s: &mut ImapSession, set: &str, flags: &str, t: Duration) -> Result<(), ImapError> {
    let fut = async { s.uid_store(set, flags).await?.try_collect::<Vec<_>>().await };
    timed("UID STORE", t, fut).await?;
    Ok(())
}

/// Post-actions wait until this many stored messages share one command
/// (or the folder has nothing more to fetch).
const POST_ACTION_UIDS: usize = 500;

/// A batch holds at most this many bytes of message bodies (one larger
/// message still goes alone): memory stays bounded whatever arrives (two
/// batches are in hand at once: one fetched, one being committed).
const BATCH_BYTES: u64 = 8 << 20;

/// Splits `(uid, size)` pairs into consecutive batches of at most `count`
/// messages and `bytes` bytes. Messages over `max_message` are fetched as
/// headers only, so they count for nothing.
pub fn batches(listed: &[(u32, u64)], count: usize, bytes: u64, max_message: u64) -> Vec<&[(u32, u64)]> {
    let mut out = Vec::new();
    let (mut start, mut total) = (0, 0u64);
    for (i, (_, size)) in listed.iter().enumerate() {
        let size = if *size > max_message { 0 } else { *size };
        if i > start && (i - start >= count.max(1) || total + size > bytes) {
            out.push(&listed[start..i]);
            start = i;
            total = 0;
        }
        total += size;
    }
    if start < listed.len() {
        out.push(&listed[start..]);
    }
    out
}

/// `1,2,3,7` → `1:3,7`.
pub fn uid_set(uids: impl Iterator<Item = u32>) -> String {
    let mut v: Vec<u32> = uids.collect();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        out.push(if start == end { start.to_string() } else { format!("{start}:{end}") });
        i += 1;
    }
    out.join(",")
}

/// UIDs above `last_uid` with their RFC822.SIZE, ascending.
/// UIDs above `last_uid` with their RFC822.SIZE, ascending, and the UIDs
/// among them already `\Seen` (asked only when `flags`). Read as a stream:
/// only the numbers are kept, not the server's responses.
async fn list_sizes(
    s: &mut ImapSession,
    last_uid: u32,
    flags: bool,
    t: Duration,
) -> Result<(Vec<(u32, u64)>, Vec<u32>), ImapError> {
    let set = format!("{}:*", last_uid.saturating_add(1));
    let query = if flags { "(UID RFC822.SIZE FLAGS)" } else { "(UID RFC822.SIZE)" };
    let fut = async {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut stream = s.uid_fetch(&set, query).await?;
        while let Some(f) = stream.try_next().await? {
            // `N:*` always matches the highest UID, even below N.
            let Some(uid) = f.uid.filter(|u| *u > last_uid) else { continue };
            out.push((uid, f.size.unwrap_or(0) as u64));
            if flags && f.flags().any(|fl| matches!(fl, async_imap::types::Flag::Seen)) {
                seen.push(uid);
            }
        }
        Ok::<_, async_imap::error::Error>((out, seen))
    };
    let (mut out, mut seen) = timed("UID FETCH sizes", t, fut).await?;
    out.sort_unstable();
    out.dedup_by_key(|(u, _)| *u);
    seen.sort_unstable();
    Ok((out, seen))
}

async fn uids_in(s: &mut ImapSession, set: &str, t: Duration) -> Result<Vec<u32>, ImapError> {
    let fut = async {
        let stream = s.uid_fetch(set, "(UID)").await?;
        stream.try_collect::<Vec<_>>().await
    };
    let mut v: Vec<u32> = timed("UID FETCH", t, fut).await?.iter().filter_map(|f| f.uid).collect();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Bodies of `set`, ascending by UID. Streamed: each server response is
/// dropped as soon as its body is copied out.
async fn fetch(s: &mut ImapSession, set: &str, query: &str, t: Duration) -> Result<Vec<(u32, Vec<u8>)>, ImapError> {
    let fut = async {
        let mut out = Vec::new();
        let mut stream = s.uid_fetch(set, query).await?;
        while let Some(f) = stream.try_next().await? {
            if let (Some(uid), Some(body)) = (f.uid, f.body().or_else(|| f.header())) {
                out.push((uid, body.to_vec()));
            }
        }
        Ok::<_, async_imap::error::Error>(out)
    };
    let mut out = timed("UID FETCH", t, fut).await?;
    out.sort_by_key(|(u, _)| *u);
    out.dedup_by_key(|(u, _)| *u);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_bound_count_and_bytes() {
        let l: Vec<(u32, u64)> = (1..=7).map(|u| (u, 10)).collect();
        let sizes = |b: Vec<&[(u32, u64)]>| b.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&l, 3, 1000, 1000)), vec![3, 3, 1]);
        assert_eq!(sizes(batches(&l, 50, 25, 1000)), vec![2, 2, 2, 1]);
        let big = vec![(1, 10), (2, 500), (3, 10), (4, 5000)];
        assert_eq!(
            sizes(batches(&big, 50, 100, 1000)),
            vec![1, 1, 2],
            "a big one goes alone; an oversized one is free"
        );
        assert!(batches(&[], 5, 5, 5).is_empty());
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set([3, 1, 2, 7, 9, 8, 12].into_iter()), "1:3,7:9,12");
        assert_eq!(uid_set(std::iter::once(5)), "5");
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(delays[7] >= Duration::from_secs(5), "reaches the cap (with at most 50% jitter)");
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
