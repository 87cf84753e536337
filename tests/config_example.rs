//! `config/ticketd.example.toml` documents every key: loading it, with
//! every commented-out key switched on, finds no unknown key, and the only
//! complaints are the credential files that do not exist on a test machine.

use std::collections::HashMap;

use ticketd::config::{Config, ConfigError};

#[test]
fn the_example_config_knows_every_key() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/ticketd.example.toml")).unwrap();
    let enabled: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticketd.toml");
    std::fs::write(&path, &enabled).unwrap();
    let err = Config::load_with_env(&path, Some(HashMap::new())).unwrap_err();
    let ConfigError::Invalid(problems) = err else { panic!("{err}") };
    for p in &problems {
        let expected = p.message.starts_with("cannot read") || p.message.starts_with("set only one of");
        assert!(expected, "unexpected problem: {p}");
    }
    assert!(
        problems.iter().any(|p| p.path == "mailboxes[0]" && p.message.starts_with("set only one of")),
        "{problems:?}"
    );
}

#[test]
fn check_config_prints_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[store]\npath = \"/tmp/x\"\nflavour = 1\n[smtp]\nhost = \"h\"\ntls = \"maybe\"\n[[mailboxes]]\nname = \"a b\"\naddress = \"nope\"\nhost = \"h\"\npassword = \"p\"\npoll_interval = \"often\"\npriority = \"asap\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "store.flavour: unknown key",
        "smtp.tls: invalid tls mode \"maybe\"",
        "mailboxes[0].name:",
        "mailboxes[0].address: \"nope\" is not an email address",
        "mailboxes[0].poll_interval: invalid duration \"often\"",
        "mailboxes[0].priority: invalid priority \"asap\"",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("6 problem(s)"), "{err}");
}
