//! Runs the real `ticketd` binary against a [`super::Lab`].

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::Lab;

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Extra environment for the next spawn (e.g. TICKETD_CRASH_AT).
    pub env: Vec<(String, String)>,
    /// A command the daemon runs under (e.g. `prlimit --nofile=128 --`).
    pub wrapper: Vec<String>,
    child: Option<Child>,
}

/// The binary under test; `TICKETD_BIN` picks another build (e.g. one with
/// symbols, for profiling a benchmark).
fn binary() -> std::path::PathBuf {
    std::env::var_os("TICKETD_BIN").map(Into::into).unwrap_or_else(|| env!("CARGO_BIN_EXE_ticketd").into())
}

/// The first value of a header in a raw message (unfolded).
pub fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    let head = head.split("\n\n").next().unwrap_or(head);
    let mut value: Option<String> = None;
    for line in head.lines() {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_owned());
        }
    }
    value
}

pub fn config_text(lab: &Lab, dir: &std::path::Path, mailbox_extra: &str, desk_extra: &str) -> String {
    config_text_with(lab, dir, mailbox_extra, desk_extra, Some("http://127.0.0.1:8080/attachments"))
}

/// [`config_text`] with a chosen `attachments.base_url` (`None`: the default).
pub fn config_text_with(
    lab: &Lab,
    dir: &std::path::Path,
    mailbox_extra: &str,
    desk_extra: &str,
    base_url: Option<&str>,
) -> String {
    let base_url = base_url.map(|u| format!("base_url = \"{u}\"")).unwrap_or_default();
    format!(
        r#"[store]
path = "{dir}/db"
attachments_dir = "{dir}/attachments"

[desk]
display_name = "Example Support"
{desk_extra}

[attachments]
{base_url}

[smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
timeout = "10s"

[[mailboxes]]
name = "support"
address = "support@example.test"
host = "127.0.0.1"
port = {imap}
tls = "none"
username = "support@example.test"
password = "secret"
poll_interval = "1s"
timeout = "10s"
{mailbox_extra}

[[agents]]
id = "agent_alice"
email = "alice@example.test"
name = "Alice"
"#,
        dir = dir.display(),
        smtp = lab.smtp_port,
        imap = lab.imap_port,
    )
}

impl Daemon {
    pub fn start(lab: &Lab, mailbox_extra: &str) -> Daemon {
        Self::start_with(lab, mailbox_extra, "")
    }

    pub fn start_with(lab: &Lab, mailbox_extra: &str, desk_extra: &str) -> Daemon {
        let mut d = Self::prepare(lab, mailbox_extra, desk_extra);
        d.spawn();
        d
    }

    /// Writes the config but starts nothing.
    pub fn prepare(lab: &Lab, mailbox_extra: &str, desk_extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("ticketd.toml");
        std::fs::write(&config, config_text(lab, dir.path(), mailbox_extra, desk_extra)).unwrap();
        let log = dir.path().join("daemon.log");
        Daemon { dir, config, log, env: Vec::new(), wrapper: Vec::new(), child: None }
    }

    pub fn spawn(&mut self) {
        assert!(self.try_spawn(), "ticketd exited before it was ready:\n{}", self.log_text());
    }

    /// Starts the daemon; false if it exited (e.g. a crash point) before
    /// reporting ready.
    pub fn try_spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let start_len = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0) as usize;
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("TICKETD_LOG", "info,ticketd=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ticketd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.get(start_len..).is_some_and(|t| t.contains("ticketd ready")) {
                return true;
            }
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                self.child = None;
                return false;
            }
            assert!(Instant::now() < deadline, "ticketd not ready after 20s:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap();
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// SIGTERM, and the daemon must exit 0 within 30 s.
    pub fn stop_ok(&mut self) {
        self.signal("TERM");
        let status =
            self.wait(Duration::from_secs(30)).unwrap_or_else(|| panic!("ticketd did not stop:\n{}", self.log_text()));
        assert!(status.success(), "ticketd exited with {status}:\n{}", self.log_text());
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal("KILL");
        self.wait(Duration::from_secs(10)).expect("SIGKILL ends the process");
    }

    pub fn running(&mut self) -> bool {
        let alive = self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none());
        if !alive {
            self.child = None;
        }
        alive
    }

    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn restart(mut self) -> Daemon {
        if self.child.is_some() {
            self.stop_ok();
        }
        self.spawn();
        self
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ticketd")
    }

    pub fn tickets_json(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["tickets", "list", "--json"]);
        assert!(out.status.success(), "tickets list: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON array")
    }

    pub fn ticket_json(&self, n: u64) -> serde_json::Value {
        let out = self.cli(&["tickets", "show", &n.to_string(), "--json"]);
        assert!(out.status.success(), "tickets show {n}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON object")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until a message in `user`'s INBOX contains `needle`; returns it.
pub async fn wait_for_text(lab: &Lab, user: &str, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let all = lab.imap_fetch_all(user, "INBOX").await.unwrap_or_default();
        if let Some(m) = all.iter().map(|m| decoded(m)).find(|m| m.contains(needle)) {
            return m;
        }
        assert!(Instant::now() < deadline, "no mail containing {needle:?} for {user} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The raw header block, then the decoded text body, then one line per
/// attachment name: what a person reading the mail would see.
pub fn decoded(raw: &[u8]) -> String {
    use mail_parser::MimeHeaders;
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or(&text).to_owned();
    let Some(msg) = mail_parser::MessageParser::default().parse(raw) else { return text.into_owned() };
    let mut out = head;
    out.push_str("\r\n\r\n");
    out.push_str(&msg.body_text(0).unwrap_or_default());
    for a in msg.attachments() {
        out.push_str(&format!("\nattachment: {}", a.attachment_name().unwrap_or("")));
    }
    out
}

/// Waits until `user`'s INBOX holds at least `n` messages, all \Seen:
/// ticketd has ingested every one of them.
pub async fn all_seen(lab: &Lab, user: &str, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let flags = lab.imap_flags(user, "INBOX").await.unwrap_or_default();
        if flags.len() >= n && flags.iter().all(|(_, f)| f.iter().any(|x| x == "\\Seen")) {
            return;
        }
        assert!(Instant::now() < deadline, "{user}/INBOX not fully processed within {limit:?}: {flags:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
