//! Crash injection for the crash-safety tests: with
//! `TICKETD_CRASH_AT=<step>:<n>` the process aborts (no cleanup, like
//! SIGKILL) the n-th time it reaches `<step>`. Steps: `fetched`,
//! `committed`, `flushed`, `post-action`, `sent`. Unset, it costs one
//! atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static PLAN: OnceLock<Option<(String, u64)>> = OnceLock::new();
static COUNT: AtomicU64 = AtomicU64::new(0);

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
