//! The schema, created or brought up to date when a node opens the store
//! (under a transaction-scoped advisory lock, so nodes starting together do
//! not race), and recorded as a version row.
//!
//! - `ticketd_records (tbl, k, v)`: every [`crate::store::Table`] in one
//!   table, keyed by a small table id and the key's bytes; `bytea` compares
//!   byte by byte, so big-endian keys scan in numeric order.
//! - `ticketd_blobs (kind, sha256, len, chunk)` and `ticketd_blob_chunks
//!   (kind, sha256, seq, data)`: content-addressed blobs in pieces of
//!   [`CHUNK`] bytes, written in the same transaction as the records that
//!   name them; a range read fetches only the pieces it covers.
//! - `ticketd_lease`: one row, the writer's lease: `epoch` (raised by every
//!   new leader), holder `node`, `advertise`, `pid` (its lock session).
//! - `ticketd_heartbeat`: one row, the holder's `epoch`, `pid` and last
//!   heartbeat `at` (database time). A row apart from the lease's, so a
//!   heartbeat never waits for a commit holding the lease row's share lock
//!   (nor a commit for a heartbeat).
//! - `ticketd_commits`: per epoch, how many commits landed and when the
//!   first and last did (database time): the audit a failover test reads.
//! - `ticketd_epochs` (version 2): when each epoch was taken and by whom
//!   (database time): with `ticketd_commits`, a commit that landed after a
//!   later epoch was taken would show (a stale commit; the fence makes it
//!   impossible, the failover test counts them).
//! - `ticketd_fence(epoch)`: the fence every commit runs first, inside its
//!   transaction: it takes a share lock on the lease row and raises
//!   SQLSTATE `TD001` unless `epoch` is the current one. A takeover's
//!   `UPDATE` of the row waits for commits holding that lock, so a commit
//!   either lands before the takeover or is refused; never after.

use tokio_postgres::Client;

/// The version this build writes.
pub const VERSION: i32 = 2;

/// Blob pieces are at most this long.
pub const CHUNK: usize = 1 << 20;

/// Key of the transaction-scoped advisory lock taken while migrating.
const MIGRATE_LOCK: i64 = 0x7469_636b_6d69_6772;

const V1: &str = r#"
CREATE TABLE ticketd_records (
    tbl smallint NOT NULL,
    k bytea NOT NULL,
    v bytea NOT NULL,
    PRIMARY KEY (tbl, k)
);
CREATE TABLE ticketd_blobs (
    kind smallint NOT NULL,
    sha256 text COLLATE "C" NOT NULL,
    len bigint NOT NULL,
    chunk integer NOT NULL,
    PRIMARY KEY (kind, sha256)
);
CREATE TABLE ticketd_blob_chunks (
    kind smallint NOT NULL,
    sha256 text COLLATE "C" NOT NULL,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (kind, sha256, seq)
);
CREATE TABLE ticketd_lease (
    id integer PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL,
    node text,
    advertise text,
    pid integer,
    acquired_at timestamptz
);
INSERT INTO ticketd_lease (id, epoch) VALUES (1, 0);
CREATE TABLE ticketd_heartbeat (
    id integer PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL,
    pid integer,
    at timestamptz
);
INSERT INTO ticketd_heartbeat (id, epoch) VALUES (1, 0);
CREATE TABLE ticketd_commits (
    epoch bigint PRIMARY KEY,
    node text,
    commits bigint NOT NULL,
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL
);
CREATE FUNCTION ticketd_fence(want bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cur bigint;
    holder text;
BEGIN
    SELECT epoch, node INTO cur, holder FROM ticketd_lease WHERE id = 1 FOR SHARE;
    IF cur IS DISTINCT FROM want THEN
        RAISE EXCEPTION USING ERRCODE = 'TD001',
            MESSAGE = format('epoch %s is not the current one: the lease is at epoch %s, held by %s',
                             want, cur, coalesce(holder, 'nobody'));
    END IF;
    INSERT INTO ticketd_commits AS c (epoch, node, commits, first_at, last_at)
        VALUES (want, holder, 1, now(), now())
        ON CONFLICT (epoch) DO UPDATE SET commits = c.commits + 1, last_at = now();
END
$$;
"#;

const V2: &str = r#"
CREATE TABLE ticketd_epochs (
    epoch bigint PRIMARY KEY,
    node text,
    acquired_at timestamptz NOT NULL
);
"#;

pub enum MigrateError {
    Db(tokio_postgres::Error),
    /// Written by a newer ticketd: not ours to touch.
    Newer(i32),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Db(e)
    }
}

/// Creates the schema or brings it to [`VERSION`]; refuses a newer one.
pub async fn migrate(client: &mut Client) -> Result<(), MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS ticketd_schema (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)",
    )
    .await?;
    let version: i32 =
        tx.query_opt("SELECT version FROM ticketd_schema WHERE id = 1", &[]).await?.map_or(0, |r| r.get(0));
    if version > VERSION {
        tx.rollback().await?;
        return Err(MigrateError::Newer(version));
    }
    if version < 1 {
        tx.batch_execute(V1).await?;
    }
    if version < 2 {
        tx.batch_execute(V2).await?;
    }
    if version < VERSION {
        tx.execute(
            "INSERT INTO ticketd_schema (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = $1",
            &[&VERSION],
        )
        .await?;
    }
    Ok(tx.commit().await?)
}
