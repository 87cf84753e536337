//! The operator's commands on the local store (the daemon stopped):
//! import, restore, prune.

use std::process::ExitCode;

use super::args::{Cmd, StoreCmd};
use super::fail;
use crate::archive;
use crate::config::Config;
use crate::desk::{Desk, backup, import};

/// The desk on a store this process opens: the daemon must be stopped
/// (the store's lock says so otherwise; on PostgreSQL, the cluster's
/// lease: while a node leads, the command is refused).
async fn local_desk(cfg: Config, command: &str) -> anyhow::Result<Desk> {
    if let crate::config::StoreBackend::Postgres { .. } = cfg.store.backend {
        return match super::cluster::open(std::sync::Arc::new(cfg)).await? {
            super::cluster::Found::Local(desk) => Ok(desk),
            super::cluster::Found::Leader(info) => Err(anyhow::anyhow!(super::cluster::refusal(command, &info))),
        };
    }
    Ok(Desk::open(std::sync::Arc::new(cfg), false)?.desk)
}

/// Import, backup, restore, store: the operator's commands, on the local
/// store. While the daemon runs, backup and stats belong to its API.
pub(super) async fn command(cfg: Config, command: &Cmd) -> anyhow::Result<ExitCode> {
    if let Cmd::Restore { file, verify_only, trust } = command {
        // Only a secret from a file: a store's own secret is in the backup
        // too, so it would prove nothing.
        let secret = match &cfg.desk.secret_file {
            Some(p) => Some(crate::config::read_secret_file(p)?.trim_ascii().to_vec()),
            None => None,
        };
        let m = if *verify_only {
            let m = archive::verify(file)?;
            let origin = match m.origin(secret.as_deref()) {
                archive::Origin::Ours => "signed by this desk",
                archive::Origin::Unsigned => "unsigned",
                archive::Origin::Foreign if secret.is_none() => "signed (not checked: no desk.secret_file)",
                archive::Origin::Foreign => "signed by ANOTHER desk",
            };
            println!("{}: {origin}", file.display());
            m
        } else {
            let desk = local_desk(cfg, "restore").await?;
            let file = file.clone();
            let trust = *trust;
            let d = desk.clone();
            let r = tokio::task::spawn_blocking(move || backup::restore(&d, &file, secret.as_deref(), trust)).await;
            desk.join_when_last().await;
            let r = r??;
            println!(
                "restored the backup of {}: {} record(s), {} blob(s) ({} bytes)",
                crate::ticket::rfc3339::format(&r.created),
                r.records,
                r.blobs,
                r.blob_bytes
            );
            return Ok(ExitCode::SUCCESS);
        };
        println!(
            "{}: a whole backup of {} (format {}): {} record(s), {} blob(s) ({} bytes)",
            file.display(),
            crate::ticket::rfc3339::format(&m.created),
            m.format,
            m.records(),
            m.blob_count(),
            m.blob_bytes()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let name = if matches!(command, Cmd::Import { .. }) { "import" } else { "store prune" };
    let desk = local_desk(cfg, name).await?;
    let r = match command {
        Cmd::Import { paths } => match import::run(&desk, paths, &mut super::progress::Progress::stderr()).await {
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
            if r.spam > 0 {
                println!("{} held mail(s) older than spam.retention_days removed from the spam list", r.spam);
            }
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
