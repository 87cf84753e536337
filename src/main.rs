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
    /// Every ticket as public JSON, one per line (JSON Lines), oldest first.
    Export,
    /// Outgoing mail: what waits, what was sent, what failed.
    Outbox {
        /// Also list sent and failed mail, not only what waits.
        #[arg(long)]
        all: bool,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Messages that could not become tickets, kept raw with a reason.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCmd,
    },
}

#[derive(Subcommand)]
enum QuarantineCmd {
    /// One line per quarantined message.
    List,
    /// The reason and the raw message.
    Show { id: u64 },
    /// Run the message through ingest again (e.g. after a fix or a config change).
    Retry { id: u64 },
    /// Forget the message; it will not be ingested again.
    Drop { id: u64 },
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
    /// The original mails of a ticket, unaltered, as an mbox.
    Raw {
        /// `support_ticket_42` or `42`.
        #[arg(value_parser = ticket_ref)]
        id: u64,
    },
    /// Show one ticket and its conversation.
    Show {
        /// `support_ticket_42` or `42`.
        #[arg(value_parser = ticket_ref)]
        id: u64,
        /// The public ticket JSON.
        #[arg(long)]
        json: bool,
    },
}

fn ticket_ref(s: &str) -> Result<u64, String> {
    parse_ticket_ref(s).ok_or_else(|| format!("{s:?} is not a ticket id (expected support_ticket_<n> or <n>)"))
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
    let filter = EnvFilter::try_from_env("TICKETD_LOG").unwrap_or_else(|_| EnvFilter::new("info,lettre=warn,sled=off"));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(tty);
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
        Cmd::Export => {
            let cfg = load(&cli)?;
            let store = Store::open(&cfg.store)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for rec in store.tickets()? {
                serde_json::to_writer(&mut out, &rec.ticket)?;
                std::io::Write::write_all(&mut out, b"\n")?;
            }
            std::io::Write::flush(&mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Outbox { all, json } => {
            let cfg = load(&cli)?;
            let store = Store::open(&cfg.store)?;
            let mut rows: Vec<(u64, ticketd::outbound::OutboxEntry)> = store.pending_entries()?;
            if *all {
                rows.extend(store.sent_entries()?);
                rows.sort_by_key(|(seq, _)| *seq);
            }
            for (seq, e) in &rows {
                if *json {
                    let v = serde_json::json!({"seq": seq, "ticket": e.mail.ticket, "kind": e.mail.kind, "state": e.state,
                        "to": e.mail.to, "message_id": e.mail.message_id, "attempts": e.attempts,
                        "next_attempt": ticketd::ticket::rfc3339::format(&e.next_attempt), "last_error": e.last_error});
                    println!("{v}");
                } else {
                    println!(
                        "{seq:<6} ticket {:<5} {:<13} {:<7} attempts {:<3} to {} {}",
                        e.mail.ticket,
                        format!("{:?}", e.mail.kind),
                        format!("{:?}", e.state).to_lowercase(),
                        e.attempts,
                        e.mail.to.join(","),
                        e.last_error.as_deref().map(|x| format!("({x})")).unwrap_or_default()
                    );
                }
            }
            if rows.is_empty() && !*json {
                println!("outbox is empty");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Quarantine { command } => {
            let cfg = load(&cli)?;
            let store = Store::open(&cfg.store)?;
            quarantine(cfg, store, command)
        }
    }
}

fn quarantine(cfg: Config, store: Store, cmd: &QuarantineCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        QuarantineCmd::List => {
            let entries = store.quarantined()?;
            if entries.is_empty() {
                println!("quarantine is empty");
            }
            for q in entries {
                println!(
                    "{:<5} {}  {}/uid {}  {}",
                    q.id,
                    ticketd::ticket::rfc3339::format(&q.at),
                    q.mailbox,
                    q.uid,
                    q.reason
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCmd::Show { id } => {
            let Some(q) = store.quarantined_entry(*id)? else {
                eprintln!("ticketd: no quarantine entry {id}");
                return Ok(ExitCode::FAILURE);
            };
            println!(
                "id {}\nmailbox {} uid {}\nat {}\nreason {}\n",
                q.id,
                q.mailbox,
                q.uid,
                ticketd::ticket::rfc3339::format(&q.at),
                q.reason
            );
            let raw = store.raw(&q.raw_sha256)?.unwrap_or_default();
            println!("{}", String::from_utf8_lossy(&raw));
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCmd::Drop { id } => {
            if store.drop_quarantined(*id)? {
                store.flush_blocking()?;
                println!("dropped quarantine entry {id}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("ticketd: no quarantine entry {id}");
                Ok(ExitCode::FAILURE)
            }
        }
        QuarantineCmd::Retry { id } => {
            let Some((q, raw)) = store.release_quarantined(*id)? else {
                eprintln!("ticketd: no quarantine entry {id}");
                return Ok(ExitCode::FAILURE);
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let cfg = std::sync::Arc::new(cfg);
            let ingest = ticketd::ingest::Ingest {
                secret: ticketd::daemon::load_secret(&cfg, &store)?,
                templates: ticketd::outbound::templates::Templates::load(cfg.desk.templates_dir.as_deref())?,
                tokens: ticketd::triage::token::TokenMatcher::new(&cfg.desk.subject_tag),
                outbox_wake: Default::default(),
                store: store.clone(),
                cfg: cfg.clone(),
                careful: Default::default(),
            };
            let ingest = std::sync::Arc::new(ingest);
            let uid_validity = store.cursor(&q.mailbox)?.map(|c| c.uid_validity).unwrap_or(0);
            let items = vec![ticketd::ingest::Item::Mail { uid: q.uid, raw }];
            let result = rt.block_on(ingest.process(q.mailbox.clone(), uid_validity, items));
            if let Some(e) = result.error {
                anyhow::bail!("retry failed: {e}");
            }
            let requarantined = store.quarantined()?.iter().any(|e| e.raw_sha256 == q.raw_sha256);
            if requarantined {
                println!("entry {id} was quarantined again (see `ticketd quarantine list`)");
                Ok(ExitCode::FAILURE)
            } else {
                println!("entry {id} ingested; any mail it queued is sent when the daemon runs");
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn tickets(store: &Store, cmd: &TicketsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TicketsCmd::List { status, json } => {
            let status: Option<Status> = status.as_deref().map(str::parse).transpose()?;
            let mut recs: Vec<TicketRecord> = store.tickets()?;
            recs.retain(|r| status.is_none_or(|s| r.ticket.status == s));
            recs.sort_by_key(|r| std::cmp::Reverse(r.number));
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
        TicketsCmd::Raw { id } => {
            let n = *id;
            let mails = store.raw_for_ticket(n)?;
            if mails.is_empty() {
                eprintln!("ticketd: no stored mail for support_ticket_{n}");
                return Ok(ExitCode::FAILURE);
            }
            let mut out = std::io::stdout().lock();
            for (rec, raw) in mails {
                use std::io::Write;
                writeln!(out, "From ticketd {}", rec.at.format("%a %b %e %H:%M:%S %Y"))?;
                // mboxrd: quote "From " lines so the mailbox splits where it should.
                for line in raw.split_inclusive(|b| *b == b'\n') {
                    let bare = line.iter().skip_while(|b| **b == b'>').copied().collect::<Vec<u8>>();
                    if bare.starts_with(b"From ") {
                        out.write_all(b">")?;
                    }
                    out.write_all(line)?;
                }
                writeln!(out)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        TicketsCmd::Show { id, json } => {
            let n = *id;
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
