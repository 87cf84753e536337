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
    let body = MINIMAL.replace("password = \"secret\"", "password_file = \"/etc/ticketd/credentials/imap-support\"");
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
    let body =
        format!("{MINIMAL}[desk]\ndisplay_name = \"Support\\nBcc: x@evil.test\"\nsubject_tag = \"T\\u202Eicket\"\n");
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
    let no_api = format!("{MINIMAL}\n[[agents]]\nid = \"agent_a\"\nemail = \"a@example.test\"\ntoken_file = \"/x\"\n");
    let err = Config::load_with_env(&write(&d, &no_api), Some(HashMap::new())).unwrap_err();
    assert!(err.to_string().contains("agents[0].token_file: an agent token needs the [api] section"), "{err}");
}

#[test]
fn sizes() {
    assert_eq!(parse_size("64MiB"), Some(64 << 20));
    assert_eq!(parse_size("10"), Some(10));
    assert_eq!(parse_size("ten"), None);
}

#[test]
fn the_console_section_and_its_defaults() {
    let d = tempfile::tempdir().unwrap();
    let token = d.path().join("api-token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    let api = format!("{MINIMAL}\n[api]\ntoken_file = \"{}\"\n", token.display());
    let c = Config::load_with_env(&write(&d, &api), Some(HashMap::new())).unwrap();
    assert_eq!(c.api.unwrap().console, ConsoleConfig::default(), "on by default with [api]");
    let set = format!(
        "{api}[console]\nenabled = false\nsession_idle = \"2s\"\nsession_max = \"1h\"\nbehind_tls = true\npublic_url = \"https://desk.example.com/\"\n"
    );
    let c = Config::load_with_env(&write(&d, &set), Some(HashMap::new())).unwrap().api.unwrap().console;
    assert_eq!(
        (c.enabled, c.session_idle, c.session_max, c.behind_tls, c.public_url.as_deref()),
        (false, Duration::from_secs(2), Duration::from_secs(3600), true, Some("https://desk.example.com"))
    );
    let bad = format!(
        "{api}[console]\nsession_idle = \"2d\"\nsession_max = \"1d\"\npublic_url = \"desk.example.com/x\"\ncolour = 1\n"
    );
    let err = Config::load_with_env(&write(&d, &bad), Some(HashMap::new())).unwrap_err().to_string();
    for want in
        ["console.session_idle: must not be longer", "console.public_url: invalid", "console.colour: unknown key"]
    {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    let alone = format!("{MINIMAL}\n[console]\nbehind_tls = true\n");
    let err = Config::load_with_env(&write(&d, &alone), Some(HashMap::new())).unwrap_err().to_string();
    assert!(err.contains("console: the console is served on the API's listener"), "{err}");
}

#[test]
fn spam_section_defaults_and_every_problem_at_once() {
    let d = tempfile::tempdir().unwrap();
    let c = Config::load_with_env(&write(&d, MINIMAL), Some(HashMap::new())).unwrap();
    assert_eq!(c.spam, crate::spam::SpamConfig::default());
    assert!(!c.desk.acks_require_aligned_sender, "off without trusted_authserv_id");
    let with_border =
        format!("[desk]\ntrusted_authserv_id = \"MX.example.test\"\n[spam]\nborder = \"spamassassin\"\n{MINIMAL}");
    let c = Config::load_with_env(&write(&d, &with_border), Some(HashMap::new())).unwrap();
    assert!(c.desk.acks_require_aligned_sender, "on where trusted_authserv_id is set");
    assert_eq!(c.spam.border_host.as_deref(), Some("mx.example.test"), "border_host defaults to the authserv-id");

    let bad = format!(
        "[spam]\nborder = \"SpamAssassin\"\nplacement = \"milter\"\nrspamd_url = \"https://rspamd:11333\"\nunreachable = \"drop\"\nscore_threshold = \"high\"\nblock = [\"ok@example.net\", \"nope\", \"*@x.example\"]\n{MINIMAL}"
    );
    let err = Config::load_with_env(&write(&d, &bad), Some(HashMap::new())).unwrap_err();
    let ConfigError::Invalid(problems) = err else { panic!("expected Invalid") };
    let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    for want in [
        "spam.border: \"SpamAssassin\" is not one of",
        "spam.rspamd_url: only http://",
        "spam.unreachable: \"drop\" is not one of",
        "spam.score_threshold:",
        "spam.block: blocklist entry \"nope\"",
        "spam.block: blocklist entry \"*@x.example\": wildcards",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let sa_milter = format!("[spam]\nborder = \"spamassassin\"\nplacement = \"milter\"\n{MINIMAL}");
    let err = Config::load_with_env(&write(&d, &sa_milter), Some(HashMap::new())).unwrap_err();
    assert!(err.to_string().contains("spam.placement: spamass-milter"), "{err}");
    let no_host = format!("[spam]\nborder = \"rspamd\"\n{MINIMAL}");
    let err = Config::load_with_env(&write(&d, &no_host), Some(HashMap::new())).unwrap_err();
    assert!(err.to_string().contains("spam.border_host: missing"), "{err}");
}

/// Our Message-IDs must fit an unfolded `In-Reply-To:` line (#18.6): a
/// domain that makes them longer is refused when set, and warned about when
/// it is the first mailbox's domain (refusing would stop a running desk on
/// upgrade).
#[test]
fn a_message_id_domain_too_long_for_an_unfolded_in_reply_to() {
    let d = tempfile::tempdir().unwrap();
    let long = "helpdesk.customer-care.example.com";
    let set = format!("[desk]\nmessage_id_domain = \"{long}\"\n{MINIMAL}");
    let err = Config::load_with_env(&write(&d, &set), Some(HashMap::new())).unwrap_err();
    assert!(
        err.to_string().contains("desk.message_id_domain: \"helpdesk.customer-care.example.com\" is longer than 24"),
        "{err}"
    );
    let defaulted = MINIMAL.replace("Support@Example.test", &format!("support@{long}"));
    let c = Config::load_with_env(&write(&d, &defaulted), Some(HashMap::new())).unwrap();
    assert_eq!(c.desk.message_id_domain, long);
    let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter().any(|w| w.starts_with("desk.message_id_domain:") && w.contains("set desk.message_id_domain")),
        "{w:?}"
    );
    let fits = format!("[desk]\nmessage_id_domain = \"{}\"\n{MINIMAL}", "x".repeat(20) + ".com");
    let c = Config::load_with_env(&write(&d, &fits), Some(HashMap::new())).unwrap();
    assert!(c.warnings.iter().all(|w| w.path != "desk.message_id_domain"), "{:?}", c.warnings);
}

/// `[[sla]]`, `[[calendars]]` and the desk's timers (#19) are read the
/// loader's way: unknown keys and wrong types are listed with every other
/// problem, the time core's own checks come with their paths, and the
/// environment overrides the timers like any scalar key.
#[test]
fn time_rules_are_checked_with_everything_else() {
    let d = tempfile::tempdir().unwrap();
    let body = format!(
        "[desk]\npending_resolve_after = \"7d\"\nclose_resolved_after = 5\n{MINIMAL}[[sla]]\npriority = \"urgent\"\nfirst_reply = \"1h\"\ncalendar = \"office\"\n[[calendars]]\nname = \"office\"\ntimezone = \"Europe/Berln\"\nhours = {{ monday = \"09:00-17:00\", tue = \"17:00-09:00\" }}\n"
    );
    let err = Config::load_with_env(&write(&d, &body), Some(HashMap::new())).unwrap_err();
    let ConfigError::Invalid(problems) = err else { panic!("expected Invalid") };
    let got: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    for want in [
        "desk.close_resolved_after: invalid type",
        "sla[0].first_reply: unknown key",
        "sla[0]: give first_response, resolution or both",
        "calendars[0].hours.monday: unknown key",
        "calendars[0].timezone: unknown time zone \"Europe/Berln\"",
        "calendars[0].hours.tue: invalid hours \"17:00-09:00\"",
    ] {
        assert!(got.iter().any(|g| g.starts_with(want)), "missing {want:?} in {got:#?}");
    }
    let ok = format!(
        "[desk]\npending_resolve_after = \"7d\"\n{MINIMAL}[[sla]]\npriority = \"urgent\"\nfirst_response = \"1h\"\n"
    );
    let env = HashMap::from([("TICKETD__DESK__CLOSE_RESOLVED_AFTER".to_owned(), "2s".to_owned())]);
    let c = Config::load_with_env(&write(&d, &ok), Some(env)).unwrap();
    assert_eq!(c.sla.rules.len(), 1);
    assert_eq!(c.sla.lifecycle.pending_resolve_after, Some(chrono::TimeDelta::days(7)));
    assert_eq!(c.sla.lifecycle.close_resolved_after, Some(chrono::TimeDelta::seconds(2)), "from the environment");
    assert_eq!(c.sla.lifecycle.pending_reminder_after, None, "off unless set");
    assert_eq!(c.sla.warn_before, defaults::DEFAULT_SLA_WARN_BEFORE);
}

/// `MINIMAL` on PostgreSQL: `store` and `[cluster]` replaced by `head`.
fn on_postgres(head: &str, mailbox_extra: &str) -> String {
    let rest = MINIMAL.split_once("[smtp]").unwrap().1;
    format!("{head}\n[smtp]{rest}{mailbox_extra}\n")
}

#[test]
fn postgres_needs_a_url_and_a_node_and_sled_stays_the_default() {
    let d = tempfile::tempdir().unwrap();
    let c = Config::load_with_env(&write(&d, MINIMAL), Some(HashMap::new())).unwrap();
    assert_eq!((c.store.backend.clone(), c.cluster.clone()), (StoreBackend::Sled, None));

    let url_file = d.path().join("postgres-url");
    std::fs::write(&url_file, "postgres://u:p@db/t\n").unwrap();
    std::fs::set_permissions(&url_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = on_postgres(
        &format!(
            "[store]\nbackend = \"postgres\"\nurl_file = \"{}\"\n[cluster]\nnode = \"n1\"\nadvertise = \"http://10.0.0.11:8025\"\n",
            url_file.display()
        ),
        "",
    );
    let c = Config::load_with_env(&write(&d, &text), Some(HashMap::new())).unwrap();
    assert_eq!(c.store.backend, StoreBackend::Postgres { url: Secret::File(url_file.clone()) });
    assert_eq!(c.store.path, PathBuf::from(defaults::DEFAULT_STORE_PATH), "no sled path needed");
    let cl = c.cluster.unwrap();
    assert_eq!((cl.node.as_str(), cl.advertise.as_deref()), ("n1", Some("http://10.0.0.11:8025")));
    assert_eq!((cl.lease_timeout, cl.forward), (Duration::from_secs(10), true), "the window stays under 15 s");
    let w: Vec<&str> = c.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(w, ["cluster.advertise"], "no [api] answers there");

    let text =
        on_postgres("[store]\nbackend = \"postgres\"\n[cluster]\nnode = \"bad name\"\nlease_timeout = \"1s\"\n", "");
    let Err(ConfigError::Invalid(p)) = Config::load_with_env(&write(&d, &text), Some(HashMap::new())) else {
        panic!("accepted")
    };
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["store.url_file", "cluster.lease_timeout", "cluster.node"], "{p:?}");

    let text = on_postgres("[store]\nbackend = \"postgres\"\nurl = \"postgres://u:p@db/t\"\nurl_file = \"/x\"\n", "");
    let Err(ConfigError::Invalid(p)) = Config::load_with_env(&write(&d, &text), Some(HashMap::new())) else {
        panic!("accepted")
    };
    assert!(p.iter().any(|p| p.path == "store" && p.message.starts_with("set only one of")), "{p:?}");
    assert!(p.iter().any(|p| p.path == "cluster.node"), "[cluster] is required: {p:?}");
}

#[test]
fn postgres_with_move_or_delete_is_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let head = "[store]\nbackend = \"postgres\"\nurl = \"postgres://u:p@db/t\"\n[cluster]\nnode = \"n1\"\n";
    let text = on_postgres(head, "after = \"delete\"");
    let c = Config::load_with_env(&write(&d, &text), Some(HashMap::new())).unwrap();
    let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert!(w.iter().any(|w| w.starts_with("mailboxes[0].after:") && w.contains("synchronous replication")), "{w:?}");
    let c = Config::load_with_env(&write(&d, &on_postgres(head, "")), Some(HashMap::new())).unwrap();
    assert!(c.warnings.iter().all(|w| w.path != "mailboxes[0].after"), "seen is fine");
    // Sled ignores the cluster's keys, and says so.
    let text = format!("{MINIMAL}\n[cluster]\nnode = \"n1\"\n");
    let c = Config::load_with_env(&write(&d, &text), Some(HashMap::new())).unwrap();
    assert!(c.warnings.iter().any(|w| w.path == "cluster"), "{:?}", c.warnings);
}
