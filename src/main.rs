use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ticketd::config::{Config, ConfigError, DEFAULT_PATH};
use ticketd::store::Store;
use ticketd::ticket::{Status, ThreadType, TicketRecord, parse_ticket_ref};

#[derive(Parser)]
#[command(name = "ticketd", version, about = "Email-to-ticket daemon: IMAP in, sled store, SMTP out")]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "TICKETD_CONFIG", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Run,
    /// Validate the configuration; print every problem with its key path.
    CheckConfig,
    /// Inspect tickets (while the daemon is stopped).
    Tickets {
        #[command(subcommand)]
        command: TicketsCmd,
    },
}

#[derive(Subcommand)]
enum TicketsCmd {
    /// List tickets, newest first.
    List {
        /// Only tickets with this status.
        #[arg(long)]
        status: Option<String>,
        /// A JSON array of public tickets.
        #[arg(long)]
        json: bool,
    },
    /// Show one ticket and its conversation.
    Show {
        /// `support_ticket_42` or `42`.
        id: String,
        /// The public ticket JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ticketd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TICKETD_LOG").unwrap_or_else(|_| EnvFilter::new("info,lettre=warn,sled=warn"));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        // journald stamps lines itself and shows no colours.
        LogFormat::Text if under_journal => b.without_time().with_ansi(false).init(),
        LogFormat::Text => b.init(),
    }
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(&cli.config)?)
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Cmd::CheckConfig => match Config::load(&cli.config) {
            Ok(c) => {
                println!(
                    "{}: OK ({} mailbox(es), {} agent(s), {} rule(s))",
                    cli.config.display(),
                    c.mailboxes.len(),
                    c.agents.len(),
                    c.rules.len()
                );
                Ok(ExitCode::SUCCESS)
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
        Cmd::Run => {
            let cfg = load(&cli)?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(ticketd::daemon::run(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tickets { command } => {
            let cfg = load(&cli)?;
            let store = Store::open(&cfg.store)?;
            tickets(&store, command)
        }
    }
}

fn tickets(store: &Store, cmd: &TicketsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TicketsCmd::List { status, json } => {
            let status: Option<Status> = status.as_deref().map(str::parse).transpose()?;
            let mut recs: Vec<TicketRecord> = store.tickets().collect::<Result<_, _>>()?;
            recs.retain(|r| status.is_none_or(|s| r.ticket.status == s));
            recs.sort_by(|a, b| b.number.cmp(&a.number));
            if *json {
                let list: Vec<_> = recs.iter().map(|r| &r.ticket).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if recs.is_empty() {
                println!("no tickets");
            } else {
                println!("{:<22} {:<12} {:<8} {:<16} {:<21} TITLE", "ID", "STATUS", "PRIORITY", "CATEGORY", "UPDATED");
                for r in &recs {
                    let t = &r.ticket;
                    println!(
                        "{:<22} {:<12} {:<8} {:<16} {:<21} {}",
                        t.id,
                        t.status,
                        t.priority,
                        t.category,
                        ticketd::ticket::rfc3339::format(&t.updated_at),
                        t.title
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TicketsCmd::Show { id, json } => {
            let Some(n) = parse_ticket_ref(id) else {
                eprintln!("ticketd: {id:?} is not a ticket id (expected support_ticket_<n> or <n>)");
                return Ok(ExitCode::FAILURE);
            };
            let Some(rec) = store.ticket(n)? else {
                eprintln!("ticketd: no ticket support_ticket_{n}");
                return Ok(ExitCode::FAILURE);
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&rec.ticket)?);
            } else {
                print!("{}", render_ticket(&rec));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn render_ticket(rec: &TicketRecord) -> String {
    use std::fmt::Write;
    let t = &rec.ticket;
    let mut s = String::new();
    let _ = writeln!(s, "{}  {}", t.id, t.title);
    let _ = writeln!(
        s,
        "status {}  priority {}  category {}  assigned {}",
        t.status,
        t.priority,
        t.category,
        t.assigned_to.as_deref().unwrap_or("nobody")
    );
    let _ = writeln!(s, "client {} <{}>", t.client, rec.client_address);
    if !t.participants.is_empty() {
        let _ = writeln!(s, "participants {}", t.participants.join(", "));
    }
    if !t.tags.is_empty() {
        let _ = writeln!(s, "tags {}", t.tags.join(", "));
    }
    if let Some(r) = &t.resolution {
        let _ = writeln!(s, "resolution {r}");
    }
    let fmt = ticketd::ticket::rfc3339::format;
    let _ = writeln!(s, "created {}  updated {}", fmt(&t.created_at), fmt(&t.updated_at));
    for a in &t.attachments {
        let _ = writeln!(s, "attachment {} ({} bytes, {}) {}", a.filename, a.size, a.mime_type, a.url);
    }
    for (i, e) in t.threads.iter().enumerate() {
        let kind = match e.kind {
            ThreadType::User => "customer",
            ThreadType::Agent if rec.internal.contains(&i) => "internal note",
            ThreadType::Agent => "agent",
            ThreadType::System => "system",
        };
        let _ = writeln!(s, "\n--- {} · {} · {}", fmt(&e.timestamp), e.author, kind);
        for line in e.message.lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    s
}
