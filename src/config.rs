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

impl Secret {
    pub fn is_oauth2(&self) -> bool {
        matches!(self, Secret::OAuth2Command(_))
    }

    /// The credential's current value, without a trailing newline.
    pub async fn resolve(&self) -> Result<String, SecretError> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(path) => tokio::fs::read_to_string(path)
                .await
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|source| SecretError::File { path: path.clone(), source }),
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
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub attachments_dir: PathBuf,
    pub cache_bytes: u64,
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
    pub trust_from_header: bool,
    pub trusted_authserv_id: Option<String>,
    pub send_receipts: bool,
    /// Messages larger than this (RFC822.SIZE) are quarantined unread.
    pub max_message_bytes: u64,
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
            .add_source(config::Environment::with_prefix(ENV_PREFIX).separator("__").try_parsing(false).source(env))
            .build()
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut problems = Vec::new();
        let mut unknown = BTreeSet::new();
        let raw: Result<RawConfig, _> =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(built, &mut |p: serde_ignored::Path<
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
                let path = e.path().to_string();
                problems.push(Problem { path, message: e.into_inner().to_string() });
                return Err(ConfigError::Invalid(problems));
            }
        };
        let config = raw.validate(&mut problems);
        if problems.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems)) }
    }

    pub fn agent_by_email(&self, email: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.email.eq_ignore_ascii_case(email))
    }

    pub fn mailbox(&self, name: &str) -> Option<&MailboxConfig> {
        self.mailboxes.iter().find(|m| m.name == name)
    }
}

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
}

#[derive(Deserialize)]
struct RawStore {
    path: PathBuf,
    attachments_dir: Option<PathBuf>,
    cache_capacity: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawDesk {
    subject_tag: Option<String>,
    display_name: Option<String>,
    secret_file: Option<PathBuf>,
    acks_per_sender_per_hour: Option<u32>,
    notifications_per_ticket_per_hour: Option<u32>,
    trust_from_header: Option<bool>,
    trusted_authserv_id: Option<String>,
    send_receipts: Option<bool>,
    max_message_bytes: Option<u64>,
    message_id_domain: Option<String>,
    templates_dir: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
struct RawAttachments {
    base_url: Option<String>,
    max_bytes: Option<u64>,
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
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    oauth2_token_command: Option<String>,
    hello_name: Option<String>,
    ca_file: Option<PathBuf>,
    timeout: Option<String>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
}

#[derive(Deserialize)]
struct RawMailbox {
    name: String,
    address: String,
    display_name: Option<String>,
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    oauth2_token_command: Option<String>,
    folder: Option<String>,
    category: Option<String>,
    priority: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    after: Option<String>,
    move_to: Option<String>,
    poll_interval: Option<String>,
    idle: Option<bool>,
    batch_size: Option<u32>,
    ca_file: Option<PathBuf>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
struct RawAgent {
    id: String,
    email: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawRule {
    subject: Option<String>,
    body: Option<String>,
    priority: Option<String>,
    category: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

struct Checker<'a> {
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), message: message.into() });
    }

    fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        match humantime::parse_duration(v) {
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
        value: Option<&str>,
        default: T,
    ) -> T {
        match value.map(str::parse) {
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

    fn secret(&mut self, path: &str, raw: RawPassword, oauth_allowed: bool) -> Option<Secret> {
        let mut found = Vec::new();
        if let Some(p) = raw.password {
            found.push(Secret::Inline(p));
        }
        if let Some(p) = raw.password_file {
            if let Err(e) = std::fs::metadata(&p) {
                self.err(format!("{path}.password_file"), format!("cannot read {}: {e}", p.display()));
            }
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

    fn regex(&mut self, path: &str, value: Option<&str>) -> Option<Regex> {
        let v = value?;
        match Regex::new(v) {
            Ok(r) => Some(r),
            Err(e) => {
                self.err(path, format!("invalid regex: {e}"));
                None
            }
        }
    }
}

pub fn looks_like_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
}

impl RawConfig {
    fn validate(self, problems: &mut Vec<Problem>) -> Config {
        let mut c = Checker { problems };

        let store = match self.store {
            Some(s) => {
                let attachments_dir =
                    s.attachments_dir.unwrap_or_else(|| s.path.parent().unwrap_or(Path::new(".")).join("attachments"));
                let cache_bytes = match s.cache_capacity.as_deref() {
                    None => 64 << 20,
                    Some(v) => parse_size(v).unwrap_or_else(|| {
                        c.err("store.cache_capacity", format!("invalid size {v:?}; write e.g. \"64MiB\""));
                        64 << 20
                    }),
                };
                StoreConfig { path: s.path, attachments_dir, cache_bytes }
            }
            None => {
                c.err("store.path", "missing: where the sled database lives");
                StoreConfig { path: PathBuf::new(), attachments_dir: PathBuf::new(), cache_bytes: 0 }
            }
        };

        if self.mailboxes.is_empty() {
            c.err("mailboxes", "at least one [[mailboxes]] entry is needed");
        }
        let mut names = BTreeSet::new();
        let mut mailboxes = Vec::new();
        for (i, m) in self.mailboxes.into_iter().enumerate() {
            let p = format!("mailboxes[{i}]");
            if m.name.is_empty() || !m.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
                c.err(format!("{p}.name"), "use letters, digits, '-', '_' or '.'");
            }
            if !names.insert(m.name.clone()) {
                c.err(format!("{p}.name"), format!("duplicate mailbox name {:?}", m.name));
            }
            c.address(&format!("{p}.address"), &m.address);
            let tls = match Tls::parse(m.tls.as_deref().unwrap_or("tls")) {
                Ok(t) => t,
                Err(e) => {
                    c.err(format!("{p}.tls"), e);
                    Tls::Implicit
                }
            };
            let port = m.port.unwrap_or(if tls == Tls::Implicit { 993 } else { 143 });
            let password = c
                .secret(
                    &p,
                    RawPassword {
                        password: m.password,
                        password_file: m.password_file,
                        password_command: m.password_command,
                        oauth2_token_command: m.oauth2_token_command,
                    },
                    true,
                )
                .unwrap_or_else(|| {
                    c.err(
                        format!("{p}.password"),
                        "missing: set password, password_file, password_command or oauth2_token_command",
                    );
                    Secret::Inline(String::new())
                });
            let after = match m.after.as_deref().unwrap_or("seen") {
                "seen" => AfterAction::Seen,
                "move" => AfterAction::Move,
                "delete" => AfterAction::Delete,
                other => {
                    c.err(
                        format!("{p}.after"),
                        format!("invalid {other:?}: expected \"seen\", \"move\" or \"delete\""),
                    );
                    AfterAction::Seen
                }
            };
            if after == AfterAction::Move && m.move_to.is_none() {
                c.err(format!("{p}.move_to"), "missing: after = \"move\" needs a folder");
            }
            let batch_size = m.batch_size.unwrap_or(50);
            if batch_size == 0 {
                c.err(format!("{p}.batch_size"), "must be at least 1");
            }
            mailboxes.push(MailboxConfig {
                username: m.username.unwrap_or_else(|| m.address.clone()),
                name: m.name,
                address: m.address.to_ascii_lowercase(),
                display_name: m.display_name,
                host: m.host,
                port,
                tls,
                password,
                folder: m.folder.unwrap_or_else(|| "INBOX".into()),
                category: c.vocab(&format!("{p}.category"), m.category.as_deref(), Category::General),
                priority: c.vocab(&format!("{p}.priority"), m.priority.as_deref(), Priority::Medium),
                tags: m.tags,
                after,
                move_to: m.move_to,
                poll_interval: c.duration(
                    &format!("{p}.poll_interval"),
                    m.poll_interval.as_deref(),
                    Duration::from_secs(60),
                ),
                idle: m.idle.unwrap_or(true),
                batch_size: batch_size.max(1),
                ca_file: m.ca_file,
                timeout: c.duration(&format!("{p}.timeout"), m.timeout.as_deref(), Duration::from_secs(60)),
            });
        }

        let smtp = match self.smtp {
            Some(s) => {
                let tls = match Tls::parse(s.tls.as_deref().unwrap_or("starttls")) {
                    Ok(t) => t,
                    Err(e) => {
                        c.err("smtp.tls", e);
                        Tls::Starttls
                    }
                };
                let password = c.secret(
                    "smtp",
                    RawPassword {
                        password: s.password,
                        password_file: s.password_file,
                        password_command: s.password_command,
                        oauth2_token_command: s.oauth2_token_command,
                    },
                    false,
                );
                if s.username.is_some() && password.is_none() {
                    c.err("smtp.password", "missing: smtp.username is set, so AUTH needs a password");
                }
                SmtpConfig {
                    host: s.host,
                    port: s.port.unwrap_or(match tls {
                        Tls::Implicit => 465,
                        Tls::Starttls => 587,
                        Tls::None => 25,
                    }),
                    tls,
                    username: s.username,
                    password,
                    hello_name: s.hello_name,
                    ca_file: s.ca_file,
                    timeout: c.duration("smtp.timeout", s.timeout.as_deref(), Duration::from_secs(60)),
                    retry_initial: c.duration(
                        "smtp.retry_initial",
                        s.retry_initial.as_deref(),
                        Duration::from_secs(30),
                    ),
                    retry_max: c.duration("smtp.retry_max", s.retry_max.as_deref(), Duration::from_secs(3600)),
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
        for (i, a) in self.agents.into_iter().enumerate() {
            let p = format!("agents[{i}]");
            // The id travels inside Message-IDs: keep it to a safe alphabet.
            let safe = a.id.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-');
            if !a.id.starts_with("agent_") || a.id.len() <= "agent_".len() || !safe {
                c.err(format!("{p}.id"), format!("{:?} must look like \"agent_<name>\" (a-z, 0-9, '_', '-')", a.id));
            }
            if !agent_ids.insert(a.id.clone()) {
                c.err(format!("{p}.id"), format!("duplicate agent id {:?}", a.id));
            }
            c.address(&format!("{p}.email"), &a.email);
            if mailboxes.iter().any(|m| m.address.eq_ignore_ascii_case(&a.email)) {
                c.err(format!("{p}.email"), "an agent cannot use a support mailbox address");
            }
            agents.push(Agent {
                name: a.name.unwrap_or_else(|| a.id.clone()),
                email: a.email.to_ascii_lowercase(),
                id: a.id,
            });
        }

        let mut rules = Vec::new();
        for (i, r) in self.rules.into_iter().enumerate() {
            let p = format!("rules[{i}]");
            if r.subject.is_none() && r.body.is_none() {
                c.err(&p, "a rule needs `subject` and/or `body`");
            }
            if r.priority.is_none() && r.category.is_none() && r.tags.is_empty() {
                c.err(&p, "a rule needs at least one of `priority`, `category`, `tags`");
            }
            let priority = r.priority.as_deref().and_then(|v| {
                v.parse().map_err(|e: crate::ticket::VocabError| c.err(format!("{p}.priority"), e.to_string())).ok()
            });
            let category = r.category.as_deref().and_then(|v| {
                v.parse().map_err(|e: crate::ticket::VocabError| c.err(format!("{p}.category"), e.to_string())).ok()
            });
            rules.push(Rule {
                subject: c.regex(&format!("{p}.subject"), r.subject.as_deref()),
                body: c.regex(&format!("{p}.body"), r.body.as_deref()),
                priority,
                category,
                tags: r.tags,
            });
        }

        let d = self.desk;
        let subject_tag = d.subject_tag.unwrap_or_else(|| "Ticket".into());
        if subject_tag.is_empty() || subject_tag.contains(['[', ']', '#']) {
            c.err("desk.subject_tag", "must be non-empty and contain no '[', ']' or '#'");
        }
        if let Some(p) = &d.secret_file {
            match std::fs::read(p) {
                Ok(b) if b.trim_ascii().len() < 16 => c.err("desk.secret_file", "the secret must be at least 16 bytes"),
                Ok(_) => {}
                Err(e) => c.err("desk.secret_file", format!("cannot read {}: {e}", p.display())),
            }
        }
        let message_id_domain = d.message_id_domain.unwrap_or_else(|| {
            mailboxes
                .first()
                .and_then(|m| m.address.rsplit_once('@').map(|(_, dom)| dom.to_owned()))
                .unwrap_or_else(|| "ticketd.invalid".into())
        });
        let desk = DeskConfig {
            subject_tag,
            display_name: d.display_name.unwrap_or_else(|| "Support".into()),
            secret_file: d.secret_file,
            acks_per_sender_per_hour: d.acks_per_sender_per_hour.unwrap_or(5),
            notifications_per_ticket_per_hour: d.notifications_per_ticket_per_hour.unwrap_or(20),
            trust_from_header: d.trust_from_header.unwrap_or(false),
            trusted_authserv_id: d.trusted_authserv_id,
            send_receipts: d.send_receipts.unwrap_or(false),
            max_message_bytes: d.max_message_bytes.unwrap_or(50 << 20),
            message_id_domain,
            templates_dir: d.templates_dir,
        };

        let attachments = AttachmentsConfig {
            base_url: default_base_url(self.attachments.base_url, &store.attachments_dir),
            max_bytes: self.attachments.max_bytes.unwrap_or(25 << 20),
        };

        Config { store, desk, attachments, smtp, mailboxes, agents, rules }
    }
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

fn default_base_url(configured: Option<String>, dir: &Path) -> String {
    configured.map(|u| u.trim_end_matches('/').to_owned()).unwrap_or_else(|| format!("file://{}", dir.display()))
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
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("ten"), None);
    }
}
