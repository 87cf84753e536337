//! Test support shared by the crate's own tests, the integration tests and
//! the benches (never used by the daemon): [`TestConfig`], the one config a
//! test desk or a test daemon reads, set with typed fields and written as
//! the TOML an admin would write. It knows only the config (a desk is
//! opened on it with `Desk::open`, as the daemon does).
//!
//! Only the keys tests set are modelled; a key left `None` is not written
//! (its default applies). `extra` takes raw lines for anything else.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{AfterAction, Config, Initial, Tls};

/// The desk secret [`TestConfig::write`] puts into `desk.secret_file` when
/// that file does not exist yet.
pub const SECRET: &str = "test-desk-secret-0123456789abcdef";

#[derive(Debug, Clone)]
pub struct TestConfig {
    /// Where the store, the secret and the written config live.
    pub dir: PathBuf,
    pub store: StoreKeys,
    pub desk: DeskKeys,
    pub attachments: AttachmentKeys,
    pub smtp: SmtpKeys,
    pub mailboxes: Vec<MailboxKeys>,
    pub agents: Vec<AgentKeys>,
    pub api: Option<ApiKeys>,
}

#[derive(Debug, Clone, Default)]
pub struct StoreKeys {
    pub path: PathBuf,
    pub attachments_dir: Option<PathBuf>,
    pub retention_days: Option<u32>,
    pub extra: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DeskKeys {
    pub display_name: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub acks_per_sender_per_hour: Option<u32>,
    pub notifications_per_ticket_per_hour: Option<u32>,
    pub notifications_per_agent_per_hour: Option<u32>,
    pub trust_from_header: Option<bool>,
    pub trusted_authserv_id: Option<String>,
    pub send_receipts: Option<bool>,
    pub max_message_bytes: Option<u64>,
    pub templates_dir: Option<PathBuf>,
    pub extra: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AttachmentKeys {
    pub base_url: Option<String>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct SmtpKeys {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: Option<Duration>,
    pub retry_initial: Option<Duration>,
    pub retry_max: Option<Duration>,
    pub extra: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct MailboxKeys {
    pub name: String,
    pub address: String,
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: String,
    pub folder: Option<String>,
    pub after: Option<AfterAction>,
    pub move_to: Option<String>,
    pub idle: Option<bool>,
    pub poll_interval: Option<Duration>,
    pub batch_size: Option<u32>,
    pub timeout: Option<Duration>,
    pub initial: Option<Initial>,
    pub extra: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AgentKeys {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ApiKeys {
    /// `127.0.0.1:PORT` or `unix:PATH`.
    pub listen: String,
    pub token_file: PathBuf,
    pub socket: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub header_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub timeout: Option<Duration>,
    pub concurrency: Option<usize>,
    pub public_attachments: Option<bool>,
    pub extra: Vec<String>,
}

impl MailboxKeys {
    /// A cleartext mailbox `address` (its own username) on 127.0.0.1:`port`.
    pub fn new(name: &str, address: &str, port: u16) -> MailboxKeys {
        MailboxKeys {
            name: name.into(),
            address: address.into(),
            host: "127.0.0.1".into(),
            port,
            tls: Tls::None,
            ca_file: None,
            username: Some(address.into()),
            password: "secret".into(),
            folder: None,
            after: None,
            move_to: None,
            idle: None,
            poll_interval: None,
            batch_size: None,
            timeout: None,
            initial: None,
            extra: Vec::new(),
        }
    }
}

impl AgentKeys {
    pub fn new(id: &str, email: &str, name: &str) -> AgentKeys {
        AgentKeys { id: id.into(), email: email.into(), name: Some(name.into()), token_file: None }
    }
}

impl ApiKeys {
    pub fn new(listen: impl Into<String>, token_file: impl Into<PathBuf>) -> ApiKeys {
        ApiKeys {
            listen: listen.into(),
            token_file: token_file.into(),
            socket: None,
            max_connections: None,
            header_timeout: None,
            idle_timeout: None,
            timeout: None,
            concurrency: None,
            public_attachments: None,
            extra: Vec::new(),
        }
    }
}

impl TestConfig {
    /// A desk "Example Support" with its store under `dir` (and no secret
    /// file: the store keeps its own secret, as a fresh install does), one
    /// cleartext mailbox `support` (support@example.test on 127.0.0.1:143),
    /// SMTP on 127.0.0.1:25 without TLS, and one agent, Alice
    /// (`agent_alice`, alice@example.test). Point the ports at a lab with
    /// [`TestConfig::servers`].
    pub fn new(dir: &Path) -> TestConfig {
        TestConfig {
            dir: dir.to_owned(),
            store: StoreKeys { path: dir.join("db"), ..Default::default() },
            desk: DeskKeys { display_name: Some("Example Support".into()), ..Default::default() },
            attachments: AttachmentKeys::default(),
            smtp: SmtpKeys {
                host: "127.0.0.1".into(),
                port: 25,
                tls: Tls::None,
                ca_file: None,
                username: None,
                password: None,
                timeout: None,
                retry_initial: None,
                retry_max: None,
                extra: Vec::new(),
            },
            mailboxes: vec![MailboxKeys::new("support", "support@example.test", 143)],
            agents: vec![AgentKeys::new("agent_alice", "alice@example.test", "Alice")],
            api: None,
        }
    }

    /// Points every mailbox at `imap_port` and SMTP at `smtp_port`.
    pub fn servers(mut self, imap_port: u16, smtp_port: u16) -> TestConfig {
        for m in &mut self.mailboxes {
            m.port = imap_port;
        }
        self.smtp.port = smtp_port;
        self
    }

    /// Changes it in place (typed), for a chain: `TestConfig::new(dir).with(|c| …)`.
    pub fn with(mut self, f: impl FnOnce(&mut TestConfig)) -> TestConfig {
        f(&mut self);
        self
    }

    /// The first mailbox.
    pub fn mailbox(&mut self) -> &mut MailboxKeys {
        &mut self.mailboxes[0]
    }

    pub fn to_toml(&self) -> String {
        let mut t = String::new();
        let s = &self.store;
        section(&mut t, "[store]");
        key(&mut t, "path", Some(path(&s.path)));
        key(&mut t, "attachments_dir", s.attachments_dir.as_deref().map(path));
        key(&mut t, "retention_days", s.retention_days.map(int));
        raw(&mut t, &s.extra);

        let d = &self.desk;
        section(&mut t, "[desk]");
        key(&mut t, "display_name", d.display_name.as_deref().map(string));
        key(&mut t, "secret_file", d.secret_file.as_deref().map(path));
        key(&mut t, "acks_per_sender_per_hour", d.acks_per_sender_per_hour.map(int));
        key(&mut t, "notifications_per_ticket_per_hour", d.notifications_per_ticket_per_hour.map(int));
        key(&mut t, "notifications_per_agent_per_hour", d.notifications_per_agent_per_hour.map(int));
        key(&mut t, "trust_from_header", d.trust_from_header.map(boolean));
        key(&mut t, "trusted_authserv_id", d.trusted_authserv_id.as_deref().map(string));
        key(&mut t, "send_receipts", d.send_receipts.map(boolean));
        key(&mut t, "max_message_bytes", d.max_message_bytes.map(int));
        key(&mut t, "templates_dir", d.templates_dir.as_deref().map(path));
        raw(&mut t, &d.extra);

        let a = &self.attachments;
        section(&mut t, "[attachments]");
        key(&mut t, "base_url", a.base_url.as_deref().map(string));
        key(&mut t, "max_bytes", a.max_bytes.map(int));

        let m = &self.smtp;
        section(&mut t, "[smtp]");
        key(&mut t, "host", Some(string(&m.host)));
        key(&mut t, "port", Some(int(m.port)));
        key(&mut t, "tls", Some(tls(m.tls)));
        key(&mut t, "ca_file", m.ca_file.as_deref().map(path));
        key(&mut t, "username", m.username.as_deref().map(string));
        key(&mut t, "password", m.password.as_deref().map(string));
        key(&mut t, "timeout", m.timeout.map(duration));
        key(&mut t, "retry_initial", m.retry_initial.map(duration));
        key(&mut t, "retry_max", m.retry_max.map(duration));
        raw(&mut t, &m.extra);

        for m in &self.mailboxes {
            section(&mut t, "[[mailboxes]]");
            key(&mut t, "name", Some(string(&m.name)));
            key(&mut t, "address", Some(string(&m.address)));
            key(&mut t, "host", Some(string(&m.host)));
            key(&mut t, "port", Some(int(m.port)));
            key(&mut t, "tls", Some(tls(m.tls)));
            key(&mut t, "ca_file", m.ca_file.as_deref().map(path));
            key(&mut t, "username", m.username.as_deref().map(string));
            key(&mut t, "password", Some(string(&m.password)));
            key(&mut t, "folder", m.folder.as_deref().map(string));
            key(&mut t, "after", m.after.map(after));
            key(&mut t, "move_to", m.move_to.as_deref().map(string));
            key(&mut t, "idle", m.idle.map(boolean));
            key(&mut t, "poll_interval", m.poll_interval.map(duration));
            key(&mut t, "batch_size", m.batch_size.map(int));
            key(&mut t, "timeout", m.timeout.map(duration));
            key(&mut t, "initial", m.initial.map(initial));
            raw(&mut t, &m.extra);
        }
        for a in &self.agents {
            section(&mut t, "[[agents]]");
            key(&mut t, "id", Some(string(&a.id)));
            key(&mut t, "email", Some(string(&a.email)));
            key(&mut t, "name", a.name.as_deref().map(string));
            key(&mut t, "token_file", a.token_file.as_deref().map(path));
        }
        if let Some(a) = &self.api {
            section(&mut t, "[api]");
            key(&mut t, "listen", Some(string(&a.listen)));
            key(&mut t, "token_file", Some(path(&a.token_file)));
            key(&mut t, "socket", a.socket.as_deref().map(path));
            key(&mut t, "max_connections", a.max_connections.map(int));
            key(&mut t, "header_timeout", a.header_timeout.map(duration));
            key(&mut t, "idle_timeout", a.idle_timeout.map(duration));
            key(&mut t, "timeout", a.timeout.map(duration));
            key(&mut t, "concurrency", a.concurrency.map(int));
            key(&mut t, "public_attachments", a.public_attachments.map(boolean));
            raw(&mut t, &a.extra);
        }
        t
    }

    /// Writes the TOML (and the desk secret, if `desk.secret_file` names a
    /// file that does not exist yet) to `file`.
    pub fn write(&self, file: &Path) {
        if let Some(p) = &self.desk.secret_file
            && !p.exists()
        {
            std::fs::write(p, format!("{SECRET}\n")).expect("write the desk secret");
        }
        std::fs::write(file, self.to_toml()).expect("write the test config");
    }

    /// Writes it to `dir/ticketd.toml` and loads it as the daemon would,
    /// ignoring the environment.
    pub fn load(&self) -> Config {
        let file = self.dir.join("ticketd.toml");
        self.write(&file);
        Config::load_with_env(&file, Some(Default::default()))
            .unwrap_or_else(|e| panic!("the test config loads: {e}\n{}", self.to_toml()))
    }
}

fn section(t: &mut String, name: &str) {
    if !t.is_empty() {
        t.push('\n');
    }
    t.push_str(name);
    t.push('\n');
}

fn key(t: &mut String, name: &str, value: Option<String>) {
    if let Some(v) = value {
        let _ = writeln!(t, "{name} = {v}");
    }
}

fn raw(t: &mut String, lines: &[String]) {
    for l in lines {
        t.push_str(l.trim_end());
        t.push('\n');
    }
}

/// A TOML basic string.
fn string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path(p: &Path) -> String {
    string(&p.display().to_string())
}

fn int(n: impl std::fmt::Display) -> String {
    n.to_string()
}

fn boolean(b: bool) -> String {
    b.to_string()
}

fn duration(d: Duration) -> String {
    string(&humantime::format_duration(d).to_string())
}

fn tls(t: Tls) -> String {
    string(match t {
        Tls::Implicit => "tls",
        Tls::Starttls => "starttls",
        Tls::None => "none",
    })
}

fn after(a: AfterAction) -> String {
    string(match a {
        AfterAction::Seen => "seen",
        AfterAction::Move => "move",
        AfterAction::Delete => "delete",
    })
}

fn initial(i: Initial) -> String {
    string(match i {
        Initial::New => "new",
        Initial::Unseen => "unseen",
        Initial::Import => "import",
    })
}
