//! Typed configuration. The TOML file (plus `TICKETD__SECTION__KEY`
//! environment overrides) is read once into a raw serde shape, then every key
//! is validated and turned into runtime values. All problems are collected so
//! `ticketd check-config` can print them at once, each with its key path.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::ticket::{Category, Priority};

pub const ENV_PREFIX: &str = "TICKETD";
pub const DEFAULT_PATH: &str = "/etc/ticketd/ticketd.toml";

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

/// Where a credential comes from. Resolved at each connection so rotated
/// files and tokens are picked up without a restart; never logged.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
    Command(String),
    /// XOAUTH2 bearer token printed by a command.
    OAuth2Command(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret::Inline(<redacted>)"),
            Secret::File(p) => write!(f, "Secret::File({})", p.display()),
            Secret::Command(_) => f.write_str("Secret::Command(<redacted>)"),
            Secret::OAuth2Command(_) => f.write_str("Secret::OAuth2Command(<redacted>)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read password file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("password command failed: {0}")]
    Command(String),
}

/// Largest credential file read (a token, a password, the desk secret).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Reads a credential file: a regular file (after symlinks) of at most
/// [`MAX_SECRET_FILE_BYTES`]. Opened without blocking, so a FIFO put
/// there fails at once instead of hanging the start; `/dev/zero` and other
/// devices are refused instead of read forever.
pub fn read_secret_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut buf = Vec::new();
    f.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("larger than {MAX_SECRET_FILE_BYTES} bytes: not a credential"),
        ));
    }
    Ok(buf)
}

impl Secret {
    pub fn is_oauth2(&self) -> bool {
        matches!(self, Secret::OAuth2Command(_))
    }

    /// The credential's current value, without a trailing newline.
    pub async fn resolve(&self) -> Result<String, SecretError> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(path) => {
                let p = path.clone();
                let read = tokio::task::spawn_blocking(move || read_secret_file(&p))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                read.and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
                    .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|source| SecretError::File { path: path.clone(), source })
            }
            Secret::Command(cmd) | Secret::OAuth2Command(cmd) => {
                let run = tokio::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output();
                let out = tokio::time::timeout(Duration::from_secs(30), run)
                    .await
                    .map_err(|_| SecretError::Command("timed out after 30s".into()))?
                    .map_err(|e| SecretError::Command(e.to_string()))?;
                if !out.status.success() {
                    return Err(SecretError::Command(format!("exited with {}", out.status)));
                }
                let s =
                    String::from_utf8(out.stdout).map_err(|_| SecretError::Command("output is not UTF-8".into()))?;
                Ok(s.trim_end_matches(['\r', '\n']).to_owned())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAction {
    Seen,
    Move,
    Delete,
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
    /// Not errors, but worth saying (check-config prints them).
    pub warnings: Vec<Problem>,
}

/// Open API connections past which new ones are refused: well inside the
/// unit's `LimitNOFILE` (8192), which also covers IMAP, SMTP and the store.
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 512;
pub const DEFAULT_API_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_API_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_API_MAX_UPLOAD_BYTES: u64 = 64 << 20;
pub const DEFAULT_API_CONCURRENCY: usize = 32;
pub const DEFAULT_NOTIFICATIONS_PER_AGENT_PER_HOUR: u32 = 60;
pub const DEFAULT_CLOCK_INTERVAL: Duration = Duration::from_secs(30);

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
            public_attachments: false,
            timeout: DEFAULT_API_TIMEOUT,
            max_upload_bytes: DEFAULT_API_MAX_UPLOAD_BYTES,
            concurrency: DEFAULT_API_CONCURRENCY,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
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
        let raw: Result<RawConfig, _> =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut |p: serde_ignored::Path<
                '_,
            >| {
                unknown.insert(bracket_indices(&p.to_string()));
            }));
        for key in &unknown {
            problems.push(Problem { path: key.clone(), message: "unknown key".into() });
        }
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                let path = bracket_indices(&e.path().to_string());
                problems.push(Problem { path, message: e.into_inner().to_string() });
                problems.sort_by_key(|a| path_order(&a.path));
                return Err(ConfigError::Invalid(problems));
            }
        };
        let credentials = match &env {
            Some(env) => env.get("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            None => std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        };
        let mut checker = Checker { problems: &mut problems, warnings: &mut warnings, credentials };
        let mut config = raw.validate(&mut checker);
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

/// A leaf value that does not fail deserialisation when it has the wrong
/// type: the problem is kept and reported with every other one, so
/// check-config lists all of them in one run.
#[derive(Debug)]
struct Lenient<T>(Result<T, String>);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let first = serde_json::from_value::<T>(v.clone());
        Ok(Lenient(match (first, &v) {
            (Ok(t), _) => Ok(t),
            // Environment overrides arrive as strings: "2525", "true".
            (Err(e), serde_json::Value::String(s)) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(parsed) if !parsed.is_string() => serde_json::from_value::<T>(parsed).map_err(|_| e.to_string()),
                _ => Err(e.to_string()),
            },
            (Err(e), _) => Err(e.to_string()),
        }))
    }
}

type L<T> = Option<Lenient<T>>;

#[derive(Deserialize, Default)]
struct RawConfig {
    store: Option<RawStore>,
    #[serde(default)]
    desk: RawDesk,
    #[serde(default)]
    attachments: RawAttachments,
    smtp: Option<RawSmtp>,
    #[serde(default)]
    mailboxes: Vec<RawMailbox>,
    #[serde(default)]
    agents: Vec<RawAgent>,
    #[serde(default)]
    rules: Vec<RawRule>,
    api: Option<RawApi>,
}

#[derive(Deserialize)]
struct RawApi {
    listen: L<String>,
    socket: L<PathBuf>,
    token_file: L<PathBuf>,
    max_connections: L<usize>,
    header_timeout: L<String>,
    idle_timeout: L<String>,
    public_attachments: L<bool>,
    timeout: L<String>,
    max_upload_bytes: L<String>,
    concurrency: L<usize>,
}

#[derive(Deserialize)]
struct RawStore {
    path: L<PathBuf>,
    attachments_dir: L<PathBuf>,
    cache_capacity: L<String>,
    retention_days: L<u32>,
}

#[derive(Deserialize, Default)]
struct RawDesk {
    subject_tag: L<String>,
    display_name: L<String>,
    secret_file: L<PathBuf>,
    acks_per_sender_per_hour: L<u32>,
    notifications_per_ticket_per_hour: L<u32>,
    notifications_per_agent_per_hour: L<u32>,
    agent_proof_days: L<u32>,
    trust_from_header: L<bool>,
    trusted_authserv_id: L<String>,
    send_receipts: L<bool>,
    max_message_bytes: L<u64>,
    clock_interval: L<String>,
    message_id_domain: L<String>,
    templates_dir: L<PathBuf>,
}

#[derive(Deserialize, Default)]
struct RawAttachments {
    base_url: L<String>,
    max_bytes: L<u64>,
}

// Not `#[serde(flatten)]`: flattening hides unknown keys from serde_ignored.
struct RawPassword {
    password: Option<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    oauth2_token_command: Option<String>,
}

#[derive(Deserialize)]
struct RawSmtp {
    host: L<String>,
    port: L<u16>,
    tls: L<String>,
    username: L<String>,
    password: L<String>,
    password_file: L<PathBuf>,
    password_command: L<String>,
    oauth2_token_command: L<String>,
    hello_name: L<String>,
    ca_file: L<PathBuf>,
    timeout: L<String>,
    retry_initial: L<String>,
    retry_max: L<String>,
}

#[derive(Deserialize)]
struct RawMailbox {
    name: L<String>,
    address: L<String>,
    display_name: L<String>,
    host: L<String>,
    port: L<u16>,
    tls: L<String>,
    username: L<String>,
    password: L<String>,
    password_file: L<PathBuf>,
    password_command: L<String>,
    oauth2_token_command: L<String>,
    folder: L<String>,
    category: L<String>,
    priority: L<String>,
    tags: L<Vec<String>>,
    after: L<String>,
    move_to: L<String>,
    poll_interval: L<String>,
    idle: L<bool>,
    batch_size: L<u32>,
    ca_file: L<PathBuf>,
    timeout: L<String>,
    initial: L<String>,
}

#[derive(Deserialize)]
struct RawAgent {
    id: L<String>,
    email: L<String>,
    name: L<String>,
    token_file: L<PathBuf>,
}

#[derive(Deserialize)]
struct RawRule {
    subject: L<String>,
    body: L<String>,
    priority: L<String>,
    category: L<String>,
    tags: L<Vec<String>>,
}

struct Checker<'a> {
    problems: &'a mut Vec<Problem>,
    warnings: &'a mut Vec<Problem>,
    /// `$CREDENTIALS_DIRECTORY` (systemd LoadCredential=), if set.
    credentials: Option<PathBuf>,
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), message: message.into() });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem { path: path.into(), message: message.into() });
    }

    /// The value if it has the right type; otherwise the problem is recorded.
    fn get<T>(&mut self, path: &str, v: L<T>) -> Option<T> {
        match v?.0 {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    fn required<T>(&mut self, path: &str, v: L<T>, what: &str) -> Option<T> {
        let missing = v.is_none();
        let got = self.get(path, v);
        if missing {
            self.err(path, format!("missing: {what}"));
        }
        got
    }

    fn duration(&mut self, path: &str, value: L<String>, default: Duration) -> Duration {
        let Some(v) = self.get(path, value) else { return default };
        match humantime::parse_duration(&v) {
            Ok(d) if d.is_zero() => {
                self.err(path, "must be greater than zero");
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.err(path, format!("invalid duration {v:?} ({e}); write e.g. \"60s\" or \"5m\""));
                default
            }
        }
    }

    fn vocab<T: std::str::FromStr<Err = crate::ticket::VocabError>>(
        &mut self,
        path: &str,
        value: L<String>,
        default: T,
    ) -> T {
        match self.get(path, value).map(|v| v.parse()) {
            None => default,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                self.err(path, e.to_string());
                default
            }
        }
    }

    fn address(&mut self, path: &str, value: &str) {
        if !looks_like_address(value) {
            self.err(path, format!("{value:?} is not an email address"));
        }
    }

    /// Text that ends up in a mail header: one line, no control characters
    /// or direction overrides, a sane length.
    fn header_text(&mut self, path: &str, value: &str) {
        if let Err(e) = check_header_text(value) {
            self.err(path, e);
        }
    }

    /// Where a secret file is really read: under systemd, the credential of
    /// the same name in `$CREDENTIALS_DIRECTORY`.
    fn credential(&self, configured: PathBuf) -> PathBuf {
        match (&self.credentials, configured.file_name()) {
            (Some(dir), Some(name)) if dir.join(name).is_file() => dir.join(name),
            _ => configured,
        }
    }

    /// A secret file must be readable by us and by nobody else. Missing is a
    /// warning (a fresh install has no passwords yet; the connection fails
    /// with a clear error until the file is there).
    fn secret_file(&mut self, path: &str, p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.warn(path, format!("{} does not exist yet: create it (mode 0600) before starting", p.display()))
            }
            Err(e) => self.err(path, format!("cannot read {}: {e}", p.display())),
            Ok(m) if !m.is_file() => self.err(path, format!("{} is not a file", p.display())),
            Ok(m) => {
                if let Err(e) = read_secret_file(p) {
                    self.err(path, format!("cannot read {}: {e}", p.display()));
                } else if m.permissions().mode() & 0o044 != 0 {
                    self.warn(
                        path,
                        format!(
                            "{} is readable by others (mode {:o}): chmod 600",
                            p.display(),
                            m.permissions().mode() & 0o777
                        ),
                    );
                }
            }
        }
    }

    fn secret(&mut self, path: &str, raw: RawPassword, oauth_allowed: bool) -> Option<Secret> {
        let mut found = Vec::new();
        if let Some(p) = raw.password {
            found.push(Secret::Inline(p));
        }
        if let Some(p) = raw.password_file {
            let p = self.credential(p);
            self.secret_file(&format!("{path}.password_file"), &p);
            found.push(Secret::File(p));
        }
        if let Some(c) = raw.password_command {
            found.push(Secret::Command(c));
        }
        if let Some(c) = raw.oauth2_token_command {
            if !oauth_allowed {
                self.err(format!("{path}.oauth2_token_command"), "XOAUTH2 is only supported for mailboxes");
            }
            found.push(Secret::OAuth2Command(c));
        }
        if found.len() > 1 {
            self.err(path, "set only one of password, password_file, password_command, oauth2_token_command");
        }
        found.into_iter().next()
    }

    fn regex(&mut self, path: &str, value: Option<String>) -> Option<Regex> {
        let v = value?;
        match Regex::new(&v) {
            Ok(r) => Some(r),
            Err(e) => {
                self.err(path, format!("invalid regex: {e}"));
                None
            }
        }
    }
}

/// Most characters of a display name or subject tag.
const MAX_HEADER_TEXT: usize = 200;

/// One line of header text: no control characters, no direction overrides,
/// at most [`MAX_HEADER_TEXT`] characters.
pub fn check_header_text(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control() || crate::text::is_format(c)) {
        return Err(format!("{s:?} contains control or direction-override characters"));
    }
    if s.chars().count() > MAX_HEADER_TEXT {
        return Err(format!("longer than {MAX_HEADER_TEXT} characters"));
    }
    Ok(())
}

pub fn looks_like_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && s.len() <= 254
        && s.is_ascii()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c))
}

impl RawConfig {
    fn validate(self, c: &mut Checker<'_>) -> Config {
        let store = match self.store {
            Some(s) => {
                let path = c.required("store.path", s.path, "where the sled database lives").unwrap_or_default();
                let attachments_dir = c
                    .get("store.attachments_dir", s.attachments_dir)
                    .unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).join("attachments"));
                let cache_bytes = match c.get("store.cache_capacity", s.cache_capacity) {
                    None => 8 << 20,
                    Some(v) => parse_size(&v).unwrap_or_else(|| {
                        c.err("store.cache_capacity", format!("invalid size {v:?}; write e.g. \"64MiB\""));
                        8 << 20
                    }),
                };
                let retention_days = c.get("store.retention_days", s.retention_days).unwrap_or(0);
                StoreConfig { path, attachments_dir, cache_bytes, retention_days }
            }
            None => {
                c.err("store.path", "missing: where the sled database lives");
                StoreConfig { path: PathBuf::new(), attachments_dir: PathBuf::new(), cache_bytes: 0, retention_days: 0 }
            }
        };

        if self.mailboxes.is_empty() {
            c.err("mailboxes", "at least one [[mailboxes]] entry is needed");
        }
        let mut names = BTreeSet::new();
        let mut mailboxes = Vec::new();
        for (i, m) in self.mailboxes.into_iter().enumerate() {
            let p = format!("mailboxes[{i}]");
            let at = |k: &str| format!("{p}.{k}");
            let name = c.required(&at("name"), m.name, "a name for logs and the store").unwrap_or_default();
            if !name.is_empty() && !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
                c.err(at("name"), "use letters, digits, '-', '_' or '.'");
            }
            if !names.insert(name.clone()) && !name.is_empty() {
                c.err(at("name"), format!("duplicate mailbox name {name:?}"));
            }
            let address = c.required(&at("address"), m.address, "the support address").unwrap_or_default();
            if !address.is_empty() {
                c.address(&at("address"), &address);
            }
            let display_name = c.get(&at("display_name"), m.display_name);
            if let Some(d) = &display_name {
                c.header_text(&at("display_name"), d);
            }
            let host = c.required(&at("host"), m.host, "the IMAP server").unwrap_or_default();
            let tls = match c.get(&at("tls"), m.tls).as_deref().map(Tls::parse).unwrap_or(Ok(Tls::Implicit)) {
                Ok(t) => t,
                Err(e) => {
                    c.err(at("tls"), e);
                    Tls::Implicit
                }
            };
            let port = c.get(&at("port"), m.port).unwrap_or(if tls == Tls::Implicit { 993 } else { 143 });
            let raw_password = RawPassword {
                password: c.get(&at("password"), m.password),
                password_file: c.get(&at("password_file"), m.password_file),
                password_command: c.get(&at("password_command"), m.password_command),
                oauth2_token_command: c.get(&at("oauth2_token_command"), m.oauth2_token_command),
            };
            let password = c.secret(&p, raw_password, true).unwrap_or_else(|| {
                c.err(at("password"), "missing: set password, password_file, password_command or oauth2_token_command");
                Secret::Inline(String::new())
            });
            let after = match c.get(&at("after"), m.after).as_deref().unwrap_or("seen") {
                "seen" => AfterAction::Seen,
                "move" => AfterAction::Move,
                "delete" => AfterAction::Delete,
                other => {
                    c.err(at("after"), format!("invalid {other:?}: expected \"seen\", \"move\" or \"delete\""));
                    AfterAction::Seen
                }
            };
            let move_to = c.get(&at("move_to"), m.move_to);
            if after == AfterAction::Move && move_to.is_none() {
                c.err(at("move_to"), "missing: after = \"move\" needs a folder");
            }
            let batch_size = c.get(&at("batch_size"), m.batch_size).unwrap_or(50);
            if batch_size == 0 {
                c.err(at("batch_size"), "must be at least 1");
            }
            let initial =
                match c.get(&at("initial"), m.initial).as_deref().map(Initial::parse).unwrap_or(Ok(Initial::Unseen)) {
                    Ok(v) => v,
                    Err(e) => {
                        c.err(at("initial"), e);
                        Initial::Unseen
                    }
                };
            let tags = c.get(&at("tags"), m.tags).unwrap_or_default();
            for (j, t) in tags.iter().enumerate() {
                if let Err(e) = crate::ticket::parse_tag(t) {
                    c.err(format!("{p}.tags[{j}]"), e.0);
                }
            }
            mailboxes.push(MailboxConfig {
                username: c.get(&at("username"), m.username).unwrap_or_else(|| address.clone()),
                name,
                address: address.to_ascii_lowercase(),
                display_name,
                host,
                port,
                tls,
                password,
                folder: c.get(&at("folder"), m.folder).unwrap_or_else(|| "INBOX".into()),
                category: c.vocab(&at("category"), m.category, Category::General),
                priority: c.vocab(&at("priority"), m.priority, Priority::Medium),
                tags,
                after,
                move_to,
                poll_interval: c.duration(&at("poll_interval"), m.poll_interval, Duration::from_secs(60)),
                idle: c.get(&at("idle"), m.idle).unwrap_or(true),
                batch_size: batch_size.max(1),
                ca_file: c.get(&at("ca_file"), m.ca_file),
                timeout: c.duration(&at("timeout"), m.timeout, Duration::from_secs(60)),
                initial,
            });
        }

        let smtp = match self.smtp {
            Some(s) => {
                let host = c.required("smtp.host", s.host, "the SMTP server").unwrap_or_default();
                let tls = match c.get("smtp.tls", s.tls).as_deref().map(Tls::parse).unwrap_or(Ok(Tls::Starttls)) {
                    Ok(t) => t,
                    Err(e) => {
                        c.err("smtp.tls", e);
                        Tls::Starttls
                    }
                };
                let raw_password = RawPassword {
                    password: c.get("smtp.password", s.password),
                    password_file: c.get("smtp.password_file", s.password_file),
                    password_command: c.get("smtp.password_command", s.password_command),
                    oauth2_token_command: c.get("smtp.oauth2_token_command", s.oauth2_token_command),
                };
                let password = c.secret("smtp", raw_password, false);
                let username = c.get("smtp.username", s.username);
                if username.is_some() && password.is_none() {
                    c.err("smtp.password", "missing: smtp.username is set, so AUTH needs a password");
                }
                let hello_name = c.get("smtp.hello_name", s.hello_name);
                if let Some(h) = &hello_name {
                    c.header_text("smtp.hello_name", h);
                }
                SmtpConfig {
                    host,
                    port: c.get("smtp.port", s.port).unwrap_or(match tls {
                        Tls::Implicit => 465,
                        Tls::Starttls => 587,
                        Tls::None => 25,
                    }),
                    tls,
                    username,
                    password,
                    hello_name,
                    ca_file: c.get("smtp.ca_file", s.ca_file),
                    timeout: c.duration("smtp.timeout", s.timeout, Duration::from_secs(60)),
                    retry_initial: c.duration("smtp.retry_initial", s.retry_initial, Duration::from_secs(30)),
                    retry_max: c.duration("smtp.retry_max", s.retry_max, Duration::from_secs(3600)),
                }
            }
            None => {
                c.err("smtp.host", "missing: [smtp] is needed to send acknowledgements and replies");
                SmtpConfig {
                    host: String::new(),
                    port: 0,
                    tls: Tls::Starttls,
                    username: None,
                    password: None,
                    hello_name: None,
                    ca_file: None,
                    timeout: Duration::from_secs(60),
                    retry_initial: Duration::from_secs(30),
                    retry_max: Duration::from_secs(3600),
                }
            }
        };

        let mut agents = Vec::new();
        let mut agent_ids = BTreeSet::new();
        let mut agent_tokens = Vec::new();
        for (i, a) in self.agents.into_iter().enumerate() {
            let p = format!("agents[{i}]");
            let id = c.required(&format!("{p}.id"), a.id, "an id like agent_alice").unwrap_or_default();
            if let Some(t) = c.get(&format!("{p}.token_file"), a.token_file) {
                agent_tokens.push((i, id.clone(), t));
            }
            // The id travels inside Message-IDs: keep it to a safe alphabet.
            let safe = id.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-');
            if !id.starts_with("agent_") || id.len() <= "agent_".len() || !safe {
                c.err(format!("{p}.id"), format!("{id:?} must look like \"agent_<name>\" (a-z, 0-9, '_', '-')"));
            }
            if !agent_ids.insert(id.clone()) {
                c.err(format!("{p}.id"), format!("duplicate agent id {id:?}"));
            }
            let email = c.required(&format!("{p}.email"), a.email, "the agent's address").unwrap_or_default();
            c.address(&format!("{p}.email"), &email);
            if mailboxes.iter().any(|m| m.address.eq_ignore_ascii_case(&email)) {
                c.err(format!("{p}.email"), "an agent cannot use a support mailbox address");
            }
            let name = c.get(&format!("{p}.name"), a.name);
            if let Some(n) = &name {
                c.header_text(&format!("{p}.name"), n);
            }
            agents.push(Agent { name: name.unwrap_or_else(|| id.clone()), email: email.to_ascii_lowercase(), id });
        }

        let mut rules = Vec::new();
        for (i, r) in self.rules.into_iter().enumerate() {
            let p = format!("rules[{i}]");
            let subject = c.get(&format!("{p}.subject"), r.subject);
            let body = c.get(&format!("{p}.body"), r.body);
            let priority = c.get(&format!("{p}.priority"), r.priority);
            let category = c.get(&format!("{p}.category"), r.category);
            let tags = c.get(&format!("{p}.tags"), r.tags).unwrap_or_default();
            if subject.is_none() && body.is_none() {
                c.err(&p, "a rule needs `subject` and/or `body`");
            }
            if priority.is_none() && category.is_none() && tags.is_empty() {
                c.err(&p, "a rule needs at least one of `priority`, `category`, `tags`");
            }
            let priority = priority.and_then(|v| {
                v.parse().map_err(|e: crate::ticket::VocabError| c.err(format!("{p}.priority"), e.to_string())).ok()
            });
            let category = category.and_then(|v| {
                v.parse().map_err(|e: crate::ticket::VocabError| c.err(format!("{p}.category"), e.to_string())).ok()
            });
            for (j, t) in tags.iter().enumerate() {
                if let Err(e) = crate::ticket::parse_tag(t) {
                    c.err(format!("{p}.tags[{j}]"), e.0);
                }
            }
            rules.push(Rule {
                subject: c.regex(&format!("{p}.subject"), subject),
                body: c.regex(&format!("{p}.body"), body),
                priority,
                category,
                tags,
            });
        }

        let d = self.desk;
        let subject_tag = c.get("desk.subject_tag", d.subject_tag).unwrap_or_else(|| "Ticket".into());
        if subject_tag.is_empty() || subject_tag.contains(['[', ']', '#']) {
            c.err("desk.subject_tag", "must be non-empty and contain no '[', ']' or '#'");
        }
        c.header_text("desk.subject_tag", &subject_tag);
        let secret_file = c.get("desk.secret_file", d.secret_file).map(|p| c.credential(p));
        if let Some(p) = &secret_file {
            c.secret_file("desk.secret_file", p);
            match read_secret_file(p) {
                Ok(b) if b.trim_ascii().len() < 16 => c.err("desk.secret_file", "the secret must be at least 16 bytes"),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => c.err("desk.secret_file", format!("{}: {e}", p.display())),
            }
        }
        let message_id_domain = c.get("desk.message_id_domain", d.message_id_domain).unwrap_or_else(|| {
            mailboxes
                .first()
                .and_then(|m| m.address.rsplit_once('@').map(|(_, dom)| dom.to_owned()))
                .unwrap_or_else(|| "ticketd.invalid".into())
        });
        if !looks_like_address(&format!("x@{message_id_domain}")) {
            c.err("desk.message_id_domain", format!("{message_id_domain:?} is not a domain"));
        }
        let display_name = c.get("desk.display_name", d.display_name).unwrap_or_else(|| "Support".into());
        c.header_text("desk.display_name", &display_name);
        let trusted_authserv_id = c.get("desk.trusted_authserv_id", d.trusted_authserv_id);
        let desk = DeskConfig {
            subject_tag,
            display_name,
            secret_file,
            acks_per_sender_per_hour: c.get("desk.acks_per_sender_per_hour", d.acks_per_sender_per_hour).unwrap_or(5),
            notifications_per_ticket_per_hour: c
                .get("desk.notifications_per_ticket_per_hour", d.notifications_per_ticket_per_hour)
                .unwrap_or(20),
            notifications_per_agent_per_hour: c
                .get("desk.notifications_per_agent_per_hour", d.notifications_per_agent_per_hour)
                .unwrap_or(DEFAULT_NOTIFICATIONS_PER_AGENT_PER_HOUR),
            agent_proof_days: c.get("desk.agent_proof_days", d.agent_proof_days).unwrap_or(30),
            trust_from_header: c.get("desk.trust_from_header", d.trust_from_header).unwrap_or(false),
            trusted_authserv_id,
            send_receipts: c.get("desk.send_receipts", d.send_receipts).unwrap_or(false),
            max_message_bytes: c.get("desk.max_message_bytes", d.max_message_bytes).unwrap_or(50 << 20),
            clock_interval: c.duration("desk.clock_interval", d.clock_interval, DEFAULT_CLOCK_INTERVAL),
            message_id_domain,
            templates_dir: c.get("desk.templates_dir", d.templates_dir),
        };

        let api = validate_api(c, self.api, agent_tokens);
        let base_url = c.get("attachments.base_url", self.attachments.base_url);
        let attachments = AttachmentsConfig {
            base_url: match (base_url, &api) {
                // Out of the box the ticket JSON's links lead to our own API.
                (None, Some(api)) => format!("{}/attachments", api.listen.base_url()),
                (b, _) => default_base_url(b),
            },
            max_bytes: c.get("attachments.max_bytes", self.attachments.max_bytes).unwrap_or(25 << 20),
        };

        Config { store, desk, attachments, smtp, mailboxes, agents, rules, api, warnings: Vec::new() }
    }
}

/// `[api]` and the agents' `token_file`s (`(index, id, path)`).
fn validate_api(
    c: &mut Checker<'_>,
    raw: Option<RawApi>,
    agent_tokens: Vec<(usize, String, PathBuf)>,
) -> Option<ApiConfig> {
    let Some(a) = raw else {
        for (i, _, _) in &agent_tokens {
            c.err(format!("agents[{i}].token_file"), "an agent token needs the [api] section");
        }
        return None;
    };
    let listen = match c.get("api.listen", a.listen) {
        None => Listen::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 8025))),
        Some(v) => match v.strip_prefix("unix:") {
            Some(p) => {
                let p = PathBuf::from(p);
                // sun_path holds 108 bytes with the terminating NUL.
                if !p.is_absolute() || p.as_os_str().len() > 107 {
                    c.err("api.listen", format!("{v:?}: a unix socket needs an absolute path of at most 107 bytes"));
                }
                Listen::Unix(p)
            }
            None => {
                match v.parse::<std::net::SocketAddr>() {
                    Ok(addr) => {
                        if !addr.ip().is_loopback() {
                            c.warn(
                            "api.listen",
                            format!("{addr} is not a loopback address: bearer tokens would cross the network in clear text"),
                        );
                        }
                        Listen::Tcp(addr)
                    }
                    Err(_) => {
                        c.err(
                        "api.listen",
                        format!("invalid {v:?}: write \"127.0.0.1:8025\", \"[::1]:8025\" or \"unix:/run/ticketd/api.sock\""),
                    );
                        Listen::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 8025)))
                    }
                }
            }
        },
    };
    let token_file = c.required("api.token_file", a.token_file, "the file holding the admin bearer token").map(|p| {
        let p = c.credential(p);
        c.secret_file("api.token_file", &p);
        p
    });
    let mut agents = Vec::new();
    for (i, id, p) in agent_tokens {
        let p = c.credential(p);
        c.secret_file(&format!("agents[{i}].token_file"), &p);
        if token_file.as_ref() == Some(&p) || agents.iter().any(|(_, q)| q == &p) {
            c.err(format!("agents[{i}].token_file"), "every token needs a file of its own");
        }
        agents.push((id, p));
    }
    let max_upload_bytes = match c.get("api.max_upload_bytes", a.max_upload_bytes) {
        None => DEFAULT_API_MAX_UPLOAD_BYTES,
        Some(v) => parse_size(&v).filter(|n| *n > 0).unwrap_or_else(|| {
            c.err("api.max_upload_bytes", format!("invalid size {v:?}; write e.g. \"64MiB\""));
            DEFAULT_API_MAX_UPLOAD_BYTES
        }),
    };
    let concurrency = c.get("api.concurrency", a.concurrency).unwrap_or(DEFAULT_API_CONCURRENCY);
    if concurrency == 0 {
        c.err("api.concurrency", "must be at least 1");
    }
    let socket = c.get("api.socket", a.socket);
    if let Some(p) = &socket
        && (!p.is_absolute() || p.as_os_str().len() > 107)
    {
        c.err("api.socket", format!("{}: a unix socket needs an absolute path of at most 107 bytes", p.display()));
    }
    if socket.is_some() && matches!(&listen, Listen::Unix(l) if Some(l) == socket.as_ref()) {
        c.err("api.socket", "is the same socket as api.listen: leave it out");
    }
    let max_connections = c.get("api.max_connections", a.max_connections).unwrap_or(DEFAULT_API_MAX_CONNECTIONS);
    if max_connections == 0 {
        c.err("api.max_connections", "must be at least 1");
    }
    Some(ApiConfig {
        listen,
        socket,
        max_connections: max_connections.max(1),
        header_timeout: c.duration("api.header_timeout", a.header_timeout, DEFAULT_API_HEADER_TIMEOUT),
        idle_timeout: c.duration("api.idle_timeout", a.idle_timeout, DEFAULT_API_IDLE_TIMEOUT),
        token_file: token_file.unwrap_or_default(),
        agent_tokens: agents,
        public_attachments: c.get("api.public_attachments", a.public_attachments).unwrap_or(false),
        timeout: c.duration("api.timeout", a.timeout, DEFAULT_API_TIMEOUT),
        max_upload_bytes,
        concurrency: concurrency.max(1),
    })
}

/// Sorts paths as a reader expects: sections in file order, list entries
/// by number (`mailboxes[2]` before `mailboxes[10]`).
fn path_order(path: &str) -> Vec<(u8, String, usize)> {
    const SECTIONS: &[&str] = &["store", "desk", "attachments", "api", "smtp", "mailboxes", "agents", "rules"];
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

/// serde_ignored writes `agents.0.shoe`; our own paths say `agents[0].shoe`.
fn bracket_indices(path: &str) -> String {
    let mut out = String::new();
    // `?` marks an Option layer, meaningless to a reader.
    for part in path.split('.').filter(|p| *p != "?") {
        if !out.is_empty() && part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Without `[api]` and without `attachments.base_url`, a URL is the path
/// the API serves it under (`/attachments/<sha256>/<name>`): blobs live in
/// segment files, so a `file://` URL would lead nowhere.
fn default_base_url(configured: Option<String>) -> String {
    configured.map(|u| u.trim_end_matches('/').to_owned()).unwrap_or_else(|| "/attachments".to_owned())
}

/// "64MiB", "512KiB", "1GB", "1048576".
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn write(dir: &tempfile::TempDir, body: &str) -> PathBuf {
        let p = dir.path().join("ticketd.toml");
        std::fs::write(&p, body).unwrap();
        p
    }

    const MINIMAL: &str = r#"
[store]
path = "/tmp/x/db"
[smtp]
host = "127.0.0.1"
tls = "none"
[[mailboxes]]
name = "support"
address = "Support@Example.test"
host = "127.0.0.1"
tls = "none"
password = "secret"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let d = tempfile::tempdir().unwrap();
        let c = Config::load_with_env(&write(&d, MINIMAL), Some(HashMap::new())).unwrap();
        let m = &c.mailboxes[0];
        assert_eq!(m.address, "support@example.test");
        assert_eq!(m.username, "Support@Example.test");
        assert_eq!((m.port, m.folder.as_str(), m.after), (143, "INBOX", AfterAction::Seen));
        assert_eq!(m.poll_interval, Duration::from_secs(60));
        assert_eq!(c.smtp.port, 25);
        assert_eq!(c.desk.acks_per_sender_per_hour, 5);
        assert_eq!(c.desk.message_id_domain, "example.test");
        assert_eq!(c.store.attachments_dir, PathBuf::from("/tmp/x/attachments"));
    }

    #[test]
    fn a_secret_file_must_be_a_small_regular_file() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'x'; (MAX_SECRET_FILE_BYTES + 1) as usize]).unwrap();
        for p in [Path::new("/dev/zero"), fifo.as_path(), big.as_path()] {
            let started = std::time::Instant::now();
            let body = format!("[desk]\nsecret_file = \"{}\"\n{MINIMAL}", p.display());
            let err = Config::load_with_env(&write(&d, &body), Some(HashMap::new())).unwrap_err();
            let ConfigError::Invalid(problems) = err else { panic!("expected Invalid") };
            assert!(problems.iter().any(|e| e.path == "desk.secret_file"), "{p:?}: {problems:?}");
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "{p:?} must not hang the check");
            assert!(read_secret_file(p).is_err(), "{p:?}");
        }
        let ok = d.path().join("ok");
        std::fs::write(&ok, "0123456789abcdef0123\n").unwrap();
        assert_eq!(read_secret_file(&ok).unwrap(), b"0123456789abcdef0123\n");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let d = tempfile::tempdir().unwrap();
        let body = format!(
            "{MINIMAL}\ncolour = \"blue\"\n[[agents]]\nid = \"alice\"\nemail = \"nope\"\nshoe = 1\n[[rules]]\nsubject = \"(\"\npriority = \"critical\"\n"
        );
        let err = Config::load_with_env(&write(&d, &body), Some(HashMap::new())).unwrap_err();
        let ConfigError::Invalid(problems) = err else { panic!("expected Invalid") };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "mailboxes[0].colour",
            "agents[0].shoe",
            "agents[0].id",
            "agents[0].email",
            "rules[0].subject",
            "rules[0].priority",
        ] {
            assert!(paths.contains(&want), "missing {want} in {paths:?}");
        }
    }

    #[test]
    fn env_overrides_and_bad_values() {
        let d = tempfile::tempdir().unwrap();
        let env = HashMap::from([
            ("TICKETD__SMTP__PORT".to_owned(), "2525".to_owned()),
            ("TICKETD__DESK__SUBJECT_TAG".to_owned(), "Case".to_owned()),
            ("TICKETD__SMTP__TIMEOUT".to_owned(), "soon".to_owned()),
        ]);
        let err = Config::load_with_env(&write(&d, MINIMAL), Some(env.clone())).unwrap_err();
        assert!(err.to_string().contains("smtp.timeout: invalid duration \"soon\""), "{err}");
        let mut env = env;
        env.remove("TICKETD__SMTP__TIMEOUT");
        let c = Config::load_with_env(&write(&d, MINIMAL), Some(env)).unwrap();
        assert_eq!(c.smtp.port, 2525);
        assert_eq!(c.desk.subject_tag, "Case");
    }

    #[test]
    fn passwords_are_exclusive_and_redacted() {
        let d = tempfile::tempdir().unwrap();
        let body = MINIMAL.replace("password = \"secret\"", "password = \"secret\"\npassword_command = \"echo x\"");
        let err = Config::load_with_env(&write(&d, &body), Some(HashMap::new())).unwrap_err();
        assert!(err.to_string().contains("set only one of"), "{err}");
        let c = Config::load_with_env(&write(&d, MINIMAL), Some(HashMap::new())).unwrap();
        assert!(!format!("{:?}", c.mailboxes[0]).contains("secret"));
    }

    #[tokio::test]
    async fn secrets_resolve_from_file_and_command() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, "hunter2\n").unwrap();
        assert_eq!(Secret::File(f).resolve().await.unwrap(), "hunter2");
        assert_eq!(Secret::Command("printf 'abc\\n'".into()).resolve().await.unwrap(), "abc");
        assert!(Secret::Command("exit 3".into()).resolve().await.is_err());
    }

    #[test]
    fn every_type_error_at_once_in_a_stable_order() {
        let d = tempfile::tempdir().unwrap();
        let body = MINIMAL
            .replace("tls = \"none\"\npassword", "tls = \"none\"\nport = \"x\"\nidle = 3\nbatch_size = -1\npassword")
            + "[desk]\nacks_per_sender_per_hour = \"many\"\ntrust_from_header = \"yes\"\n";
        let run = || match Config::load_with_env(&write(&d, &body), Some(HashMap::new())) {
            Err(ConfigError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let first = run();
        let paths: Vec<&str> = first.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            vec![
                "desk.acks_per_sender_per_hour",
                "desk.trust_from_header",
                "mailboxes[0].batch_size",
                "mailboxes[0].idle",
                "mailboxes[0].port"
            ],
            "{first:#?}"
        );
        assert_eq!(first.len(), 5, "{first:#?}");
        for _ in 0..5 {
            assert_eq!(run(), first, "the same file gives the same report");
        }
    }

    #[test]
    fn secrets_missing_are_warnings_and_credentials_come_from_systemd() {
        let d = tempfile::tempdir().unwrap();
        let creds = tempfile::tempdir().unwrap();
        let body =
            MINIMAL.replace("password = \"secret\"", "password_file = \"/etc/ticketd/credentials/imap-support\"");
        let c = Config::load_with_env(&write(&d, &body), Some(HashMap::new())).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert_eq!(c.warnings[0].path, "mailboxes[0].password_file");
        assert!(c.warnings[0].message.contains("does not exist yet"));
        std::fs::write(creds.path().join("imap-support"), "pw\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(creds.path().join("imap-support"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = HashMap::from([("CREDENTIALS_DIRECTORY".to_owned(), creds.path().display().to_string())]);
        let c = Config::load_with_env(&write(&d, &body), Some(env)).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.mailboxes[0].password, Secret::File(creds.path().join("imap-support")));
        std::fs::set_permissions(creds.path().join("imap-support"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let env = HashMap::from([("CREDENTIALS_DIRECTORY".to_owned(), creds.path().display().to_string())]);
        let c = Config::load_with_env(&write(&d, &body), Some(env)).unwrap();
        assert!(c.warnings[0].message.contains("readable by others"), "{:?}", c.warnings);
    }

    #[test]
    fn header_text_is_one_clean_line() {
        let d = tempfile::tempdir().unwrap();
        let body = format!(
            "{MINIMAL}[desk]\ndisplay_name = \"Support\\nBcc: x@evil.test\"\nsubject_tag = \"T\\u202Eicket\"\n"
        );
        let err = Config::load_with_env(&write(&d, &body), Some(HashMap::new())).unwrap_err().to_string();
        assert!(err.contains("desk.display_name"), "{err}");
        assert!(err.contains("desk.subject_tag"), "{err}");
    }

    #[test]
    fn the_api_section_and_its_defaults() {
        let d = tempfile::tempdir().unwrap();
        let token = d.path().join("api-token");
        std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
        let body = format!("{MINIMAL}\n[api]\ntoken_file = \"{}\"\n", token.display());
        let c = Config::load_with_env(&write(&d, &body), Some(HashMap::new())).unwrap();
        let api = c.api.unwrap();
        assert_eq!(api.listen, Listen::Tcp("127.0.0.1:8025".parse().unwrap()));
        assert_eq!(c.attachments.base_url, "http://127.0.0.1:8025/attachments", "links lead to the API by default");
        assert_eq!((api.public_attachments, api.timeout), (false, Duration::from_secs(30)));

        let unix = body.replace("[api]\n", "[api]\nlisten = \"unix:/run/ticketd/api.sock\"\n");
        let c = Config::load_with_env(&write(&d, &unix), Some(HashMap::new())).unwrap();
        assert_eq!(c.api.unwrap().listen, Listen::Unix("/run/ticketd/api.sock".into()));
        assert_eq!(c.attachments.base_url, "http://localhost/attachments");

        let bad = format!(
            "{MINIMAL}\n[[agents]]\nid = \"agent_a\"\nemail = \"a@example.test\"\ntoken_file = \"/x\"\n[api]\nlisten = \"localhost\"\nconcurrency = 0\n"
        );
        let ConfigError::Invalid(problems) = Config::load_with_env(&write(&d, &bad), Some(HashMap::new())).unwrap_err()
        else {
            panic!("expected Invalid")
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in ["api.listen", "api.token_file", "api.concurrency"] {
            assert!(paths.contains(&want), "missing {want} in {problems:?}");
        }
        let no_api =
            format!("{MINIMAL}\n[[agents]]\nid = \"agent_a\"\nemail = \"a@example.test\"\ntoken_file = \"/x\"\n");
        let err = Config::load_with_env(&write(&d, &no_api), Some(HashMap::new())).unwrap_err();
        assert!(err.to_string().contains("agents[0].token_file: an agent token needs the [api] section"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("ten"), None);
    }
}
