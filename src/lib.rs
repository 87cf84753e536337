//! ticketd: support mailboxes in, tickets in sled, mail out.
//!
//! Tasks (see [`daemon`]): one [`imap::worker`] per mailbox owns its IMAP
//! connection; one [`ingest`] task is the only writer of tickets; one
//! [`outbound::sender`] owns SMTP. Workers hand fetched batches to ingest
//! over a bounded channel and wait for the answer; ingest runs the pure
//! [`triage::decide`] on each message and commits all of its effects in
//! one sled transaction ([`store`]), flushes the batch, and only then tells
//! the worker which UIDs may be marked `\Seen`/moved/deleted. The ack rule:
//! nothing is acknowledged on IMAP and nothing is sent over SMTP before the
//! ticket it belongs to is durable. Replays after a crash are no-ops (UID
//! cursor + Message-ID dedupe; our Message-IDs are deterministic).

pub mod config;
pub mod daemon;
pub mod failpoint;
pub mod imap;
pub mod ingest;
pub mod mail;
pub mod outbound;
pub mod store;
pub mod ticket;
pub mod triage;
