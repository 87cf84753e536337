//! The import's progress on stderr: a bar on a terminal, a plain line now
//! and then otherwise (a log, a pipe).

use std::time::{Duration, Instant};

use crate::desk::import::Report;

const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    tty: bool,
    total: u64,
    last: Instant,
}

impl Progress {
    pub(super) fn stderr() -> Progress {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Progress { bar: None, tty, total: 0, last: Instant::now() }
    }
}

impl Report for Progress {
    fn start(&mut self, total: u64) {
        self.total = total;
        if !self.tty {
            return;
        }
        let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "importing [{bar:32}] {bytes}/{total_bytes} {msg} ({elapsed}, {eta} left)",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        self.bar = Some(bar);
    }

    fn advance(&mut self, done: u64, messages: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!("{messages} messages"));
        } else if self.last.elapsed() >= PLAIN_EVERY {
            self.last = Instant::now();
            let pct = (done * 100).checked_div(self.total).unwrap_or(100);
            eprintln!("import: {pct}% ({} of {} bytes), {messages} messages", done, self.total);
        }
    }

    fn note(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
