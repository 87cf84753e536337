//! Runs the real `ticketd` binary against a [`super::Lab`]. Readiness is
//! what ticketd tells systemd: `READY=1` on a notify socket the harness
//! owns, never a line of its log. ([`super::inproc`] runs the daemon inside
//! the test's runtime instead, for tests that do not test the process.)

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ticketd::testkit::TestConfig;

use super::Lab;

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Extra environment for the next spawn (e.g. TICKETD_CRASH_AT).
    pub env: Vec<(String, String)>,
    /// A command the daemon runs under (e.g. `prlimit --nofile=128 --`).
    pub wrapper: Vec<String>,
    /// The config, typed; [`Daemon::reconfigure`] changes it and the file.
    pub setup: TestConfig,
    child: Option<Child>,
    notify: Option<NotifyListener>,
    pub(crate) inproc: Option<super::inproc::InProcess>,
}

/// The harness's end of `NOTIFY_SOCKET`: everything the daemon tells
/// systemd, read on a thread so the daemon never blocks on a full socket.
struct NotifyListener {
    path: PathBuf,
    heard: Arc<Mutex<String>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl NotifyListener {
    fn bind(path: PathBuf) -> NotifyListener {
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let heard = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, s) = (heard.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let mut h = h.lock().unwrap();
                    h.push_str(&String::from_utf8_lossy(&buf[..n]));
                    h.push('\n');
                }
            }
        });
        NotifyListener { path, heard, stop }
    }

    fn heard(&self) -> String {
        self.heard.lock().unwrap().clone()
    }
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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

/// The test config for a daemon in `dir` against `lab`: [`TestConfig::new`]
/// pointed at the lab's servers, with short timeouts and a 1 s poll, the
/// attachments beside the store, and links under
/// `http://127.0.0.1:8080/attachments`.
pub fn lab_config(lab: &Lab, dir: &std::path::Path) -> TestConfig {
    TestConfig::new(dir).servers(lab.imap_port, lab.smtp_port).with(|c| {
        c.store.attachments_dir = Some(dir.join("attachments"));
        c.attachments.base_url = Some("http://127.0.0.1:8080/attachments".into());
        c.smtp.timeout = Some(Duration::from_secs(10));
        let m = c.mailbox();
        m.poll_interval = Some(Duration::from_secs(1));
        m.timeout = Some(Duration::from_secs(10));
    })
}

/// Raw TOML lines, for the `*_extra` arguments of the older helpers.
pub fn lines(extra: &str) -> Vec<String> {
    extra.lines().map(str::to_owned).filter(|l| !l.trim().is_empty()).collect()
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
    lab_config(lab, dir)
        .with(|c| {
            c.attachments.base_url = base_url.map(str::to_owned);
            c.mailbox().extra = lines(mailbox_extra);
            c.desk.extra = lines(desk_extra);
        })
        .to_toml()
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
        Self::prepare_with(lab, |c| {
            c.mailbox().extra = lines(mailbox_extra);
            c.desk.extra = lines(desk_extra);
        })
    }

    /// Writes the [`lab_config`], changed by `edit`, but starts nothing.
    pub fn prepare_with(lab: &Lab, edit: impl FnOnce(&mut TestConfig)) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("ticketd.toml");
        let setup = lab_config(lab, dir.path()).with(edit);
        setup.write(&config);
        let log = dir.path().join("daemon.log");
        Daemon {
            dir,
            config,
            log,
            env: Vec::new(),
            wrapper: Vec::new(),
            setup,
            child: None,
            notify: None,
            inproc: None,
        }
    }

    /// A copy of the config changed by `edit`, written to `name` in the
    /// daemon's directory (the daemon keeps its own): for a CLI pointed
    /// somewhere else.
    pub fn config_variant(&self, name: &str, edit: impl FnOnce(&mut TestConfig)) -> PathBuf {
        let path = self.dir.path().join(name);
        self.setup.clone().with(edit).write(&path);
        path
    }

    /// Changes the config (typed) and rewrites the file; a running daemon
    /// sees it at its next start, the CLI at once.
    pub fn reconfigure(&mut self, edit: impl FnOnce(&mut TestConfig)) {
        edit(&mut self.setup);
        self.setup.write(&self.config);
    }

    pub fn spawn(&mut self) {
        assert!(self.try_spawn(), "ticketd exited before it was ready:\n{}", self.log_text());
    }

    /// Starts the daemon; false if it exited (e.g. a crash point) before
    /// telling the notify socket it is ready.
    pub fn try_spawn(&mut self) -> bool {
        assert!(
            !self.env.iter().any(|(k, _)| k == "NOTIFY_SOCKET"),
            "the test reads NOTIFY_SOCKET itself: start with launch() and wait for READY=1 there"
        );
        let notify = self.notify.get_or_insert_with(|| NotifyListener::bind(self.dir.path().join("ready.sock")));
        let (path, heard_before) = (notify.path.clone(), notify.heard().len());
        self.launch_with(&[("NOTIFY_SOCKET", path.to_str().expect("UTF-8 path"))]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let heard = self.notify.as_ref().unwrap().heard();
            if heard.get(heard_before..).is_some_and(|t| t.lines().any(|l| l == "READY=1")) {
                return true;
            }
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                self.child = None;
                return false;
            }
            assert!(Instant::now() < deadline, "ticketd not ready after 20s:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process and returns at once (a test of the notify
    /// protocol waits for READY=1 itself).
    pub fn launch(&mut self) {
        self.launch_with(&[]);
    }

    fn launch_with(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
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
            .envs(env.iter().copied())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ticketd");
        self.child = Some(child);
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

impl Daemon {
    /// Everything ticketd queued, sent, failed or dropped, oldest first
    /// (`ticketd outbox --all --json`: from the running daemon's API, or
    /// from the store when it is stopped).
    pub fn outbox_json(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["outbox", "--all", "--json"]);
        assert!(out.status.success(), "outbox --all: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
    }

    /// Waits until what ticketd queued satisfies `ok`; returns it.
    pub async fn eventually_outbox(
        &self,
        what: &str,
        limit: Duration,
        ok: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        super::eventually(what, limit, async || {
            let entries = self.outbox_json();
            if ok(&entries) { Ok(entries) } else { Err(format!("{entries:#?}")) }
        })
        .await
    }
}

/// Outbox entries of `kind` (ack, agent_notify, relay, …) to `to`.
pub fn queued<'a>(entries: &'a [serde_json::Value], kind: &str, to: &str) -> Vec<&'a serde_json::Value> {
    entries
        .iter()
        .filter(|e| e["kind"] == kind && e["to"].as_array().is_some_and(|t| t.iter().any(|a| a == to)))
        .collect()
}
