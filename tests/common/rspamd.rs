//! A private rspamd for tests, started by `scripts/rspamd-lab.sh` in a
//! temporary directory and stopped when the [`RspamdLab`] is dropped.
//!
//! Needs the `rspamd` package (`scripts/install-deps.sh`). Only the normal
//! worker runs, on a free 127.0.0.1 port; network checks are off, so a
//! verdict depends on the message alone. Starting takes about a second.
//!
//! Include with `#[path = "common/rspamd.rs"] mod rspamd_lab;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub struct RspamdLab {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// `http://127.0.0.1:PORT`, for `spam.rspamd_url`.
    pub url: String,
    /// `inet:127.0.0.1:PORT` of the proxy in milter mode, for Postfix's
    /// `smtpd_milters` ([`super::Lab::set_milter`] where both are included).
    pub milter: String,
    stopped: bool,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rspamd-lab.sh")
}

fn run_script(cmd: &str, dir: &Path) -> Result<String> {
    let out = Command::new("bash")
        .arg(script())
        .arg(cmd)
        .arg(dir)
        .output()
        .with_context(|| format!("spawning rspamd-lab.sh {cmd}"))?;
    if !out.status.success() {
        bail!(
            "rspamd-lab.sh {cmd} {} failed ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl RspamdLab {
    /// Panics with the script's message on failure (e.g. "rspamd not
    /// installed: run scripts/install-deps.sh").
    pub fn start() -> RspamdLab {
        Self::try_start().unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn try_start() -> Result<RspamdLab> {
        // Short path under /tmp: rspamd's control socket lives inside it.
        let dir = tempfile::Builder::new().prefix("ticketd-rspamd-").tempdir_in("/tmp").context("tempdir")?;
        let env = run_script("start", dir.path())?;
        let port = env.lines().find_map(|l| l.strip_prefix("RSPAMD_PORT=")).and_then(|p| p.trim().parse::<u16>().ok());
        let milter = env.lines().find_map(|l| l.strip_prefix("RSPAMD_MILTER=")).map(|m| m.trim().to_owned());
        let (Some(port), Some(milter)) = (port, milter) else {
            let _ = run_script("stop", dir.path());
            bail!("rspamd-lab.sh start printed no RSPAMD_PORT or RSPAMD_MILTER:\n{env}");
        };
        Ok(RspamdLab { dir, port, url: format!("http://127.0.0.1:{port}"), milter, stopped: false })
    }

    /// Stops rspamd now (idempotent): its port refuses connections after.
    pub fn stop(&mut self) {
        if let Err(e) = run_script("stop", self.dir.path()) {
            panic!("{e:#}");
        }
        self.stopped = true;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/rspamd.log")).unwrap_or_default()
    }
}

impl Drop for RspamdLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- rspamd lab {} log tail:\n{}",
                self.dir.path().display(),
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
        if !self.stopped
            && let Err(e) = run_script("stop", self.dir.path())
        {
            eprintln!("{e:#}");
        }
    }
}
