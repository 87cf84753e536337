//! The one guard of the API: who may call a route (`Guard`, from the
//! route table), and the bounds every request keeps until its last byte is
//! sent (time, concurrency, URI length), logging method, path and status
//! only — never headers (tokens) or bodies.
//!
//! Who may call what: `/healthz`, `/readyz`, `/api/v1/proof` and
//! `/api/v1/openapi.json` are open (a liveness probe or a load balancer has
//! no token, and none of them shows a ticket); everything else needs a
//! bearer token, and the admin's routes (the outbox, the quarantine,
//! metrics, backups, store stats) the admin's. Attachments need the token
//! too unless `api.public_attachments` is set, which makes their URLs (a
//! SHA-256 and the exact file name) the capability.
//!
//! Limits: JSON bodies at most 1 MiB, a multipart reply at most
//! `api.max_upload_bytes` (each file within `attachments.max_bytes`), every
//! request within `api.timeout`, at most `api.concurrency` requests at
//! once (the rest wait), query strings at most 4 KiB.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{debug, warn};

use super::error::ApiError;
use super::{AppState, wire};

pub(super) async fn require_token(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    match st.tokens.caller(req.headers(), st.desk.config()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

pub(super) async fn require_admin(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
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
pub(super) async fn frame(State(st): State<AppState>, req: Request, next: Next) -> Response {
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

pub(super) async fn no_route() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint (see /api/v1/openapi.json)").into_response()
}

pub(super) async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
        .into_response()
}

/// Holds a request to `api.concurrency` and `api.timeout` until its
/// response is fully sent, not just until the handler returns: a download
/// streams inside both, so slow readers queue instead of piling up bodies.
pub(crate) async fn bounded(State(st): State<AppState>, req: Request, next: Next) -> Response {
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
