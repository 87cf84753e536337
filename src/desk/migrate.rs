//! What a store written by an older ticketd lacks, added by the writer
//! when it opens (see `Writer::open`): each step looks first and writes
//! only what is missing, so it runs once.

use super::apply;
use super::tx::Tx;
use crate::store::{Get, Scan, StoreError, Table, keys};

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
