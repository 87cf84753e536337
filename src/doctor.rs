//! `ticketd check-config --connect`: logs in where the daemon would and
//! says, for each server, whether it works — so a typo'd password is found
//! by the admin at install time, not by a silent desk.

use std::time::Duration;

use futures::TryStreamExt;

use crate::config::{AfterAction, Config, MailboxConfig};
use crate::imap::{connect, timed};

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked ("mailbox support", "smtp 127.0.0.1:25").
    pub subject: String,
    pub ok: bool,
    pub detail: String,
}

async fn mailbox(mb: &MailboxConfig) -> Vec<Finding> {
    let subject = format!("mailbox {} ({}:{})", mb.name, mb.host, mb.port);
    let fail = |detail: String| vec![Finding { subject: subject.clone(), ok: false, detail }];
    let limit = mb.timeout.min(Duration::from_secs(20));
    let probe = MailboxConfig { timeout: limit, ..mb.clone() };
    let mut s = match connect(&probe).await {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let mut out = Vec::new();
    let caps = match timed("CAPABILITY", limit, s.capabilities()).await {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let idle = caps.has_str("IDLE");
    match timed("EXAMINE", limit, s.examine(&mb.folder)).await {
        Ok(m) if m.uid_validity.is_some() => {
            let unseen = match timed("UID SEARCH", limit, s.uid_search("UNSEEN")).await {
                Ok(u) => u.len().to_string(),
                Err(_) => "?".into(),
            };
            let mode = if mb.idle && idle { "IDLE push" } else { "polling" };
            out.push(Finding {
                subject: subject.clone(),
                ok: true,
                detail: format!(
                    "login OK; {} holds {} message(s), {unseen} unread; {mode}; on first contact: {}",
                    mb.folder,
                    m.exists,
                    mb.initial.describe()
                ),
            });
        }
        Ok(_) => out.push(Finding {
            subject: subject.clone(),
            ok: false,
            detail: format!("EXAMINE {} gave no UIDVALIDITY (connection lost?)", mb.folder),
        }),
        Err(e) => out.push(Finding {
            subject: subject.clone(),
            ok: false,
            detail: format!("folder {:?} cannot be opened: {e}", mb.folder),
        }),
    }
    if mb.after == AfterAction::Move
        && let Some(target) = &mb.move_to
    {
        let listed = timed("LIST", limit, async {
            let names: Vec<_> = s.list(Some(""), Some(target)).await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(names.iter().any(|n| n.name() == target))
        })
        .await;
        out.push(match listed {
            Ok(true) => Finding { subject: subject.clone(), ok: true, detail: format!("move_to folder {target:?} exists") },
            Ok(false) => Finding {
                subject: subject.clone(),
                ok: false,
                detail: format!("move_to folder {target:?} does not exist (ticketd creates it at the first move; create it now to be sure the account may)"),
            },
            Err(e) => Finding { subject: subject.clone(), ok: false, detail: format!("LIST {target:?}: {e}") },
        });
    }
    let _ = timed("LOGOUT", limit, s.logout()).await;
    out
}

async fn smtp(cfg: &Config) -> Finding {
    let s = &cfg.smtp;
    let subject = format!("smtp {}:{}", s.host, s.port);
    let probe = crate::config::SmtpConfig { timeout: s.timeout.min(Duration::from_secs(20)), ..s.clone() };
    match crate::outbound::smtp::SmtpClient::new(&probe).check().await {
        Ok(()) => Finding {
            subject,
            ok: true,
            detail: if s.username.is_some() {
                "EHLO and AUTH OK".into()
            } else {
                "EHLO OK (no AUTH configured)".into()
            },
        },
        Err(e) => Finding { subject, ok: false, detail: e.to_string() },
    }
}

/// The PostgreSQL database (`store.backend = "postgres"`): reachable,
/// which version, writable, not behind a transaction pooler.
async fn database(cfg: &Config) -> Option<Finding> {
    let crate::config::StoreBackend::Postgres { .. } = cfg.store.backend else { return None };
    let settings = match crate::cluster::settings(cfg, "").await {
        Ok(s) => s,
        Err(e) => return Some(Finding { subject: "database".into(), ok: false, detail: format!("{e:#}") }),
    };
    let subject = format!("database {}", settings.describe());
    let probed = tokio::task::spawn_blocking(move || crate::store::postgres::probe::probe(&settings)).await;
    Some(match probed {
        Ok(Ok(r)) => Finding { subject, ok: r.ok(), detail: r.to_string().replace('\n', ";") },
        Ok(Err(e)) => Finding { subject, ok: false, detail: e.to_string() },
        Err(e) => Finding { subject, ok: false, detail: e.to_string() },
    })
}

/// Every mailbox, the SMTP server and the database, checked concurrently.
pub async fn check(cfg: &Config) -> Vec<Finding> {
    let mailboxes = futures::future::join_all(cfg.mailboxes.iter().map(mailbox));
    let (mut found, smtp, db) = tokio::join!(mailboxes, smtp(cfg), database(cfg));
    let mut out: Vec<Finding> = found.drain(..).flatten().collect();
    out.push(smtp);
    out.extend(rspamd(cfg).await);
    out.extend(db);
    out
}

/// `spam.rspamd_url`: rspamd scans a tiny mail in time.
async fn rspamd(cfg: &Config) -> Option<Finding> {
    let address = cfg.mailboxes.first().map(|m| m.address.as_str()).unwrap_or("");
    let scanner = crate::spam::Scanner::from_config(&cfg.spam, address)?;
    let subject = format!("rspamd {}", scanner.url());
    let probe = b"From: ticketd <check-config@ticketd.invalid>\r\nSubject: check-config\r\n\r\nticketd check-config --connect\r\n";
    let r = scanner.scan_all(&[probe]).await.pop();
    Some(match r {
        Some(crate::spam::ScanResult::Verdict(v)) => {
            Finding { subject, ok: true, detail: format!("scans mail ({})", v.reason) }
        }
        Some(crate::spam::ScanResult::Failed { reason, .. }) => Finding {
            subject,
            ok: false,
            detail: format!("{reason}; meanwhile spam.unreachable = \"{}\" decides", cfg.spam.unreachable),
        },
        None => Finding { subject, ok: false, detail: "no answer".into() },
    })
}
