//! The HTTP server: binds its listeners before the daemon reports ready
//! (`api.listen`, and `api.socket` for the CLI on this machine), builds the
//! router from one route table (which the OpenAPI test checks), serves
//! each connection with hyper under bounds, and drains on the daemon's
//! shutdown token.
//!
//! Connections are bounded: at most `api.max_connections` open (the rest
//! are closed at once, never queued), a request's header within
//! `api.header_timeout` (which also closes idle keep-alive connections),
//! and a connection that moves no byte for `api.idle_timeout` is closed.
//! A TCP address another process holds does not stop the daemon when a
//! socket is configured: mail goes on, the bind is retried, `/readyz`
//! names the listener.
//!
//! Who may call what: `/healthz`, `/readyz`, `/api/v1/proof` and
//! `/api/v1/openapi.json` are open (a liveness probe or a load balancer has no token, and none of them
//! shows a ticket); everything else needs a bearer token, `/metrics`
//! included (Prometheus sends one with `authorization.credentials_file`).
//! Attachments need the token too unless `api.public_attachments` is set,
//! which makes their URLs (a SHA-256 and the exact file name) the
//! capability, for links opened in a browser.
//!
//! Limits: JSON bodies at most 1 MiB, a multipart reply at most
//! `api.max_upload_bytes` (each file within `attachments.max_bytes`), every
//! request within `api.timeout`, at most `api.concurrency` requests at
//! once (the rest wait), query strings at most 4 KiB.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::auth::{TokenError, Tokens};
use super::error::ApiError;
use super::{probes, routes, wire};
use crate::config::{ApiConfig, Listen};
use crate::desk::Desk;

/// After shutdown starts, requests still running get this long.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub desk: Desk,
    pub tokens: Arc<Tokens>,
    pub api: Arc<ApiConfig>,
    pub listeners: Arc<Listeners>,
    /// `api.concurrency` permits, each held until its response is sent.
    pub permits: Arc<tokio::sync::Semaphore>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("api: {0}")]
    Token(#[from] TokenError),
    #[error("api.listen {listen}: {source}")]
    Bind { listen: String, source: std::io::Error },
    #[error("api.listen unix:{}: {why}", path.display())]
    Socket { path: PathBuf, why: String },
}

/// Who may call a route: the one place the roles are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Open,
    /// Any valid token: the admin's or an agent's.
    Token,
    /// The admin token only: store-wide operations (the outbox, the
    /// quarantine, metrics, backups, store stats) that are no agent's.
    Admin,
    /// The token, unless `api.public_attachments`.
    Attachment,
}

impl Guard {
    /// As the OpenAPI document names it (`x-ticketd-role`).
    pub fn role(self) -> &'static str {
        match self {
            Guard::Open => "anyone",
            Guard::Token => "agent",
            Guard::Admin => "admin",
            Guard::Attachment => "agent-or-public",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub guard: Guard,
}

struct Table {
    open: Router<AppState>,
    token: Router<AppState>,
    admin: Router<AppState>,
    attachment: Router<AppState>,
    specs: Vec<RouteSpec>,
}

impl Table {
    fn add<H, T>(&mut self, guard: Guard, method: Method, path: &'static str, h: H, body_limit: usize)
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("routes use standard methods");
        let mr = on(filter, h).layer(DefaultBodyLimit::max(body_limit));
        let r = match guard {
            Guard::Open => &mut self.open,
            Guard::Token => &mut self.token,
            Guard::Admin => &mut self.admin,
            Guard::Attachment => &mut self.attachment,
        };
        *r = std::mem::take(r).route(path, mr);
        self.specs.push(RouteSpec { method, path, guard });
    }
}

fn table(upload_limit: usize) -> Table {
    use Guard::*;
    let mut t = Table {
        open: Router::new(),
        token: Router::new(),
        admin: Router::new(),
        attachment: Router::new(),
        specs: Vec::new(),
    };
    let json = wire::MAX_JSON_BYTES;
    t.add(Open, Method::GET, "/healthz", probes::healthz, json);
    t.add(Open, Method::GET, "/readyz", probes::readyz, json);
    t.add(Admin, Method::GET, "/metrics", probes::metrics, json);
    t.add(Open, Method::GET, "/api/v1/openapi.json", routes::openapi, json);
    t.add(Open, Method::GET, "/api/v1/proof", routes::proof, json);
    t.add(Token, Method::GET, "/api/v1/tickets", routes::list_tickets, json);
    t.add(Token, Method::GET, "/api/v1/tickets/{id}", routes::get_ticket, json);
    t.add(Token, Method::PATCH, "/api/v1/tickets/{id}", routes::patch_ticket, json);
    t.add(Token, Method::GET, "/api/v1/tickets/{id}/raw", routes::ticket_raw, json);
    t.add(Token, Method::POST, "/api/v1/tickets/{id}/replies", routes::post_reply, upload_limit);
    t.add(Token, Method::POST, "/api/v1/tickets/{id}/notes", routes::post_note, json);
    t.add(Admin, Method::GET, "/api/v1/quarantine", routes::list_quarantine, json);
    t.add(Admin, Method::GET, "/api/v1/quarantine/{id}", routes::get_quarantine, json);
    t.add(Admin, Method::POST, "/api/v1/quarantine/{id}/retry", routes::retry_quarantine, json);
    t.add(Admin, Method::DELETE, "/api/v1/quarantine/{id}", routes::delete_quarantine, json);
    t.add(Admin, Method::GET, "/api/v1/outbox", routes::list_outbox, json);
    t.add(Admin, Method::POST, "/api/v1/outbox/{id}/retry", routes::retry_outbox, json);
    t.add(Admin, Method::DELETE, "/api/v1/outbox/{id}", routes::delete_outbox, json);
    t.add(Attachment, Method::GET, "/attachments/{sha256}/{filename}", routes::get_attachment, json);
    t.add(Admin, Method::GET, "/api/v1/backup", routes::backup, json);
    t.add(Admin, Method::GET, "/api/v1/store/stats", routes::store_stats, json);
    t
}

/// Every route the server answers: what `/api/v1/openapi.json` must
/// document, no more and no less.
pub fn route_table() -> Vec<RouteSpec> {
    table(wire::MAX_JSON_BYTES).specs
}

async fn require_token(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    match st.tokens.caller(req.headers(), st.desk.config()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn require_admin(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    match st.tokens.caller(req.headers(), st.desk.config()) {
        Ok(caller) if caller.principal == super::auth::Principal::Admin => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Ok(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this needs the admin token, not an agent's")
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Bounds and logs every request: the time it may take and the length of
/// its URI. Only the method, path and status are logged, never headers
/// (tokens) or bodies.
async fn frame(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = crate::text::truncate_chars(req.uri().path(), 200);
    if req.uri().query().is_some_and(|q| q.len() > wire::MAX_QUERY_BYTES) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("the query string is longer than {} bytes", wire::MAX_QUERY_BYTES),
        )
        .into_response();
    }
    // A backup takes as long as the store is big; it is the admin's.
    let limit = if path == BACKUP_PATH { BACKUP_TIMEOUT } else { st.api.timeout };
    let response = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than api.timeout ({}s); a change may still have been made",
                limit.as_secs()
            ),
        )
        .into_response(),
    };
    let status = response.status();
    let ms = started.elapsed().as_millis() as u64;
    if status.is_server_error() {
        warn!(%method, path, status = status.as_u16(), ms, "API request failed");
    } else {
        debug!(%method, path, status = status.as_u16(), ms, "API request");
    }
    response
}

const BACKUP_PATH: &str = "/api/v1/backup";
const BACKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

async fn no_route() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint (see /api/v1/openapi.json)").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
        .into_response()
}

/// Holds a request to `api.concurrency` and `api.timeout` until its
/// response is fully sent, not just until the handler returns: a download
/// streams inside both, so slow readers queue instead of piling up bodies.
async fn bounded(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let limit = if req.uri().path() == BACKUP_PATH { BACKUP_TIMEOUT } else { st.api.timeout };
    let deadline = tokio::time::Instant::now() + limit;
    let permit = match tokio::time::timeout_at(deadline, st.permits.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => return timed_out(limit),
    };
    match tokio::time::timeout_at(deadline, next.run(req)).await {
        Ok(r) => r.map(|body| {
            axum::body::Body::new(Bounded {
                body,
                _permit: permit,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
            })
        }),
        Err(_) => timed_out(limit),
    }
}

fn timed_out(limit: Duration) -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        format!("the request took longer than api.timeout ({}s); a change may still have been made", limit.as_secs()),
    )
    .into_response()
}

/// A response body that keeps its request's concurrency permit and ends
/// (with an error, which closes the connection) at the request's deadline.
struct Bounded {
    body: axum::body::Body,
    _permit: tokio::sync::OwnedSemaphorePermit,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl axum::body::HttpBody for Bounded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(axum::Error::new("api.timeout passed while the answer was sent"))));
        }
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The whole application, ready to serve (also used in-process by tests).
pub fn router(st: AppState) -> Router {
    let upload = usize::try_from(st.api.max_upload_bytes).unwrap_or(usize::MAX);
    let t = table(upload);
    let token = t.token.route_layer(middleware::from_fn_with_state(st.clone(), require_token));
    let admin = t.admin.route_layer(middleware::from_fn_with_state(st.clone(), require_admin));
    let attachment = if st.api.public_attachments {
        t.attachment
    } else {
        t.attachment.route_layer(middleware::from_fn_with_state(st.clone(), require_token))
    };
    // Probes stay outside the concurrency limit: a busy API is still alive.
    let busy = token.merge(admin).merge(attachment).route_layer(middleware::from_fn_with_state(st.clone(), bounded));
    t.open
        .merge(busy)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(st.clone(), frame))
        .with_state(st)
}

/// The listener a request came through, as the daemon names it
/// (`127.0.0.1:8025`, `unix:/run/ticketd/api.sock`): a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub local: String,
}

/// What each configured listener is doing, for `/readyz`.
#[derive(Debug, Default)]
pub struct Listeners {
    state: std::sync::Mutex<std::collections::BTreeMap<String, Option<String>>>,
}

impl Listeners {
    fn set(&self, name: &str, error: Option<String>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), error);
    }

    /// Listener → the error that keeps it from serving (None: serving).
    pub fn snapshot(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

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
        let app = router(AppState {
            desk,
            tokens: Arc::new(tokens),
            api: api.clone(),
            listeners: listeners.clone(),
            permits,
        });
        Ok(Server { slots, app, local, api, listeners })
    }

    /// Where it listens (the real port when the config said 0).
    pub fn local(&self) -> &Listen {
        &self.local
    }

    /// Serves until `shutdown`, then stops accepting and lets running
    /// requests finish (at most [`GRACE`]).
    pub async fn run(self, shutdown: CancellationToken) {
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
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let local = s.local_addr()?.to_string();
            Ok((Box::new(s), Arrival { local }))
        }
        Bound::Unix(l, _) => Ok((Box::new(l.accept().await?.0), Arrival { local: socket_name.to_owned() })),
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
