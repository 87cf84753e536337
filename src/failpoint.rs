//! Crash injection for the crash-safety tests: with
//! `TICKETD_CRASH_AT=<step>:<n>` the process aborts (no cleanup, like
//! SIGKILL) the n-th time it reaches `<step>`. Steps: `fetched`,
//! `committed`, `flushed`, `post-action`, `sent`. With
//! `TICKETD_CRASH_ON=<text>` it aborts whenever it starts reading a message
//! that contains `<text>`: a stand-in for a mail that crashes the parser.
//! Unset, each costs one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static PLAN: OnceLock<Option<(String, u64)>> = OnceLock::new();
static COUNT: AtomicU64 = AtomicU64::new(0);
static POISON: OnceLock<Option<Vec<u8>>> = OnceLock::new();

pub fn hit(step: &str) {
    let plan = PLAN.get_or_init(|| {
        let v = std::env::var("TICKETD_CRASH_AT").ok()?;
        let (s, n) = v.split_once(':')?;
        Some((s.to_owned(), n.parse().ok()?))
    });
    if let Some((s, n)) = plan
        && s == step
        && COUNT.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        eprintln!("TICKETD_CRASH_AT: aborting at {step} #{n}");
        std::process::abort();
    }
}

/// Aborts when `raw` contains the `TICKETD_CRASH_ON` text.
pub fn poison(raw: &[u8]) {
    let needle =
        POISON.get_or_init(|| std::env::var("TICKETD_CRASH_ON").ok().filter(|v| !v.is_empty()).map(String::into_bytes));
    if let Some(n) = needle
        && raw.windows(n.len()).any(|w| w == n.as_slice())
    {
        eprintln!("TICKETD_CRASH_ON: aborting while reading a message");
        std::process::abort();
    }
}
