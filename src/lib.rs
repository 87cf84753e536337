//! ticketd: support mailboxes in, tickets in a store (sled, or PostgreSQL
//! for several nodes), mail out.
//!
//! Tasks (see [`daemon`]): one [`imap::worker`] per mailbox owns its IMAP
//! connection; one [`outbound::sender`] owns SMTP; the [`desk`]'s writer
//! thread is the only writer of the store (it holds the store's one
//! [`store::Committer`]). Every change — a fetched batch, an agent's action
//! from the API, the CLI or mail, a delivery outcome, a quarantine retry, a
//! tick of the clock — reaches the writer as a typed request over a bounded
//! channel, is decided by the pure rules in [`triage`] (`decide` for mail,
//! `act` for actions), recorded by `desk::apply` and committed with the
//! others queued beside it in one durable [`store`] commit; only then is
//! the requester answered. The ack rule: nothing is marked
//! `\Seen`/moved/deleted on IMAP and nothing is sent over SMTP before the
//! ticket it belongs to is durable. Readers (API, CLI) read committed
//! state. Replays after a crash are no-ops (UID cursor + Message-ID and
//! content dedupe; our Message-IDs are deterministic).
//!
//! Layers, lowest first: a module uses only modules on lower lines (a test,
//! `tests/layers.rs`, reads this table and checks every `crate::` path):
//!
//! ```text
//! 0  text failpoint
//! 1  ticket
//! 2  mail outbox health tls sla
//! 3  record spam
//! 4  config
//! 5  triage testkit
//! 6  store
//! 7  archive cluster
//! 8  desk
//! 9  api imap outbound
//! 10 console
//! 11 daemon doctor
//! 12 cli
//! ```
//!
//! Pure data and rules at the bottom (what a mail, a ticket, an outgoing
//! mail and the config are; the response-target clocks of [`sla`] and the
//! spam verdicts of [`spam`]; what a mail or an action means); the store
//! below the one writer that uses it; the I/O shells (IMAP, SMTP, HTTP)
//! on the desk; the agents' web console on the HTTP API (the daemon hands
//! its routes to the API's server); the process and the command line on
//! top. On PostgreSQL
//! several nodes share the store and one of them writes: [`cluster`] is
//! the lease and what the desk asks of it (may this node act now?); the
//! shells that drive it sit with their kind (`daemon::cluster`,
//! `api::forward`, `cli::cluster`).

pub mod api;
pub mod archive;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod daemon;
pub mod desk;
pub mod doctor;
pub mod failpoint;
pub mod health;
pub mod imap;
pub mod mail;
pub mod outbound;
pub mod outbox;
pub mod record;
pub mod sla;
pub mod spam;
pub mod store;
#[doc(hidden)]
pub mod testkit;
pub mod text;
pub mod ticket;
pub mod tls;
pub mod triage;
