use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::lab::PgLab;
use super::*;
use crate::store::{BlobKind, Records, Store, contract};

fn sha(b: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b))
}

fn node() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("n{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Opens a leading backend on `db`: takes the lease, deposing whoever holds
/// it (a second instance on one database takes over from the first).
fn leading(lab: &PgLab, db: &str) -> Result<PostgresBackend, StoreError> {
    let settings = PgSettings::from_url(&lab.url(db), &node())?.with_lease_timeout(Duration::from_secs(5));
    let b = PostgresBackend::open(settings)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(lease) = b.try_lease()? {
            b.lead(lease);
            return Ok(b);
        }
        b.depose_stale(Duration::ZERO)?;
        assert!(std::time::Instant::now() < deadline, "the lease was never free");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn postgres_keeps_the_backend_contract() {
    let lab = PgLab::shared().unwrap();
    let root = tempfile::tempdir().unwrap();
    let dbs = std::sync::Mutex::new(std::collections::HashMap::<std::path::PathBuf, String>::new());
    contract::run(root.path(), &|dir: &Path| {
        // One fresh database per check; reopening a check's dir finds it again.
        let db = {
            let mut dbs = dbs.lock().unwrap();
            match dbs.get(dir) {
                Some(db) => db.clone(),
                None => {
                    let db = lab.fresh_db("contract").map_err(|e| StoreError::Internal(e.to_string()))?;
                    dbs.insert(dir.to_owned(), db.clone());
                    db
                }
            }
        };
        leading(&lab, &db).map(|b| Box::new(b) as Box<dyn Backend>)
    });
}

#[test]
fn a_standby_reads_and_never_writes() {
    let lab = PgLab::shared().unwrap();
    let db = lab.fresh_db("standby").unwrap();
    let leader = leading(&lab, &db).unwrap();
    let mut w = WriteSet::default();
    w.put(Table::Meta, b"k", b"v".to_vec());
    leader.commit(w.clone()).unwrap();
    let standby = PostgresBackend::open(PgSettings::from_url(&lab.url(&db), "standby").unwrap()).unwrap();
    assert_eq!(standby.get(Table::Meta, b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(standby.try_lease().unwrap().map(|l| l.epoch()), None, "the leader holds it");
    let err = standby.commit(w).unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    let info = standby.leader().unwrap();
    assert!(info.held);
    assert_eq!(info.epoch, leader.epoch().unwrap());
    assert!(info.heartbeat_age.unwrap() < Duration::from_secs(5));
    assert_eq!(standby.depose_stale(Duration::from_secs(60)).unwrap(), None, "a fresh heartbeat is left alone");
}

#[test]
fn blob_ranges_read_only_the_pieces_they_cover() {
    let lab = PgLab::shared().unwrap();
    let db = lab.fresh_db("blobs").unwrap();
    let b = leading(&lab, &db).unwrap();
    let big: Vec<u8> = (0..(schema::CHUNK * 3 + 12345)).map(|i| (i % 251) as u8).collect();
    let name = sha(&big);
    let mut w = WriteSet::default();
    w.put_blob(BlobKind::Attachment, &name, big.clone());
    w.put_blob(BlobKind::Raw, &sha(b""), Vec::new());
    b.commit(w).unwrap();
    let (sh, n) = (b.shared.clone(), name.clone());
    let pieces = conn::wait(async move {
        let c = sh.readers.get().await.unwrap();
        let sql = "SELECT count(*), max(length(data)) FROM ticketd_blob_chunks WHERE sha256 = $1";
        let r = c.query_one(sql, &[&n]).await.unwrap();
        (r.get::<_, i64>(0), r.get::<_, i32>(1))
    })
    .unwrap();
    assert_eq!(pieces, (4, schema::CHUNK as i32), "stored in pieces of at most CHUNK bytes");
    for (offset, max) in [(0, 10), (schema::CHUNK - 5, 10), (schema::CHUNK * 2, schema::CHUNK), (big.len() - 3, 10)] {
        let got = b.blob_range(BlobKind::Attachment, &name, offset as u64, max).unwrap().unwrap();
        assert_eq!(got, big[offset..(offset + max).min(big.len())], "offset {offset}, max {max}");
    }
    assert_eq!(b.blob_range(BlobKind::Attachment, &name, big.len() as u64 + 1, 10).unwrap(), Some(vec![]));
    assert_eq!(b.get_blob(BlobKind::Raw, &sha(b"")).unwrap(), Some(vec![]), "an empty blob is stored too");
    let store = Store::with_backend(std::sync::Arc::new(b));
    assert_eq!(store.verified_len(BlobKind::Attachment, &name).unwrap(), Some(big.len() as u64));
}

#[test]
fn typed_reads_work_from_async_tasks() {
    let lab = PgLab::shared().unwrap();
    let db = lab.fresh_db("async").unwrap();
    let b = leading(&lab, &db).unwrap();
    let store = Store::with_backend(std::sync::Arc::new(b));
    let mut w = WriteSet::default();
    let cursor = crate::store::Cursor { uid_validity: 7, last_uid: 42, ..Default::default() };
    w.put(Table::Cursors, b"support".to_vec(), crate::store::json(&cursor));
    store.take_committer().unwrap().commit(w).unwrap();
    // The IMAP worker reads its cursor from async code.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let s = store.clone();
    let got = rt.block_on(async move {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.cursor("support") })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    });
    assert!(got.iter().all(|c| *c == Some(cursor)));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(async { store.cursor("support") }).unwrap(), Some(cursor));
}
