//! A private PostgreSQL for tests, started by `scripts/pg-lab.sh` in a
//! temporary directory and stopped when the last handle is dropped (and,
//! should the test process die, by the script's watcher within a second).
//! Standalone (std and `tempfile` only): the library's unit tests use it as
//! `store::postgres::lab`, integration tests include the same file through
//! `tests/common` (`#[path]`).
//!
//! The server (see the script): 127.0.0.1 on a free port and a Unix socket
//! in the directory, SCRAM logins for `ticketd` (CREATEDB) and `postgres`,
//! TLS with a `localhost` certificate signed by [`PgLab::ca`]; fsync off.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

pub struct PgLab {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The CA that signed the server's certificate (DNS:localhost).
    pub ca: PathBuf,
    /// A CA that signed nothing the server has.
    pub other_ca: PathBuf,
    /// Seconds the script took to start the server (initdb included).
    pub start_seconds: f64,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-lab.sh")
}

fn run(args: &[&str]) -> io::Result<String> {
    run_env(args, &[])
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> io::Result<String> {
    let mut cmd = Command::new("bash");
    cmd.arg(script()).args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "pg-lab.sh {} failed: {}{}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl PgLab {
    /// Starts a server of its own (about 1.5 s), fsync off.
    pub fn start() -> io::Result<PgLab> {
        Self::start_with(false)
    }

    /// Starts a server of its own with fsync on: for durability tests and
    /// figures that compare with a store that syncs.
    pub fn start_durable() -> io::Result<PgLab> {
        Self::start_with(true)
    }

    fn start_with(fsync: bool) -> io::Result<PgLab> {
        let dir = tempfile::Builder::new().prefix("pglab").tempdir_in("/tmp")?;
        let path = dir.path().to_str().ok_or_else(|| io::Error::other("temp dir is not UTF-8"))?.to_owned();
        let fsync = if fsync { "on" } else { "off" };
        let out = run_env(&["start", &path, &std::process::id().to_string()], &[("PGLAB_FSYNC", fsync)])?;
        let env: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
        let get =
            |k: &str| env.get(k).map(|v| v.to_string()).ok_or_else(|| io::Error::other(format!("pg.env has no {k}")));
        let port = get("PGLAB_PORT")?.parse().map_err(io::Error::other)?;
        Ok(PgLab {
            port,
            user: get("PGLAB_USER")?,
            password: get("PGLAB_PASSWORD")?,
            ca: get("PGLAB_CA")?.into(),
            other_ca: get("PGLAB_OTHER_CA")?.into(),
            start_seconds: get("PGLAB_START_SECONDS")?.parse().unwrap_or(0.0),
            dir,
        })
    }

    /// One server for the tests of a process that run at the same time:
    /// started by the first, stopped when the last lets go.
    pub fn shared() -> io::Result<Arc<PgLab>> {
        static SHARED: Mutex<Weak<PgLab>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lab) = slot.upgrade() {
            return Ok(lab);
        }
        let lab = Arc::new(PgLab::start()?);
        *slot = Arc::downgrade(&lab);
        Ok(lab)
    }

    fn dir_str(&self) -> &str {
        self.dir.path().to_str().unwrap_or_default()
    }

    /// A URL for `db` over TCP without TLS, as role `ticketd`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{}:{}@127.0.0.1:{}/{db}?sslmode=disable", self.user, self.password, self.port)
    }

    /// A URL for `db` over TCP to `host`, with `query` (e.g. `sslrootcert=…`).
    pub fn url_with(&self, host: &str, db: &str, query: &str) -> String {
        format!("postgres://{}:{}@{host}:{}/{db}?{query}", self.user, self.password, self.port)
    }

    /// Runs SQL as the superuser; returns psql's unaligned output.
    pub fn psql(&self, sql: &str) -> io::Result<String> {
        run(&["psql", self.dir_str(), "-At", "-c", sql])
    }

    /// A new, empty database owned by `ticketd`, named `<prefix>_<n>`.
    pub fn fresh_db(&self, prefix: &str) -> io::Result<String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!("{prefix}_{}", N.fetch_add(1, Ordering::Relaxed));
        self.psql(&format!("CREATE DATABASE {name} OWNER {}", self.user))?;
        Ok(name)
    }

    /// Ends every session whose application_name starts with `prefix`;
    /// returns how many.
    pub fn terminate(&self, app_prefix: &str) -> io::Result<u32> {
        let out = self.psql(&format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name LIKE '{app_prefix}%'"
        ))?;
        out.trim().parse().map_err(io::Error::other)
    }

    /// Stops the server the way a crash does (`-m immediate`).
    pub fn crash(&self) -> io::Result<()> {
        run(&["crash", self.dir_str()]).map(drop)
    }

    /// Starts it again (same port, same data).
    pub fn restart(&self) -> io::Result<()> {
        run(&["start", self.dir_str()]).map(drop)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PgLab {
    fn drop(&mut self) {
        if let Err(e) = run(&["stop", self.dir_str()]) {
            eprintln!("{e}");
        }
    }
}
