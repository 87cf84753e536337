//! What a store written by an older ticketd lacks, added by the writer
//! when it opens (see `Writer::open`): each step looks first and writes
//! only what is missing, so it runs once.

use super::apply;
use super::tx::Tx;
use crate::store::{Get, Scan, StoreError, Table, keys};

/// The store's layout as this build writes it. A store a newer ticketd
/// wrote (a higher number) is refused when the writer opens, rather than
/// misread; an older one is brought up to it by the steps below. 1: no
/// marker (everything before it); 2: the clock's wake index holds one key
/// per commit (#19), which a build of format 1 would misread.
pub const STORE_FORMAT: u32 = 2;

/// Refuses a store from a newer ticketd; marks an older one as this
/// build's (after this opening's steps, in the same commit).
pub(super) fn format(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    match tx.get(Table::Meta, keys::FORMAT)? {
        Some(v) if readable(&v)? == STORE_FORMAT => Ok(()),
        _ => {
            tx.put(Table::Meta, keys::FORMAT, STORE_FORMAT.to_be_bytes().to_vec());
            Ok(())
        }
    }
}

/// The layout a stored format marker names, if this build reads it
/// (a restore checks a backup's with it too).
pub(super) fn readable(marker: &[u8]) -> Result<u32, StoreError> {
    let found = <[u8; 4]>::try_from(marker).map(u32::from_be_bytes).map_err(|_| StoreError::Corrupt {
        table: Table::Meta.name(),
        detail: "the store format marker is not 4 bytes".into(),
    })?;
    if found > STORE_FORMAT {
        return Err(StoreError::TooNew { found, known: STORE_FORMAT });
    }
    Ok(found)
}

/// Pending mail from before the outbox schedule existed gets its place in
/// the schedule.
pub(super) fn schedule_outbox(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    let store = tx.store();
    if store.backend().scan(Table::OutboxDue, Scan::default()).next().is_some() {
        return Ok(());
    }
    for (seq, e) in store.pending_entries()? {
        tx.put(Table::OutboxDue, keys::due(e.next_attempt.timestamp(), seq), Vec::new());
        tx.put(Table::OutboxTickets, keys::ticket_seq(e.mail.ticket, seq), Vec::new());
    }
    Ok(())
}

/// Every ticket's attachments go into the download index once.
pub(super) fn index_attachments(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    if tx.get(Table::Meta, keys::ATTACHMENT_INDEX)?.is_some() {
        return Ok(());
    }
    let store = tx.store();
    for rec in store.tickets_from(None, false) {
        apply::index_attachments(tx, &rec?)?;
    }
    tx.put(Table::Meta, keys::ATTACHMENT_INDEX, vec![1]);
    Ok(())
}

/// Every ticket's summary and every client's info (see `summary`), once.
pub(super) fn index_summaries(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    super::summary::build(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, WriteSet};

    #[test]
    fn a_store_is_marked_with_its_format_and_one_from_a_newer_ticketd_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(&dir.path().join("db"), &dir.path().join("a"), 8 << 20).unwrap();
        let c = store.take_committer().unwrap();
        let mut tx = Tx::new(&store);
        format(&mut tx).unwrap();
        c.commit(tx.into_writes()).unwrap();
        assert_eq!(store.get(Table::Meta, keys::FORMAT).unwrap(), Some(STORE_FORMAT.to_be_bytes().to_vec()));
        let mut tx = Tx::new(&store);
        format(&mut tx).unwrap();
        assert!(tx.is_empty(), "marked once");

        let mut w = WriteSet::default();
        w.put(Table::Meta, keys::FORMAT, (STORE_FORMAT + 1).to_be_bytes().to_vec());
        c.commit(w).unwrap();
        let e = format(&mut Tx::new(&store)).unwrap_err().to_string();
        assert!(e.contains("written by a newer ticketd (store format 3; this build reads up to 2)"), "{e}");
    }
}
