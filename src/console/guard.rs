//! What every console response and request goes through.
//!
//! Responses: a Content-Security-Policy that allows scripts and styles by a
//! per-response nonce only — never `'self'`, because the same origin serves
//! files that strangers sent (`/attachments`, `/desk/files`), and an
//! attachment declared `application/javascript` is a script as far as
//! `nosniff` is concerned — plus `default-src 'none'`, `frame-ancestors
//! 'none'`, `base-uri 'none'`, `form-action 'self'` and a report endpoint
//! whose reports are counted (`ticketd_console_csp_reports_total`).
//!
//! Requests that change anything (every method but GET and HEAD) are
//! refused with 403 unless their `Origin` is the console's own and
//! `Sec-Fetch-Site` (when the browser sends it) is not `cross-site`;
//! handlers then check the session's own token ([`super::session`]).

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Console;

/// A CSP report is small; anything bigger is not one.
pub const MAX_REPORT_BYTES: usize = 16 << 10;

/// A fresh nonce: 128 random bits, base64.
pub fn nonce() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// The policy of a console page whose script and stylesheet carry `nonce`.
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self'; \
         connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
         report-uri /desk/csp-report"
    )
}

/// For any console response that did not set its own (a redirect, an error).
pub const BASE_POLICY: &str =
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; report-uri /desk/csp-report";

/// What a frame showing a mail's HTML may do: show styled text and our
/// own images, nothing else; framed only by the console.
pub const MAIL_POLICY: &str = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; \
     frame-ancestors 'self'; base-uri 'none'; form-action 'none'; report-uri /desk/csp-report";

/// Headers of a console page (the policy is the caller's).
pub fn secure_page(h: &mut HeaderMap, policy: &str) {
    if let Ok(v) = HeaderValue::from_str(policy) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn common(h: &mut HeaderMap, tls: bool) {
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.entry(header::REFERRER_POLICY).or_insert(HeaderValue::from_static("same-origin"));
    h.entry(header::X_FRAME_OPTIONS).or_insert(HeaderValue::from_static("DENY"));
    h.entry("cross-origin-opener-policy").or_insert(HeaderValue::from_static("same-origin"));
    h.entry("permissions-policy")
        .or_insert(HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"));
    if tls {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(BASE_POLICY));
    }
}

/// The origin state changes must come from: `console.public_url`, else
/// the scheme the console is served with and the request's `Host`.
pub fn expected_origin(c: &Console, headers: &HeaderMap) -> Option<String> {
    if let Some(u) = &c.cfg.public_url {
        return Some(u.to_ascii_lowercase());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?.trim();
    if host.is_empty() {
        return None;
    }
    let scheme = if c.cfg.behind_tls { "https" } else { "http" };
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// Why a state-changing request is refused, if it is.
pub fn cross_site(c: &Console, headers: &HeaderMap) -> Option<&'static str> {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return Some("this form was sent from another site");
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, expected_origin(c, headers)) {
        (Some(o), Some(ours)) if o.eq_ignore_ascii_case(&ours) => None,
        (None, _) => Some("the request does not say where it comes from (no Origin header)"),
        _ => Some("this form was sent from another origin"),
    }
}

/// On a standby of a cluster, why a change cannot be made here: the
/// console's forms are not forwarded to the leader (the API's changes are,
/// see `api::forward`) — its session, origin and sign-in checks are
/// this node's — so the answer is a page naming the leader's console.
pub fn standby(c: &Console) -> Option<Response> {
    let node = c.desk().cluster()?;
    if node.serving() {
        return None;
    }
    let e = node.not_leader();
    let leader = match &e.address {
        Some(a) => format!(" Open the console on the leader, {}/desk/, and sign in there.", a.trim_end_matches('/')),
        None => String::new(),
    };
    let e = crate::desk::DeskError::from(e);
    let text = format!(
        "Nothing was changed: {e}. This node shows the desk but does not change it.{leader}          What you typed is kept as a draft in this browser."
    );
    Some(super::pages::refused(StatusCode::SERVICE_UNAVAILABLE, &text))
}

/// Requests that stay on this node even on a standby: a presence heartbeat
/// (kept in this node's memory) and a CSP report (counted here).
fn node_local(path: &str) -> bool {
    path == "/desk/csp-report" || (path.starts_with("/desk/tickets/") && path.ends_with("/presence"))
}

/// Every console request: refuses cross-site state changes (and, on a
/// standby, changes at all: [`standby`]), and puts the security headers on
/// every response.
pub async fn protect(State(c): State<Console>, req: Request, next: Next) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD);
    let path = req.uri().path();
    let report = path == "/desk/csp-report";
    let local = node_local(path);
    let mut res = if unsafe_method && !report {
        match cross_site(&c, req.headers()) {
            Some(why) => super::pages::refused(StatusCode::FORBIDDEN, why),
            None => match standby(&c).filter(|_| !local) {
                Some(r) => r,
                None => next.run(req).await,
            },
        }
    } else {
        next.run(req).await
    };
    common(res.headers_mut(), c.cfg.behind_tls);
    res
}

/// `POST /desk/csp-report`: a browser reports a blocked load. Counted by
/// where it came from (`ticketd_console_csp_reports_total{source}`: our
/// own pages, where there should be none, or a mail's frame); the body is
/// read for that and thrown away.
pub async fn csp_report(State(c): State<Console>, body: Bytes) -> Response {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    // report-uri sends {"csp-report": {...}}; the Reporting API a list of
    // {"body": {"documentURL": ...}}.
    let reports: Vec<&serde_json::Value> = match &v {
        serde_json::Value::Array(a) => a.iter().filter_map(|r| r.get("body")).collect(),
        other => other.get("csp-report").into_iter().collect(),
    };
    for r in reports.iter().take(16) {
        let doc = r.get("document-uri").or_else(|| r.get("documentURL")).and_then(|d| d.as_str()).unwrap_or("");
        let blocked = r.get("blocked-uri").or_else(|| r.get("blockedURL")).and_then(|d| d.as_str()).unwrap_or("");
        let directive =
            r.get("violated-directive").or_else(|| r.get("effectiveDirective")).and_then(|d| d.as_str()).unwrap_or("");
        let mail = doc.contains("/entries/") && doc.ends_with("/body") || doc == "about:srcdoc" || doc.is_empty();
        if mail {
            c.desk().health().count_csp_report("mail");
        } else {
            c.desk().health().count_csp_report("console");
            tracing::warn!(
                document = %crate::text::truncate_chars(&crate::text::clean_line(doc), 200),
                blocked = %crate::text::truncate_chars(&crate::text::clean_line(blocked), 200),
                directive = %crate::text::truncate_chars(&crate::text::clean_line(directive), 80),
                "a console page broke its Content-Security-Policy"
            );
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_policy_is_nonce_only() {
        let p = page_policy("abc");
        assert_eq!(
            p,
            "default-src 'none'; script-src 'nonce-abc'; style-src 'nonce-abc'; img-src 'self'; connect-src 'self'; \
             frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; report-uri /desk/csp-report"
        );
        let script = p.split("; ").find(|d| d.starts_with("script-src")).unwrap();
        assert!(!script.contains("'self'") && !script.contains("unsafe"), "{script}");
        assert!(
            MAIL_POLICY.starts_with("sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'")
        );
        assert_ne!(nonce(), nonce());
    }
}
