//! The HTTP server: binds the listener before the daemon reports ready (so
//! the CLI can use it at once and a taken port fails the start), builds
//! the router from one route table (which the OpenAPI test checks), and
//! drains on the daemon's shutdown token.
//!
//! Who may call what: `/healthz`, `/readyz` and `/api/v1/openapi.json` are
//! open (a liveness probe or a load balancer has no token, and none of them
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

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Open,
    Token,
    /// The token, unless `api.public_attachments`.
    Attachment,
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
            Guard::Attachment => &mut self.attachment,
        };
        *r = std::mem::take(r).route(path, mr);
        self.specs.push(RouteSpec { method, path, guard });
    }
}

fn table(upload_limit: usize) -> Table {
    use Guard::*;
    let mut t = Table { open: Router::new(), token: Router::new(), attachment: Router::new(), specs: Vec::new() };
    let json = wire::MAX_JSON_BYTES;
    t.add(Open, Method::GET, "/healthz", probes::healthz, json);
    t.add(Open, Method::GET, "/readyz", probes::readyz, json);
    t.add(Token, Method::GET, "/metrics", probes::metrics, json);
    t.add(Open, Method::GET, "/api/v1/openapi.json", routes::openapi, json);
    t.add(Token, Method::GET, "/api/v1/tickets", routes::list_tickets, json);
    t.add(Token, Method::GET, "/api/v1/tickets/{id}", routes::get_ticket, json);
    t.add(Token, Method::PATCH, "/api/v1/tickets/{id}", routes::patch_ticket, json);
    t.add(Token, Method::GET, "/api/v1/tickets/{id}/raw", routes::ticket_raw, json);
    t.add(Token, Method::POST, "/api/v1/tickets/{id}/replies", routes::post_reply, upload_limit);
    t.add(Token, Method::POST, "/api/v1/tickets/{id}/notes", routes::post_note, json);
    t.add(Token, Method::GET, "/api/v1/quarantine", routes::list_quarantine, json);
    t.add(Token, Method::GET, "/api/v1/quarantine/{id}", routes::get_quarantine, json);
    t.add(Token, Method::POST, "/api/v1/quarantine/{id}/retry", routes::retry_quarantine, json);
    t.add(Token, Method::DELETE, "/api/v1/quarantine/{id}", routes::delete_quarantine, json);
    t.add(Token, Method::GET, "/api/v1/outbox", routes::list_outbox, json);
    t.add(Token, Method::POST, "/api/v1/outbox/{id}/retry", routes::retry_outbox, json);
    t.add(Token, Method::DELETE, "/api/v1/outbox/{id}", routes::delete_outbox, json);
    t.add(Attachment, Method::GET, "/attachments/{sha256}/{filename}", routes::get_attachment, json);
    t.add(Token, Method::GET, "/api/v1/backup", routes::backup, json);
    t.add(Token, Method::GET, "/api/v1/store/stats", routes::store_stats, json);
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

/// The whole application, ready to serve (also used in-process by tests).
pub fn router(st: AppState) -> Router {
    let upload = usize::try_from(st.api.max_upload_bytes).unwrap_or(usize::MAX);
    let t = table(upload);
    let limit = tower::limit::GlobalConcurrencyLimitLayer::new(st.api.concurrency);
    let token = t.token.route_layer(middleware::from_fn_with_state(st.clone(), require_token));
    let attachment = if st.api.public_attachments {
        t.attachment
    } else {
        t.attachment.route_layer(middleware::from_fn_with_state(st.clone(), require_token))
    };
    // Probes stay outside the concurrency limit: a busy API is still alive.
    let busy = token.merge(attachment).route_layer(limit);
    t.open
        .merge(busy)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(st.clone(), frame))
        .with_state(st)
}

enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

type Serving = std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

pub struct Server {
    bound: Bound,
    app: Router,
    local: Listen,
}

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

impl Server {
    /// The configured API, bound; `None` without an `[api]` section.
    pub async fn bind(desk: &Desk) -> Result<Option<Server>, ServerError> {
        let Some(api) = desk.config().api.clone() else { return Ok(None) };
        let tokens = Tokens::load(&api)?;
        Self::bind_with(desk.clone(), api, tokens).await.map(Some)
    }

    pub async fn bind_with(desk: Desk, api: ApiConfig, tokens: Tokens) -> Result<Server, ServerError> {
        let (bound, local) = match &api.listen {
            Listen::Tcp(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { listen: api.listen.to_string(), source })?;
                let local =
                    l.local_addr().map_err(|source| ServerError::Bind { listen: api.listen.to_string(), source })?;
                (Bound::Tcp(l), Listen::Tcp(local))
            }
            Listen::Unix(p) => (Bound::Unix(bind_unix(p)?, p.clone()), Listen::Unix(p.clone())),
        };
        let app = router(AppState { desk, tokens: Arc::new(tokens), api: Arc::new(api) });
        Ok(Server { bound, app, local })
    }

    /// Where it listens (the real port when the config said 0).
    pub fn local(&self) -> &Listen {
        &self.local
    }

    /// Serves until `shutdown`, then stops accepting and lets running
    /// requests finish (at most [`GRACE`]).
    pub async fn run(self, shutdown: CancellationToken) {
        info!(listen = %self.local, "API listening");
        let stop = shutdown.clone().cancelled_owned();
        let (serve, socket) = match self.bound {
            Bound::Tcp(l) => {
                let f = axum::serve(l, self.app).with_graceful_shutdown(stop);
                (Box::pin(f.into_future()) as Serving, None)
            }
            Bound::Unix(l, p) => {
                let f = axum::serve(l, self.app).with_graceful_shutdown(stop);
                (Box::pin(f.into_future()) as Serving, Some(p))
            }
        };
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(GRACE).await;
        };
        tokio::select! {
            r = serve => if let Err(e) = r {
                error!(error = %e, "the API server stopped");
            },
            _ = deadline => warn!("API requests still running {}s after shutdown began; closing them", GRACE.as_secs()),
        }
        if let Some(p) = socket {
            let _ = std::fs::remove_file(p);
        }
        debug!("API stopped");
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
