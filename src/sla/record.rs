//! What a ticket record keeps of time (#19): its response targets, when it
//! entered its status, whether the pending reminder went out, and the two
//! instants the store indexes it by. Only the rules in `triage::timers`
//! write it; `desk::apply` keeps the indexes in step when a record is saved.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SlaState;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    #[serde(default, skip_serializing_if = "SlaState::is_empty")]
    pub sla: SlaState,
    /// When the ticket entered its status; while it is pending, the last
    /// agent answer that reached the customer (the wait starts again).
    /// The lifecycle timers run from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The pending reminder went out (never twice for one wait).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reminded: bool,
    /// The next instant the desk's clock must look at the ticket: its key
    /// in the store's wake index. `None`: nothing can come due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<DateTime<Utc>>,
    /// The earliest due instant of a target whose clock runs (the queue's
    /// "overdue" and "due soon" compare it): the store indexes it for the
    /// overdue count, on the wake key or under its own (see the store's
    /// `Table::Timers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
}

impl Timers {
    /// Nothing to store (a record written before #19, or a desk without
    /// targets or timers, looks like this).
    pub fn is_empty(&self) -> bool {
        *self == Timers::default()
    }
}
