//! The command line: every command and option, as clap reads them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_PATH;
use crate::ticket::parse_ticket_ref;

#[derive(Parser)]
#[command(name = "ticketd", version, about = "Email-to-ticket daemon: IMAP in, sled store, SMTP out")]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "TICKETD_CONFIG", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the daemon.
    Run,
    /// Validate the configuration; print every problem with its key path.
    CheckConfig {
        /// Also log in to every IMAP mailbox and the SMTP server.
        #[arg(long)]
        connect: bool,
    },
    /// Tickets: list, show, update, answer.
    Tickets {
        #[command(subcommand)]
        command: TicketsCmd,
    },
    /// Every ticket as public JSON, one per line (JSON Lines), oldest first.
    Export,
    /// Outgoing mail: what waits, what was sent, what failed.
    Outbox {
        #[command(subcommand)]
        command: Option<OutboxCmd>,
        /// Also list sent and failed mail, not only what waits.
        #[arg(long)]
        all: bool,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Messages that could not become tickets, kept raw with a reason.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCmd,
    },
    /// Bring in the history of an old helpdesk: mbox files and Maildirs
    /// become tickets quietly (original dates, tagged `imported`, nothing
    /// sent). Running it twice creates nothing twice. The daemon must be
    /// stopped.
    Import {
        /// mbox files (mboxo/mboxrd) and Maildir folders (with Maildir++ subfolders).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Write a consistent snapshot of the whole desk to FILE (a tar; see README).
    Backup { file: PathBuf },
    /// Restore a backup into an empty store (the daemon must be stopped).
    Restore {
        file: PathBuf,
        /// Only check the file against its checksums; write nothing.
        #[arg(long)]
        verify_only: bool,
        /// Restore a backup this desk cannot check the signature of
        /// (unsigned, another desk's, or no desk.secret_file here).
        #[arg(long)]
        trust: bool,
    },
    /// The store: what it holds; retention.
    Store {
        #[command(subcommand)]
        command: StoreCmd,
    },
    /// Mail held for review (spam, blocked senders): list, show, release, drop.
    Spam {
        #[command(subcommand)]
        command: SpamCmd,
    },
    /// The blocklist: addresses and whole domains whose mail is held as spam.
    Block {
        #[command(subcommand)]
        command: BlockCmd,
    },
}

#[derive(Subcommand)]
pub enum SpamCmd {
    /// One line per held mail (oldest first).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Why it was held, and the raw mail.
    Show {
        id: u64,
        /// The entry and its raw mail (base64) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ingest it as ordinary mail: a ticket, acknowledged if the ordinary rules allow it.
    Release {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Forget it and its raw copy; it will not be ingested again.
    Drop {
        id: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum BlockCmd {
    /// Block an address (any case, any +detail) or a whole domain (`@bad.example`, subdomains included).
    Add {
        entry: String,
        #[arg(long)]
        json: bool,
    },
    /// Unblock an entry added at run time (spam.block entries are removed in the config).
    Remove {
        entry: String,
        #[arg(long)]
        json: bool,
    },
    /// Every entry: the config's, then those added at run time.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Records per table, blobs, size on disk, oldest and newest ticket, queues, cursors.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Prune what store.retention_days allows now (the daemon also does this hourly).
    Prune,
}

#[derive(Subcommand)]
pub enum OutboxCmd {
    /// Send a waiting entry now, or queue a failed one again.
    Retry { seq: u64 },
    /// Take a waiting entry out of the queue, unsent (the ticket says so).
    Drop { seq: u64 },
}

#[derive(Subcommand)]
pub enum QuarantineCmd {
    /// One line per quarantined message.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The reason and the raw message.
    Show { id: u64 },
    /// Run the message through ingest again (e.g. after a fix or a config change).
    Retry { id: u64 },
    /// Forget the message; it will not be ingested again.
    Drop { id: u64 },
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub priority: Option<String>,
    #[arg(long)]
    pub category: Option<String>,
    /// An agent id, or `none`.
    #[arg(long)]
    pub assigned_to: Option<String>,
    #[arg(long)]
    pub tag: Option<String>,
    /// A client id or address.
    #[arg(long)]
    pub client: Option<String>,
    /// Text in the title or description.
    #[arg(long, short = 'q')]
    pub query: Option<String>,
    /// -number (default), number, -updatedAt, updatedAt, -createdAt,
    /// createdAt, due (the earliest running response target first).
    #[arg(long)]
    pub sort: Option<String>,
    /// Only tickets with a response target past due (earliest due first
    /// unless --sort says otherwise).
    #[arg(long, conflicts_with = "due_soon")]
    pub overdue: bool,
    /// Only tickets with a response target due within --within (default 1h).
    #[arg(long)]
    pub due_soon: bool,
    /// How far ahead --due-soon looks, e.g. 30m, 4h.
    #[arg(long, requires = "due_soon", value_parser = humantime::parse_duration)]
    pub within: Option<std::time::Duration>,
    /// At most this many (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// A JSON array of public tickets.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum TicketsCmd {
    /// List tickets, newest first.
    List(ListArgs),
    /// Show one ticket and its conversation.
    Show {
        /// `support_ticket_42` or `42`.
        #[arg(value_parser = ticket_ref)]
        id: u64,
        /// The public ticket JSON.
        #[arg(long)]
        json: bool,
    },
    /// The original mails of a ticket, unaltered, as an mbox (redirect it
    /// to a file: a customer's bytes are not printed to a terminal).
    Raw {
        #[arg(value_parser = ticket_ref)]
        id: u64,
        /// Print to a terminal anyway (escape sequences in a mail would act
        /// on it: retitle the window, rewrite the screen, worse).
        #[arg(long)]
        force: bool,
    },
    /// Change status, priority, category, assignment, tags or resolution.
    Update {
        #[arg(value_parser = ticket_ref)]
        id: u64,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        priority: Option<String>,
        #[arg(long)]
        category: Option<String>,
        /// An agent id.
        #[arg(long, conflicts_with = "unassign")]
        assign: Option<String>,
        #[arg(long)]
        unassign: bool,
        #[arg(long)]
        tag: Vec<String>,
        #[arg(long)]
        untag: Vec<String>,
        #[arg(long)]
        resolution: Option<String>,
        /// Act as this agent (default: the admin).
        #[arg(long = "as")]
        agent: Option<String>,
    },
    /// Answer the customer (relayed like an agent's email answer).
    Reply {
        #[arg(value_parser = ticket_ref)]
        id: u64,
        /// The text; without it, read from stdin.
        #[arg(long)]
        text: Option<String>,
        /// Attach a file (repeatable).
        #[arg(long)]
        attach: Vec<PathBuf>,
        #[arg(long = "as")]
        agent: Option<String>,
    },
    /// Merge a ticket into another (#19): that one gains its entries,
    /// attachments, tags and participants (its customer too); this one is
    /// closed and points there, and its later mail lands there. Not undone.
    Merge {
        /// The ticket merged away.
        #[arg(value_parser = ticket_ref)]
        id: u64,
        /// The ticket that stays.
        #[arg(long, value_parser = ticket_ref)]
        into: u64,
        #[arg(long = "as")]
        agent: Option<String>,
    },
    /// Add an internal note (sent to no one).
    Note {
        #[arg(value_parser = ticket_ref)]
        id: u64,
        #[arg(long)]
        text: Option<String>,
        #[arg(long = "as")]
        agent: Option<String>,
    },
}

pub(crate) fn ticket_ref(s: &str) -> Result<u64, String> {
    parse_ticket_ref(s).ok_or_else(|| format!("{s:?} is not a ticket id (expected support_ticket_<n> or <n>)"))
}
