//! A ticket as the store keeps it: the Support Ticket object (`ticket`)
//! with the bookkeeping the public JSON never shows (its number, where
//! replies go, the customer-side thread, the version the API checks, the
//! clocks of `sla`, a merge pointer). Above `sla`, whose state it holds;
//! the object itself stays free of both.

use serde::{Deserialize, Serialize};

use crate::ticket::Ticket;

/// A ticket as the store keeps it: the public object plus the bookkeeping
/// that must never leak into the public JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    pub ticket: Ticket,
    pub number: u64,
    /// Lower-cased address of the client, where replies and notices go.
    pub client_address: String,
    /// Name of the mailbox the ticket came in through; replies leave from it.
    pub mailbox: String,
    /// Message-IDs of the customer-side conversation, oldest first, so our
    /// mail keeps the customer's thread intact (References).
    pub thread_ids: Vec<String>,
    /// Bumped by the writer on every save; the API's optimistic check.
    #[serde(default)]
    pub version: u64,
    /// Response targets and lifecycle timers (#19), kept by the rules in
    /// `triage::timers`.
    #[serde(default, skip_serializing_if = "crate::sla::Timers::is_empty")]
    pub timers: crate::sla::Timers,
    /// Merged into this ticket: mail that finds this one goes there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<u64>,
}
