//! Test lab for integration tests: a private Dovecot (IMAP, IMAPS, LMTP,
//! Sieve) and Postfix (SMTP) on 127.0.0.1, started by `scripts/lab.sh` in a
//! temporary directory and stopped when the [`Lab`] is dropped.
//!
//! Needs root and the packages from `scripts/install-deps.sh`.
//!
//! Users (password [`PASSWORD`]): support, helpdesk, customer, stranger,
//! alice, bob, carol @example.test; `user+tag@example.test` is delivered to
//! `user`'s INBOX. Postfix accepts mail only for known @example.test users
//! (others: 550 at RCPT) and refuses every other domain (554 relay denied):
//! nothing leaves the machine.
//!
//! User arguments may be full addresses or bare local parts (`"support"`
//! means `support@example.test`).
//!
//! Include with `mod common;` from a test file.
#![allow(dead_code)]

pub mod api;
pub mod daemon;
pub mod desk;
pub mod inproc;
pub mod mail;
/// A private PostgreSQL (`scripts/pg-lab.sh`), shared with the library's unit tests.
#[path = "../../src/store/postgres/lab.rs"]
pub mod pg;

// Unused in test files that need no daemon (e.g. lab_smoke).
#[allow(unused_imports)]
pub use api::*;
#[allow(unused_imports)]
pub use daemon::*;
#[allow(unused_imports)]
pub use mail::Mail;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::TryStreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Password of the default lab users.
pub const PASSWORD: &str = "secret";
/// The only mail domain the lab delivers.
pub const DOMAIN: &str = "example.test";

/// Bound on one network step (connect, greeting, login, one command).
const STEP: Duration = Duration::from_secs(10);
/// Bound on one whole helper call (an SMTP transaction, a full fetch).
const CALL: Duration = Duration::from_secs(60);

pub type ImapSession = async_imap::Session<TcpStream>;

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub smtp_port: u16,
    pub lmtp_port: u16,
    /// CA certificate that signed the IMAPS/STARTTLS server certificate
    /// (subjectAltName DNS:localhost, IP:127.0.0.1).
    pub ca_pem: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab.sh")
}

/// Runs `bash scripts/lab.sh ARGS...`, optionally feeding `stdin`; returns stdout.
fn run_script(args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
    let mut cmd = Command::new("bash");
    cmd.arg(script()).args(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning lab.sh {args:?}"))?;
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input).context("writing to lab.sh stdin")?;
    }
    let out = child.wait_with_output().context("waiting for lab.sh")?;
    if !out.status.success() {
        bail!(
            "lab.sh {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `"support"` → `"support@example.test"`; full addresses unchanged.
pub fn address(user: &str) -> String {
    if user.contains('@') { user.to_owned() } else { format!("{user}@{DOMAIN}") }
}

fn parse_env(text: &str) -> std::collections::HashMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect()
}

impl Lab {
    /// Starts a fresh lab in a new temporary directory. Panics with the
    /// script's stderr on failure (e.g. "dovecot not installed: run
    /// scripts/install-deps.sh").
    pub fn start() -> Lab {
        Self::try_start().unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn try_start() -> Result<Lab> {
        // Short path under /tmp: Dovecot's unix sockets live inside it.
        let dir = tempfile::Builder::new().prefix("ticketd-lab-").tempdir_in("/tmp").context("creating lab tempdir")?;
        let dir_str = dir.path().to_str().context("non-UTF-8 tempdir")?.to_owned();
        run_script(&["start", &dir_str], None)?;
        let read_env = || -> Result<(u16, u16, u16, u16, PathBuf)> {
            let text = std::fs::read_to_string(dir.path().join("lab.env")).context("reading lab.env")?;
            let env = parse_env(&text);
            let port = |k: &str| -> Result<u16> {
                env.get(k)
                    .with_context(|| format!("lab.env lacks {k}"))?
                    .parse()
                    .with_context(|| format!("lab.env: bad {k}"))
            };
            let ca = PathBuf::from(env.get("CA_PEM").context("lab.env lacks CA_PEM")?);
            Ok((port("IMAP_PORT")?, port("IMAPS_PORT")?, port("SMTP_PORT")?, port("LMTP_PORT")?, ca))
        };
        match read_env() {
            Ok((imap_port, imaps_port, smtp_port, lmtp_port, ca_pem)) => {
                Ok(Lab { dir, imap_port, imaps_port, smtp_port, lmtp_port, ca_pem })
            }
            Err(e) => {
                // Servers are up but no Lab will stop them: do it here.
                let _ = run_script(&["stop", &dir_str], None);
                Err(e)
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `DIR/lab.env`: shell-sourceable ports and paths.
    pub fn env_file(&self) -> PathBuf {
        self.path().join("lab.env")
    }

    fn dir_str(&self) -> &str {
        self.path().to_str().expect("lab dir is UTF-8")
    }

    fn run(&self, cmd: &str) {
        if let Err(e) = run_script(&[cmd, self.dir_str()], None) {
            panic!("{e:#}");
        }
    }

    /// Stops Dovecot (IMAP, IMAPS and LMTP): connections are refused
    /// until [`Lab::start_imap`]. Mail sent meanwhile waits in Postfix.
    pub fn stop_imap(&self) {
        self.run("stop-imap");
    }

    /// Restarts Dovecot on the same ports and flushes Postfix's queue.
    pub fn start_imap(&self) {
        self.run("start-imap");
    }

    /// Stops Postfix: the SMTP port refuses connections until `start_smtp`.
    pub fn stop_smtp(&self) {
        self.run("stop-smtp");
    }

    pub fn start_smtp(&self) {
        self.run("start-smtp");
    }

    /// Adds (or re-passwords) `user@example.test`; usable at once over IMAP
    /// and as an SMTP recipient.
    pub fn add_user(&self, user: &str, password: &str) {
        if let Err(e) = run_script(&["adduser", self.dir_str(), &address(user), password], None) {
            panic!("{e:#}");
        }
    }

    /// Installs `script` as `user`'s active Sieve script (HOME/.dovecot.sieve),
    /// run by Dovecot's LMTP on each delivery. Vacation replies are submitted
    /// to this lab's Postfix from `<>`; `vacation :seconds N` is allowed.
    pub fn set_sieve(&self, user: &str, script: &str) {
        let args = ["sieve", self.dir_str(), &address(user), "-"];
        if let Err(e) = run_script(&args, Some(script.as_bytes())) {
            panic!("{e:#}");
        }
    }

    /// Makes the lab's Postfix a border with a spam filter: every mail it
    /// receives over SMTP passes the milter at `addr` (`inet:127.0.0.1:PORT`,
    /// e.g. an rspamd lab's `milter`); Postfix is restarted on its port.
    pub fn set_milter(&self, addr: &str) {
        if let Err(e) = run_script(&["milter", self.dir_str(), addr], None) {
            panic!("{e:#}");
        }
    }

    /// Same as [`Lab::set_sieve`].
    pub fn sieve(&self, user: &str, script: &str) {
        self.set_sieve(user, script);
    }

    /// Home directory of `user` (holds `Maildir/` and `.dovecot.sieve`).
    pub fn user_home(&self, user: &str) -> PathBuf {
        let addr = address(user).to_ascii_lowercase();
        let (local, domain) = addr.split_once('@').expect("address has @");
        self.path().join("mail").join(domain).join(local)
    }

    /// Lets the lab's Postfix offer AUTH PLAIN/LOGIN, checked by the lab's
    /// Dovecot (its users and passwords), from the next connection on.
    pub fn enable_smtp_auth(&self) {
        let socket = self.path().join("run/auth-client");
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        // smtpd runs as the postfix user; the socket is Dovecot's, mode 0600.
        run(Command::new("chmod").arg("666").arg(&socket));
        let conf = self.path().join("postfix");
        run(Command::new("postconf").arg("-c").arg(&conf).args([
            "-e",
            "smtpd_sasl_auth_enable=yes",
            "smtpd_sasl_type=dovecot",
            &format!("smtpd_sasl_path={}", socket.display()),
        ]));
        run(Command::new("postfix").arg("-c").arg(&conf).arg("reload"));
    }

    pub fn dovecot_log(&self) -> String {
        std::fs::read_to_string(self.path().join("dovecot.log")).unwrap_or_default()
    }

    pub fn postfix_log(&self) -> String {
        std::fs::read_to_string(self.path().join("postfix.log")).unwrap_or_default()
    }

    // ------------------------------------------------------------- SMTP

    /// Sends `raw` through the lab's Postfix with a minimal SMTP client
    /// (EHLO, MAIL, RCPT..., DATA; bare LF becomes CRLF, dot-stuffed).
    /// Any non-2xx reply is an error naming the command and the reply.
    pub async fn smtp_send(&self, envelope_from: &str, rcpts: &[&str], raw: &[u8]) -> Result<()> {
        timeout(CALL, smtp_transaction(self.smtp_port, envelope_from, rcpts, raw))
            .await
            .context("SMTP transaction timed out")?
    }

    // ------------------------------------------------------------- IMAP

    /// Plain-TCP IMAP session logged in as `user` with [`PASSWORD`].
    pub async fn imap_login(&self, user: &str) -> Result<ImapSession> {
        self.imap_login_with(user, PASSWORD).await
    }

    /// Same as [`Lab::imap_login`].
    pub async fn session(&self, user: &str) -> Result<ImapSession> {
        self.imap_login(user).await
    }

    pub async fn imap_login_with(&self, user: &str, password: &str) -> Result<ImapSession> {
        let user = address(user);
        let user = user.as_str();
        let tcp = timeout(STEP, TcpStream::connect(("127.0.0.1", self.imap_port)))
            .await
            .context("IMAP connect timed out")?
            .with_context(|| format!("IMAP connect to 127.0.0.1:{}", self.imap_port))?;
        tcp.set_nodelay(true)?;
        let mut client = async_imap::Client::new(tcp);
        // Client::new does not read the greeting.
        timeout(STEP, client.read_response())
            .await
            .context("IMAP greeting timed out")??
            .ok_or_else(|| anyhow!("IMAP server closed before greeting"))?;
        let session = timeout(STEP, client.login(user, password))
            .await
            .context("IMAP login timed out")?
            .map_err(|(e, _client)| e)
            .with_context(|| format!("IMAP login as {user}"))?;
        Ok(session)
    }

    /// All messages of `folder`, raw (`BODY.PEEK[]`, so `\Seen` is left
    /// alone), in UID order. An empty folder gives an empty Vec; a missing
    /// folder is an error.
    pub async fn imap_fetch_all(&self, user: &str, folder: &str) -> Result<Vec<Vec<u8>>> {
        let mut s = self.imap_login(user).await?;
        let res = timeout(CALL, fetch_all(&mut s, folder)).await;
        logout(s).await;
        let msgs = res.context("IMAP fetch timed out")??;
        Ok(msgs.into_iter().map(|(_uid, raw)| raw).collect())
    }

    /// Polls (every 100 ms) until `folder` holds at least `n` messages, then
    /// returns all of them as [`Lab::imap_fetch_all`] does. IMAP errors while
    /// polling (server down, folder not created yet) are retried until
    /// `within` has passed.
    pub async fn wait_for_messages(
        &self,
        user: &str,
        folder: &str,
        n: usize,
        within: Duration,
    ) -> Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + within;
        let last = loop {
            let last = match self.imap_count(user, folder).await {
                Ok(c) if c as usize >= n => match self.imap_fetch_all(user, folder).await {
                    Ok(msgs) if msgs.len() >= n => return Ok(msgs),
                    Ok(msgs) => format!("fetched {} message(s)", msgs.len()),
                    Err(e) => format!("{e:#}"),
                },
                Ok(c) => format!("{c} message(s)"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                break last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        bail!("waited {within:?} for {n} message(s) in {user} {folder}; last: {last}")
    }

    /// IMAP APPEND of one message; creates `folder` if it does not exist.
    pub async fn imap_append(&self, user: &str, folder: &str, raw: &[u8]) -> Result<()> {
        self.imap_append_many(user, folder, [raw]).await.map(|_| ())
    }

    /// Bulk APPEND over one connection (for benchmarks); creates `folder`
    /// if missing. Returns how many messages were appended.
    pub async fn imap_append_many<I>(&self, user: &str, folder: &str, msgs: I) -> Result<usize>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut s = self.imap_login(user).await?;
        let res = async {
            ensure_folder(&mut s, folder).await?;
            let mut n = 0;
            for raw in msgs {
                timeout(STEP, s.append(folder, None, None, raw.as_ref()))
                    .await
                    .context("IMAP APPEND timed out")?
                    .with_context(|| format!("APPEND to {folder}"))?;
                n += 1;
            }
            anyhow::Ok(n)
        }
        .await;
        logout(s).await;
        res
    }

    /// Number of messages in `folder` (EXISTS from EXAMINE).
    pub async fn imap_count(&self, user: &str, folder: &str) -> Result<u32> {
        let mut s = self.imap_login(user).await?;
        let res = timeout(STEP, s.examine(folder)).await;
        logout(s).await;
        let mb = res.context("IMAP EXAMINE timed out")??;
        check_uidvalidity(&mb, folder)?;
        Ok(mb.exists)
    }

    /// `(uid, flags)` of every message in `folder`, in UID order. Flags are
    /// as on the wire (`\Seen`, `\Answered`, `$Keyword`...); the session-only
    /// `\Recent` is left out.
    pub async fn imap_flags(&self, user: &str, folder: &str) -> Result<Vec<(u32, Vec<String>)>> {
        let mut s = self.imap_login(user).await?;
        let res = timeout(CALL, fetch_flags(&mut s, folder)).await;
        logout(s).await;
        res.context("IMAP flag fetch timed out")?
    }

    /// Names of all folders of `user` (LIST "" "*").
    pub async fn imap_folders(&self, user: &str) -> Result<Vec<String>> {
        let mut s = self.imap_login(user).await?;
        let res = timeout(STEP, async {
            let names: Vec<_> = s.list(Some(""), Some("*")).await?.try_collect().await?;
            anyhow::Ok(names.iter().map(|n| n.name().to_owned()).collect::<Vec<_>>())
        })
        .await;
        logout(s).await;
        res.context("IMAP LIST timed out")?
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // A failing test gets the server logs next to its panic message.
        if std::thread::panicking() {
            for (name, text) in [("dovecot.log", self.dovecot_log()), ("postfix.log", self.postfix_log())] {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(30)..];
                eprintln!("--- lab {} tail of {name}:\n{}", self.dir_str(), tail.join("\n"));
            }
        }
        if let Err(e) = run_script(&["stop", self.dir_str()], None) {
            eprintln!("{e:#}");
        }
    }
}

/// The one wait: polls `probe` every 100 ms until it answers `Ok`, for at
/// most `limit`; the panic names `what` and the last answer (`Err`).
pub async fn eventually<T>(what: &str, limit: Duration, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}; last: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----------------------------------------------------------------- IMAP

async fn logout(mut s: ImapSession) {
    let _ = timeout(Duration::from_secs(2), s.logout()).await;
}

fn check_uidvalidity(mb: &async_imap::types::Mailbox, folder: &str) -> Result<()> {
    // A dropped connection makes EXAMINE return a default Mailbox.
    mb.uid_validity.map(|_| ()).ok_or_else(|| anyhow!("EXAMINE {folder}: no UIDVALIDITY (connection lost?)"))
}

async fn fetch_all(s: &mut ImapSession, folder: &str) -> Result<Vec<(u32, Vec<u8>)>> {
    let mb = timeout(STEP, s.examine(folder)).await.context("EXAMINE timed out")??;
    check_uidvalidity(&mb, folder)?;
    if mb.exists == 0 {
        return Ok(Vec::new());
    }
    let mut got = Vec::new();
    {
        let mut stream = s.uid_fetch("1:*", "(UID BODY.PEEK[])").await?;
        // Drain the stream completely before the next command.
        while let Some(f) = timeout(STEP, stream.try_next()).await.context("FETCH timed out")?? {
            if let (Some(uid), Some(body)) = (f.uid, f.body()) {
                got.push((uid, body.to_vec()));
            }
        }
    }
    // A clean close mid-FETCH ends the stream early without an error.
    if got.len() < mb.exists as usize {
        bail!("FETCH {folder}: got {} of {} messages", got.len(), mb.exists);
    }
    got.sort_by_key(|(uid, _)| *uid);
    Ok(got)
}

async fn fetch_flags(s: &mut ImapSession, folder: &str) -> Result<Vec<(u32, Vec<String>)>> {
    let mb = timeout(STEP, s.examine(folder)).await.context("EXAMINE timed out")??;
    check_uidvalidity(&mb, folder)?;
    if mb.exists == 0 {
        return Ok(Vec::new());
    }
    let mut got = Vec::new();
    {
        let mut stream = s.uid_fetch("1:*", "(UID FLAGS)").await?;
        while let Some(f) = timeout(STEP, stream.try_next()).await.context("FETCH timed out")?? {
            if let Some(uid) = f.uid {
                let flags = f.flags().filter_map(|fl| flag_name(&fl)).collect();
                got.push((uid, flags));
            }
        }
    }
    if got.len() < mb.exists as usize {
        bail!("FETCH FLAGS {folder}: got {} of {} messages", got.len(), mb.exists);
    }
    got.sort_by_key(|(uid, _)| *uid);
    Ok(got)
}

fn flag_name(f: &async_imap::types::Flag<'_>) -> Option<String> {
    use async_imap::types::Flag;
    Some(match f {
        Flag::Seen => "\\Seen".to_owned(),
        Flag::Answered => "\\Answered".to_owned(),
        Flag::Flagged => "\\Flagged".to_owned(),
        Flag::Deleted => "\\Deleted".to_owned(),
        Flag::Draft => "\\Draft".to_owned(),
        Flag::Recent => return None,
        Flag::MayCreate => "\\*".to_owned(),
        Flag::Custom(c) => c.to_string(),
    })
}

async fn ensure_folder(s: &mut ImapSession, folder: &str) -> Result<()> {
    if folder.eq_ignore_ascii_case("INBOX") {
        return Ok(());
    }
    match timeout(STEP, s.create(folder)).await.context("CREATE timed out")? {
        Ok(()) => Ok(()),
        Err(async_imap::error::Error::No(msg)) if msg.contains("ALREADYEXISTS") || msg.contains("already exists") => {
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("CREATE {folder}"))),
    }
}

// ----------------------------------------------------------------- SMTP

/// Reads one (possibly multi-line) SMTP reply: (code, full text).
async fn smtp_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = timeout(STEP, r.read_line(&mut line)).await.context("SMTP reply timed out")??;
        if n == 0 {
            bail!("SMTP server closed the connection (after: {text:?})");
        }
        text.push_str(&line);
        let b = line.as_bytes();
        if b.len() < 4 || !b[..3].iter().all(u8::is_ascii_digit) {
            bail!("malformed SMTP reply line {line:?}");
        }
        if b[3] != b'-' {
            let code = line[..3].parse()?;
            return Ok((code, text.trim_end().to_owned()));
        }
    }
}

async fn smtp_cmd<R, W>(r: &mut R, w: &mut W, cmd: &str, ok: &[u16]) -> Result<()>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    timeout(STEP, w.write_all(format!("{cmd}\r\n").as_bytes())).await.context("SMTP write timed out")??;
    let (code, text) = smtp_reply(r).await?;
    if !ok.contains(&code) {
        bail!("SMTP {cmd:?} rejected: {text}");
    }
    Ok(())
}

/// CRLF line ends (bare LF fixed up), dot-stuffed, ending in CRLF . CRLF.
fn smtp_data(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50 + 8);
    let mut line_start = true;
    let mut prev = 0u8;
    for &b in raw {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        line_start = b == b'\n';
        prev = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

async fn smtp_transaction(port: u16, from: &str, rcpts: &[&str], raw: &[u8]) -> Result<()> {
    if rcpts.is_empty() {
        bail!("smtp_send: no recipients");
    }
    let tcp = timeout(STEP, TcpStream::connect(("127.0.0.1", port)))
        .await
        .context("SMTP connect timed out")?
        .with_context(|| format!("SMTP connect to 127.0.0.1:{port}"))?;
    tcp.set_nodelay(true)?;
    let (rd, mut w) = tcp.into_split();
    let mut r = BufReader::new(rd);
    let (code, text) = smtp_reply(&mut r).await?;
    if code != 220 {
        bail!("SMTP greeting: {text}");
    }
    smtp_cmd(&mut r, &mut w, "EHLO client.example.test", &[250]).await?;
    smtp_cmd(&mut r, &mut w, &format!("MAIL FROM:<{from}>"), &[250]).await?;
    for rcpt in rcpts {
        smtp_cmd(&mut r, &mut w, &format!("RCPT TO:<{rcpt}>"), &[250, 251]).await?;
    }
    smtp_cmd(&mut r, &mut w, "DATA", &[354]).await?;
    timeout(CALL, w.write_all(&smtp_data(raw))).await.context("SMTP DATA write timed out")??;
    let (code, text) = smtp_reply(&mut r).await?;
    if code != 250 {
        bail!("SMTP message rejected after DATA: {text}");
    }
    // The message is queued; a failed QUIT changes nothing.
    let _ = smtp_cmd(&mut r, &mut w, "QUIT", &[221]).await;
    Ok(())
}
