//! A standby's API and changes: reads are served here, from the database;
//! a change (any method but GET, HEAD and OPTIONS; and a backup, which the
//! writer takes) goes to the leader. With `cluster.forward` (the default)
//! the request is passed on to the leader's advertised API as it came —
//! the same token, body and `If-Match` — and the leader's answer comes
//! back; without it, or when the leader cannot be reached, the answer is
//! 503 `not_leader` naming the leader and its address (header
//! `X-Ticketd-Leader` too). A request is forwarded once: one that arrives
//! forwarded at a node that does not lead (the lease moved meanwhile) is
//! answered 503 rather than passed on again.
//!
//! Whether a forwarded change happened is the leader's answer. When the
//! connection breaks after the request was sent, nobody here knows: that
//! answer is 502 `leader_unreachable`, which says the change may have been
//! made (read the ticket before trying again; `If-Match` makes a retry safe).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use super::AppState;
use super::error::ApiError;
use crate::cluster::Node;

/// Set on a forwarded request: the standby that forwarded it.
pub const FORWARDED_BY: &str = "x-ticketd-forwarded-by";
/// On a 503 from a standby: the leader's API address.
pub const LEADER: &str = "x-ticketd-leader";

/// Bound on reaching the leader.
const CONNECT: Duration = Duration::from_secs(3);

/// Whether a request must be handled by the leader. The desk console
/// (`/desk/`) answers for itself (`console::guard::standby`).
pub fn needs_leader(method: &Method, path: &str) -> bool {
    (!matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || path == "/api/v1/backup")
        && !path.starts_with("/desk/")
}

/// The API's layer: see the module note.
pub async fn layer(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(node) = st.desk.cluster().cloned() else { return next.run(req).await };
    if node.serving() || !needs_leader(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let leader = node.leader().filter(|l| l.held && l.node.as_deref() != Some(node.name.as_str()));
    let address = leader.as_ref().and_then(|l| l.advertise.clone()).filter(|a| !a.is_empty());
    let forwarded = req.headers().contains_key(FORWARDED_BY);
    match address {
        Some(a) if node.forward && !forwarded => {
            let limit = usize::try_from(st.api.max_upload_bytes).unwrap_or(usize::MAX).saturating_add(1 << 20);
            forward(&node, req, &a, limit).await
        }
        _ => not_leader(&node, None),
    }
}

/// 503 `not_leader`, naming the leader (and why it was not asked, if it was not reachable).
fn not_leader(node: &Node, unreachable: Option<String>) -> Response {
    let e = node.not_leader();
    let address = e.address.clone();
    let mut message = crate::desk::DeskError::from(e).to_string();
    if let Some(why) = unreachable {
        message.push_str(&format!(" (it cannot be reached: {why}); nothing was changed"));
    }
    let mut r = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", message).into_response();
    if let Some(a) = address.and_then(|a| HeaderValue::from_str(&a).ok()) {
        r.headers_mut().insert(HeaderName::from_static(LEADER), a);
    }
    r
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "te" | "trailer" | "host"
    )
}

async fn forward(node: &Node, req: Request, address: &str, limit: usize) -> Response {
    let authority = address.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return ApiError::too_large("the request body is too large to forward").into_response(),
    };
    let stream = match tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(&authority)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return not_leader(node, Some(e.to_string())),
        Err(_) => return not_leader(node, Some(format!("no connection within {}s", CONNECT.as_secs()))),
    };
    let _ = stream.set_nodelay(true);
    let (mut send, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => return not_leader(node, Some(e.to_string())),
    };
    tokio::spawn(conn);
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let mut b = hyper::Request::builder().method(parts.method.clone()).uri(path);
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            b = b.header(k, v);
        }
    }
    b = b.header(header::HOST, authority.as_str()).header(FORWARDED_BY, node.name.as_str());
    let out = match b.body(Full::new(bytes)) {
        Ok(r) => r,
        Err(e) => return ApiError::internal(format!("forwarding: {e}")).into_response(),
    };
    match send.send_request(out).await {
        Ok(res) => {
            let (mut p, body) = res.into_parts();
            p.headers.remove(header::CONNECTION);
            p.headers.remove(header::TRANSFER_ENCODING);
            Response::from_parts(p, Body::new(body))
        }
        Err(e) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "leader_unreachable",
            format!(
                "forwarded to the leader at {address}, whose answer was lost ({e}): the change may or may not have \
                 been made; read before trying again"
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_backups_go_to_the_leader_reads_stay() {
        assert!(needs_leader(&Method::PATCH, "/api/v1/tickets/4"));
        assert!(needs_leader(&Method::POST, "/api/v1/tickets/4/notes"));
        assert!(needs_leader(&Method::DELETE, "/api/v1/outbox/2"));
        assert!(needs_leader(&Method::GET, "/api/v1/backup"));
        assert!(!needs_leader(&Method::GET, "/api/v1/tickets"));
        assert!(!needs_leader(&Method::HEAD, "/attachments/x/y"));
        assert!(!needs_leader(&Method::POST, "/desk/tickets/4/note"), "the console answers for itself");
    }
}
