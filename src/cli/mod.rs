//! The `ticketd` command line: [`args`] is what it accepts, [`access`]
//! how it reaches the desk (the store itself, or the running daemon's API
//! through the verified client in [`http`]), [`commands`] and [`ops`] what
//! each command does, [`print`] how it shows the result. `main.rs` only
//! parses, sets up logging and, for `ticketd run`, turns signals into the
//! daemon's intents.

pub mod access;
pub mod args;
mod cluster;
mod commands;
pub mod http;
mod ops;
mod print;
mod progress;
mod spam;

use std::process::ExitCode;

use crate::config::{Config, ConfigError};
use crate::desk::ActorRef;
use crate::desk::views::{Sort, TicketQuery};
use crate::text::clean_line;
use access::{Access, AccessError};
pub use args::{Cli, Cmd, LogFormat};
use args::{OutboxCmd, StoreCmd};

/// Runs a command other than `run`; errors are printed, cleaned.
pub fn run(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ticketd: {}", clean_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

pub fn init_logging(format: LogFormat, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "warn,sled=off" } else { "info,sled=off" };
    let mut filter = EnvFilter::try_from_env("TICKETD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Protocol traces of the libraries carry credentials (IMAP LOGIN in
    // clear, SMTP AUTH in base64): capped whatever TICKETD_LOG asks for.
    for cap in ["async_imap=info", "imap_proto=info", "lettre=info", "rustls=info", "tokio_rustls=info"] {
        if let Ok(d) = cap.parse() {
            filter = filter.add_directive(d);
        }
    }
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log line that cannot be written (stderr on a full disk, a closed
    // pipe) is dropped: the work goes on. tracing-subscriber would report it
    // with eprintln!, which panics when stderr itself is what failed.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .log_internal_errors(false)
        .with_ansi(tty);
    match format {
        LogFormat::Json => b.json().init(),
        // journald stamps lines itself and shows no colours.
        LogFormat::Text if under_journal => b.without_time().with_ansi(false).init(),
        LogFormat::Text => b.init(),
    }
}

/// stderr, where a failed write is a dropped log line, never an error.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(&cli.config)?)
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Cmd::CheckConfig { connect } => match Config::load(&cli.config) {
            Ok(c) => {
                println!(
                    "{}: OK ({} mailbox(es), {} agent(s), {} rule(s))",
                    cli.config.display(),
                    c.mailboxes.len(),
                    c.agents.len(),
                    c.rules.len()
                );
                for w in &c.warnings {
                    println!("  warning: {w}");
                }
                for m in &c.mailboxes {
                    println!("  mailbox {}: if ticketd has not read it before, {}", m.name, m.initial.describe());
                }
                if !*connect {
                    return Ok(ExitCode::SUCCESS);
                }
                let findings = runtime()?.block_on(crate::doctor::check(&c));
                let mut ok = true;
                for f in &findings {
                    ok &= f.ok;
                    println!("  {} {}: {}", if f.ok { "ok  " } else { "FAIL" }, f.subject, clean_line(&f.detail));
                }
                Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            Err(ConfigError::Invalid(problems)) => {
                eprintln!("{}: {} problem(s)", cli.config.display(), problems.len());
                for p in problems {
                    eprintln!("  {p}");
                }
                Ok(ExitCode::FAILURE)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Cmd::Run => unreachable!("main runs the daemon"),
        Cmd::Import { .. } | Cmd::Restore { .. } | Cmd::Store { command: StoreCmd::Prune } => {
            let cfg = load(&cli)?;
            runtime()?.block_on(ops::command(cfg, &cli.command))
        }
        command => {
            let cfg = load(&cli)?;
            runtime()?.block_on(async move {
                let access = Access::open(cfg).await?;
                let code = desk_command(&access, command).await;
                access.close().await;
                code
            })
        }
    }
}

pub(crate) fn fail(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("ticketd: {}", clean_line(&msg.to_string()));
    Ok(ExitCode::FAILURE)
}

pub(crate) fn outcome<T>(r: Result<T, AccessError>, ok: impl FnOnce(T)) -> anyhow::Result<ExitCode> {
    match r {
        Ok(v) => {
            ok(v);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => fail(e),
    }
}

pub(crate) fn actor(agent: &Option<String>) -> ActorRef {
    match agent {
        Some(a) => ActorRef::Agent(a.clone()),
        None => ActorRef::Admin,
    }
}

pub(crate) fn text_or_stdin(text: &Option<String>) -> anyhow::Result<String> {
    match text {
        Some(t) => Ok(t.clone()),
        None => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s)?;
            Ok(s)
        }
    }
}

async fn desk_command(access: &Access, command: &Cmd) -> anyhow::Result<ExitCode> {
    match command {
        // While the daemon runs, through its API: a snapshot between two commits.
        Cmd::Backup { file } => match access.backup(file).await {
            Ok(s) => {
                println!("{}: {} record(s), {} blob(s) ({} bytes)", file.display(), s.records, s.blobs, s.blob_bytes);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => fail(e),
        },
        Cmd::Store { command: StoreCmd::Stats { json } } => {
            let st = access.stats().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", st.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tickets { command } => commands::tickets(access, command).await,
        Cmd::Export => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let q = TicketQuery { sort: Sort::NumberAsc, ..TicketQuery::default() };
            for t in access.list_all(&q).await? {
                serde_json::to_writer(&mut out, &t)?;
                std::io::Write::write_all(&mut out, b"\n")?;
            }
            std::io::Write::flush(&mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Outbox { command: Some(OutboxCmd::Retry { seq }), .. } => {
            outcome(access.outbox_retry(*seq).await, |_| println!("outbox entry {seq} will be sent now"))
        }
        Cmd::Outbox { command: Some(OutboxCmd::Drop { seq }), .. } => {
            outcome(access.outbox_drop(*seq).await, |_| println!("outbox entry {seq} dropped, unsent"))
        }
        Cmd::Outbox { command: None, all, json } => {
            let rows = access.outbox(*all).await?;
            for v in &rows {
                if *json {
                    println!("{}", serde_json::to_string(v)?);
                } else {
                    println!("{}", print::outbox_line(v));
                }
            }
            if rows.is_empty() && !*json {
                println!("outbox is empty");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Quarantine { command } => commands::quarantine(access, command).await,
        Cmd::Spam { command } => spam::spam(access, command).await,
        Cmd::Block { command } => spam::block(access, command).await,
        Cmd::Run
        | Cmd::CheckConfig { .. }
        | Cmd::Import { .. }
        | Cmd::Restore { .. }
        | Cmd::Store { command: StoreCmd::Prune } => unreachable!("handled without the desk"),
    }
}
