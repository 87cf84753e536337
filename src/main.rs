use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ticketd::api::client::AccessError;
use ticketd::config::{Config, ConfigError, DEFAULT_PATH};
use ticketd::desk::views::{OutboxView, QuarantineView, Sort, TicketQuery};
use ticketd::desk::{ActorRef, Desk, Parts, RetryOutcome, Upload, backup, import};
use ticketd::outbox::templates::Templates;
use ticketd::store::Store;
use ticketd::text::{clean_line, clean_text};
use ticketd::ticket::{ThreadType, Ticket, parse_ticket_ref};
use ticketd::triage::act::Action;

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
    CheckConfig {
        /// Also log in to every IMAP mailbox and the SMTP server.
        #[arg(long)]
        connect: bool,
    },
    /// Tickets: list, show, update, answer.
    Tickets {
        #[command(subcommand)]
        command: TicketsCmd,
    },
    /// Every ticket as public JSON, one per line (JSON Lines), oldest first.
    Export,
    /// Outgoing mail: what waits, what was sent, what failed.
    Outbox {
        #[command(subcommand)]
        command: Option<OutboxCmd>,
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
    /// Bring in the history of an old helpdesk: mbox files and Maildirs
    /// become tickets quietly (original dates, tagged `imported`, nothing
    /// sent). Running it twice creates nothing twice. The daemon must be
    /// stopped.
    Import {
        /// mbox files (mboxo/mboxrd) and Maildir folders (with Maildir++ subfolders).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Write a consistent snapshot of the whole desk to FILE (a tar; see README).
    Backup { file: PathBuf },
    /// Restore a backup into an empty store (the daemon must be stopped).
    Restore {
        file: PathBuf,
        /// Only check the file against its checksums; write nothing.
        #[arg(long)]
        verify_only: bool,
        /// Restore a backup this desk cannot check the signature of
        /// (unsigned, another desk's, or no desk.secret_file here).
        #[arg(long)]
        trust: bool,
    },
    /// The store: what it holds; retention.
    Store {
        #[command(subcommand)]
        command: StoreCmd,
    },
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Records per table, blobs, size on disk, oldest and newest ticket, queues, cursors.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Prune what store.retention_days allows now (the daemon also does this hourly).
    Prune,
}

#[derive(Subcommand)]
enum OutboxCmd {
    /// Send a waiting entry now, or queue a failed one again.
    Retry { seq: u64 },
    /// Take a waiting entry out of the queue, unsent (the ticket says so).
    Drop { seq: u64 },
}

#[derive(Subcommand)]
enum QuarantineCmd {
    /// One line per quarantined message.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The reason and the raw message.
    Show { id: u64 },
    /// Run the message through ingest again (e.g. after a fix or a config change).
    Retry { id: u64 },
    /// Forget the message; it will not be ingested again.
    Drop { id: u64 },
}

#[derive(Args)]
struct ListArgs {
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    priority: Option<String>,
    #[arg(long)]
    category: Option<String>,
    /// An agent id, or `none`.
    #[arg(long)]
    assigned_to: Option<String>,
    #[arg(long)]
    tag: Option<String>,
    /// A client id or address.
    #[arg(long)]
    client: Option<String>,
    /// Text in the title or description.
    #[arg(long, short = 'q')]
    query: Option<String>,
    /// -number (default), number, -updatedAt, updatedAt, -createdAt, createdAt.
    #[arg(long)]
    sort: Option<String>,
    /// At most this many (default: all).
    #[arg(long)]
    limit: Option<usize>,
    /// A JSON array of public tickets.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum TicketsCmd {
    /// List tickets, newest first.
    List(ListArgs),
    /// Show one ticket and its conversation.
    Show {
        /// `support_ticket_42` or `42`.
        #[arg(value_parser = ticket_ref)]
        id: u64,
        /// The public ticket JSON.
        #[arg(long)]
        json: bool,
    },
    /// The original mails of a ticket, unaltered, as an mbox (redirect it
    /// to a file: a customer's bytes are not printed to a terminal).
    Raw {
        #[arg(value_parser = ticket_ref)]
        id: u64,
        /// Print to a terminal anyway (escape sequences in a mail would act
        /// on it: retitle the window, rewrite the screen, worse).
        #[arg(long)]
        force: bool,
    },
    /// Change status, priority, category, assignment, tags or resolution.
    Update {
        #[arg(value_parser = ticket_ref)]
        id: u64,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        priority: Option<String>,
        #[arg(long)]
        category: Option<String>,
        /// An agent id.
        #[arg(long, conflicts_with = "unassign")]
        assign: Option<String>,
        #[arg(long)]
        unassign: bool,
        #[arg(long)]
        tag: Vec<String>,
        #[arg(long)]
        untag: Vec<String>,
        #[arg(long)]
        resolution: Option<String>,
        /// Act as this agent (default: the admin).
        #[arg(long = "as")]
        agent: Option<String>,
    },
    /// Answer the customer (relayed like an agent's email answer).
    Reply {
        #[arg(value_parser = ticket_ref)]
        id: u64,
        /// The text; without it, read from stdin.
        #[arg(long)]
        text: Option<String>,
        /// Attach a file (repeatable).
        #[arg(long)]
        attach: Vec<PathBuf>,
        #[arg(long = "as")]
        agent: Option<String>,
    },
    /// Add an internal note (sent to no one).
    Note {
        #[arg(value_parser = ticket_ref)]
        id: u64,
        #[arg(long)]
        text: Option<String>,
        #[arg(long = "as")]
        agent: Option<String>,
    },
}

fn ticket_ref(s: &str) -> Result<u64, String> {
    parse_ticket_ref(s).ok_or_else(|| format!("{s:?} is not a ticket id (expected support_ticket_<n> or <n>)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An import logs a line per message at info: too many next to a progress bar.
    init_logging(cli.log_format, matches!(cli.command, Cmd::Import { .. }));
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ticketd: {}", clean_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, quiet: bool) {
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
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
                let findings = runtime()?.block_on(ticketd::doctor::check(&c));
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
        Cmd::Run => {
            let cfg = load(&cli)?;
            runtime()?.block_on(ticketd::daemon::run(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Import { .. } | Cmd::Restore { .. } | Cmd::Store { command: StoreCmd::Prune } => {
            let cfg = load(&cli)?;
            runtime()?.block_on(ops_command(cfg, &cli.command))
        }
        command => {
            let cfg = load(&cli)?;
            runtime()?.block_on(async move {
                let access = ticketd::api::client::Access::open(cfg).await?;
                let code = desk_command(&access, command).await;
                access.close().await;
                code
            })
        }
    }
}

fn fail(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("ticketd: {}", clean_line(&msg.to_string()));
    Ok(ExitCode::FAILURE)
}

fn outcome<T>(r: Result<T, AccessError>, ok: impl FnOnce(T)) -> anyhow::Result<ExitCode> {
    match r {
        Ok(v) => {
            ok(v);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => fail(e),
    }
}

fn actor(agent: &Option<String>) -> ActorRef {
    match agent {
        Some(a) => ActorRef::Agent(a.clone()),
        None => ActorRef::Admin,
    }
}

fn text_or_stdin(text: &Option<String>) -> anyhow::Result<String> {
    match text {
        Some(t) => Ok(t.clone()),
        None => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s)?;
            Ok(s)
        }
    }
}

async fn desk_command(access: &ticketd::api::client::Access, command: &Cmd) -> anyhow::Result<ExitCode> {
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
        Cmd::Tickets { command } => tickets(access, command).await,
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
                    println!("{}", outbox_line(v));
                }
            }
            if rows.is_empty() && !*json {
                println!("outbox is empty");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Quarantine { command } => quarantine(access, command).await,
        Cmd::Run
        | Cmd::CheckConfig { .. }
        | Cmd::Import { .. }
        | Cmd::Restore { .. }
        | Cmd::Store { command: StoreCmd::Prune } => unreachable!("handled without the desk"),
    }
}

/// The desk on a store this process opens: the daemon must be stopped
/// (sled's lock says so otherwise).
fn local_desk(cfg: Config) -> anyhow::Result<Desk> {
    let cfg = std::sync::Arc::new(cfg);
    let store = Store::open(&cfg.store)?;
    let secret = ticketd::daemon::load_secret(&cfg)?;
    let templates = Templates::load(cfg.desk.templates_dir.as_deref())?;
    let parts =
        Parts { cfg, store, secret, templates, wake: Default::default(), health: Default::default(), daemon: false };
    Ok(Desk::start(parts)?.desk)
}

/// Import, backup, restore, store: the operator's commands, on the local
/// store. While the daemon runs, backup and stats belong to its API.
async fn ops_command(cfg: Config, command: &Cmd) -> anyhow::Result<ExitCode> {
    if let Cmd::Restore { file, verify_only, trust } = command {
        // Only a secret from a file: a store's own secret is in the backup
        // too, so it would prove nothing.
        let secret = match &cfg.desk.secret_file {
            Some(p) => Some(ticketd::config::read_secret_file(p)?.trim_ascii().to_vec()),
            None => None,
        };
        let m = if *verify_only {
            let m = backup::verify(file)?;
            let origin = match m.origin(secret.as_deref()) {
                backup::Origin::Ours => "signed by this desk",
                backup::Origin::Unsigned => "unsigned",
                backup::Origin::Foreign if secret.is_none() => "signed (not checked: no desk.secret_file)",
                backup::Origin::Foreign => "signed by ANOTHER desk",
            };
            println!("{}: {origin}", file.display());
            m
        } else {
            let desk = local_desk(cfg)?;
            let file = file.clone();
            let trust = *trust;
            let d = desk.clone();
            let r = tokio::task::spawn_blocking(move || backup::restore(&d, &file, secret.as_deref(), trust)).await;
            desk.join_when_last().await;
            let r = r??;
            println!(
                "restored the backup of {}: {} record(s), {} blob(s) ({} bytes)",
                ticketd::ticket::rfc3339::format(&r.created),
                r.records,
                r.blobs,
                r.blob_bytes
            );
            return Ok(ExitCode::SUCCESS);
        };
        println!(
            "{}: a whole backup of {} (format {}): {} record(s), {} blob(s) ({} bytes)",
            file.display(),
            ticketd::ticket::rfc3339::format(&m.created),
            m.format,
            m.records(),
            m.blob_count(),
            m.blob_bytes()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let desk = local_desk(cfg)?;
    let r = match command {
        Cmd::Import { paths } => match import::run(&desk, paths, import::Show::Stderr).await {
            Ok(summary) => {
                println!("{}", summary.render());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => fail(e),
        },
        Cmd::Store { command: StoreCmd::Prune } => {
            let days = desk.config().store.retention_days;
            let r = desk.prune_all(chrono::Utc::now()).await?;
            if days == 0 {
                println!("store.retention_days is 0: mail is kept forever");
            }
            println!(
                "pruned {} ticket(s): {} raw cop(ies), {} sent-mail bodies; {} stale rate-limit record(s) dropped",
                r.tickets, r.raw_copies, r.sent_records, r.stale_acks
            );
            if let Some(w) = &r.waiting {
                println!("{w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("only the operator's commands come here"),
    };
    desk.join_when_last().await;
    r
}

fn outbox_line(v: &OutboxView) -> String {
    clean_line(&format!(
        "{:<6} ticket {:<5} {:<13} {:<7} attempts {:<3} to {} {}",
        v.seq,
        v.ticket,
        format!("{:?}", v.kind),
        format!("{:?}", v.state).to_lowercase(),
        v.attempts,
        v.to.join(","),
        v.last_error.as_deref().map(|x| format!("({x})")).unwrap_or_default()
    ))
}

fn quarantine_line(q: &QuarantineView) -> String {
    clean_line(&format!(
        "{:<5} {}  {}/uid {}  {}",
        q.id,
        ticketd::ticket::rfc3339::format(&q.at),
        q.mailbox,
        q.uid,
        q.reason
    ))
}

async fn quarantine(access: &ticketd::api::client::Access, cmd: &QuarantineCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        QuarantineCmd::List { json } => {
            let entries = access.quarantine().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("quarantine is empty");
            }
            if !*json {
                for q in &entries {
                    println!("{}", quarantine_line(q));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCmd::Show { id } => {
            let Some((q, raw)) = access.quarantine_entry(*id).await? else {
                return fail(format!("no quarantine entry {id}"));
            };
            let fmt = ticketd::ticket::rfc3339::format;
            println!(
                "id {}\nmailbox {} uid {}\nat {}\nreason {}\n",
                q.id,
                clean_line(&q.mailbox),
                q.uid,
                fmt(&q.at),
                clean_line(&q.reason)
            );
            // The raw mail is whatever the sender wrote: never raw to a terminal.
            println!("{}", clean_text(&String::from_utf8_lossy(&raw)));
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCmd::Drop { id } => {
            outcome(access.quarantine_drop(*id).await, |_| println!("dropped quarantine entry {id}"))
        }
        QuarantineCmd::Retry { id } => match access.quarantine_retry(*id).await {
            Ok(RetryOutcome::Ingested { ticket }) => {
                match ticket {
                    Some(n) => println!("entry {id} ingested into support_ticket_{n}"),
                    None => println!("entry {id} ingested"),
                }
                Ok(ExitCode::SUCCESS)
            }
            Ok(RetryOutcome::Quarantined { id: new, reason }) => {
                println!("entry {id} was quarantined again as {new}: {}", clean_line(&reason));
                Ok(ExitCode::FAILURE)
            }
            Err(e) => fail(e),
        },
    }
}

fn parsed<T: std::str::FromStr>(v: &Option<String>) -> anyhow::Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(v.as_deref().map(str::parse).transpose()?)
}

async fn tickets(access: &ticketd::api::client::Access, cmd: &TicketsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TicketsCmd::List(a) => {
            let q = TicketQuery {
                status: parsed(&a.status)?,
                priority: parsed(&a.priority)?,
                category: parsed(&a.category)?,
                assigned_to: a.assigned_to.clone(),
                tag: a.tag.clone(),
                client: a.client.clone(),
                q: a.query.clone(),
                sort: a.sort.as_deref().map(Sort::parse).transpose()?.unwrap_or_default(),
                limit: a.limit,
                cursor: None,
            };
            let list = match a.limit {
                Some(_) => access.list(&q).await?.tickets,
                None => access.list_all(&q).await?,
            };
            if a.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no tickets");
            } else {
                println!("{:<22} {:<12} {:<8} {:<16} {:<21} TITLE", "ID", "STATUS", "PRIORITY", "CATEGORY", "UPDATED");
                for t in &list {
                    println!(
                        "{:<22} {:<12} {:<8} {:<16} {:<21} {}",
                        t.id,
                        t.status,
                        t.priority,
                        t.category,
                        ticketd::ticket::rfc3339::format(&t.updated_at),
                        clean_line(&t.title)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TicketsCmd::Show { id, json } => {
            let Some(t) = access.ticket(*id).await? else {
                return fail(format!("no ticket support_ticket_{id}"));
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print!("{}", render_ticket(&t));
            }
            Ok(ExitCode::SUCCESS)
        }
        TicketsCmd::Raw { id, force } => {
            use std::io::IsTerminal;
            if !*force && std::io::stdout().is_terminal() {
                return fail(format!(
                    "not printing the raw mail of support_ticket_{id} to a terminal (it is a stranger's bytes, escape sequences included): redirect it (`> ticket.mbox`), or pass --force"
                ));
            }
            let mails = access.raw_mbox(*id).await?;
            if mails.is_empty() {
                return fail(format!("no stored mail for support_ticket_{id}"));
            }
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&mails)?;
            Ok(ExitCode::SUCCESS)
        }
        TicketsCmd::Update { id, status, priority, category, assign, unassign, tag, untag, resolution, agent } => {
            let mut actions = Vec::new();
            if let Some(s) = parsed(status)? {
                actions.push(Action::Status(s));
            }
            if let Some(p) = parsed(priority)? {
                actions.push(Action::Priority(p));
            }
            if let Some(c) = parsed(category)? {
                actions.push(Action::Category(c));
            }
            if let Some(a) = assign {
                actions.push(Action::Assign(Some(a.clone())));
            }
            if *unassign {
                actions.push(Action::Assign(None));
            }
            if !tag.is_empty() {
                actions.push(Action::Tag(tag.clone()));
            }
            if !untag.is_empty() {
                actions.push(Action::Untag(untag.clone()));
            }
            if let Some(r) = resolution {
                actions.push(Action::Resolution(Some(r.clone()).filter(|r| !r.is_empty())));
            }
            if actions.is_empty() {
                return fail(
                    "nothing to change: give --status, --priority, --category, --assign, --unassign, --tag, --untag or --resolution",
                );
            }
            outcome(access.act(*id, actor(agent), actions, Vec::new()).await, |t| {
                println!("{} updated: status {}, priority {}, category {}", t.id, t.status, t.priority, t.category)
            })
        }
        TicketsCmd::Reply { id, text, attach, agent } => {
            let text = text_or_stdin(text)?;
            let mut uploads = Vec::new();
            for p in attach {
                let bytes = std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                let filename = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                uploads.push(Upload { filename, mime_type: None, bytes });
            }
            let actions = vec![Action::Reply { text, attachments: Vec::new() }];
            outcome(access.act(*id, actor(agent), actions, uploads).await, |t| {
                println!("{}: reply stored and queued for the customer", t.id)
            })
        }
        TicketsCmd::Note { id, text, agent } => {
            let text = text_or_stdin(text)?;
            outcome(access.act(*id, actor(agent), vec![Action::Note { text }], Vec::new()).await, |t| {
                println!("{}: internal note added", t.id)
            })
        }
    }
}

/// A ticket for a person: everything from outside cleaned of control
/// characters, so no mail can drive the admin's terminal.
fn render_ticket(t: &Ticket) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let c = |x: &str| clean_line(x);
    let _ = writeln!(s, "{}  {}", t.id, c(&t.title));
    let _ = writeln!(
        s,
        "status {}  priority {}  category {}  assigned {}",
        t.status,
        t.priority,
        t.category,
        t.assigned_to.as_deref().unwrap_or("nobody")
    );
    let _ = writeln!(s, "client {}", t.client);
    if !t.participants.is_empty() {
        let _ = writeln!(s, "participants {}", c(&t.participants.join(", ")));
    }
    if !t.tags.is_empty() {
        let _ = writeln!(s, "tags {}", c(&t.tags.join(", ")));
    }
    if let Some(r) = &t.resolution {
        let _ = writeln!(s, "resolution {}", c(r));
    }
    let fmt = ticketd::ticket::rfc3339::format;
    let _ = writeln!(s, "created {}  updated {}", fmt(&t.created_at), fmt(&t.updated_at));
    for a in &t.attachments {
        let _ = writeln!(s, "attachment {} ({} bytes, {}) {}", c(&a.filename), a.size, c(&a.mime_type), c(&a.url));
    }
    for e in &t.threads {
        let kind = match e.kind {
            ThreadType::User => "customer",
            ThreadType::Agent if e.internal => "internal note",
            ThreadType::Agent => "agent",
            ThreadType::System if e.internal => "system (internal)",
            ThreadType::System => "system",
        };
        let _ = writeln!(s, "\n--- {} · {} · {}", fmt(&e.timestamp), c(&e.author), kind);
        for line in clean_text(&e.message).lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    s
}
