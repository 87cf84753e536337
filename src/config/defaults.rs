//! Every default of a config key, named and documented in one place. The
//! checker (`check.rs`) takes a missing key's value from here and nowhere
//! else; `config/ticketd.example.toml` writes the same values under comments
//! that say "Default", and `tests/config_example.rs` fails when the two
//! disagree.
//!
//! A default is `DEFAULT_<SECTION>_<KEY>` (the `[desk]` keys without the
//! section), or a `default_…` function when it follows from other keys.
//! Keys left out of this file are required or optional (no value at all).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{AfterAction, ApiConfig, Initial, MailboxConfig, Tls};
use crate::ticket::{Category, Priority};

/// The config file read without `--config`.
pub const DEFAULT_PATH: &str = "/etc/ticketd/ticketd.toml";

/// `store.backend`: the embedded sled database.
pub const DEFAULT_STORE_BACKEND: &str = "sled";

/// `store.path` with `backend = "postgres"` (only the node's own files,
/// a backup's spool, live beside it).
pub const DEFAULT_STORE_PATH: &str = "/var/lib/ticketd/db";

/// `cluster.lease_timeout`: the detection window for a lost leader. A
/// takeover after a crash takes well under it (the lock is free at once); a
/// paused or cut-off leader is replaced within it plus about a second.
pub const DEFAULT_CLUSTER_LEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// `cluster.forward`: standbys forward changes to the leader.
pub const DEFAULT_CLUSTER_FORWARD: bool = true;

/// `store.attachments_dir`: `attachments` next to the database directory.
pub fn default_store_attachments_dir(store_path: &Path) -> PathBuf {
    store_path.parent().unwrap_or(Path::new(".")).join("attachments")
}

/// `store.cache_capacity`: 8 MiB of sled page cache. sled holds only small
/// records (mail and attachments live in segment files).
pub const DEFAULT_STORE_CACHE_CAPACITY: u64 = 8 << 20;

/// `store.retention_days`: 0, raw copies and sent bodies are kept forever.
pub const DEFAULT_STORE_RETENTION_DAYS: u32 = 0;

/// `desk.subject_tag`: `"Ticket"`, as in `[Ticket #42]`.
pub const DEFAULT_SUBJECT_TAG: &str = "Ticket";

/// `desk.display_name`: the display name on mail we send.
pub const DEFAULT_DISPLAY_NAME: &str = "Support";

/// `desk.acks_per_sender_per_hour`: acknowledgements one sender gets an hour.
pub const DEFAULT_ACKS_PER_SENDER_PER_HOUR: u32 = 5;

/// `desk.notifications_per_ticket_per_hour`: agent notifications about one
/// ticket an hour (a mail loop or a chatty customer cannot flood the agents).
pub const DEFAULT_NOTIFICATIONS_PER_TICKET_PER_HOUR: u32 = 20;

/// `desk.notifications_per_agent_per_hour`: notifications one agent gets an
/// hour, all tickets together; the rest go out as one digest.
pub const DEFAULT_NOTIFICATIONS_PER_AGENT_PER_HOUR: u32 = 60;

/// `desk.agent_proof_days`: how long a notification's Message-ID proves an
/// agent's emailed answer.
pub const DEFAULT_AGENT_PROOF_DAYS: u32 = 30;

/// `desk.trust_from_header`: false, agents prove who they are.
pub const DEFAULT_TRUST_FROM_HEADER: bool = false;

/// `desk.acks_require_aligned_sender`: on where the border's
/// `Authentication-Results` can be believed (`desk.trusted_authserv_id` is
/// set), off without them (nothing to judge alignment by).
pub fn default_acks_require_aligned_sender(trusted_authserv_id: Option<&str>) -> bool {
    trusted_authserv_id.is_some()
}

/// `desk.send_receipts`: false, no receipt after an agent's #commands.
pub const DEFAULT_SEND_RECEIPTS: bool = false;

/// `desk.max_message_bytes`: 50 MiB; larger messages are quarantined unread.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 50 << 20;

/// `desk.clock_interval`: how often time-based work is looked at.
pub const DEFAULT_CLOCK_INTERVAL: Duration = Duration::from_secs(30);

/// `desk.sla_warn_before`: a response target's warning goes out 15 minutes
/// before it passes (never more than half the target ahead); "0s" turns
/// warnings off. The time core applies it (`sla::config::build`).
pub const DEFAULT_SLA_WARN_BEFORE: chrono::TimeDelta = crate::sla::DEFAULT_WARN_BEFORE;

// `desk.pending_reminder_after`, `desk.pending_resolve_after` and
// `desk.close_resolved_after` have no default: unset, the timer is off (an
// automatic change to a customer's ticket is something the admin asks for).
// No `[[sla]]`: no response targets.

/// The longest `desk.message_id_domain` with which every Message-ID ticketd
/// writes (for tickets below 2,097,152) has at most 64 characters with its
/// brackets, so `In-Reply-To: <id>` fits 78 columns unfolded
/// (`triage::identity`).
pub const MAX_MESSAGE_ID_DOMAIN_CHARS: usize = 24;

/// `desk.message_id_domain`: the domain of the first mailbox's address
/// (`ticketd.invalid` without a mailbox, which is an error anyway).
pub fn default_message_id_domain(mailboxes: &[MailboxConfig]) -> String {
    mailboxes
        .first()
        .and_then(|m| m.address.rsplit_once('@').map(|(_, dom)| dom.to_owned()))
        .unwrap_or_else(|| "ticketd.invalid".into())
}

/// `attachments.base_url`: the API's own `/attachments` when there is an
/// `[api]` (see [`super::Listen::base_url`]); without one, the bare path the
/// API serves them under (blobs live in segment files, so a `file://` URL
/// would lead nowhere).
pub fn default_attachments_base_url(api: Option<&ApiConfig>) -> String {
    match api {
        Some(api) => format!("{}/attachments", api.listen.base_url()),
        None => "/attachments".to_owned(),
    }
}

/// `attachments.max_bytes`: 25 MiB; larger attachments are not stored.
pub const DEFAULT_ATTACHMENTS_MAX_BYTES: u64 = 25 << 20;

/// `api.listen`: loopback only, the API speaks plain HTTP.
pub const DEFAULT_API_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8025));

/// `api.max_connections`: open API connections past which new ones are
/// refused: well inside the unit's `LimitNOFILE` (8192), which also covers
/// IMAP, SMTP and the store.
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 512;

/// `api.header_timeout`: a request's header must arrive within this.
pub const DEFAULT_API_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// `api.idle_timeout`: a connection that moves no byte this long is closed.
pub const DEFAULT_API_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// `api.public_attachments`: false, downloads need the bearer token.
pub const DEFAULT_API_PUBLIC_ATTACHMENTS: bool = false;

/// `api.timeout`: the longest one request may take, upload included.
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(30);

/// `api.max_upload_bytes`: 64 MiB, a multipart reply's files together.
pub const DEFAULT_API_MAX_UPLOAD_BYTES: u64 = 64 << 20;

/// `api.concurrency`: requests handled at once; more wait.
pub const DEFAULT_API_CONCURRENCY: usize = 32;

/// `console.enabled`: true, the console is served wherever `[api]` is.
pub const DEFAULT_CONSOLE_ENABLED: bool = true;

/// `console.session_idle`: a session unused for 8 hours ends.
pub const DEFAULT_CONSOLE_SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);

/// `console.session_max`: a session ends 7 days after sign-in.
pub const DEFAULT_CONSOLE_SESSION_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// `console.behind_tls`: false, no TLS proxy in front.
pub const DEFAULT_CONSOLE_BEHIND_TLS: bool = false;

/// `smtp.tls`: STARTTLS on the submission port.
pub const DEFAULT_SMTP_TLS: Tls = Tls::Starttls;

/// `smtp.port`: 465 for `tls`, 587 for `starttls`, 25 for `none`.
pub const fn default_smtp_port(tls: Tls) -> u16 {
    match tls {
        Tls::Implicit => 465,
        Tls::Starttls => 587,
        Tls::None => 25,
    }
}

/// `smtp.timeout`: per SMTP command.
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(60);

/// `smtp.retry_initial`: the first retry after a transient failure.
pub const DEFAULT_SMTP_RETRY_INITIAL: Duration = Duration::from_secs(30);

/// `smtp.retry_max`: retries double up to this.
pub const DEFAULT_SMTP_RETRY_MAX: Duration = Duration::from_secs(3600);

/// `mailboxes[].tls`: TLS from the first byte.
pub const DEFAULT_MAILBOX_TLS: Tls = Tls::Implicit;

/// `mailboxes[].port`: 993 for `tls`, 143 otherwise.
pub const fn default_mailbox_port(tls: Tls) -> u16 {
    match tls {
        Tls::Implicit => 993,
        Tls::Starttls | Tls::None => 143,
    }
}

/// `mailboxes[].username`: the mailbox's address, as written.
pub fn default_mailbox_username(address: &str) -> String {
    address.to_owned()
}

/// `mailboxes[].folder`.
pub const DEFAULT_MAILBOX_FOLDER: &str = "INBOX";

/// `mailboxes[].category` of new tickets.
pub const DEFAULT_MAILBOX_CATEGORY: Category = Category::General;

/// `mailboxes[].priority` of new tickets.
pub const DEFAULT_MAILBOX_PRIORITY: Priority = Priority::Medium;

/// `mailboxes[].after`: a stored message is marked `\Seen`.
pub const DEFAULT_MAILBOX_AFTER: AfterAction = AfterAction::Seen;

/// `mailboxes[].poll_interval`; with IDLE also the longest wait between checks.
pub const DEFAULT_MAILBOX_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// `mailboxes[].idle`: IMAP IDLE where the server has it.
pub const DEFAULT_MAILBOX_IDLE: bool = true;

/// `mailboxes[].batch_size`: messages fetched and committed per batch.
pub const DEFAULT_MAILBOX_BATCH_SIZE: u32 = 50;

/// `mailboxes[].timeout`: per IMAP command.
pub const DEFAULT_MAILBOX_TIMEOUT: Duration = Duration::from_secs(60);

/// `mailboxes[].initial`: see [`Initial::Unseen`].
pub const DEFAULT_MAILBOX_INITIAL: Initial = Initial::Unseen;

/// `agents[].name`: the agent's id.
pub fn default_agent_name(id: &str) -> String {
    id.to_owned()
}

/// `spam.border`: believe no border's verdict headers.
pub const DEFAULT_SPAM_BORDER: crate::spam::Border = crate::spam::Border::None;

/// `spam.placement`: the border's verdict counts above its topmost
/// `Received:` line.
pub const DEFAULT_SPAM_PLACEMENT: crate::spam::Placement = crate::spam::Placement::AboveBorder;

/// `spam.border_host`: the border's host name is `desk.trusted_authserv_id`.
pub fn default_spam_border_host(trusted_authserv_id: Option<&str>) -> Option<String> {
    trusted_authserv_id.map(str::to_owned)
}

/// `spam.reply_hard_limit`: rspamd's reject score.
pub const DEFAULT_SPAM_REPLY_HARD_LIMIT: f64 = crate::spam::DEFAULT_REPLY_HARD_LIMIT;

/// `spam.rspamd_timeout`: one scan, connecting included.
pub const DEFAULT_SPAM_RSPAMD_TIMEOUT: Duration = crate::spam::DEFAULT_RSPAMD_TIMEOUT;

/// `spam.unreachable`: mail rspamd could not judge is ingested.
pub const DEFAULT_SPAM_UNREACHABLE: crate::spam::Unreachable = crate::spam::Unreachable::Accept;

/// `spam.retention_days`: held mail older than this is removed (0: never).
pub const DEFAULT_SPAM_RETENTION_DAYS: u32 = crate::spam::DEFAULT_RETENTION_DAYS;
