//! The writer's unit of work: reads see committed state plus everything
//! written so far in this group of requests; savepoints let one request
//! fail without taking the others with it; the result is one
//! [`WriteSet`] for one durable commit.

use std::collections::HashMap;

use crate::store::{Get, Store, StoreError, Table, WriteSet};

type Key = (Table, Vec<u8>);

pub struct Tx<'s> {
    base: &'s Store,
    writes: HashMap<Key, Option<Vec<u8>>>,
    /// Overlay values before each write, newest last, for rollbacks.
    undo: Vec<(Key, Option<Option<Vec<u8>>>)>,
}

#[derive(Debug, Clone, Copy)]
pub struct Savepoint(usize);

impl<'s> Tx<'s> {
    pub fn new(base: &'s Store) -> Tx<'s> {
        Tx { base, writes: HashMap::new(), undo: Vec::new() }
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

    pub fn savepoint(&self) -> Savepoint {
        Savepoint(self.undo.len())
    }

    /// Forgets every write made since `sp`.
    pub fn rollback(&mut self, sp: Savepoint) {
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
        self.writes.is_empty()
    }

    pub fn into_writes(self) -> WriteSet {
        let mut w = WriteSet::default();
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
        let mut w = WriteSet::default();
        w.put(Table::Meta, b"k", b"committed".to_vec());
        store.commit(w).unwrap();
        let mut tx = Tx::new(&store);
        assert_eq!(tx.get(Table::Meta, b"k").unwrap().as_deref(), Some(&b"committed"[..]));
        tx.put(Table::Meta, b"k".to_vec(), b"one".to_vec());
        let sp = tx.savepoint();
        tx.put(Table::Meta, b"k".to_vec(), b"two".to_vec());
        tx.delete(Table::Meta, b"other".to_vec());
        assert_eq!(tx.get(Table::Meta, b"k").unwrap().as_deref(), Some(&b"two"[..]));
        tx.rollback(sp);
        assert_eq!(tx.get(Table::Meta, b"k").unwrap().as_deref(), Some(&b"one"[..]));
        let w = tx.into_writes();
        assert_eq!(w.ops, vec![(Table::Meta, b"k".to_vec(), Some(b"one".to_vec()))], "the rolled-back delete is gone");
        assert_eq!(store.get(Table::Meta, b"k").unwrap().as_deref(), Some(&b"committed"[..]), "nothing until commit");
    }
}
