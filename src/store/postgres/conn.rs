//! Connecting: the settings parsed from `store.url` (TLS decided here, the
//! password kept out of every message), the runtime the connections live
//! on, the bridge from the synchronous store calls to it, and the mapping
//! of PostgreSQL's errors onto [`StoreError`].
//!
//! Every connection of the process is driven by one small tokio runtime of
//! its own (two threads named `ticketd-pg`). A store call spawns its work
//! there and waits for the answer: from a plain thread it blocks; from a
//! worker of a multi-threaded tokio runtime (an async task reading a cursor)
//! it waits inside `block_in_place`, so the runtime moves its other tasks
//! elsewhere instead of stalling; from a current-thread runtime it blocks
//! that runtime for the call, which every call bounds by
//! [`PgSettings::statement_timeout`] plus a margin. The daemon's own
//! runtime never drives a database connection, so a blocked caller can
//! never starve the connection it waits on.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// What a connection is for; part of its `application_name`
/// (`ticketd/<node>/<role>`), which is how a standby finds a deposed
/// leader's sessions and how an operator tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The pooled connections that serve reads.
    Read,
    /// The one pooled connection that commits.
    Writer,
    /// The dedicated connection that holds the lease.
    Lease,
    /// `check-config --connect`.
    Probe,
    /// The dedicated connection that LISTENs for what commits changed.
    Listen,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Writer => "writer",
            Role::Lease => "lease",
            Role::Probe => "probe",
            Role::Listen => "listen",
        }
    }
}

#[derive(Clone)]
pub(crate) enum Tls {
    /// `sslmode=disable`, or only Unix sockets.
    Off,
    /// Certificate chain and host name verified (libpq's `verify-full`).
    Verified(MakeRustlsConnect),
}

/// How to reach the database, and as which node. Built once from
/// `store.url` (see [`PgSettings::from_url`]); `Debug` never shows the
/// password.
#[derive(Clone)]
pub struct PgSettings {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: Tls,
    /// This node's name (`[cluster] node`), unique in the cluster.
    pub node: String,
    /// Where the other nodes reach this node's API (`[cluster] advertise`).
    pub advertise: String,
    /// The detection window for a lost leader (`[cluster] lease_timeout`).
    pub lease_timeout: Duration,
    /// Pooled read connections.
    pub readers: usize,
    /// Server-side bound on one statement; client-side bounds add a margin.
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("database", &self.describe())
            .field("node", &self.node)
            .field("advertise", &self.advertise)
            .field("lease_timeout", &self.lease_timeout)
            .finish()
    }
}

fn url_err(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("store.url: {detail}"))
}

/// Splits our own keys (`sslmode`, `sslrootcert`) off a URL's query, so
/// the rest can go to tokio-postgres, which knows neither `verify-full`
/// nor `sslrootcert`.
fn split_url(url: &str) -> Result<(String, Option<String>, Option<String>), StoreError> {
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(url_err("must be a postgres:// URL (postgres://user:password@host:port/database?sslmode=...)"));
    }
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), None, None)) };
    let (mut sslmode, mut rootcert, mut rest) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let decoded = form_urlencoded::parse(pair.as_bytes()).next();
        match decoded {
            Some((k, v)) if k == "sslmode" => sslmode = Some(v.into_owned()),
            Some((k, v)) if k == "sslrootcert" => rootcert = Some(v.into_owned()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    Ok((url, sslmode, rootcert))
}

/// The project's one TLS setup ([`crate::tls::client_config`]): Mozilla's
/// roots plus the CA file named by `sslrootcert`, if any.
fn rustls_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig, StoreError> {
    let cfg = crate::tls::client_config(ca_file.map(std::path::Path::new))
        .map_err(|e| url_err(format!("sslrootcert: {e}")))?;
    Ok((*cfg).clone())
}

impl PgSettings {
    /// Parses `store.url`. TLS: with any TCP host the server's certificate
    /// and name are verified (`sslmode=verify-full`, the default; against
    /// Mozilla's roots plus the CA in `sslrootcert=FILE`, as for IMAP and
    /// SMTP, where libpq would trust that file alone); `sslmode=disable` turns
    /// TLS off; a URL with only Unix-socket hosts uses none. libpq's
    /// weaker modes (`allow`, `prefer`, `require`, `verify-ca`) are refused
    /// rather than quietly accepting an unverified server.
    pub fn from_url(url: &str, node: &str) -> Result<PgSettings, StoreError> {
        if node.is_empty() || node.len() > 40 || !node.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(StoreError::Backend(format!(
                "cluster.node {node:?}: 1 to 40 letters, digits, '.', '_' or '-'"
            )));
        }
        let (rest, sslmode, rootcert) = split_url(url)?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(url_err)?;
        let tcp = config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_))) || config.get_hosts().is_empty();
        let tls = match sslmode.as_deref() {
            Some("disable") => Tls::Off,
            None if !tcp => Tls::Off,
            None | Some("verify-full") => Tls::Verified(MakeRustlsConnect::new(rustls_config(rootcert.as_deref())?)),
            Some(other) => {
                return Err(url_err(format!(
                    "sslmode={other} is not supported: ticketd verifies the server's certificate and name \
                     (sslmode=verify-full, the default; sslrootcert=FILE names a private CA) or uses no TLS \
                     (sslmode=disable)"
                )));
            }
        };
        config.ssl_mode(match tls {
            Tls::Off => SslMode::Disable,
            Tls::Verified(_) => SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let mut s = PgSettings {
            config,
            tls,
            node: node.to_owned(),
            advertise: String::new(),
            lease_timeout: Duration::from_secs(10),
            readers: 8,
            statement_timeout: Duration::from_secs(30),
        };
        s.apply_timing();
        Ok(s)
    }

    pub fn with_advertise(mut self, advertise: &str) -> PgSettings {
        self.advertise = advertise.to_owned();
        self
    }

    pub fn with_lease_timeout(mut self, t: Duration) -> PgSettings {
        self.lease_timeout = t.max(Duration::from_secs(1));
        self.apply_timing();
        self
    }

    /// A copy for a database other than the URL's (tests: one per check).
    pub fn with_dbname(mut self, db: &str) -> PgSettings {
        self.config.dbname(db);
        self
    }

    /// Client-side TCP liveness in step with the lease: keepalives and the
    /// bound on unacknowledged data, so a node cut off from the database
    /// notices within the lease's window instead of in the kernel's two
    /// hours (or fifteen minutes of retransmissions).
    fn apply_timing(&mut self) {
        let t = self.lease_timeout;
        self.config
            .keepalives(true)
            .keepalives_idle((t / 5).max(Duration::from_secs(1)))
            .keepalives_interval((t / 10).max(Duration::from_secs(1)))
            .keepalives_retries(3)
            .tcp_user_timeout(t);
    }

    /// `user@host:port/database (TLS ...)`, never the password.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = self.config.get_ports().iter().map(|p| p.to_string()).collect();
        format!(
            "{}@{}:{}/{} ({})",
            self.config.get_user().unwrap_or("?"),
            hosts.join(","),
            ports.join(","),
            self.config.get_dbname().unwrap_or("?"),
            match self.tls {
                Tls::Off => "no TLS",
                Tls::Verified(_) => "TLS, server verified",
            }
        )
    }

    /// Whether TLS is on (and then verified).
    pub fn tls(&self) -> bool {
        matches!(self.tls, Tls::Verified(_))
    }

    pub(crate) fn app_name(&self, role: Role) -> String {
        format!("ticketd/{}/{}", self.node, role.name())
    }

    pub(crate) fn config_for(&self, role: Role) -> tokio_postgres::Config {
        let mut c = self.config.clone();
        c.application_name(self.app_name(role));
        c
    }

    /// A client-side bound on one call: the server's own bound plus a margin.
    pub(crate) fn op_timeout(&self) -> Duration {
        self.statement_timeout + Duration::from_secs(5)
    }

    /// Session settings of a role's connections, run once after connecting.
    pub(crate) fn session_sql(&self, role: Role) -> String {
        let ms = |d: Duration| d.as_millis().max(1);
        let t = self.lease_timeout;
        let mut sql = format!("SET statement_timeout = {};", ms(self.statement_timeout));
        match role {
            // A writer paused mid-transaction (SIGSTOP, a frozen VM) holds
            // its share lock on the lease row: the server ends it after
            // half the lease window, and a standby ends it at once when it
            // deposes the node (see `lease::depose_stale`).
            Role::Writer => sql.push_str(&format!(
                "SET idle_in_transaction_session_timeout = {}; SET lock_timeout = {};",
                ms(t / 2),
                ms(t)
            )),
            // Server-side keepalives: a node cut off loses its lock within
            // about half the window (idle + 3 probes).
            Role::Lease => sql.push_str(&format!(
                "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; SET tcp_keepalives_count = 3; \
                 SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {};",
                (t / 5).as_secs().max(1),
                (t / 10).as_secs().max(1),
                ms(t / 2),
                ms(t / 2)
            )),
            Role::Read | Role::Probe => {}
            // Server-side keepalives, as for the lease: a cut link is noticed.
            Role::Listen => sql.push_str(&format!(
                "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; SET tcp_keepalives_count = 3;",
                (t / 5).as_secs().max(1),
                (t / 10).as_secs().max(1)
            )),
        }
        sql
    }

    /// One connection, outside any pool, driven by the store's runtime.
    /// Only call from a future running there (see [`wait`]).
    pub(crate) async fn connect(&self, role: Role) -> Result<Conn, tokio_postgres::Error> {
        let config = self.config_for(role);
        let (client, task) = match &self.tls {
            Tls::Off => {
                let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                (client, tokio::spawn(async move { drop(conn.await) }))
            }
            Tls::Verified(tls) => {
                let (client, conn) = config.connect(tls.clone()).await?;
                (client, tokio::spawn(async move { drop(conn.await) }))
            }
        };
        client.batch_execute(&self.session_sql(role)).await?;
        Ok(Conn { client, task })
    }

    /// One connection whose asynchronous messages (notifications) go to
    /// `messages` (dropped when it is full: a notification is a hint).
    pub(crate) async fn connect_with_messages(
        &self,
        role: Role,
        messages: tokio::sync::mpsc::Sender<tokio_postgres::AsyncMessage>,
    ) -> Result<Conn, tokio_postgres::Error> {
        async fn drive<S, T>(
            mut conn: tokio_postgres::Connection<S, T>,
            to: tokio::sync::mpsc::Sender<tokio_postgres::AsyncMessage>,
        ) where
            S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
            T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(m)) = futures::StreamExt::next(&mut messages).await {
                let _ = to.try_send(m);
            }
        }
        let config = self.config_for(role);
        let (client, task) = match &self.tls {
            Tls::Off => {
                let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                (client, tokio::spawn(drive(conn, messages)))
            }
            Tls::Verified(tls) => {
                let (client, conn) = config.connect(tls.clone()).await?;
                (client, tokio::spawn(drive(conn, messages)))
            }
        };
        client.batch_execute(&self.session_sql(role)).await?;
        Ok(Conn { client, task })
    }

    /// A pool of `size` connections of a role.
    pub(crate) fn pool(&self, role: Role, size: usize) -> Result<deadpool_postgres::Pool, StoreError> {
        use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
        let mc = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let config = self.config_for(role);
        let manager = match &self.tls {
            Tls::Off => Manager::from_config(config, tokio_postgres::NoTls, mc),
            Tls::Verified(tls) => Manager::from_config(config, tls.clone(), mc),
        };
        let sql = self.session_sql(role);
        let timeout = Some(self.op_timeout());
        deadpool_postgres::Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(Some(Duration::from_secs(5)))
            .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
                let sql = sql.clone();
                Box::pin(async move { client.batch_execute(&sql).await.map_err(deadpool_postgres::HookError::Backend) })
            }))
            .build()
            .map_err(|e| StoreError::Internal(format!("database pool: {e}")))
    }
}

/// A connection of our own: closed when dropped.
pub(crate) struct Conn {
    pub(crate) client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

thread_local! {
    static ON_STORE_RUNTIME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ticketd-pg")
            .enable_all()
            .on_thread_start(|| ON_STORE_RUNTIME.with(|f| f.set(true)))
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| StoreError::Internal(format!("starting the database runtime: {e}")))
}

/// Runs `fut` on the store's runtime in the background (a listener).
pub(crate) fn spawn(fut: impl Future<Output = ()> + Send + 'static) -> Result<(), StoreError> {
    runtime()?.spawn(fut);
    Ok(())
}

/// Runs `fut` on the store's runtime and waits for it, from any thread (see
/// the module note). The future bounds its own time.
pub(crate) fn wait<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Result<T, StoreError> {
    if ON_STORE_RUNTIME.with(|f| f.get()) {
        return Err(StoreError::Internal("a blocking store call from the database runtime itself".into()));
    }
    let rt = runtime()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let recv = move || rx.recv();
    let got = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(recv),
        _ => recv(),
    };
    got.map_err(|_| StoreError::Internal("a database call ended without an answer (it panicked)".into()))
}

/// Whether the error means the connection is gone (closed, reset, timed
/// out, the session ended by the server): nothing sent on it after the
/// last answer can be known to have happened.
pub(crate) fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    // No server error and not a closed client: an I/O error on the socket
    // (or TLS on it), or a protocol error; both end the connection.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// PostgreSQL's error as a [`StoreError`]. Messages carry the server's
/// text, never the URL.
pub(crate) fn store_error(what: &str, e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let text = db.message().to_owned();
        return match code {
            "TD001" => StoreError::Fenced(text),
            "53100" => StoreError::Io {
                what: format!("{what} (the database server's disk)"),
                source: std::io::Error::new(std::io::ErrorKind::StorageFull, text),
            },
            "25006" => StoreError::Backend(format!(
                "{what}: the database is read-only (a standby, or default_transaction_read_only): {text}"
            )),
            _ if connection_lost(&e) => StoreError::Io {
                what: what.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::ConnectionAborted, format!("{code}: {text}")),
            },
            _ => StoreError::Backend(format!("{what}: {code}: {text}")),
        };
    }
    if connection_lost(&e) {
        let text = chain(&e);
        let kind = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .map_or(std::io::ErrorKind::ConnectionAborted, |io| io.kind());
        return StoreError::Io { what: what.to_owned(), source: std::io::Error::new(kind, text) };
    }
    StoreError::Backend(format!("{what}: {}", chain(&e)))
}

/// An error and its causes, one after the other (tokio-postgres keeps the
/// interesting part, such as why a certificate was refused, in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

pub(crate) fn pool_error(what: &str, e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => store_error(what, e),
        PoolError::PostCreateHook(deadpool_postgres::HookError::Backend(e)) => store_error(what, e),
        PoolError::Timeout(t) => StoreError::Io {
            what: what.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no database connection ({t:?})")),
        },
        PoolError::Closed => StoreError::Closed,
        e => StoreError::Backend(format!("{what}: {e}")),
    }
}

pub(crate) fn timed_out(what: &str, after: Duration) -> StoreError {
    StoreError::Io {
        what: what.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer from the database in {after:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_verified_by_default_and_weaker_modes_are_refused() {
        let s = PgSettings::from_url("postgres://u:hunter2@db.example:5433/desk", "n1").unwrap();
        assert!(s.tls(), "a TCP host gets verified TLS by default");
        assert_eq!(s.describe(), "u@db.example:5433/desk (TLS, server verified)");
        let s =
            PgSettings::from_url("postgres://u:pw@db.example/desk?sslmode=disable&connect_timeout=3", "n1").unwrap();
        assert!(!s.tls());
        assert_eq!(s.config.get_connect_timeout(), Some(&Duration::from_secs(3)), "other keys pass through");
        let s = PgSettings::from_url("postgresql://u@%2Frun%2Fpostgresql/desk", "n1").unwrap();
        assert!(!s.tls(), "a Unix socket has no TLS");
        for mode in ["require", "prefer", "allow", "verify-ca"] {
            let err = PgSettings::from_url(&format!("postgres://u:pw@h/d?sslmode={mode}"), "n1").unwrap_err();
            assert!(err.to_string().contains("verify-full"), "{mode}: {err}");
        }
        let err = PgSettings::from_url("postgres://u:pw@h/d?sslrootcert=/nonexistent/ca.pem", "n1").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        assert!(PgSettings::from_url("host=h user=u", "n1").is_err(), "URL form only");
        assert!(PgSettings::from_url("postgres://h/d", "bad name").is_err());
    }

    #[test]
    fn the_password_is_never_shown() {
        let s = PgSettings::from_url("postgres://u:hunter2@h/d?sslmode=disable", "n1").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!s.describe().contains("hunter2"));
        let err = PgSettings::from_url("postgres://u:hunter2@h/d?bogus=1", "n1").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = PgSettings::from_url("postgres://u:hunter2@h:notaport/d", "n1").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_call_waits_from_any_kind_of_thread() {
        assert_eq!(wait(async { 1 }).unwrap(), 1, "a plain thread");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        assert_eq!(rt.block_on(async { wait(async { 2 }) }).unwrap(), 2, "inside a current-thread runtime");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let got = rt.block_on(async { tokio::spawn(async { wait(async { 3 }) }).await.unwrap() });
        assert_eq!(got.unwrap(), 3, "inside a task of a multi-threaded runtime");
        let got = rt.block_on(async { tokio::task::spawn_blocking(|| wait(async { 4 })).await.unwrap() });
        assert_eq!(got.unwrap(), 4, "on its blocking pool");
        let nested = wait(async { wait(async { 5 }) }).unwrap();
        assert!(matches!(nested, Err(StoreError::Internal(_))), "never from the store's own runtime");
    }
}
