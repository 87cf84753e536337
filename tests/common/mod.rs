//! The private mail lab for integration tests: real Dovecot (IMAP, LMTP)
//! and Postfix (SMTP) started by `scripts/lab.sh` on free 127.0.0.1 ports
//! in a temp dir, stopped by PID on drop. Plus small IMAP/SMTP clients.
#![allow(dead_code)]

pub mod daemon;

pub use daemon::*;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use lettre::AsyncTransport;

const T: Duration = Duration::from_secs(15);

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub smtp_port: u16,
    pub ca_pem: PathBuf,
}

type Session = async_imap::Session<tokio::net::TcpStream>;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/lab.sh")
}

impl Lab {
    pub fn start() -> Lab {
        let dir = tempfile::Builder::new().prefix("ticketd-lab").tempdir().expect("tempdir");
        let mut lab = Lab { imap_port: 0, imaps_port: 0, smtp_port: 0, ca_pem: PathBuf::new(), dir };
        lab.run(&["start"]);
        let env = std::fs::read_to_string(lab.dir.path().join("lab.env")).expect("lab.env");
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} missing from lab.env"))
                .trim()
                .to_owned()
        };
        lab.imap_port = get("IMAP_PORT").parse().unwrap();
        lab.imaps_port = get("IMAPS_PORT").parse().unwrap();
        lab.smtp_port = get("SMTP_PORT").parse().unwrap();
        lab.ca_pem = PathBuf::from(get("CA_PEM"));
        lab
    }

    fn run(&self, args: &[&str]) {
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg(args[0]).arg(self.dir.path()).args(&args[1..]);
        let out = cmd.output().expect("run scripts/lab.sh");
        assert!(
            out.status.success(),
            "lab.sh {args:?} failed (run scripts/install-deps.sh?):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops Dovecot, established IMAP sessions included (an outage, not
    /// just a closed door for new logins).
    pub fn stop_imap(&self) {
        self.run(&["stop-imap"]);
        let conf = std::fs::read_to_string(self.dir.path().join("dovecot.conf")).unwrap_or_default();
        if let Some(name) = conf.lines().find_map(|l| l.trim().strip_prefix("instance_name = ")) {
            let _ = Command::new("pkill").arg("-KILL").arg("-f").arg(format!("{}/imap", name.trim())).status();
        }
    }
    pub fn start_imap(&self) {
        self.run(&["start-imap"]);
    }
    pub fn stop_smtp(&self) {
        self.run(&["stop-smtp"]);
    }
    pub fn start_smtp(&self) {
        self.run(&["start-smtp"]);
    }
    pub fn add_user(&self, user: &str, pass: &str) {
        self.run(&["adduser", user, pass]);
    }
    /// Installs `user`'s active Sieve script (e.g. a vacation responder).
    pub fn sieve(&self, user: &str, script: &str) {
        let file = self.dir.path().join(format!("{user}.sieve"));
        std::fs::write(&file, script).unwrap();
        self.run(&["sieve", user, file.to_str().unwrap()]);
    }

    pub async fn smtp_send(&self, envelope_from: &str, rcpts: &[&str], raw: &[u8]) -> anyhow::Result<()> {
        let mailer = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(self.smtp_port)
            .timeout(Some(T))
            .build();
        let to = rcpts.iter().map(|r| r.parse()).collect::<Result<Vec<_>, _>>()?;
        let env = lettre::address::Envelope::new(Some(envelope_from.parse()?), to)?;
        mailer.send_raw(&env, raw).await?;
        Ok(())
    }

    pub async fn session(&self, user: &str) -> anyhow::Result<Session> {
        let login = format!("{user}@example.test");
        let login = if user.contains('@') { user.to_owned() } else { login };
        let tcp = tokio::time::timeout(T, tokio::net::TcpStream::connect(("127.0.0.1", self.imap_port))).await??;
        let mut c = async_imap::Client::new(tcp);
        tokio::time::timeout(T, c.read_response()).await??.ok_or_else(|| anyhow::anyhow!("no greeting"))?;
        let s = tokio::time::timeout(T, c.login(&login, "secret")).await?.map_err(|(e, _)| e)?;
        Ok(s)
    }

    pub async fn imap_fetch_all(&self, user: &str, folder: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut s = self.session(user).await?;
        let mb = tokio::time::timeout(T, s.examine(folder)).await??;
        let mut out = Vec::new();
        if mb.exists > 0 {
            let fetches: Vec<_> = tokio::time::timeout(T, async {
                s.uid_fetch("1:*", "(UID BODY.PEEK[])").await?.try_collect::<Vec<_>>().await
            })
            .await??;
            let mut v: Vec<(u32, Vec<u8>)> =
                fetches.iter().filter_map(|f| Some((f.uid?, f.body()?.to_vec()))).collect();
            v.sort_by_key(|(u, _)| *u);
            out = v.into_iter().map(|(_, b)| b).collect();
        }
        let _ = tokio::time::timeout(T, s.logout()).await;
        Ok(out)
    }

    pub async fn wait_for_messages(
        &self,
        user: &str,
        folder: &str,
        n: usize,
        limit: Duration,
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + limit;
        loop {
            let all = self.imap_fetch_all(user, folder).await.unwrap_or_default();
            if all.len() >= n {
                return Ok(all);
            }
            if Instant::now() > deadline {
                anyhow::bail!("{user}/{folder}: {} message(s), wanted {n} within {limit:?}", all.len());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn imap_append(&self, user: &str, folder: &str, raw: &[u8]) -> anyhow::Result<()> {
        let mut s = self.session(user).await?;
        if tokio::time::timeout(T, s.append(folder, None, None, raw)).await?.is_err() {
            let _ = tokio::time::timeout(T, s.create(folder)).await?;
            tokio::time::timeout(T, s.append(folder, None, None, raw)).await??;
        }
        let _ = tokio::time::timeout(T, s.logout()).await;
        Ok(())
    }

    pub async fn imap_count(&self, user: &str, folder: &str) -> anyhow::Result<u32> {
        let mut s = self.session(user).await?;
        let mb = tokio::time::timeout(T, s.examine(folder)).await??;
        let _ = tokio::time::timeout(T, s.logout()).await;
        Ok(mb.exists)
    }

    pub async fn imap_flags(&self, user: &str, folder: &str) -> anyhow::Result<Vec<(u32, Vec<String>)>> {
        let mut s = self.session(user).await?;
        let mb = tokio::time::timeout(T, s.examine(folder)).await??;
        let mut out = Vec::new();
        if mb.exists > 0 {
            let fetches: Vec<_> = tokio::time::timeout(T, async {
                s.uid_fetch("1:*", "(UID FLAGS)").await?.try_collect::<Vec<_>>().await
            })
            .await??;
            for f in &fetches {
                let Some(uid) = f.uid else { continue };
                let flags = f.flags().map(|fl| format!("{fl:?}")).map(|d| flag_name(&d)).collect();
                out.push((uid, flags));
            }
            out.sort_by_key(|(u, _)| *u);
        }
        let _ = tokio::time::timeout(T, s.logout()).await;
        Ok(out)
    }
}

/// `Seen` → `\Seen`, `Custom("x")` → `x`.
fn flag_name(debug: &str) -> String {
    match debug {
        "Seen" | "Answered" | "Flagged" | "Deleted" | "Draft" | "Recent" => format!("\\{debug}"),
        other => other.trim_start_matches("Custom(\"").trim_end_matches("\")").to_owned(),
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(self.dir.path()).output();
    }
}
