//! `config/ticketd.example.toml` documents every key: loading it, with
//! every commented-out key switched on, finds no unknown key, and the only
//! complaints are the credential files that do not exist on a test machine.
//! Where a key's comment states its default, the value written is the one
//! ticketd uses without it.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

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

/// `config/ticketd.example.toml`, with the credential files it names made in
/// a temp dir standing in for /etc/ticketd/credentials/, so it loads
/// without a problem.
struct Example {
    dir: tempfile::TempDir,
    text: String,
}

impl Example {
    fn new() -> Example {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/ticketd.example.toml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::create_dir(&creds).unwrap();
        for name in ["smtp", "imap-support", "secret", "api-token"] {
            std::fs::write(creds.join(name), "0123456789abcdef0123456789abcdef").unwrap();
            std::fs::set_permissions(creds.join(name), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let text = text.replace("/etc/ticketd/credentials/", &format!("{}/", creds.display()));
        Example { dir, text }
    }

    /// `text` (the example, or the example changed) as ticketd loads it.
    fn load(&self, text: &str) -> Config {
        let path = self.dir.path().join("ticketd.toml");
        std::fs::write(&path, text).unwrap();
        Config::load_with_env(&path, Some(HashMap::new())).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The example's rules as ticketd compiles them.
fn example_rules() -> Vec<ticketd::config::Rule> {
    let example = Example::new();
    example.load(&example.text).rules
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

/// A key written in the example (not commented out) under a comment that
/// states its default: `line` is its index in the file.
struct Documented {
    path: String,
    line: usize,
}

/// `key` of an active `key = value` line.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(" = ")?;
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).then_some(key)
}

/// "Default 5.", "Default: the address.", `"tls" (default)`; not "Defaults for".
fn states_default(comment: &str) -> bool {
    let lower = comment.to_ascii_lowercase();
    lower.match_indices("default").any(|(i, w)| {
        let before = lower[..i].chars().next_back();
        let after = lower[i + w.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphabetic()) && !after.is_some_and(|c| c.is_ascii_alphabetic())
    })
}

/// Every active key whose comment block (the `#` lines right above it, up to
/// a blank line or a commented-out key) states a default.
fn documented_defaults(text: &str) -> Vec<Documented> {
    let lines: Vec<&str> = text.lines().collect();
    let mut section = String::new();
    let mut entries: HashMap<String, usize> = HashMap::new();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let count = entries.entry(name.to_owned()).or_default();
            section = format!("{name}[{count}]");
            *count += 1;
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let Some(key) = key_of(line) else { continue };
        let mut comment = lines[..n]
            .iter()
            .rev()
            .take_while(|l| l.starts_with('#') && l.strip_prefix("# ").and_then(key_of).is_none());
        if comment.any(|l| states_default(l)) {
            found.push(Documented { path: format!("{section}.{key}"), line: n });
        }
    }
    found
}

/// The lines of `a` that `b` lacks.
fn only<'a>(a: &'a str, b: &str) -> Vec<&'a str> {
    a.lines().filter(|l| !b.lines().any(|m| m == *l)).map(str::trim).collect()
}

/// Where two `{:#?}` of a config differ, side by side.
fn differences(written: &str, default: &str) -> String {
    format!("  as written: {:?}\n  without it: {:?}", only(written, default), only(default, written))
}

#[test]
fn the_example_writes_each_documented_default() {
    let example = Example::new();
    let documented = documented_defaults(&example.text);
    assert!(!documented.is_empty(), "no key of the example states a default: the comment parser is broken");
    let lines: Vec<&str> = example.text.lines().collect();
    let written = format!("{:#?}", example.load(&example.text));
    let without = |drop: &[usize]| {
        let kept: Vec<&str> = lines.iter().enumerate().filter(|(n, _)| !drop.contains(n)).map(|(_, l)| *l).collect();
        format!("{:#?}", example.load(&kept.join("\n")))
    };
    let mut wrong = Vec::new();
    for d in &documented {
        let default = without(&[d.line]);
        if default != written {
            wrong.push(format!(
                "{} (line {}: {}) is not ticketd's default:\n{}",
                d.path,
                d.line + 1,
                lines[d.line],
                differences(&written, &default)
            ));
        }
    }
    assert!(wrong.is_empty(), "the example and the code disagree:\n{}", wrong.join("\n"));
    let all: Vec<usize> = documented.iter().map(|d| d.line).collect();
    assert_eq!(without(&all), written, "the example without every documented default loads as the example");
    let paths: Vec<&str> = documented.iter().map(|d| d.path.as_str()).collect();
    eprintln!("{} documented defaults compared: {}", paths.len(), paths.join(", "));
}
