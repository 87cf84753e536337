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
    for want in ["console.session_idle: must not be longer", "console.public_url: invalid", "console.colour: unknown key"] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    let alone = format!("{MINIMAL}\n[console]\nbehind_tls = true\n");
    let err = Config::load_with_env(&write(&d, &alone), Some(HashMap::new())).unwrap_err().to_string();
    assert!(err.contains("console: the console is served on the API's listener"), "{err}");
}
