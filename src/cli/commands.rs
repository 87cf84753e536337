//! The desk's commands (tickets, quarantine), the same through the daemon's
//! API or on the local store.

use std::process::ExitCode;

use super::access::Access;
use super::args::{QuarantineCmd, TicketsCmd};
use super::print::{quarantine_line, render_ticket};
use super::{actor, fail, outcome, text_or_stdin};
use crate::desk::views::{DueFilter, Sort, TicketQuery};
use crate::desk::{RetryOutcome, Upload};
use crate::text::{clean_line, clean_text};
use crate::triage::act::Action;

pub(super) async fn quarantine(access: &Access, cmd: &QuarantineCmd) -> anyhow::Result<ExitCode> {
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
            let fmt = crate::ticket::rfc3339::format;
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
            Ok(RetryOutcome::Held { id: held, reason }) => {
                println!("entry {id} was held on the spam list as {held}: {}", clean_line(&reason));
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

pub(super) async fn tickets(access: &Access, cmd: &TicketsCmd) -> anyhow::Result<ExitCode> {
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
                sort: match a.sort.as_deref() {
                    Some(s) => Sort::parse(s)?,
                    None if a.overdue || a.due_soon => Sort::DueAsc,
                    None => Sort::default(),
                },
                limit: a.limit,
                cursor: None,
                due: if a.overdue {
                    Some(DueFilter::Overdue)
                } else if a.due_soon {
                    let w = match a.within {
                        Some(w) => chrono::TimeDelta::from_std(w)?,
                        None => DueFilter::DEFAULT_WITHIN,
                    };
                    Some(DueFilter::Within(w))
                } else {
                    None
                },
                as_of: None,
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
                        crate::ticket::rfc3339::format(&t.updated_at),
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
                // Who wrote is what an agent needs first: `client_3` alone says nothing.
                let client = match crate::desk::summary::client_number(&t.client) {
                    Some(n) => access.client(n).await?,
                    None => None,
                };
                print!("{}", render_ticket(&t, client.as_ref()));
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
        TicketsCmd::Merge { id, into, agent } => outcome(access.merge(*id, *into, actor(agent)).await, |t| {
            println!("support_ticket_{id} merged into {}", t.id)
        }),
        TicketsCmd::Note { id, text, agent } => {
            let text = text_or_stdin(text)?;
            outcome(access.act(*id, actor(agent), vec![Action::Note { text }], Vec::new()).await, |t| {
                println!("{}: internal note added", t.id)
            })
        }
    }
}
