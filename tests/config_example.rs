//! `config/ticketd.example.toml` documents every key: loading it, with
//! every commented-out key switched on, finds no unknown key, and the only
//! complaints are the credential files that do not exist on a test machine.

use std::collections::HashMap;

use ticketd::config::{Config, ConfigError};
use ticketd::ticket::{Category, Priority};

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

/// The example's rules as ticketd compiles them. The credential files the
/// example names are made in a temp dir standing in for
/// /etc/ticketd/credentials/, so the file loads without a problem.
fn example_rules() -> Vec<ticketd::config::Rule> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/ticketd.example.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    for name in ["smtp", "imap-support", "secret"] {
        std::fs::write(creds.join(name), "0123456789abcdef0123456789abcdef").unwrap();
    }
    let text = text.replace("/etc/ticketd/credentials/", &format!("{}/", creds.display()));
    let path = dir.path().join("ticketd.toml");
    std::fs::write(&path, text).unwrap();
    Config::load_with_env(&path, Some(HashMap::new())).unwrap_or_else(|e| panic!("{e}")).rules
}

/// What one example rule sets, subjects it must match, subjects it must not.
struct RuleCases {
    priority: Option<Priority>,
    category: Option<Category>,
    hits: &'static [&'static str],
    misses: &'static [&'static str],
}

#[test]
fn the_example_rules_match_whole_words_only() {
    let rules = example_rules();
    let expected = [
        RuleCases {
            priority: Some(Priority::Urgent),
            category: None,
            hits: &["Site is down", "OUTAGE in eu-west", "API offline since 10:00", "Re: [Ticket #42] still down!"],
            misses: &[
                "Cannot download my invoice",
                "Markdown tables broken",
                "Countdown is wrong",
                "Breakdown of charges",
            ],
        },
        RuleCases {
            priority: None,
            category: Some(Category::Billing),
            hits: &["Cannot download my invoice", "Refund request", "I was charged twice", "Billing address"],
            misses: &["Site is down", "Recharged the battery, still broken", "Invoicing API docs?"],
        },
        RuleCases {
            priority: None,
            category: Some(Category::Account),
            hits: &[
                "Can't log in",
                "Password reset",
                "Locked out of my account",
                "2FA codes never arrive",
                "sign-in loop",
            ],
            misses: &["Logging is too verbose", "Design input form", "Plugin crashes", "Passwordless mode?"],
        },
    ];
    assert_eq!(rules.len(), expected.len(), "every example rule needs its cases here");
    for (i, (rule, want)) in rules.iter().zip(&expected).enumerate() {
        assert_eq!((rule.priority, rule.category), (want.priority, want.category), "rules[{i}]");
        let subject = rule.subject.as_ref().unwrap_or_else(|| panic!("rules[{i}] has no subject regex"));
        for s in want.hits {
            assert!(subject.is_match(s), "rules[{i}] ({subject}) should match {s:?}");
        }
        for s in want.misses {
            assert!(!subject.is_match(s), "rules[{i}] ({subject}) should not match {s:?}");
        }
    }
    let urgent = |s: &str| {
        rules
            .iter()
            .any(|r| r.priority == Some(Priority::Urgent) && r.subject.as_ref().is_some_and(|re| re.is_match(s)))
    };
    assert!(!urgent("Cannot download my invoice"));
    assert!(urgent("Site is down"));
}
