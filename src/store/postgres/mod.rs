//! The PostgreSQL backend: the store's tables and blobs in one database
//! that several ticketd nodes share, exactly one of them writing.
//!
//! Reads go through a small pool ([`PgSettings::readers`] connections);
//! commits through a pool of one (the desk's writer is one thread). Both
//! are driven by a runtime of the store's own, so the synchronous
//! [`Backend`] calls are safe from any thread, async tasks included (see
//! [`conn`]).
//!
//! A commit is one transaction of at most seven statements, whatever the
//! size of the write set, in three round trips: `BEGIN`; then, pipelined,
//! `ticketd_fence(epoch)` (see [`schema`]), one `DELETE … USING unnest(…)`
//! for the removed records, one `INSERT … SELECT FROM unnest(…) ON
//! CONFLICT DO UPDATE` for the written ones, one statement that removes
//! deleted blobs and one that stores new blobs' headers and pieces; then
//! `COMMIT`. Ops are collapsed to the last one per key first (an `INSERT …
//! ON CONFLICT` may not touch a row twice), blobs to the last one per name.
//!
//! Only a node that holds the lease commits: [`PostgresBackend::lead`]
//! hands the backend a [`lease::Lease`], whose epoch every commit then
//! carries into the fence. Without one, or once another node raised the
//! epoch, a commit is refused with [`StoreError::Fenced`] and writes
//! nothing.
//!
//! Outcomes: an error before `COMMIT` was sent means nothing was written
//! (one such error from a connection that turned out dead is retried once
//! on a fresh one); losing the connection while waiting for `COMMIT`'s
//! answer is [`StoreError::InDoubt`]: the writer must treat the commit as
//! not done (no IMAP post-action, no SMTP send for it) and may replay it,
//! which is a no-op if it landed (the write set is the same bytes, and the
//! desk's replays are deduplicated anyway).

pub mod conn;
pub mod lease;
pub mod probe;
pub mod schema;

#[cfg(test)]
pub mod lab;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use tokio_postgres::types::ToSql;

pub use conn::{PgSettings, Role};
pub use lease::{Deposed, HeartbeatError, LeaderInfo, Lease};

use self::conn::{connection_lost, pool_error, store_error, timed_out, wait};
use super::{Backend, BlobKind, BlobWrite, Entries, Get, Scan, StoreError, Table, WriteSet, verify_blob};

/// The id a table is stored under. Never renumber.
fn table_id(t: Table) -> i16 {
    match t {
        Table::Meta => 1,
        Table::Tickets => 2,
        Table::MessageIds => 3,
        Table::Ingested => 4,
        Table::Clients => 5,
        Table::Cursors => 6,
        Table::Outbox => 7,
        Table::Sent => 8,
        Table::OutboxIds => 9,
        Table::Acks => 10,
        Table::Quarantine => 11,
        Table::OutboxDue => 12,
        Table::OutboxTickets => 13,
        Table::Attachments => 14,
        Table::Digests => 15,
        Table::Spam => 20,
        Table::Blocklist => 21,
        Table::Timers => 16,
        Table::Summaries => 17,
        Table::ClientInfo => 18,
        Table::Sessions => 19,
    }
}

fn kind_id(k: BlobKind) -> i16 {
    match k {
        BlobKind::Raw => 1,
        BlobKind::Attachment => 2,
    }
}

/// Rows a scan fetches per round trip.
const PAGE: usize = 256;

pub(crate) struct Shared {
    pub(crate) settings: PgSettings,
    pub(crate) readers: deadpool_postgres::Pool,
    writer: deadpool_postgres::Pool,
    lease: RwLock<Option<Lease>>,
    /// Commits refused because this node's epoch was not (or no longer) current.
    fence_refusals: std::sync::atomic::AtomicU64,
}

/// See the module note.
pub struct PostgresBackend {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("settings", &self.shared.settings)
            .field("epoch", &self.epoch())
            .finish()
    }
}

type Reader = deadpool_postgres::Object;

/// Runs a read on a pooled connection, once more on a fresh one when the
/// first turned out dead (a restarted server, a session ended), within the
/// settings' time bound.
async fn read<T, F>(shared: &Shared, what: &'static str, f: F) -> Result<T, StoreError>
where
    F: for<'c> Fn(&'c Reader) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
{
    let limit = shared.settings.op_timeout();
    let attempt = async {
        let mut tries = 0;
        loop {
            tries += 1;
            let c = shared.readers.get().await.map_err(|e| pool_error(what, e))?;
            match f(&c).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let lost = connection_lost(&e);
                    // Never back to the pool: it may be dead or mid-answer.
                    drop(deadpool_postgres::Object::take(c));
                    if !(lost && tries < 2) {
                        return Err(store_error(what, e));
                    }
                }
            }
        }
    };
    tokio::time::timeout(limit, attempt).await.unwrap_or_else(|_| Err(timed_out(what, limit)))
}

impl PostgresBackend {
    /// Connects, and creates or migrates the schema. The backend reads
    /// from the start; it commits only once it [leads](Self::lead).
    pub fn open(settings: PgSettings) -> Result<PostgresBackend, StoreError> {
        let readers = settings.pool(Role::Read, settings.readers)?;
        let writer = settings.pool(Role::Writer, 1)?;
        let s = settings.clone();
        wait(async move {
            let limit = s.op_timeout();
            let go = async {
                let mut c = s.connect(Role::Writer).await.map_err(|e| store_error("opening the database", e))?;
                schema::migrate(&mut c.client).await.map_err(|e| match e {
                    schema::MigrateError::Db(e) => store_error("creating the schema", e),
                    schema::MigrateError::Newer(v) => StoreError::Backend(format!(
                        "the database's schema is version {v}, newer than this ticketd knows ({}): upgrade ticketd",
                        schema::VERSION
                    )),
                })
            };
            tokio::time::timeout(limit, go).await.unwrap_or_else(|_| Err(timed_out("opening the database", limit)))
        })??;
        Ok(PostgresBackend {
            shared: Arc::new(Shared {
                settings,
                readers,
                writer,
                lease: RwLock::new(None),
                fence_refusals: Default::default(),
            }),
        })
    }

    pub fn settings(&self) -> &PgSettings {
        &self.shared.settings
    }

    /// Commits carry this lease's epoch from now on.
    pub fn lead(&self, lease: Lease) {
        *self.shared.lease.write().unwrap_or_else(|e| e.into_inner()) = Some(lease);
    }

    /// Stops committing and hands back the lease (drop it to let go of
    /// the lock at once).
    pub fn step_down(&self) -> Option<Lease> {
        self.shared.lease.write().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The epoch commits carry, when this node leads.
    pub fn epoch(&self) -> Option<u64> {
        self.shared.lease.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|l| l.epoch())
    }

    /// Commits refused so far because this node did not hold the current
    /// epoch: by the database's fence, or before asking it (no lease).
    pub fn fence_refusals(&self) -> u64 {
        self.shared.fence_refusals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The lease this backend commits under, if any (a clone: the lease
    /// lives while any clone does).
    pub fn lease(&self) -> Option<Lease> {
        self.shared.lease.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl PostgresBackend {
    fn commit_planned(&self, writes: WriteSet, notes: Vec<String>) -> Result<(), StoreError> {
        let Some(epoch) = self.epoch() else {
            return Err(StoreError::Fenced(format!(
                "node {} does not hold the lease (a standby does not write)",
                self.shared.settings.node
            )));
        };
        for b in &writes.blobs {
            if let BlobWrite::Put { kind, sha256, bytes } = b {
                verify_blob(*kind, sha256, bytes)?;
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let mut plan = Plan::of(writes);
        let node = &self.shared.settings.node;
        plan.notes = notes.into_iter().map(|n| format!("{node}\n{n}")).collect();
        let shared = self.shared.clone();
        let epoch = i64::try_from(epoch).map_err(|_| StoreError::Internal("epoch out of range".into()))?;
        wait(async move {
            let mut tries = 0;
            loop {
                tries += 1;
                match commit_once(&shared, epoch, &plan).await {
                    Ok(()) => return Ok(()),
                    Err(Failed::Before(e, lost)) if lost && tries < 2 => {
                        tracing::debug!(error = %e, "a commit met a dead connection before COMMIT; once more on a fresh one");
                    }
                    Err(Failed::Before(e, _)) => return Err(e),
                    Err(Failed::AtCommit(detail)) => return Err(StoreError::InDoubt(detail)),
                }
            }
        })?
    }
}

impl Get for PostgresBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (shared, key, t) = (self.shared.clone(), key.to_vec(), table_id(table));
        wait(async move {
            read(&shared, "reading a record", |c| {
                let key = key.clone();
                Box::pin(async move {
                    let st = c.prepare_cached("SELECT v FROM ticketd_records WHERE tbl = $1 AND k = $2").await?;
                    Ok(c.query_opt(&st, &[&t, &key]).await?.map(|r| r.get::<_, Vec<u8>>(0)))
                })
            })
            .await
        })?
    }
}

/// A keyset-paged scan: each page is one query that starts after the last
/// key seen, so nothing stays open between calls to `next`.
struct PgScan {
    shared: Arc<Shared>,
    tbl: i16,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    reverse: bool,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

/// The smallest key after every key with this prefix (none for an empty
/// prefix or one of 0xff bytes only).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(b) = end.pop() {
        if b != 0xff {
            end.push(b + 1);
            return Some(end);
        }
    }
    None
}

impl PgScan {
    fn new(shared: Arc<Shared>, table: Table, scan: Scan) -> PgScan {
        let start = if scan.prefix.is_empty() { Bound::Unbounded } else { Bound::Included(scan.prefix.clone()) };
        let end = successor(&scan.prefix).map_or(Bound::Unbounded, Bound::Excluded);
        let (lower, upper) = match scan.after {
            Some(a) if !scan.reverse => (Bound::Excluded(a), end),
            Some(a) => (start, Bound::Excluded(a)),
            None => (start, end),
        };
        PgScan { shared, tbl: table_id(table), lower, upper, reverse: scan.reverse, buf: VecDeque::new(), done: false }
    }

    fn fetch(&mut self) -> Result<(), StoreError> {
        let mut sql = String::from("SELECT k, v FROM ticketd_records WHERE tbl = $1");
        let mut bounds: Vec<Vec<u8>> = Vec::new();
        for (bound, incl, excl) in [(&self.lower, ">=", ">"), (&self.upper, "<=", "<")] {
            let op = match bound {
                Bound::Included(k) => Some((incl, k)),
                Bound::Excluded(k) => Some((excl, k)),
                Bound::Unbounded => None,
            };
            if let Some((op, k)) = op {
                bounds.push(k.clone());
                sql.push_str(&format!(" AND k {op} ${}", bounds.len() + 1));
            }
        }
        sql.push_str(if self.reverse { " ORDER BY k DESC" } else { " ORDER BY k" });
        sql.push_str(&format!(" LIMIT {PAGE}"));
        let (shared, t) = (self.shared.clone(), self.tbl);
        let rows: Vec<(Vec<u8>, Vec<u8>)> = wait(async move {
            read(&shared, "scanning records", |c| {
                let (sql, bounds) = (sql.clone(), bounds.clone());
                Box::pin(async move {
                    let st = c.prepare_cached(&sql).await?;
                    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&t];
                    params.extend(bounds.iter().map(|b| b as &(dyn ToSql + Sync)));
                    let rows = c.query(&st, &params).await?;
                    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
                })
            })
            .await
        })??;
        if rows.len() < PAGE {
            self.done = true;
        }
        if let Some((last, _)) = rows.last() {
            if self.reverse {
                self.upper = Bound::Excluded(last.clone());
            } else {
                self.lower = Bound::Excluded(last.clone());
            }
        }
        self.buf.extend(rows);
        Ok(())
    }
}

impl Iterator for PgScan {
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty()
            && !self.done
            && let Err(e) = self.fetch()
        {
            self.done = true;
            return Some(Err(e));
        }
        self.buf.pop_front().map(Ok)
    }
}

/// A write set collapsed to the last op per key and per blob, as the
/// arrays the batched statements bind.
#[derive(Default)]
struct Plan {
    del_t: Vec<i16>,
    del_k: Vec<Vec<u8>>,
    put_t: Vec<i16>,
    put_k: Vec<Vec<u8>>,
    put_v: Vec<Vec<u8>>,
    gone_kind: Vec<i16>,
    gone_sha: Vec<String>,
    blobs: Vec<(i16, String, Vec<u8>)>,
    /// `pg_notify` payloads, sent if and only if the commit lands.
    notes: Vec<String>,
}

impl Plan {
    fn of(writes: WriteSet) -> Plan {
        let mut ops: HashMap<(i16, Vec<u8>), Option<Vec<u8>>> = HashMap::with_capacity(writes.ops.len());
        for (table, k, v) in writes.ops {
            ops.insert((table_id(table), k), v);
        }
        let mut blobs: HashMap<(i16, String), Option<Vec<u8>>> = HashMap::new();
        for b in writes.blobs {
            match b {
                BlobWrite::Put { kind, sha256, bytes } => blobs.insert((kind_id(kind), sha256), Some(bytes)),
                BlobWrite::Delete { kind, sha256 } => blobs.insert((kind_id(kind), sha256), None),
            };
        }
        let mut p = Plan::default();
        for ((t, k), v) in ops {
            match v {
                Some(v) => {
                    p.put_t.push(t);
                    p.put_k.push(k);
                    p.put_v.push(v);
                }
                None => {
                    p.del_t.push(t);
                    p.del_k.push(k);
                }
            }
        }
        for ((kind, sha), bytes) in blobs {
            match bytes {
                Some(b) => p.blobs.push((kind, sha, b)),
                None => {
                    p.gone_kind.push(kind);
                    p.gone_sha.push(sha);
                }
            }
        }
        p
    }
}

const FENCE: &str = "SELECT ticketd_fence($1)";
const DELETE: &str = "DELETE FROM ticketd_records r USING unnest($1::int2[], $2::bytea[]) AS d(tbl, k) \
     WHERE r.tbl = d.tbl AND r.k = d.k";
const UPSERT: &str = "INSERT INTO ticketd_records (tbl, k, v) SELECT * FROM unnest($1::int2[], $2::bytea[], $3::bytea[]) \
     ON CONFLICT (tbl, k) DO UPDATE SET v = EXCLUDED.v";
const BLOBS_GONE: &str = "WITH d AS (SELECT * FROM unnest($1::int2[], $2::text[]) AS d(kind, sha256)), \
     pieces AS (DELETE FROM ticketd_blob_chunks c USING d WHERE c.kind = d.kind AND c.sha256 = d.sha256) \
     DELETE FROM ticketd_blobs b USING d WHERE b.kind = d.kind AND b.sha256 = d.sha256";
/// The channel every node listens on for what a commit changed; each
/// payload is the committing node's name, a newline, then the note.
pub const CHANGES_CHANNEL: &str = "ticketd_changes";
const NOTIFY: &str = "SELECT count(pg_notify('ticketd_changes', n)) FROM unnest($1::text[]) AS n";
const BLOBS_PUT: &str = "WITH h AS (INSERT INTO ticketd_blobs (kind, sha256, len, chunk) \
     SELECT * FROM unnest($1::int2[], $2::text[], $3::int8[], $4::int4[]) ON CONFLICT DO NOTHING) \
     INSERT INTO ticketd_blob_chunks (kind, sha256, seq, data) \
     SELECT * FROM unnest($5::int2[], $6::text[], $7::int4[], $8::bytea[]) ON CONFLICT DO NOTHING";

/// How one attempt at a commit failed.
enum Failed {
    /// Before `COMMIT` was sent: nothing was written.
    Before(StoreError, bool),
    /// While waiting for `COMMIT`'s answer: unknown.
    AtCommit(String),
}

async fn commit_once(shared: &Shared, epoch: i64, p: &Plan) -> Result<(), Failed> {
    let limit = shared.settings.op_timeout();
    let before = |e: tokio_postgres::Error| {
        let lost = connection_lost(&e);
        Failed::Before(store_error("committing", e), lost)
    };
    let mut client = shared.writer.get().await.map_err(|e| Failed::Before(pool_error("committing", e), false))?;
    let work = async {
        let tx = client.transaction().await.map_err(before)?;
        let mut sqls = vec![FENCE];
        if !p.del_k.is_empty() {
            sqls.push(DELETE);
        }
        if !p.put_k.is_empty() {
            sqls.push(UPSERT);
        }
        if !p.gone_sha.is_empty() {
            sqls.push(BLOBS_GONE);
        }
        if !p.blobs.is_empty() {
            sqls.push(BLOBS_PUT);
        }
        if !p.notes.is_empty() {
            sqls.push(NOTIFY);
        }
        let stmts = futures::future::try_join_all(sqls.iter().map(|s| tx.prepare_cached(s))).await.map_err(before)?;
        let (mut hk, mut hs, mut hl, mut hc) = (vec![], vec![], vec![], vec![]);
        let (mut ck, mut cs, mut cq) = (Vec::<i16>::new(), Vec::<&str>::new(), Vec::<i32>::new());
        let mut cd = Vec::<&[u8]>::new();
        for (kind, sha, bytes) in &p.blobs {
            hk.push(*kind);
            hs.push(sha.as_str());
            hl.push(bytes.len() as i64);
            hc.push(schema::CHUNK as i32);
            for (i, piece) in bytes.chunks(schema::CHUNK).enumerate() {
                ck.push(*kind);
                cs.push(sha.as_str());
                cq.push(i as i32);
                cd.push(piece);
            }
        }
        let mut params: Vec<Vec<&(dyn ToSql + Sync)>> = vec![vec![&epoch]];
        if !p.del_k.is_empty() {
            params.push(vec![&p.del_t, &p.del_k]);
        }
        if !p.put_k.is_empty() {
            params.push(vec![&p.put_t, &p.put_k, &p.put_v]);
        }
        if !p.gone_sha.is_empty() {
            params.push(vec![&p.gone_kind, &p.gone_sha]);
        }
        if !p.blobs.is_empty() {
            params.push(vec![&hk, &hs, &hl, &hc, &ck, &cs, &cq, &cd]);
        }
        if !p.notes.is_empty() {
            params.push(vec![&p.notes]);
        }
        // Sent together, answered in order: one round trip.
        futures::future::try_join_all(stmts.iter().zip(&params).map(|(st, ps)| tx.execute(st, ps)))
            .await
            .map_err(before)?;
        match tokio::time::timeout(limit, tx.commit()).await {
            Ok(Ok(())) => Ok(()),
            // The server answered: it did not commit.
            Ok(Err(e)) if e.as_db_error().is_some() => Err(before(e)),
            Ok(Err(e)) => Err(Failed::AtCommit(e.to_string())),
            Err(_) => Err(Failed::AtCommit(format!("no answer to COMMIT in {limit:?}"))),
        }
    };
    let r = match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(Failed::Before(timed_out("committing", limit), true)),
    };
    if r.is_err() {
        // Closing the connection is the surest rollback, and it may be dead.
        drop(deadpool_postgres::Object::take(client));
    }
    r
}

impl Backend for PostgresBackend {
    fn scan(&self, table: Table, scan: Scan) -> Entries<'_> {
        Box::new(PgScan::new(self.shared.clone(), table, scan))
    }

    fn count(&self, table: Table) -> Result<u64, StoreError> {
        let (shared, t) = (self.shared.clone(), table_id(table));
        wait(async move {
            read(&shared, "counting records", |c| {
                Box::pin(async move {
                    let st = c.prepare_cached("SELECT count(*) FROM ticketd_records WHERE tbl = $1").await?;
                    Ok(c.query_one(&st, &[&t]).await?.get::<_, i64>(0) as u64)
                })
            })
            .await
        })?
    }

    fn get_blob(&self, kind: BlobKind, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes = self.blob_range(kind, sha256, 0, usize::MAX)?;
        if let Some(b) = &bytes {
            verify_blob(kind, sha256, b)?;
        }
        Ok(bytes)
    }

    fn blob_range(&self, kind: BlobKind, sha256: &str, offset: u64, max: usize) -> Result<Option<Vec<u8>>, StoreError> {
        let (shared, k, sha) = (self.shared.clone(), kind_id(kind), sha256.to_owned());
        wait(async move {
            read(&shared, "reading a blob", |c| {
                let sha = sha.clone();
                Box::pin(async move {
                    let st = c
                        .prepare_cached("SELECT len, chunk FROM ticketd_blobs WHERE kind = $1 AND sha256 = $2")
                        .await?;
                    let Some(head) = c.query_opt(&st, &[&k, &sha]).await? else { return Ok(None) };
                    let (len, chunk): (i64, i32) = (head.get(0), head.get(1));
                    let (len, chunk) = (len.max(0) as u64, chunk.max(1) as u64);
                    let end = offset.saturating_add(max as u64).min(len);
                    if offset >= end {
                        return Ok(Some(Vec::new()));
                    }
                    let (first, last) = ((offset / chunk) as i32, ((end - 1) / chunk) as i32);
                    let st = c
                        .prepare_cached(
                            "SELECT seq, data FROM ticketd_blob_chunks WHERE kind = $1 AND sha256 = $2 \
                             AND seq BETWEEN $3 AND $4 ORDER BY seq",
                        )
                        .await?;
                    let mut out = Vec::with_capacity((end - offset) as usize);
                    for row in c.query(&st, &[&k, &sha, &first, &last]).await? {
                        let (seq, data): (i32, Vec<u8>) = (row.get(0), row.get(1));
                        let at = seq as u64 * chunk;
                        let from = offset.saturating_sub(at).min(data.len() as u64) as usize;
                        let to = (end - at).min(data.len() as u64) as usize;
                        out.extend_from_slice(&data[from..to.max(from)]);
                    }
                    Ok(Some(out))
                })
            })
            .await
        })?
    }

    fn blobs(&self, kind: BlobKind) -> Box<dyn Iterator<Item = Result<(String, u64), StoreError>> + Send + '_> {
        let (shared, k) = (self.shared.clone(), kind_id(kind));
        let all = wait(async move {
            read(&shared, "listing blobs", |c| {
                Box::pin(async move {
                    let st = c
                        .prepare_cached("SELECT sha256, len FROM ticketd_blobs WHERE kind = $1 ORDER BY sha256")
                        .await?;
                    let rows = c.query(&st, &[&k]).await?;
                    Ok(rows.into_iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64)).collect::<Vec<_>>())
                })
            })
            .await
        });
        match all.and_then(|r| r) {
            Ok(v) => Box::new(v.into_iter().map(Ok)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn commit(&self, writes: WriteSet) -> Result<(), StoreError> {
        self.commit_noted(writes, Vec::new())
    }

    fn takes_notes(&self) -> bool {
        true
    }

    fn commit_noted(&self, writes: WriteSet, notes: Vec<String>) -> Result<(), StoreError> {
        let r = self.commit_planned(writes, notes);
        if let Err(StoreError::Fenced(_)) = &r {
            self.shared.fence_refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let shared = self.shared.clone();
        wait(async move {
            read(&shared, "measuring the store", |c| {
                Box::pin(async move {
                    let row = c
                        .query_one(
                            "SELECT pg_total_relation_size('ticketd_records') + pg_total_relation_size('ticketd_blobs') \
                             + pg_total_relation_size('ticketd_blob_chunks')",
                            &[],
                        )
                        .await?;
                    Ok(row.get::<_, i64>(0).max(0) as u64)
                })
            })
            .await
        })?
    }
}

#[cfg(test)]
mod table_ids {
    /// Two tables under one id would read each other's rows.
    #[test]
    fn every_table_has_an_id_of_its_own() {
        let mut seen = Vec::new();
        for t in super::Table::ALL {
            let id = super::table_id(*t);
            assert!(!seen.contains(&id), "{} shares its id {id}", t.name());
            seen.push(id);
        }
    }
}
