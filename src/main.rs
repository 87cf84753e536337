//! `ticketd`: parses the command line and hands it to [`ticketd::cli`].
//! Signals are read here and only here: for `ticketd run` they become the
//! daemon's intents — the first SIGTERM or SIGINT drains and stops, a
//! second one quits at once, SIGHUP re-reads the token files.

use std::process::ExitCode;

use clap::Parser;
use ticketd::cli::{Cli, Cmd};
use ticketd::daemon::Control;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An import logs a line per message at info: too many next to a progress bar.
    ticketd::cli::init_logging(cli.log_format, matches!(cli.command, Cmd::Import { .. }));
    if !matches!(cli.command, Cmd::Run) {
        return ticketd::cli::run(cli);
    }
    match run_daemon(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ticketd: {}", ticketd::text::clean_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run_daemon(cli: &Cli) -> anyhow::Result<()> {
    let cfg = ticketd::config::Config::load(&cli.config)?;
    ticketd::cli::runtime()?.block_on(async {
        let control = Control::default();
        let signals = tokio::spawn(signals(control.clone()));
        let r = ticketd::daemon::run(cfg, control).await;
        signals.abort();
        r
    })
}

async fn signals(control: Control) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        tracing::error!("cannot watch signals; stop ticketd with SIGKILL");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                tracing::info!("SIGHUP: re-reading the token files");
                control.reload();
                continue;
            }
        };
        if control.is_stopping() {
            tracing::warn!("{name} again: quitting now, without draining (nothing uncommitted was acknowledged)");
            std::process::exit(1);
        }
        tracing::info!("{name}: finishing the work in hand, then stopping");
        control.stop();
    }
}
