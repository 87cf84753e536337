//! ticketd: support mailboxes in, tickets in sled, mail out.
//!
//! Tasks (see [`daemon`]): one [`imap::worker`] per mailbox owns its IMAP
//! connection; one [`outbound::sender`] owns SMTP; the [`desk`]'s writer
//! thread is the only writer of the store. Every change — a fetched batch,
//! an agent's action from the API or CLI, a delivery outcome, a quarantine
//! retry — reaches the writer as a typed request over a bounded channel,
//! is decided by the pure rules in [`triage`] (`decide` for mail, `act`
//! for actions) and committed with the others queued beside it in one
//! durable [`store`] commit; only then is the requester answered. The ack
//! rule: nothing is marked `\Seen`/moved/deleted on IMAP and nothing is
//! sent over SMTP before the ticket it belongs to is durable. Readers (API,
//! CLI) read committed state. Replays after a crash are no-ops (UID cursor
//! + Message-ID and content dedupe; our Message-IDs are deterministic).

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod desk;
pub mod doctor;
pub mod failpoint;
pub mod health;
pub mod imap;
pub mod mail;
pub mod outbound;
pub mod outbox;
pub mod sla;
pub mod spam;
pub mod store;
pub mod text;
pub mod ticket;
pub mod tls;
pub mod triage;
