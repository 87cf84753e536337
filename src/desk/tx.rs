//! The writer's unit of work: reads see committed state plus everything
//! written so far in this group of requests; savepoints let one request
//! fail without taking the others with it; the result is one
//! [`WriteSet`] for one durable commit.

use std::collections::HashMap;

use crate::store::{BlobKind, BlobWrite, Get, Store, StoreError, Table, WriteSet, keys};

type Key = (Table, Vec<u8>);

pub struct Tx<'s> {
    base: &'s Store,
    writes: HashMap<Key, Option<Vec<u8>>>,
    /// Overlay values before each write, newest last, for rollbacks.
    undo: Vec<(Key, Option<Option<Vec<u8>>>)>,
    /// Blobs to store or forget with the commit, in order.
    blobs: Vec<BlobWrite>,
    /// (wake, ticket) entries for the clock's wake index: one bucket key
    /// for the whole commit (see [`Tx::wake`]).
    wakes: Vec<(i64, u64)>,
}

/// Where to roll back to: the record writes, the blobs and the wake
/// entries staged so far.
#[derive(Debug, Clone, Copy)]
pub struct Savepoint(usize, usize, usize);

impl<'s> Tx<'s> {
    pub fn new(base: &'s Store) -> Tx<'s> {
        Tx { base, writes: HashMap::new(), undo: Vec::new(), blobs: Vec::new(), wakes: Vec::new() }
    }

    /// Stores a blob with this unit of work (a no-op if it is stored).
    pub fn put_blob(&mut self, kind: BlobKind, sha256: &str, bytes: &[u8]) {
        self.blobs.push(BlobWrite::Put { kind, sha256: sha256.to_owned(), bytes: bytes.to_vec() });
    }

    pub fn delete_blob(&mut self, kind: BlobKind, sha256: &str) {
        self.blobs.push(BlobWrite::Delete { kind, sha256: sha256.to_owned() });
    }

    pub fn store(&self) -> &'s Store {
        self.base
    }

    fn set(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) {
        let k = (table, key);
        let before = self.writes.insert(k.clone(), value);
        self.undo.push((k, before));
    }

    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.set(table, key.into(), Some(value));
    }

    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.set(table, key.into(), None);
    }

    /// Files ticket `n` under instant `at` in the clock's wake index.
    /// Every entry of one commit goes into one bucket key (a key per
    /// ticket cost new-ticket ingest ~3%, #19); an entry whose ticket has
    /// moved on since is stale, and the clock drops it when it comes to it.
    pub fn wake(&mut self, at: i64, n: u64) {
        self.wakes.push((at, n));
    }

    pub fn savepoint(&self) -> Savepoint {
        Savepoint(self.undo.len(), self.blobs.len(), self.wakes.len())
    }

    /// Forgets every write made since `sp`, blobs included.
    pub fn rollback(&mut self, sp: Savepoint) {
        self.blobs.truncate(sp.1);
        self.wakes.truncate(sp.2);
        while self.undo.len() > sp.0 {
            let Some((k, before)) = self.undo.pop() else { break };
            match before {
                Some(v) => {
                    self.writes.insert(k, v);
                }
                None => {
                    self.writes.remove(&k);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.blobs.is_empty() && self.wakes.is_empty()
    }

    pub fn into_writes(mut self) -> WriteSet {
        if let Some(first) = self.wakes.iter().map(|(at, _)| *at).min() {
            self.wakes.sort_unstable();
            self.wakes.dedup();
            let key = keys::wake_bucket(first, rand::random());
            self.writes.insert((Table::Timers, key), Some(keys::wake_entries(&self.wakes)));
        }
        let mut w = WriteSet { blobs: self.blobs, ..WriteSet::default() };
        for ((table, key), value) in self.writes {
            w.ops.push((table, key, value));
        }
        w
    }
}

impl Get for Tx<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(&(table, key.to_vec())) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(table, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_writes_and_rollbacks_undo_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(&dir.path().join("db"), &dir.path().join("a"), 8 << 20).unwrap();
        let committer = store.take_committer().unwrap();
        let mut w = WriteSet::default();
        w.put(Table::Meta, b"k", b"committed".to_vec());
        committer.commit(w).unwrap();
        let mut tx = Tx::new(&store);
        assert_eq!(tx.get(Table::Meta, b"k").unwrap().as_deref(), Some(&b"committed"[..]));
        tx.put(Table::Meta, b"k".to_vec(), b"one".to_vec());
        tx.put_blob(BlobKind::Attachment, "kept", b"kept");
        let sp = tx.savepoint();
        tx.put(Table::Meta, b"k".to_vec(), b"two".to_vec());
        tx.delete(Table::Meta, b"other".to_vec());
        tx.put_blob(BlobKind::Attachment, "gone", b"gone");
        assert_eq!(tx.get(Table::Meta, b"k").unwrap().as_deref(), Some(&b"two"[..]));
        tx.rollback(sp);
        assert_eq!(tx.get(Table::Meta, b"k").unwrap().as_deref(), Some(&b"one"[..]));
        let w = tx.into_writes();
        assert_eq!(w.ops, vec![(Table::Meta, b"k".to_vec(), Some(b"one".to_vec()))], "the rolled-back delete is gone");
        assert_eq!(w.blobs.len(), 1, "the blob staged by the rolled-back part is gone");
        assert_eq!(store.get(Table::Meta, b"k").unwrap().as_deref(), Some(&b"committed"[..]), "nothing until commit");
        assert!(store.take_committer().is_err(), "a store has one committer");
    }
}
