//! Typed configuration: what the running daemon uses, and how it is loaded.
//!
//! Loading goes raw → checked → runtime. The TOML file, plus
//! `TICKETD__SECTION__KEY` environment overrides, is read once into the raw
//! serde shape (`raw.rs`), where a value of the wrong type is kept as a
//! problem instead of stopping the read. The checker (`check.rs`, one
//! function per section) then validates every key and turns it into the
//! runtime values below (addresses, durations, regexes), a missing key taking
//! its named default (`defaults.rs`). All problems are collected, each with
//! its key path (`mailboxes[0].port`), and sorted in file order, so
//! `ticketd check-config` prints every one of them in one run; [`Config`]
//! exists only when there are none. Credentials (`secret.rs`) stay
//! references until a connection resolves them.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use crate::ticket::{Category, Priority};

mod check;
pub mod defaults;
mod raw;
mod secret;
#[cfg(test)]
mod tests;

pub use check::{check_header_text, looks_like_address, parse_size};
pub use defaults::{
    DEFAULT_API_CONCURRENCY, DEFAULT_API_HEADER_TIMEOUT, DEFAULT_API_IDLE_TIMEOUT, DEFAULT_API_MAX_CONNECTIONS,
    DEFAULT_API_MAX_UPLOAD_BYTES, DEFAULT_API_TIMEOUT, DEFAULT_CLOCK_INTERVAL,
    DEFAULT_NOTIFICATIONS_PER_AGENT_PER_HOUR, DEFAULT_PATH,
};
pub use secret::{MAX_SECRET_FILE_BYTES, Secret, SecretError, read_secret_file};

pub const ENV_PREFIX: &str = "TICKETD";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} not found (pass --config FILE)")]
    NotFound(PathBuf),
    #[error("cannot read config {}: {source}", path.display())]
    Read { path: PathBuf, source: config::ConfigError },
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

/// Connection security for IMAP and SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    Starttls,
    /// Cleartext; only when written out as `tls = "none"`.
    None,
}

impl Tls {
    fn parse(s: &str) -> Result<Tls, String> {
        match s {
            "tls" => Ok(Tls::Implicit),
            "starttls" => Ok(Tls::Starttls),
            "none" => Ok(Tls::None),
            _ => Err(format!("invalid tls mode {s:?}: expected \"tls\", \"starttls\" or \"none\"")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAction {
    Seen,
    Move,
    Delete,
}

impl AfterAction {
    fn parse(s: &str) -> Result<AfterAction, String> {
        match s {
            "seen" => Ok(AfterAction::Seen),
            "move" => Ok(AfterAction::Move),
            "delete" => Ok(AfterAction::Delete),
            _ => Err(format!("invalid {s:?}: expected \"seen\", \"move\" or \"delete\"")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreConfig,
    pub desk: DeskConfig,
    pub attachments: AttachmentsConfig,
    pub smtp: SmtpConfig,
    pub mailboxes: Vec<MailboxConfig>,
    pub agents: Vec<Agent>,
    pub rules: Vec<Rule>,
    /// The local HTTP API; off without an `[api]` section.
    pub api: Option<ApiConfig>,
    /// `[spam]`: whose verdicts to believe, whom to ask, whom to block.
    pub spam: crate::spam::SpamConfig,
    /// Response targets (`[[sla]]`, `[[calendars]]`) and the timers of
    /// `[desk]` (`sla_warn_before`, `pending_reminder_after`,
    /// `pending_resolve_after`, `close_resolved_after`): DESIGN §12.
    pub sla: crate::sla::SlaConfig,
    /// This node of a cluster on PostgreSQL (`store.backend = "postgres"`).
    pub cluster: Option<ClusterConfig>,
    /// Not errors, but worth saying (check-config prints them).
    pub warnings: Vec<Problem>,
}

/// Where the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    /// `unix:/run/ticketd/api.sock`: created 0660, a stale one replaced.
    Unix(PathBuf),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Listen {
    /// Where links to this listener point: an unspecified address
    /// (`0.0.0.0`) is reached through loopback; a unix socket has no URL of
    /// its own (`curl --unix-socket` takes any host, we write `localhost`).
    pub fn base_url(&self) -> String {
        match self {
            Listen::Tcp(a) if a.ip().is_unspecified() => {
                let ip: std::net::IpAddr = if a.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                };
                format!("http://{}", std::net::SocketAddr::new(ip, a.port()))
            }
            Listen::Tcp(a) => format!("http://{a}"),
            Listen::Unix(_) => "http://localhost".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: Listen,
    /// A unix socket served beside `listen`, for the CLI on this machine
    /// (it prefers it: the socket's owner is checked, no port to squat).
    pub socket: Option<PathBuf>,
    /// Connections open at once; more are refused at once, not queued.
    pub max_connections: usize,
    /// A request's header must arrive within this (and an idle keep-alive
    /// connection is closed after it).
    pub header_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed
    /// (a stalled upload, a reader that stopped reading).
    pub idle_timeout: Duration,
    /// The admin's bearer token (read when the server or the CLI starts).
    pub token_file: PathBuf,
    /// Agent id → the file holding that agent's own token.
    pub agent_tokens: Vec<(String, PathBuf)>,
    /// Attachment downloads without a token: the URL (a SHA-256 and the
    /// exact file name) is the capability.
    pub public_attachments: bool,
    /// Bound on one request, body upload included.
    pub timeout: Duration,
    /// Largest multipart reply, all files together.
    pub max_upload_bytes: u64,
    /// Requests handled at once; more wait.
    pub concurrency: usize,
    /// The desk console served at `/desk/` on this listener (`[console]`).
    pub console: ConsoleConfig,
}

/// `[console]`: the agents' web console (DESIGN section 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_max: Duration,
    /// A TLS proxy sits in front: cookies get `Secure` and the `__Host-`
    /// prefix, and sessions are allowed on a non-loopback listener.
    pub behind_tls: bool,
    /// The origin browsers use (`https://desk.example.com`) when it is not
    /// what the `Host` header says (a proxy that rewrites it); state
    /// changes must come from it.
    pub public_url: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: defaults::DEFAULT_CONSOLE_ENABLED,
            session_idle: defaults::DEFAULT_CONSOLE_SESSION_IDLE,
            session_max: defaults::DEFAULT_CONSOLE_SESSION_MAX,
            behind_tls: defaults::DEFAULT_CONSOLE_BEHIND_TLS,
            public_url: None,
        }
    }
}

impl ApiConfig {
    /// An API at `listen` with every other key at its default (tests,
    /// benchmarks); the token files are left empty.
    pub fn with_defaults(listen: Listen) -> ApiConfig {
        ApiConfig {
            listen,
            socket: None,
            max_connections: DEFAULT_API_MAX_CONNECTIONS,
            header_timeout: DEFAULT_API_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_API_IDLE_TIMEOUT,
            token_file: PathBuf::new(),
            agent_tokens: Vec::new(),
            public_attachments: defaults::DEFAULT_API_PUBLIC_ATTACHMENTS,
            timeout: DEFAULT_API_TIMEOUT,
            max_upload_bytes: DEFAULT_API_MAX_UPLOAD_BYTES,
            concurrency: DEFAULT_API_CONCURRENCY,
            console: ConsoleConfig::default(),
        }
    }
}

/// Which engine holds the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// The embedded sled database at `store.path` (the default).
    Sled,
    /// A PostgreSQL database that several nodes share; the URL is a
    /// credential (`store.url_file`, or `store.url`), read when the store opens.
    Postgres { url: Secret },
}

/// `[cluster]`: this node of a cluster on PostgreSQL (DESIGN section 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Unique in the cluster: 1 to 40 letters, digits, '.', '_' or '-'.
    pub node: String,
    /// Where the other nodes reach this node's API (`http://host:port`);
    /// `None` without `[api]`.
    pub advertise: Option<String>,
    /// The detection window for a lost leader.
    pub lease_timeout: Duration,
    /// A standby forwards changes to the leader's API (else it answers 503
    /// naming the leader).
    pub forward: bool,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub path: PathBuf,
    pub attachments_dir: PathBuf,
    pub cache_bytes: u64,
    /// Raw copies and sent-mail bodies of tickets closed longer than this
    /// many days are pruned (see `desk::retention`); 0 keeps them forever.
    pub retention_days: u32,
}

#[derive(Debug, Clone)]
pub struct DeskConfig {
    pub subject_tag: String,
    pub display_name: String,
    pub secret_file: Option<PathBuf>,
    pub acks_per_sender_per_hour: u32,
    /// Agent notifications about one ticket per hour; more are not sent
    /// (the ticket still records every mail).
    pub notifications_per_ticket_per_hour: u32,
    /// Notifications one agent gets an hour; past it they are held and
    /// sent as one digest (a flood of new tickets never buries an inbox).
    pub notifications_per_agent_per_hour: u32,
    /// An agent's reply proves who they are by quoting the notification's
    /// agent-only Message-ID for this many days after it was sent.
    pub agent_proof_days: u32,
    pub trust_from_header: bool,
    pub trusted_authserv_id: Option<String>,
    /// No acknowledgement to a sender whose address our border's
    /// `Authentication-Results` show failing both SPF and DKIM alignment
    /// (DMARC fail): an acknowledgement to a forged sender is backscatter.
    /// Default: on where `trusted_authserv_id` is set, off without it.
    pub acks_require_aligned_sender: bool,
    pub send_receipts: bool,
    /// Messages larger than this (RFC822.SIZE) are quarantined unread.
    pub max_message_bytes: u64,
    /// How often time-based work (digests, response targets, timers) is
    /// looked at.
    pub clock_interval: Duration,
    /// Right-hand side of the Message-IDs we generate.
    pub message_id_domain: String,
    pub templates_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AttachmentsConfig {
    pub base_url: String,
    pub max_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub hello_name: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// First retry delay after a transient failure; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone)]
pub struct MailboxConfig {
    pub name: String,
    pub address: String,
    pub display_name: Option<String>,
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: String,
    pub password: Secret,
    pub folder: String,
    pub category: Category,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub after: AfterAction,
    pub move_to: Option<String>,
    pub poll_interval: Duration,
    pub idle: bool,
    pub batch_size: u32,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// What to do with mail already in the folder at first contact.
    pub initial: Initial,
}

/// First contact with a mailbox that already holds mail (no cursor yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initial {
    /// Start at UIDNEXT: nothing already there is read.
    New,
    /// Unread mail already there is work (tickets, acknowledgements); mail
    /// already read is history and is skipped. The default: nothing a
    /// customer sent and nobody read is lost, and nobody is flooded.
    Unseen,
    /// Everything already there becomes tickets, quietly: original dates,
    /// threaded, no acknowledgements, no notifications.
    Import,
}

impl Initial {
    fn parse(s: &str) -> Result<Initial, String> {
        match s {
            "new" => Ok(Initial::New),
            "unseen" => Ok(Initial::Unseen),
            "import" => Ok(Initial::Import),
            _ => Err(format!("invalid {s:?}: expected \"new\", \"unseen\" or \"import\"")),
        }
    }

    /// What check-config says will happen on first start.
    pub fn describe(self) -> &'static str {
        match self {
            Initial::New => "mail already in the folder is left alone; only mail arriving from now on becomes tickets",
            Initial::Unseen => {
                "unread mail already in the folder becomes tickets (with acknowledgements); mail already read is skipped"
            }
            Initial::Import => {
                "all mail already in the folder becomes tickets with its original dates, quietly (no acknowledgements, no notifications)"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub subject: Option<Regex>,
    pub body: Option<Regex>,
    pub priority: Option<Priority>,
    pub category: Option<Category>,
    pub tags: Vec<String>,
}

impl Config {
    /// Reads the file and the `TICKETD__…` environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// Like [`Config::load`], with an injected environment (tests).
    pub fn load_with_env(
        path: &Path,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Config, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::NotFound(path.to_owned()));
        }
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX).separator("__").try_parsing(false).source(env.clone()),
            )
            .build()
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        // Through a JSON value (sorted maps): the same file gives the same
        // problems in the same order every run.
        let value: serde_json::Value =
            built.try_deserialize().map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let mut unknown = BTreeSet::new();
        let raw: Result<raw::RawConfig, _> =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut |p: serde_ignored::Path<
                '_,
            >| {
                unknown.insert(raw::bracket_indices(&p.to_string()));
            }));
        for key in &unknown {
            problems.push(Problem { path: key.clone(), message: "unknown key".into() });
        }
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                let path = raw::bracket_indices(&e.path().to_string());
                problems.push(Problem { path, message: e.into_inner().to_string() });
                problems.sort_by_key(|a| path_order(&a.path));
                return Err(ConfigError::Invalid(problems));
            }
        };
        let credentials = match &env {
            Some(env) => env.get("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            None => std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        };
        let mut checker = check::Checker::new(&mut problems, &mut warnings, credentials);
        let mut config = check::config(&mut checker, raw);
        problems.sort_by_key(|a| path_order(&a.path));
        warnings.sort_by_key(|a| path_order(&a.path));
        config.warnings = warnings;
        if problems.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems)) }
    }

    pub fn agent_by_email(&self, email: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.email.eq_ignore_ascii_case(email))
    }

    pub fn mailbox(&self, name: &str) -> Option<&MailboxConfig> {
        self.mailboxes.iter().find(|m| m.name == name)
    }
}

/// Sorts paths as a reader expects: sections in file order, list entries
/// by number (`mailboxes[2]` before `mailboxes[10]`).
fn path_order(path: &str) -> Vec<(u8, String, usize)> {
    const SECTIONS: &[&str] = &[
        "store",
        "cluster",
        "desk",
        "attachments",
        "api",
        "console",
        "smtp",
        "mailboxes",
        "agents",
        "rules",
        "spam",
        "sla",
        "calendars",
    ];
    path.split('.')
        .map(|part| {
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse().unwrap_or(0)),
                None => (part, 0),
            };
            let rank = SECTIONS.iter().position(|s| *s == name).unwrap_or(SECTIONS.len()) as u8;
            (rank, name.to_owned(), index)
        })
        .collect()
}
