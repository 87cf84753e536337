//! What is checked: the parsed file ([`RawConfig`]) becomes the runtime
//! [`Config`], one function per section. Every problem is recorded with its
//! key path and checking goes on, so one run reports all of them; a missing
//! key takes its value from `defaults.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use super::defaults::*;
use super::raw::{
    L, RawAgent, RawApi, RawAttachments, RawCalendarDef, RawCluster, RawConfig, RawConsole, RawDesk, RawMailbox,
    RawPassword, RawRule, RawSlaRule, RawSmtp, RawSpam, RawStore,
};
use super::secret::read_secret_file;
use super::{
    AfterAction, Agent, ApiConfig, AttachmentsConfig, ClusterConfig, Config, ConsoleConfig, DeskConfig, Initial,
    Listen, MailboxConfig, Problem, Rule, Secret, SmtpConfig, StoreBackend, StoreConfig, Tls,
};

/// Most characters of a display name or subject tag.
const MAX_HEADER_TEXT: usize = 200;

/// Longest unix socket path: sun_path holds 108 bytes with the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Where the problems and warnings of one run go.
pub(super) struct Checker<'a> {
    problems: &'a mut Vec<Problem>,
    warnings: &'a mut Vec<Problem>,
    /// `$CREDENTIALS_DIRECTORY` (systemd LoadCredential=), if set.
    credentials: Option<PathBuf>,
}

/// Turns what was parsed into what the daemon uses. A section that needs
/// another's result is checked after it.
pub(super) fn config(c: &mut Checker<'_>, mut raw: RawConfig) -> Config {
    let store = store(c, raw.store);
    let mailboxes = mailboxes(c, raw.mailboxes);
    let smtp = smtp(c, raw.smtp);
    let (agents, agent_tokens) = agents(c, raw.agents, &mailboxes);
    let rules = rules(c, raw.rules);
    let timers = desk_timers(c, &mut raw.desk);
    let desk = desk(c, raw.desk, &mailboxes);
    let mut api = api(c, raw.api, agent_tokens);
    let console = console(c, raw.console, api.is_some());
    if let Some(api) = api.as_mut() {
        api.console = console;
    }
    let attachments = attachments(c, raw.attachments, api.as_ref());
    let spam = spam(c, raw.spam, &desk);
    let sla = time(c, raw.sla, raw.calendars, timers, &mailboxes);
    let cluster = cluster(c, raw.cluster, &store, api.as_ref(), &mailboxes);
    Config { store, desk, attachments, smtp, mailboxes, agents, rules, api, spam, sla, cluster, warnings: Vec::new() }
}

/// The timer keys of `[desk]` (DESIGN §12), taken out for [`time`].
fn desk_timers(c: &mut Checker<'_>, d: &mut RawDesk) -> crate::sla::RawDeskTimers {
    crate::sla::RawDeskTimers {
        sla_warn_before: c.get("desk.sla_warn_before", d.sla_warn_before.take()),
        pending_reminder_after: c.get("desk.pending_reminder_after", d.pending_reminder_after.take()),
        pending_resolve_after: c.get("desk.pending_resolve_after", d.pending_resolve_after.take()),
        close_resolved_after: c.get("desk.close_resolved_after", d.close_resolved_after.take()),
    }
}

/// `[[sla]]`, `[[calendars]]` and the desk's timers: read the loader's
/// lenient way, then checked all at once by the time core, each problem at
/// its key path.
fn time(
    c: &mut Checker<'_>,
    sla: Vec<RawSlaRule>,
    calendars: Vec<RawCalendarDef>,
    desk: crate::sla::RawDeskTimers,
    mailboxes: &[MailboxConfig],
) -> crate::sla::SlaConfig {
    use crate::sla::{RawCalendar, RawHours, RawSla, RawSlaConfig};
    let sla = sla
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = |k: &str| format!("sla[{i}].{k}");
            RawSla {
                priority: c.get(&at("priority"), r.priority),
                category: c.get(&at("category"), r.category),
                mailbox: c.get(&at("mailbox"), r.mailbox),
                first_response: c.get(&at("first_response"), r.first_response),
                resolution: c.get(&at("resolution"), r.resolution),
                calendar: c.get(&at("calendar"), r.calendar),
            }
        })
        .collect();
    let calendars = calendars
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = |k: &str| format!("calendars[{i}].{k}");
            let hours = r.hours.map(|h| RawHours {
                mon: c.get(&at("hours.mon"), h.mon),
                tue: c.get(&at("hours.tue"), h.tue),
                wed: c.get(&at("hours.wed"), h.wed),
                thu: c.get(&at("hours.thu"), h.thu),
                fri: c.get(&at("hours.fri"), h.fri),
                sat: c.get(&at("hours.sat"), h.sat),
                sun: c.get(&at("hours.sun"), h.sun),
            });
            RawCalendar {
                name: c.get(&at("name"), r.name),
                timezone: c.get(&at("timezone"), r.timezone),
                hours,
                holidays: c.get(&at("holidays"), r.holidays).unwrap_or_default(),
            }
        })
        .collect();
    let names: Vec<&str> = mailboxes.iter().map(|m| m.name.as_str()).collect();
    match crate::sla::build(&RawSlaConfig { sla, calendars, desk }, &names) {
        Ok(cfg) => cfg,
        Err(errors) => {
            for e in errors {
                c.err(e.path, e.message);
            }
            crate::sla::SlaConfig::default()
        }
    }
}

fn store(c: &mut Checker<'_>, raw: Option<RawStore>) -> StoreConfig {
    let Some(s) = raw else {
        c.err("store.path", "missing: where the sled database lives");
        return StoreConfig {
            backend: StoreBackend::Sled,
            path: PathBuf::new(),
            attachments_dir: PathBuf::new(),
            cache_bytes: DEFAULT_STORE_CACHE_CAPACITY,
            retention_days: DEFAULT_STORE_RETENTION_DAYS,
        };
    };
    let postgres = match c.get("store.backend", s.backend).as_deref() {
        None => DEFAULT_STORE_BACKEND == "postgres",
        Some("sled") => false,
        Some("postgres") => true,
        Some(other) => {
            c.err("store.backend", format!("invalid {other:?}: expected \"sled\" or \"postgres\""));
            false
        }
    };
    let url = c.get("store.url", s.url);
    let url_file = c.get("store.url_file", s.url_file).map(|p| c.credential(p));
    let backend = if postgres {
        if let Some(p) = &url_file {
            c.secret_file("store.url_file", p);
        }
        match (url, url_file) {
            (Some(_), Some(_)) => {
                c.err("store", "set only one of url, url_file");
                StoreBackend::Postgres { url: Secret::Inline(String::new()) }
            }
            (Some(u), None) => {
                if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                    c.err("store.url", "must be a postgres:// URL (postgres://user:password@host:port/database)");
                }
                StoreBackend::Postgres { url: Secret::Inline(u) }
            }
            (None, Some(p)) => StoreBackend::Postgres { url: Secret::File(p) },
            (None, None) => {
                c.err("store.url_file", "missing: backend = \"postgres\" needs url_file (or url)");
                StoreBackend::Postgres { url: Secret::Inline(String::new()) }
            }
        }
    } else {
        if url.is_some() || url_file.is_some() {
            c.warn("store", "url and url_file are read only with backend = \"postgres\"");
        }
        StoreBackend::Sled
    };
    let path = if postgres {
        // Only the node's own files live there (a backup's spool).
        c.get("store.path", s.path).unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH))
    } else {
        c.required("store.path", s.path, "where the sled database lives").unwrap_or_default()
    };
    let attachments_dir =
        c.get("store.attachments_dir", s.attachments_dir).unwrap_or_else(|| default_store_attachments_dir(&path));
    let cache_bytes = match c.get("store.cache_capacity", s.cache_capacity) {
        None => DEFAULT_STORE_CACHE_CAPACITY,
        Some(v) => parse_size(&v).unwrap_or_else(|| {
            c.err("store.cache_capacity", format!("invalid size {v:?}; write e.g. \"64MiB\""));
            DEFAULT_STORE_CACHE_CAPACITY
        }),
    };
    let retention_days = c.get("store.retention_days", s.retention_days).unwrap_or(DEFAULT_STORE_RETENTION_DAYS);
    StoreConfig { backend, path, attachments_dir, cache_bytes, retention_days }
}

/// `[cluster]`: needed, and only read, with `store.backend = "postgres"`.
fn cluster(
    c: &mut Checker<'_>,
    raw: Option<RawCluster>,
    store: &StoreConfig,
    api: Option<&ApiConfig>,
    mailboxes: &[MailboxConfig],
) -> Option<ClusterConfig> {
    if store.backend == StoreBackend::Sled {
        if raw.as_ref().is_some_and(|r| r.node.is_some() || r.advertise.is_some()) {
            c.warn("cluster", "read only with store.backend = \"postgres\"");
        }
        return None;
    }
    for (i, m) in mailboxes.iter().enumerate() {
        if m.after != AfterAction::Seen {
            c.warn(
                format!("mailboxes[{i}].after"),
                "with store.backend = \"postgres\" a move or delete is final: should the database fail over to a \
                 replica that had not received the last commits (asynchronous replication), mail moved or deleted \
                 after them is lost; use \"seen\", or synchronous replication (see the README)",
            );
        }
    }
    let Some(r) = raw else {
        c.err("cluster.node", "missing: store.backend = \"postgres\" needs [cluster] with this node's name");
        return None;
    };
    let node = c.required("cluster.node", r.node, "this node's name, unique in the cluster").unwrap_or_default();
    if !node.is_empty() && (node.len() > 40 || !node.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    {
        c.err("cluster.node", format!("{node:?}: 1 to 40 letters, digits, '.', '_' or '-'"));
    }
    let advertise = match c.get("cluster.advertise", r.advertise) {
        Some(a) => {
            let ok = a.strip_prefix("http://").is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#']));
            if !ok {
                c.err(
                    "cluster.advertise",
                    format!("{a:?}: write http://HOST:PORT (this node's API, as the others reach it)"),
                );
            }
            if api.is_none() {
                c.warn("cluster.advertise", "this node has no [api]: nothing answers there");
            }
            Some(a.trim_end_matches('/').to_owned())
        }
        None => match api.map(|a| &a.listen) {
            Some(l @ Listen::Tcp(addr)) => {
                if addr.ip().is_loopback() || addr.ip().is_unspecified() {
                    c.warn(
                        "cluster.advertise",
                        format!(
                            "not set: the other nodes would reach this node's API at {}, which only works on this \
                             machine; set it to an address they can reach",
                            l.base_url()
                        ),
                    );
                }
                Some(l.base_url())
            }
            Some(Listen::Unix(_)) => {
                c.warn(
                    "cluster.advertise",
                    "not set and api.listen is a unix socket: standbys cannot forward changes here",
                );
                None
            }
            None => None,
        },
    };
    let lease_timeout = c.duration("cluster.lease_timeout", r.lease_timeout, DEFAULT_CLUSTER_LEASE_TIMEOUT);
    if lease_timeout < Duration::from_secs(2) || lease_timeout > Duration::from_secs(300) {
        c.err("cluster.lease_timeout", "between 2s and 300s");
    }
    Some(ClusterConfig {
        node,
        advertise,
        lease_timeout,
        forward: c.get("cluster.forward", r.forward).unwrap_or(DEFAULT_CLUSTER_FORWARD),
    })
}

fn mailboxes(c: &mut Checker<'_>, raw: Vec<RawMailbox>) -> Vec<MailboxConfig> {
    if raw.is_empty() {
        c.err("mailboxes", "at least one [[mailboxes]] entry is needed");
    }
    let mut names = BTreeSet::new();
    let mut mailboxes = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let mailbox = mailbox(c, i, m);
        if !names.insert(mailbox.name.clone()) && !mailbox.name.is_empty() {
            c.err(format!("mailboxes[{i}].name"), format!("duplicate mailbox name {:?}", mailbox.name));
        }
        mailboxes.push(mailbox);
    }
    mailboxes
}

fn mailbox(c: &mut Checker<'_>, i: usize, m: RawMailbox) -> MailboxConfig {
    let p = format!("mailboxes[{i}]");
    let at = |k: &str| format!("{p}.{k}");
    let name = c.required(&at("name"), m.name, "a name for logs and the store").unwrap_or_default();
    if !name.is_empty() && !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
        c.err(at("name"), "use letters, digits, '-', '_' or '.'");
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
    let tls = c.choice(&at("tls"), m.tls, Tls::parse, DEFAULT_MAILBOX_TLS);
    let port = c.get(&at("port"), m.port).unwrap_or(default_mailbox_port(tls));
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
    let after = c.choice(&at("after"), m.after, AfterAction::parse, DEFAULT_MAILBOX_AFTER);
    let move_to = c.get(&at("move_to"), m.move_to);
    if after == AfterAction::Move && move_to.is_none() {
        c.err(at("move_to"), "missing: after = \"move\" needs a folder");
    }
    let batch_size = c.get(&at("batch_size"), m.batch_size).unwrap_or(DEFAULT_MAILBOX_BATCH_SIZE);
    if batch_size == 0 {
        c.err(at("batch_size"), "must be at least 1");
    }
    let initial = c.choice(&at("initial"), m.initial, Initial::parse, DEFAULT_MAILBOX_INITIAL);
    let tags = c.get(&at("tags"), m.tags).unwrap_or_default();
    for (j, t) in tags.iter().enumerate() {
        if let Err(e) = crate::ticket::parse_tag(t) {
            c.err(format!("{p}.tags[{j}]"), e.0);
        }
    }
    MailboxConfig {
        username: c.get(&at("username"), m.username).unwrap_or_else(|| default_mailbox_username(&address)),
        name,
        address: address.to_ascii_lowercase(),
        display_name,
        host,
        port,
        tls,
        password,
        folder: c.get(&at("folder"), m.folder).unwrap_or_else(|| DEFAULT_MAILBOX_FOLDER.into()),
        category: c.vocab(&at("category"), m.category, DEFAULT_MAILBOX_CATEGORY),
        priority: c.vocab(&at("priority"), m.priority, DEFAULT_MAILBOX_PRIORITY),
        tags,
        after,
        move_to,
        poll_interval: c.duration(&at("poll_interval"), m.poll_interval, DEFAULT_MAILBOX_POLL_INTERVAL),
        idle: c.get(&at("idle"), m.idle).unwrap_or(DEFAULT_MAILBOX_IDLE),
        batch_size: batch_size.max(1),
        ca_file: c.get(&at("ca_file"), m.ca_file),
        timeout: c.duration(&at("timeout"), m.timeout, DEFAULT_MAILBOX_TIMEOUT),
        initial,
    }
}

fn smtp(c: &mut Checker<'_>, raw: Option<RawSmtp>) -> SmtpConfig {
    let Some(s) = raw else {
        c.err("smtp.host", "missing: [smtp] is needed to send acknowledgements and replies");
        return SmtpConfig {
            host: String::new(),
            port: default_smtp_port(DEFAULT_SMTP_TLS),
            tls: DEFAULT_SMTP_TLS,
            username: None,
            password: None,
            hello_name: None,
            ca_file: None,
            timeout: DEFAULT_SMTP_TIMEOUT,
            retry_initial: DEFAULT_SMTP_RETRY_INITIAL,
            retry_max: DEFAULT_SMTP_RETRY_MAX,
        };
    };
    let host = c.required("smtp.host", s.host, "the SMTP server").unwrap_or_default();
    let tls = c.choice("smtp.tls", s.tls, Tls::parse, DEFAULT_SMTP_TLS);
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
        port: c.get("smtp.port", s.port).unwrap_or(default_smtp_port(tls)),
        tls,
        username,
        password,
        hello_name,
        ca_file: c.get("smtp.ca_file", s.ca_file),
        timeout: c.duration("smtp.timeout", s.timeout, DEFAULT_SMTP_TIMEOUT),
        retry_initial: c.duration("smtp.retry_initial", s.retry_initial, DEFAULT_SMTP_RETRY_INITIAL),
        retry_max: c.duration("smtp.retry_max", s.retry_max, DEFAULT_SMTP_RETRY_MAX),
    }
}

/// An agent's `token_file`, checked with `[api]`: (index, id, path).
type AgentToken = (usize, String, PathBuf);

fn agents(c: &mut Checker<'_>, raw: Vec<RawAgent>, mailboxes: &[MailboxConfig]) -> (Vec<Agent>, Vec<AgentToken>) {
    let mut agents = Vec::new();
    let mut agent_ids = BTreeSet::new();
    let mut agent_tokens = Vec::new();
    for (i, a) in raw.into_iter().enumerate() {
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
        agents.push(Agent {
            name: name.unwrap_or_else(|| default_agent_name(&id)),
            email: email.to_ascii_lowercase(),
            id,
        });
    }
    (agents, agent_tokens)
}

fn rules(c: &mut Checker<'_>, raw: Vec<RawRule>) -> Vec<Rule> {
    let mut rules = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
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
    rules
}

fn desk(c: &mut Checker<'_>, d: RawDesk, mailboxes: &[MailboxConfig]) -> DeskConfig {
    let subject_tag = c.get("desk.subject_tag", d.subject_tag).unwrap_or_else(|| DEFAULT_SUBJECT_TAG.into());
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
    let set_domain = c.get("desk.message_id_domain", d.message_id_domain);
    let explicit = set_domain.is_some();
    let message_id_domain = set_domain.unwrap_or_else(|| default_message_id_domain(mailboxes));
    if !looks_like_address(&format!("x@{message_id_domain}")) {
        c.err("desk.message_id_domain", format!("{message_id_domain:?} is not a domain"));
    } else if message_id_domain.chars().count() > MAX_MESSAGE_ID_DOMAIN_CHARS {
        // Longer, our Message-IDs pass 64 characters: an agent's tool built
        // on Python's `email` then folds In-Reply-To as an encoded word.
        let why = format!(
            "{message_id_domain:?} is longer than {MAX_MESSAGE_ID_DOMAIN_CHARS} characters: the Message-IDs ticketd writes would not fit an unfolded In-Reply-To: line (64 characters)"
        );
        if explicit {
            c.err("desk.message_id_domain", why);
        } else {
            c.warn(
                "desk.message_id_domain",
                format!(
                    "{why}; it is the first mailbox's domain: set desk.message_id_domain to a shorter domain you own (replies to mail sent before still find their tickets)"
                ),
            );
        }
    }
    let display_name = c.get("desk.display_name", d.display_name).unwrap_or_else(|| DEFAULT_DISPLAY_NAME.into());
    c.header_text("desk.display_name", &display_name);
    let trusted_authserv_id = c.get("desk.trusted_authserv_id", d.trusted_authserv_id);
    DeskConfig {
        subject_tag,
        display_name,
        secret_file,
        acks_per_sender_per_hour: c
            .get("desk.acks_per_sender_per_hour", d.acks_per_sender_per_hour)
            .unwrap_or(DEFAULT_ACKS_PER_SENDER_PER_HOUR),
        notifications_per_ticket_per_hour: c
            .get("desk.notifications_per_ticket_per_hour", d.notifications_per_ticket_per_hour)
            .unwrap_or(DEFAULT_NOTIFICATIONS_PER_TICKET_PER_HOUR),
        notifications_per_agent_per_hour: c
            .get("desk.notifications_per_agent_per_hour", d.notifications_per_agent_per_hour)
            .unwrap_or(DEFAULT_NOTIFICATIONS_PER_AGENT_PER_HOUR),
        agent_proof_days: c.get("desk.agent_proof_days", d.agent_proof_days).unwrap_or(DEFAULT_AGENT_PROOF_DAYS),
        trust_from_header: c.get("desk.trust_from_header", d.trust_from_header).unwrap_or(DEFAULT_TRUST_FROM_HEADER),
        acks_require_aligned_sender: c
            .get("desk.acks_require_aligned_sender", d.acks_require_aligned_sender)
            .unwrap_or_else(|| default_acks_require_aligned_sender(trusted_authserv_id.as_deref())),
        trusted_authserv_id,
        send_receipts: c.get("desk.send_receipts", d.send_receipts).unwrap_or(DEFAULT_SEND_RECEIPTS),
        max_message_bytes: c.get("desk.max_message_bytes", d.max_message_bytes).unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
        clock_interval: c.duration("desk.clock_interval", d.clock_interval, DEFAULT_CLOCK_INTERVAL),
        message_id_domain,
        templates_dir: c.get("desk.templates_dir", d.templates_dir),
    }
}

/// `[api]` and the agents' `token_file`s.
fn api(c: &mut Checker<'_>, raw: Option<RawApi>, agent_tokens: Vec<AgentToken>) -> Option<ApiConfig> {
    let Some(a) = raw else {
        for (i, _, _) in &agent_tokens {
            c.err(format!("agents[{i}].token_file"), "an agent token needs the [api] section");
        }
        return None;
    };
    let listen = match c.get("api.listen", a.listen) {
        None => Listen::Tcp(DEFAULT_API_LISTEN),
        Some(v) => match v.strip_prefix("unix:") {
            Some(p) => {
                let p = PathBuf::from(p);
                if !p.is_absolute() || p.as_os_str().len() > MAX_SOCKET_PATH {
                    c.err(
                        "api.listen",
                        format!("{v:?}: a unix socket needs an absolute path of at most {MAX_SOCKET_PATH} bytes"),
                    );
                }
                Listen::Unix(p)
            }
            None => match v.parse::<std::net::SocketAddr>() {
                Ok(addr) => {
                    if !addr.ip().is_loopback() {
                        c.warn(
                            "api.listen",
                            format!(
                                "{addr} is not a loopback address: bearer tokens would cross the network in clear text"
                            ),
                        );
                    }
                    Listen::Tcp(addr)
                }
                Err(_) => {
                    c.err(
                        "api.listen",
                        format!(
                            "invalid {v:?}: write \"127.0.0.1:8025\", \"[::1]:8025\" or \"unix:/run/ticketd/api.sock\""
                        ),
                    );
                    Listen::Tcp(DEFAULT_API_LISTEN)
                }
            },
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
        && (!p.is_absolute() || p.as_os_str().len() > MAX_SOCKET_PATH)
    {
        c.err(
            "api.socket",
            format!("{}: a unix socket needs an absolute path of at most {MAX_SOCKET_PATH} bytes", p.display()),
        );
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
        public_attachments: c
            .get("api.public_attachments", a.public_attachments)
            .unwrap_or(DEFAULT_API_PUBLIC_ATTACHMENTS),
        timeout: c.duration("api.timeout", a.timeout, DEFAULT_API_TIMEOUT),
        max_upload_bytes,
        concurrency: concurrency.max(1),
        console: ConsoleConfig::default(),
    })
}

/// `[console]`, which needs `[api]` (it is served on that listener).
fn console(c: &mut Checker<'_>, raw: Option<RawConsole>, api: bool) -> ConsoleConfig {
    let Some(r) = raw else { return ConsoleConfig::default() };
    if !api {
        c.err("console", "the console is served on the API's listener: it needs the [api] section");
    }
    let session_idle = c.duration("console.session_idle", r.session_idle, DEFAULT_CONSOLE_SESSION_IDLE);
    let session_max = c.duration("console.session_max", r.session_max, DEFAULT_CONSOLE_SESSION_MAX);
    if session_idle > session_max {
        c.err("console.session_idle", "must not be longer than console.session_max");
    }
    let public_url = c.get("console.public_url", r.public_url).map(|u| u.trim_end_matches('/').to_owned());
    if let Some(u) = &public_url {
        let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"));
        let host_ok = rest.is_some_and(|h| {
            !h.is_empty() && !h.contains(['/', '?', '#', '@']) && h.bytes().all(|b| b.is_ascii_graphic())
        });
        if !host_ok {
            c.err(
                "console.public_url",
                format!("invalid {u:?}: write the origin browsers use, e.g. \"https://desk.example.com\""),
            );
        }
    }
    ConsoleConfig {
        enabled: c.get("console.enabled", r.enabled).unwrap_or(DEFAULT_CONSOLE_ENABLED),
        session_idle,
        session_max,
        behind_tls: c.get("console.behind_tls", r.behind_tls).unwrap_or(DEFAULT_CONSOLE_BEHIND_TLS),
        public_url,
    }
}

fn attachments(c: &mut Checker<'_>, raw: RawAttachments, api: Option<&ApiConfig>) -> AttachmentsConfig {
    let base_url = match c.get("attachments.base_url", raw.base_url) {
        Some(url) => url.trim_end_matches('/').to_owned(),
        // Out of the box the ticket JSON's links lead to our own API.
        None => default_attachments_base_url(api),
    };
    let max_bytes = c.get("attachments.max_bytes", raw.max_bytes).unwrap_or(DEFAULT_ATTACHMENTS_MAX_BYTES);
    AttachmentsConfig { base_url, max_bytes }
}

/// `[spam]`: see `crate::spam` and `docs/spam-borders.md`.
fn spam(c: &mut Checker<'_>, s: RawSpam, desk: &DeskConfig) -> crate::spam::SpamConfig {
    use crate::spam::{BlockList, Border, Placement, RspamdConfig, SpamConfig, check_placement, check_threshold};
    let border = c.vocab("spam.border", s.border, DEFAULT_SPAM_BORDER);
    let placement = c.vocab("spam.placement", s.placement, DEFAULT_SPAM_PLACEMENT);
    if let Err(why) = check_placement(border, placement) {
        c.err("spam.placement", why);
    }
    let border_host = c
        .get("spam.border_host", s.border_host)
        .or_else(|| default_spam_border_host(desk.trusted_authserv_id.as_deref()))
        .map(|h| h.trim().to_ascii_lowercase());
    if let Some(h) = &border_host
        && !looks_like_address(&format!("x@{h}"))
    {
        c.err("spam.border_host", format!("{h:?} is not a host name"));
    }
    if border != Border::None && placement == Placement::AboveBorder && border_host.is_none() {
        c.err(
            "spam.border_host",
            format!(
                "missing: with border = \"{border}\" and placement = \"above-border\" ticketd must know the host name your border writes in its Received: line (set spam.border_host or desk.trusted_authserv_id)"
            ),
        );
    }
    let number = |c: &mut Checker<'_>, path: &str, v: L<f64>| match c.get(path, v) {
        Some(t) => match check_threshold(t) {
            Ok(t) => Some(t),
            Err(e) => {
                c.err(path, e);
                None
            }
        },
        None => None,
    };
    let score_threshold = number(c, "spam.score_threshold", s.score_threshold);
    let reply_hard_limit =
        number(c, "spam.reply_hard_limit", s.reply_hard_limit).unwrap_or(DEFAULT_SPAM_REPLY_HARD_LIMIT);
    let timeout = c.duration("spam.rspamd_timeout", s.rspamd_timeout, DEFAULT_SPAM_RSPAMD_TIMEOUT);
    let rspamd = c.get("spam.rspamd_url", s.rspamd_url).and_then(|url| {
        match crate::spam::rspamd::RspamdClient::new(&url, timeout) {
            Ok(client) => Some(RspamdConfig { url: client.url().to_owned(), timeout }),
            Err(e) => {
                c.err("spam.rspamd_url", e.problem);
                None
            }
        }
    });
    let unreachable = c.vocab("spam.unreachable", s.unreachable, DEFAULT_SPAM_UNREACHABLE);
    let retention_days = c.get("spam.retention_days", s.retention_days).unwrap_or(DEFAULT_SPAM_RETENTION_DAYS);
    let block = match c.get("spam.block", s.block) {
        None => BlockList::default(),
        Some(entries) => BlockList::parse(&entries).unwrap_or_else(|errors| {
            for e in errors {
                c.err("spam.block", e.to_string());
            }
            BlockList::default()
        }),
    };
    SpamConfig {
        border,
        placement,
        border_host,
        score_threshold,
        reply_hard_limit,
        rspamd,
        unreachable,
        retention_days,
        block,
    }
}

impl<'a> Checker<'a> {
    pub(super) fn new(
        problems: &'a mut Vec<Problem>,
        warnings: &'a mut Vec<Problem>,
        credentials: Option<PathBuf>,
    ) -> Checker<'a> {
        Checker { problems, warnings, credentials }
    }
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

    /// One of a few words (`tls`, `after`, `initial`).
    fn choice<T>(&mut self, path: &str, value: L<String>, parse: fn(&str) -> Result<T, String>, default: T) -> T {
        match self.get(path, value).as_deref().map(parse) {
            None => default,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                self.err(path, e);
                default
            }
        }
    }

    /// A word of a vocabulary (the ticket's, `[spam]`'s): its own parser
    /// says what is wrong.
    fn vocab<T: std::str::FromStr<Err: std::fmt::Display>>(&mut self, path: &str, value: L<String>, default: T) -> T {
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
