//! Any bytes through parse and decide: no panic, whatever arrives.
//! `cargo fuzz run parse_decide` (nightly); the bounded CI run of the same
//! property is `tests/malformed.rs`.
#![no_main]

use std::sync::LazyLock;

use chrono::TimeZone;
use libfuzzer_sys::fuzz_target;
use ticketd::config::Config;
use ticketd::mail::InboundMail;
use ticketd::outbound::templates::Templates;
use ticketd::triage::token::TokenMatcher;
use ticketd::triage::{Context, Snapshot, decide};

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join("ticketd-fuzz");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("c.toml");
    std::fs::write(
        &p,
        "[store]\npath = \"/tmp/unused\"\n[smtp]\nhost = \"h\"\ntls = \"none\"\n[[mailboxes]]\nname = \"s\"\naddress = \"support@example.test\"\nhost = \"h\"\ntls = \"none\"\npassword = \"p\"\n[[agents]]\nid = \"agent_a\"\nemail = \"a@example.test\"\n",
    )
    .unwrap();
    Config::load_with_env(&p, Some(Default::default())).unwrap()
});

fuzz_target!(|raw: &[u8]| {
    let Ok(mail) = InboundMail::parse(raw) else { return };
    let cfg = &*CONFIG;
    let templates = Templates::default();
    let tokens = TokenMatcher::new("Ticket");
    let ctx = Context { cfg, mailbox: &cfg.mailboxes[0], secret: b"0123456789abcdef", templates: &templates, tokens: &tokens, quiet: false };
    let snap = Snapshot { next_client: 1, next_ticket: 1, ..Snapshot::default() };
    let _ = decide(&mail, &snap, &ctx, chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
});
