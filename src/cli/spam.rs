//! `ticketd spam …` and `ticketd block …`: the spam list and the blocklist,
//! the same through the store or the daemon's API.

use std::process::ExitCode;

use super::access::Access;
use super::args::{BlockCmd, SpamCmd};
use super::{fail, outcome};
use crate::api::wire::SpamDetail;
use crate::desk::RetryOutcome;
use crate::desk::spam::{BlockView, SpamView};
use crate::spam::BlockEntry;
use crate::text::{clean_line, clean_text};

fn spam_line(v: &SpamView) -> String {
    let score = v.score.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into());
    clean_line(&format!(
        "{:<5} {}  {:<19} {:>6}  {}  {:?}  {}",
        v.id,
        crate::ticket::rfc3339::format(&v.at),
        v.source,
        score,
        v.from.as_deref().unwrap_or("(no sender)"),
        crate::text::truncate_chars(&v.subject, 60),
        v.reason
    ))
}

fn block_line(v: &BlockView) -> String {
    let mut line = format!("{:<40} {}", v.entry, v.source);
    if let Some(by) = &v.by {
        line.push_str(&format!(" by {by}"));
    }
    if let Some(at) = &v.at {
        line.push_str(&format!(" at {}", crate::ticket::rfc3339::format(at)));
    }
    if let Some(n) = v.ticket {
        line.push_str(&format!(" (ticket #{n})"));
    }
    clean_line(&line)
}

pub(super) async fn spam(access: &Access, cmd: &SpamCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SpamCmd::List { json } => {
            let entries = access.spam().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("the spam list is empty");
            } else {
                for v in &entries {
                    println!("{}", spam_line(v));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SpamCmd::Show { id, json } => {
            let Some((v, raw)) = access.spam_entry(*id).await? else {
                return fail(format!("no spam entry {id}"));
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&SpamDetail::new(v, &raw))?);
                return Ok(ExitCode::SUCCESS);
            }
            let score = v.score.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
            println!(
                "id {}\nmailbox {} uid {}\nat {}\nheld by {} (score {score})\nreason {}\nfrom {}\nsubject {}\n",
                v.id,
                clean_line(&v.mailbox),
                v.uid,
                crate::ticket::rfc3339::format(&v.at),
                v.source,
                clean_line(&v.reason),
                clean_line(v.from.as_deref().unwrap_or("(no sender)")),
                clean_line(&v.subject),
            );
            // The raw mail is whatever the sender wrote: never raw to a terminal.
            println!("{}", clean_text(&String::from_utf8_lossy(&raw)));
            Ok(ExitCode::SUCCESS)
        }
        SpamCmd::Release { id, json } => match access.spam_release(*id).await {
            Ok(o) if *json => {
                println!("{}", serde_json::to_string(&o)?);
                Ok(if matches!(o, RetryOutcome::Ingested { .. }) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            Ok(RetryOutcome::Ingested { ticket: Some(n) }) => {
                println!("spam entry {id} released into support_ticket_{n}");
                Ok(ExitCode::SUCCESS)
            }
            Ok(RetryOutcome::Ingested { ticket: None }) => {
                println!("spam entry {id} released");
                Ok(ExitCode::SUCCESS)
            }
            Ok(RetryOutcome::Quarantined { id: q, reason }) => {
                println!("spam entry {id} could not be read and went to quarantine as {q}: {}", clean_line(&reason));
                Ok(ExitCode::FAILURE)
            }
            Ok(RetryOutcome::Held { id: again, reason }) => {
                println!("spam entry {id} was held again as {again}: {}", clean_line(&reason));
                Ok(ExitCode::FAILURE)
            }
            Err(e) => fail(e),
        },
        SpamCmd::Drop { id, json } => outcome(access.spam_drop(*id).await, |_| {
            if *json {
                println!("{}", serde_json::json!({"dropped": id}));
            } else {
                println!("dropped spam entry {id}");
            }
        }),
    }
}

pub(super) async fn block(access: &Access, cmd: &BlockCmd) -> anyhow::Result<ExitCode> {
    let parse = |s: &str| BlockEntry::parse(s).map_err(|e| anyhow::anyhow!("{e}"));
    match cmd {
        BlockCmd::List { json } => {
            let entries = access.blocklist().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("the blocklist is empty");
            } else {
                for v in &entries {
                    println!("{}", block_line(v));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BlockCmd::Add { entry, json } => {
            let entry = parse(entry)?;
            outcome(access.block(entry, true).await, |c| {
                if *json {
                    println!("{}", serde_json::to_string(&c).unwrap_or_default());
                } else if c.changed {
                    println!("blocked {}: their mail is held on the spam list from now on", c.entry);
                } else {
                    println!("{} was blocked already", c.entry);
                }
            })
        }
        BlockCmd::Remove { entry, json } => {
            let entry = parse(entry)?;
            outcome(access.block(entry, false).await, |c| {
                if *json {
                    println!("{}", serde_json::to_string(&c).unwrap_or_default());
                } else {
                    println!("unblocked {}", c.entry);
                }
            })
        }
    }
}
