//! The HTTP server: binds its listeners before the daemon reports ready
//! (`api.listen`, and `api.socket` for the CLI on this machine), serves
//! each connection with hyper under bounds, and drains on the daemon's
//! shutdown token. What it serves is [`super::routes::router`].
//!
//! Connections are bounded: at most `api.max_connections` open (the rest
//! are closed at once, never queued), a request's header within
//! `api.header_timeout` (which also closes idle keep-alive connections),
//! and a connection that moves no byte for `api.idle_timeout` is closed.
//! A TCP address another process holds does not stop the daemon when a
//! socket is configured: mail goes on, the bind is retried, `/readyz`
//! names the listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::auth::{TokenError, Tokens};
use super::routes::router_with;
use super::{AppState, Arrival, Listeners};
use crate::config::{ApiConfig, Listen};
use crate::desk::Desk;

/// After shutdown starts, requests still running get this long.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("api: {0}")]
    Token(#[from] TokenError),
    #[error("api.listen {listen}: {source}")]
    Bind { listen: String, source: std::io::Error },
    #[error("api.listen unix:{}: {why}", path.display())]
    Socket { path: PathBuf, why: String },
}

/// Routes served beside the API's own, made from the server's state; the
/// token ends their long-lived answers when the server shuts down.
pub type Extra = Box<dyn FnOnce(AppState, CancellationToken) -> Router<AppState> + Send>;

enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

enum Slot {
    Bound(Bound),
    /// `api.listen` was taken when the daemon started (another process on
    /// the port): mail goes on, the CLI uses the socket, and the bind is
    /// tried again until it works.
    Waiting(std::net::SocketAddr),
}

pub struct Server {
    slots: Vec<Slot>,
    app: Router,
    /// Ends the long-lived answers of the extra routes (the console's live
    /// streams) when the server shuts down.
    extra_stop: CancellationToken,
    tokens: Arc<Tokens>,
    local: Listen,
    api: Arc<ApiConfig>,
    listeners: Arc<Listeners>,
}

/// How often a taken TCP address is tried again.
const REBIND_EVERY: Duration = Duration::from_secs(5);

fn socket_err(path: &Path, why: impl Into<String>) -> ServerError {
    ServerError::Socket { path: path.to_owned(), why: why.into() }
}

/// Binds a unix socket 0660 at `path`: a stale socket (nobody answers) is
/// replaced; a live one or any other file is left alone and refused. The
/// socket is made under a temporary name, chmod'ed, then renamed into
/// place, so it is never reachable with the wrong mode.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServerError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(socket_err(
                    path,
                    "another process is serving on this socket (is ticketd running already?)",
                ));
            }
            std::fs::remove_file(path).map_err(|e| socket_err(path, format!("cannot remove the stale socket: {e}")))?;
        }
        Ok(_) => return Err(socket_err(path, "exists and is not a socket; not touching it")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(socket_err(path, e.to_string())),
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    let target = if tmp.as_os_str().len() <= 107 { &tmp } else { path };
    let _ = std::fs::remove_file(&tmp);
    let listener = tokio::net::UnixListener::bind(target).map_err(|e| socket_err(path, e.to_string()))?;
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| socket_err(path, format!("chmod 0660: {e}")))?;
    if target != path {
        std::fs::rename(target, path).map_err(|e| socket_err(path, format!("renaming into place: {e}")))?;
    }
    Ok(listener)
}

fn listen_name(l: &Bound) -> String {
    match l {
        Bound::Tcp(t) => t.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        Bound::Unix(_, p) => format!("unix:{}", p.display()),
    }
}

impl Server {
    /// The configured API, bound; `None` without an `[api]` section.
    pub async fn bind(desk: &Desk) -> Result<Option<Server>, ServerError> {
        let Some(api) = desk.config().api.clone() else { return Ok(None) };
        let tokens = Tokens::load(&api)?;
        Self::bind_with(desk.clone(), api, tokens).await.map(Some)
    }

    /// Binds `api.listen` and `api.socket`. A unix socket that cannot be
    /// made fails the start; a TCP address in use does not when a socket is
    /// configured (it is retried, and `/readyz` says so).
    pub async fn bind_with(desk: Desk, api: ApiConfig, tokens: Tokens) -> Result<Server, ServerError> {
        Self::bind_with_extra(desk, api, tokens, Box::new(|_, _| Router::new())).await
    }

    /// [`Server::bind`], also serving `extra`'s routes (the desk console,
    /// which a higher layer hands in: the API does not know it).
    pub async fn bind_extra(desk: &Desk, extra: Extra) -> Result<Option<Server>, ServerError> {
        let Some(api) = desk.config().api.clone() else { return Ok(None) };
        let tokens = Tokens::load(&api)?;
        Self::bind_with_extra(desk.clone(), api, tokens, extra).await.map(Some)
    }

    /// [`Server::bind_with`], also serving `extra`'s routes.
    pub async fn bind_with_extra(
        desk: Desk,
        api: ApiConfig,
        tokens: Tokens,
        extra: Extra,
    ) -> Result<Server, ServerError> {
        let listeners = Arc::new(Listeners::default());
        let mut slots = Vec::new();
        let local = match &api.listen {
            Listen::Tcp(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    let local = l
                        .local_addr()
                        .map_err(|source| ServerError::Bind { listen: api.listen.to_string(), source })?;
                    slots.push(Slot::Bound(Bound::Tcp(l)));
                    Listen::Tcp(local)
                }
                Err(source) if api.socket.is_some() && source.kind() == std::io::ErrorKind::AddrInUse => {
                    error!(listen = %addr, "api.listen is taken by another process: serving the CLI on api.socket and trying again every {}s", REBIND_EVERY.as_secs());
                    listeners.set(&addr.to_string(), Some(format!("not bound: {source}")));
                    slots.push(Slot::Waiting(*addr));
                    Listen::Tcp(*addr)
                }
                Err(source) => return Err(ServerError::Bind { listen: api.listen.to_string(), source }),
            },
            Listen::Unix(p) => {
                slots.push(Slot::Bound(Bound::Unix(bind_unix(p)?, p.clone())));
                Listen::Unix(p.clone())
            }
        };
        if let Some(p) = &api.socket {
            slots.push(Slot::Bound(Bound::Unix(bind_unix(p)?, p.clone())));
        }
        let api = Arc::new(api);
        let permits = Arc::new(tokio::sync::Semaphore::new(api.concurrency));
        let tokens = Arc::new(tokens);
        let st = AppState { desk, tokens: tokens.clone(), api: api.clone(), listeners: listeners.clone(), permits };
        let extra_stop = CancellationToken::new();
        let app = router_with(st.clone(), extra(st, extra_stop.clone()));
        Ok(Server { slots, app, extra_stop, tokens, local, api, listeners })
    }

    /// Where it listens (the real port when the config said 0).
    pub fn local(&self) -> &Listen {
        &self.local
    }

    /// Serves until `shutdown`, then stops accepting and lets running
    /// requests finish (at most [`GRACE`]).
    pub async fn run(self, shutdown: CancellationToken, reload: Arc<tokio::sync::Notify>) {
        // Live streams never end on their own: they end with the server.
        let _ends_streams = self.extra_stop.clone().drop_guard();
        {
            let (stop, streams) = (shutdown.clone(), self.extra_stop.clone());
            tokio::spawn(async move {
                stop.cancelled().await;
                streams.cancel();
            });
        }
        {
            // SIGHUP: the token files are read again (a new agent, a
            // rotated token) without a restart.
            let (tokens, api, stop) = (self.tokens.clone(), self.api.clone(), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = reload.notified() => {}
                        _ = stop.cancelled() => return,
                    }
                    match tokens.reload(&api) {
                        Ok(()) => info!("API token files read again"),
                        Err(e) => error!(error = %e, "reading the API token files again failed; the old tokens stay"),
                    }
                }
            });
        }
        let shared = Arc::new(Shared {
            app: self.app,
            conns: Arc::new(tokio::sync::Semaphore::new(self.api.max_connections)),
            graceful: hyper_util::server::graceful::GracefulShutdown::new(),
            api: self.api.clone(),
            shutdown: shutdown.clone(),
            refused_warned: std::sync::Mutex::new(None),
        });
        let mut loops = tokio::task::JoinSet::new();
        let mut sockets = Vec::new();
        for slot in self.slots {
            let shared = shared.clone();
            let listeners = self.listeners.clone();
            match slot {
                Slot::Bound(b) => {
                    if let Bound::Unix(_, p) = &b {
                        sockets.push(p.clone());
                    }
                    let name = listen_name(&b);
                    info!(listen = %name, "API listening");
                    listeners.set(&name, None);
                    loops.spawn(accept_loop(b, shared));
                }
                Slot::Waiting(addr) => {
                    loops.spawn(async move {
                        loop {
                            tokio::select! {
                                _ = tokio::time::sleep(REBIND_EVERY) => {}
                                _ = shared.shutdown.cancelled() => return,
                            }
                            match tokio::net::TcpListener::bind(addr).await {
                                Ok(l) => {
                                    info!(listen = %addr, "API listening (the address is free again)");
                                    listeners.set(&addr.to_string(), None);
                                    return accept_loop(Bound::Tcp(l), shared).await;
                                }
                                Err(e) => listeners.set(&addr.to_string(), Some(format!("not bound: {e}"))),
                            }
                        }
                    });
                }
            }
        }
        while loops.join_next().await.is_some() {}
        let Ok(shared) = Arc::try_unwrap(shared) else {
            error!("the API's accept loops ended but their state is still shared");
            return;
        };
        let draining = shared.graceful.shutdown();
        if tokio::time::timeout(GRACE, draining).await.is_err() {
            warn!("API requests still running {}s after shutdown began; closing them", GRACE.as_secs());
        }
        for p in sockets {
            let _ = std::fs::remove_file(p);
        }
        debug!("API stopped");
    }
}

/// What every accept loop and connection of one server shares.
struct Shared {
    app: Router,
    /// One permit per open connection.
    conns: Arc<tokio::sync::Semaphore>,
    graceful: hyper_util::server::graceful::GracefulShutdown,
    api: Arc<ApiConfig>,
    shutdown: CancellationToken,
    /// When the last "connections refused" warning was logged.
    refused_warned: std::sync::Mutex<Option<Instant>>,
}

impl Shared {
    /// One warning a minute about refusals, not one per connection.
    fn warn_once_a_minute(&self, what: &str, detail: &str) {
        let mut last = self.refused_warned.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            *last = Some(Instant::now());
            warn!(detail, "{what}");
        }
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A connection and the address it reached (for TCP this connection's own
/// local address, which is what its client connected to).
async fn accept(b: &Bound, socket_name: &str) -> std::io::Result<(Box<dyn Io>, Arrival)> {
    match b {
        Bound::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let local = s.local_addr()?.to_string();
            Ok((Box::new(s), Arrival { local, peer: Some(peer.ip()) }))
        }
        Bound::Unix(l, _) => Ok((Box::new(l.accept().await?.0), Arrival { local: socket_name.to_owned(), peer: None })),
    }
}

async fn accept_loop(b: Bound, shared: Arc<Shared>) {
    let name = listen_name(&b);
    loop {
        let accepted = tokio::select! {
            a = accept(&b, &name) => a,
            _ = shared.shutdown.cancelled() => return,
        };
        let (io, arrival) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset
                // before it was taken: pause so the loop does not spin.
                shared.warn_once_a_minute("the API cannot accept connections", &e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = shared.conns.clone().try_acquire_owned() else {
            // Past api.max_connections: closed at once, never queued, so
            // idle or slow clients cannot hold the descriptors mail needs.
            shared.warn_once_a_minute(
                "API connections refused: api.max_connections are open",
                &format!("{} connections", shared.api.max_connections),
            );
            drop(io);
            continue;
        };
        serve_connection(io, arrival, permit, &shared);
    }
}

fn serve_connection(io: Box<dyn Io>, arrival: Arrival, permit: tokio::sync::OwnedSemaphorePermit, shared: &Shared) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let activity = Arc::new(Activity::new());
    let app = shared.app.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(arrival.clone());
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(shared.api.header_timeout).keep_alive(true);
    let conn = http.serve_connection(TokioIo::new(Watched { io, activity: activity.clone() }), svc);
    let conn = shared.graceful.watch(conn);
    let idle = shared.api.idle_timeout;
    tokio::spawn(async move {
        let _permit = permit;
        tokio::select! {
            r = conn => if let Err(e) = r {
                debug!(error = %e, "API connection ended with an error");
            },
            _ = activity.idle_for(idle) => debug!(idle = ?idle, "closing an API connection that moved nothing"),
        }
    });
}

/// When a connection last moved a byte, as milliseconds since it opened.
struct Activity {
    opened: Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { opened: Instant::now(), last_ms: std::sync::atomic::AtomicU64::new(0) }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
            let quiet = self.opened.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet + Duration::from_millis(10)).await;
        }
    }
}

/// A connection's stream, noting every byte that moves.
struct Watched {
    io: Box<dyn Io>,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_unix_socket_is_0660_replaces_a_stale_one_and_nothing_else() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("api.sock");
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        assert!(p.exists(), "a stale socket is left behind");
        let live = bind_unix(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o660);
        let again = bind_unix(&p).unwrap_err().to_string();
        assert!(again.contains("another process is serving"), "{again}");
        drop(live);
        let file = d.path().join("file");
        std::fs::write(&file, "keep me").unwrap();
        assert!(bind_unix(&file).unwrap_err().to_string().contains("not a socket"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}
