//! Handlers: each parses and checks its request, asks the desk, and shapes
//! the answer. Changes go through `Desk::act` and the other writer jobs,
//! so an API PATCH gets the same system entries and notices as an email
//! `#command`; store scans run on the blocking pool so a long list never
//! stalls the runtime.

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use futures::StreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth::Caller;
use super::error::ApiError;
use super::guard::{bounded, frame, method_not_allowed, no_route, require_admin, require_token};
use super::wire::{self, Entries, MergeBody, QuarantineDetail, TextBody, TicketPatch, check_text};
use super::{AppState, probes};
use crate::desk::{Desk, DeskError, Upload};
use crate::record::TicketRecord;
use crate::store::BlobKind;
use crate::ticket::parse_ticket_ref;
use crate::triage::act::Action;

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

/// The route table: every route, its handler and who may call it, in one
/// place (the OpenAPI test and document read it too).
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
    t.add(Open, Method::GET, "/api/v1/openapi.json", openapi, json);
    t.add(Open, Method::GET, "/api/v1/proof", proof, json);
    t.add(Token, Method::GET, "/api/v1/tickets", list_tickets, json);
    t.add(Token, Method::GET, "/api/v1/tickets/{id}", get_ticket, json);
    t.add(Token, Method::PATCH, "/api/v1/tickets/{id}", patch_ticket, json);
    t.add(Token, Method::GET, "/api/v1/tickets/{id}/raw", ticket_raw, json);
    t.add(Token, Method::POST, "/api/v1/tickets/{id}/replies", post_reply, upload_limit);
    t.add(Token, Method::POST, "/api/v1/tickets/{id}/notes", post_note, json);
    t.add(Token, Method::POST, "/api/v1/tickets/{id}/merge", merge_ticket, json);
    t.add(Admin, Method::GET, "/api/v1/quarantine", list_quarantine, json);
    t.add(Admin, Method::GET, "/api/v1/quarantine/{id}", get_quarantine, json);
    t.add(Admin, Method::POST, "/api/v1/quarantine/{id}/retry", retry_quarantine, json);
    t.add(Admin, Method::DELETE, "/api/v1/quarantine/{id}", delete_quarantine, json);
    t.add(Admin, Method::GET, "/api/v1/outbox", list_outbox, json);
    t.add(Admin, Method::POST, "/api/v1/outbox/{id}/retry", retry_outbox, json);
    t.add(Admin, Method::DELETE, "/api/v1/outbox/{id}", delete_outbox, json);
    t.add(Attachment, Method::GET, "/attachments/{sha256}/{filename}", get_attachment, json);
    t.add(Admin, Method::GET, "/api/v1/backup", backup, json);
    t.add(Admin, Method::GET, "/api/v1/store/stats", store_stats, json);
    t.add(Token, Method::GET, "/api/v1/clients/{id}", super::people::get_client, json);
    t.add(Token, Method::GET, "/api/v1/agents", super::people::list_agents, json);
    t.add(Token, Method::POST, "/api/v1/tickets/{id}/block", block_sender, json);
    t.add(Admin, Method::GET, "/api/v1/spam", list_spam, json);
    t.add(Admin, Method::GET, "/api/v1/spam/{id}", get_spam, json);
    t.add(Admin, Method::POST, "/api/v1/spam/{id}/release", release_spam, json);
    t.add(Admin, Method::DELETE, "/api/v1/spam/{id}", drop_spam, json);
    t.add(Admin, Method::GET, "/api/v1/blocklist", list_blocklist, json);
    t.add(Admin, Method::POST, "/api/v1/blocklist", add_block, json);
    t.add(Admin, Method::DELETE, "/api/v1/blocklist/{entry}", remove_block, json);
    t
}

/// Every route the server answers: what `/api/v1/openapi.json` must
/// document, no more and no less.
pub fn route_table() -> Vec<RouteSpec> {
    table(wire::MAX_JSON_BYTES).specs
}

/// The whole application, ready to serve (also used in-process by tests).
pub fn router(st: AppState) -> Router {
    router_with(st, Router::new())
}

/// [`router`] with `extra` routes beside the API's (the desk console): the
/// same request bounds and log line, and this API's answer to anything else.
pub fn router_with(st: AppState, extra: Router<AppState>) -> Router {
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
        .merge(extra)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(st.clone(), super::forward::layer))
        .layer(middleware::from_fn_with_state(st.clone(), frame))
        .with_state(st)
}

type R<T> = Result<T, ApiError>;

/// Runs a store query on the blocking pool.
async fn blocking<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&Desk) -> Result<T, DeskError> + Send + 'static,
) -> R<T> {
    let desk = st.desk.clone();
    tokio::task::spawn_blocking(move || f(&desk))
        .await
        .map_err(|e| ApiError::internal(format!("the query failed: {e}")))?
        .map_err(ApiError::from)
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    (status, axum::Json(v)).into_response()
}

/// The ticket JSON with its version as a strong ETag (for `If-Match`).
fn ticket_response(status: StatusCode, rec: &TicketRecord) -> Response {
    let mut r = json(status, &rec.ticket);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", rec.version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn segment(p: Result<Path<String>, PathRejection>) -> R<String> {
    p.map(|Path(s)| s).map_err(|e| ApiError::invalid("path", e.body_text()))
}

fn ticket_number(p: Result<Path<String>, PathRejection>) -> R<u64> {
    let id = segment(p)?;
    parse_ticket_ref(&id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no ticket {:?} (ids look like support_ticket_42 or 42)",
            crate::text::truncate_chars(&crate::text::clean_line(&id), 40)
        ))
        .field("id")
    })
}

fn entry_number(p: Result<Path<String>, PathRejection>, what: &str) -> R<u64> {
    let id = segment(p)?;
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no {what} {:?}", crate::text::truncate_chars(&id, 40))).field("id"))
}

/// `If-Match: "7"` (or a bare 7): the version the change was based on.
fn if_match(headers: &HeaderMap) -> R<Option<u64>> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let bad = || ApiError::invalid("If-Match", "If-Match must be the ticket's ETag, e.g. \"7\"");
    let v = v.to_str().map_err(|_| bad())?.trim();
    if v == "*" {
        return Ok(None);
    }
    v.trim_matches('"').parse().map(Some).map_err(|_| bad())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

fn body_rejection(e: BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!("the request body is larger than {limit} bytes"))
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
    }
}

/// A strict JSON body: the right Content-Type, no unknown keys, and every
/// problem named by its field.
fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> R<T> {
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON (Content-Type: application/json)",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|v| de.end().map(|()| v).map_err(|e| (".".to_owned(), e)));
    v.map_err(|(path, inner)| {
        let message = inner.to_string();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("the body is not valid JSON: {message}"),
            );
        }
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let name = rest.split('`').next().unwrap_or("").to_owned();
            return ApiError::new(StatusCode::BAD_REQUEST, "unknown_field", message.clone()).field(name);
        }
        let field = if path == "." { None } else { Some(path) };
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid", message);
        err.body.field = field;
        err
    })
}

pub async fn list_tickets(State(st): State<AppState>, RawQuery(raw): RawQuery) -> R<Response> {
    let q = wire::parse_ticket_query(raw.as_deref())?;
    let page = blocking(&st, move |d| d.list(&q)).await?;
    Ok(json(StatusCode::OK, &page))
}

pub async fn get_ticket(State(st): State<AppState>, id: Result<Path<String>, PathRejection>) -> R<Response> {
    let n = ticket_number(id)?;
    let rec = blocking(&st, move |d| d.ticket(n)).await?;
    let rec = rec.ok_or_else(|| ApiError::not_found(format!("no ticket support_ticket_{n}")).field("id"))?;
    Ok(ticket_response(StatusCode::OK, &rec))
}

/// The ticket's original mails as mboxrd, streamed one mail at a time (a
/// ticket may hold hundreds of large mails).
pub async fn ticket_raw(State(st): State<AppState>, id: Result<Path<String>, PathRejection>) -> R<Response> {
    let n = ticket_number(id)?;
    let mails = blocking(&st, move |d| match d.ticket(n)? {
        Some(_) => d.ticket_mails(n).map(Some),
        None => Ok(None),
    })
    .await?;
    let mails = mails.ok_or_else(|| ApiError::not_found(format!("no ticket support_ticket_{n}")).field("id"))?;
    let desk = st.desk.clone();
    let pieces = futures::stream::iter(mails).then(move |rec| {
        let desk = desk.clone();
        async move {
            tokio::task::spawn_blocking(move || desk.mbox_entry(n, &rec))
                .await
                .map_err(std::io::Error::other)?
                .map(Bytes::from)
                .map_err(std::io::Error::other)
        }
    });
    let mut r = Response::new(Body::from_stream(pieces));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/mbox"));
    sandboxed(r.headers_mut());
    Ok(r)
}

/// What a browser may do with bytes a stranger wrote: nothing. No type
/// sniffing, no script, no plugin, no framing.
pub fn sandboxed(h: &mut HeaderMap) {
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
}

/// The actions a PATCH asks for, in the order the CLI applies them.
fn patch_actions(p: TicketPatch) -> R<Vec<Action>> {
    let mut actions = Vec::new();
    if let Some(s) = p.status {
        actions.push(Action::Status(s));
    }
    if let Some(v) = p.priority {
        actions.push(Action::Priority(v));
    }
    if let Some(c) = p.category {
        actions.push(Action::Category(c));
    }
    // What a value may be is the rule set's to say (act), so the words are
    // the same on every channel; here only the request's shape is checked.
    if let Some(a) = p.assigned_to {
        actions.push(Action::Assign(a));
    }
    if let Some(tags) = p.tags {
        if p.tags_add.is_some() || p.tags_remove.is_some() {
            return Err(ApiError::invalid(
                "tags",
                "give the full list (tags) or changes (tagsAdd, tagsRemove), not both",
            ));
        }
        actions.push(Action::SetTags(tags));
    }
    if let Some(tags) = p.tags_add {
        actions.push(Action::Tag(tags));
    }
    if let Some(tags) = p.tags_remove {
        actions.push(Action::Untag(tags));
    }
    if let Some(r) = p.resolution {
        actions.push(Action::Resolution(r));
    }
    if actions.is_empty() {
        return Err(ApiError::invalid(
            "request",
            "nothing to change: give status, priority, category, assignedTo, tags, tagsAdd, tagsRemove or resolution",
        ));
    }
    Ok(actions)
}

pub async fn patch_ticket(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> R<Response> {
    let n = ticket_number(id)?;
    let expect = if_match(&headers)?;
    let body = body.map_err(|e| body_rejection(e, wire::MAX_JSON_BYTES))?;
    let actions = patch_actions(parse_json(&headers, &body)?)?;
    let rec = st.desk.act(n, caller.actor, actions, Vec::new(), expect).await?;
    Ok(ticket_response(StatusCode::OK, &rec))
}

fn text_of(b: TextBody) -> R<String> {
    Ok(b.text)
}

/// A reply as multipart/form-data: a `text` part and any number of file
/// parts (each with a filename), each file within `attachments.max_bytes`.
async fn read_multipart(st: &AppState, mut m: Multipart) -> R<(String, Vec<Upload>)> {
    let per_file = st.desk.config().attachments.max_bytes;
    let mut text = None;
    let mut uploads = Vec::new();
    let multipart_err = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("the upload is larger than api.max_upload_bytes ({})", st.api.max_upload_bytes))
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", e.body_text())
        }
    };
    while let Some(mut field) = m.next_field().await.map_err(multipart_err)? {
        let name = field.name().unwrap_or("").to_owned();
        match field.file_name().map(str::to_owned) {
            None if name == "text" => {
                if text.is_some() {
                    return Err(ApiError::invalid("text", "give the text once"));
                }
                let bytes = field.bytes().await.map_err(multipart_err)?;
                let s = String::from_utf8(bytes.to_vec())
                    .map_err(|_| ApiError::invalid("text", "the text is not UTF-8"))?;
                text = Some(s);
            }
            None => {
                let shown = crate::text::truncate_chars(&crate::text::clean_line(&name), 40);
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_field",
                    format!("unknown form field {shown:?}: send `text` and file parts (with a filename)"),
                )
                .field(shown));
            }
            Some(filename) => {
                if uploads.len() == wire::MAX_FILES {
                    return Err(ApiError::invalid("files", format!("at most {} files per reply", wire::MAX_FILES)));
                }
                check_text("files", &filename, false, 255)?;
                let mime_type = field.content_type().map(str::to_owned).filter(|t| {
                    t.len() <= 127 && t.contains('/') && t.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                });
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_err)? {
                    if (bytes.len() + chunk.len()) as u64 > per_file {
                        return Err(ApiError::too_large(format!(
                            "{filename:?} is larger than attachments.max_bytes ({per_file})"
                        ))
                        .field("files"));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                uploads.push(Upload { filename, mime_type, bytes });
            }
        }
    }
    Ok((text.unwrap_or_default(), uploads))
}

pub async fn post_reply(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    req: Request,
) -> R<Response> {
    let n = ticket_number(id)?;
    let headers = req.headers().clone();
    let expect = if_match(&headers)?;
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    let (text, uploads) = if multipart {
        let m = Multipart::from_request(req, &st)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", e.body_text()))?;
        read_multipart(&st, m).await?
    } else {
        // JSON replies stay small whatever the upload limit is.
        let limit = wire::MAX_JSON_BYTES;
        let body = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| {
            ApiError::too_large(format!("a JSON reply is at most {limit} bytes; send files as multipart"))
        })?;
        (text_of(parse_json(&headers, &body)?)?, Vec::new())
    };
    let actions = vec![Action::Reply { text, attachments: Vec::new() }];
    let rec = st.desk.act(n, caller.actor, actions, uploads, expect).await?;
    Ok(ticket_response(StatusCode::CREATED, &rec))
}

pub async fn post_note(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> R<Response> {
    let n = ticket_number(id)?;
    let expect = if_match(&headers)?;
    let body = body.map_err(|e| body_rejection(e, wire::MAX_JSON_BYTES))?;
    let text = text_of(parse_json(&headers, &body)?)?;
    let rec = st.desk.act(n, caller.actor, vec![Action::Note { text }], Vec::new(), expect).await?;
    Ok(ticket_response(StatusCode::CREATED, &rec))
}

/// Merges the ticket into the one the body names (#19); answers with the
/// survivor. A refusal (closed target, a cycle, …) is a 400 on `into`.
pub async fn merge_ticket(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> R<Response> {
    let n = ticket_number(id)?;
    let body = body.map_err(|e| body_rejection(e, wire::MAX_JSON_BYTES))?;
    let MergeBody { into } = parse_json(&headers, &body)?;
    let rec = st.desk.merge(n, into, caller.actor).await?;
    Ok(ticket_response(StatusCode::OK, &rec))
}

pub async fn list_quarantine(State(st): State<AppState>, RawQuery(raw): RawQuery) -> R<Response> {
    no_parameters(raw.as_deref())?;
    let entries = blocking(&st, |d| d.quarantine()).await?;
    Ok(json(StatusCode::OK, &Entries { entries }))
}

pub async fn get_quarantine(State(st): State<AppState>, id: Result<Path<String>, PathRejection>) -> R<Response> {
    let n = entry_number(id, "quarantine entry")?;
    let found = blocking(&st, move |d| d.quarantine_entry(n)).await?;
    let (entry, raw) = found.ok_or_else(|| ApiError::not_found(format!("no quarantine entry {n}")).field("id"))?;
    Ok(json(StatusCode::OK, &QuarantineDetail::new(entry, &raw)))
}

pub async fn retry_quarantine(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> R<Response> {
    let n = entry_number(id, "quarantine entry")?;
    let outcome = st.desk.quarantine_retry(n, caller.actor).await?;
    Ok(json(StatusCode::OK, &outcome))
}

pub async fn delete_quarantine(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> R<Response> {
    let n = entry_number(id, "quarantine entry")?;
    st.desk.quarantine_drop(n, caller.actor).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn no_parameters(raw: Option<&str>) -> R<()> {
    match raw.filter(|r| !r.is_empty()) {
        None => Ok(()),
        Some(_) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "unknown_parameter", "this endpoint takes no parameters"))
        }
    }
}

pub async fn list_outbox(State(st): State<AppState>, RawQuery(raw): RawQuery) -> R<Response> {
    let raw = raw.unwrap_or_default();
    if raw.len() > wire::MAX_QUERY_BYTES {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "the query string is too long"));
    }
    let mut all = false;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("all", "true") => all = true,
            ("all", "false") => all = false,
            ("all", _) => return Err(ApiError::invalid("all", "all must be true or false")),
            (k, _) => {
                let shown = crate::text::truncate_chars(k, 40);
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_parameter",
                    format!("unknown parameter {shown:?}: expected all"),
                )
                .field(shown));
            }
        }
    }
    let entries = blocking(&st, move |d| d.outbox(all)).await?;
    Ok(json(StatusCode::OK, &Entries { entries }))
}

pub async fn retry_outbox(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> R<Response> {
    let n = entry_number(id, "outbox entry")?;
    st.desk.outbox_retry(n, caller.actor).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete_outbox(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> R<Response> {
    let n = entry_number(id, "outbox entry")?;
    st.desk.outbox_drop(n, caller.actor).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// RFC 5987 `filename*` value: UTF-8, percent-encoded.
fn ext_value(name: &str) -> String {
    let mut out = String::from("UTF-8''");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An ASCII stand-in for clients that ignore `filename*`.
fn ascii_fallback(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' { c } else { '_' })
        .collect();
    if s.trim().is_empty() { "attachment".into() } else { s }
}

pub async fn get_attachment(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> R<Response> {
    let Path((sha, filename)) = p.map_err(|e| ApiError::invalid("path", e.body_text()))?;
    // Validated before it becomes part of a file path.
    if !is_sha256(&sha) {
        return Err(ApiError::not_found("no such attachment"));
    }
    let sha_for_check = sha.clone();
    let found = blocking(&st, move |d| {
        let Some(a) = d.attachment_record(&sha_for_check, &filename)? else { return Ok(None) };
        // Checked whole before anything is sent: damaged bytes are an error
        // naming the blob, never a 200.
        Ok(d.store().verified_len(BlobKind::Attachment, &sha_for_check)?.map(|len| (a, len)))
    })
    .await?;
    let Some((a, len)) = found else { return Err(ApiError::not_found("no such attachment")) };
    let content_type = HeaderValue::from_str(&a.mime_type)
        .ok()
        .filter(|_| a.mime_type.contains('/') && !a.mime_type.is_empty())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition =
        format!("attachment; filename=\"{}\"; filename*={}", ascii_fallback(&a.filename), ext_value(&a.filename));
    // Streamed a piece at a time from the store: memory per download stays
    // one piece whatever the file's size.
    let store = st.desk.store().clone();
    let pieces = futures::stream::try_unfold(0u64, move |offset| {
        let (store, sha) = (store.clone(), sha.clone());
        async move {
            if offset >= len {
                return Ok(None);
            }
            let piece = tokio::task::spawn_blocking(move || store.blob_chunk(BlobKind::Attachment, &sha, offset))
                .await
                .map_err(std::io::Error::other)?
                .map_err(std::io::Error::other)?;
            if piece.is_empty() {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the attachment ended early"));
            }
            let next = offset + piece.len() as u64;
            Ok::<_, std::io::Error>(Some((Bytes::from(piece), next)))
        }
    });
    let mut r = Response::new(Body::from_stream(pieces));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // Whatever the file is, a browser that opens it runs nothing.
    sandboxed(h);
    // Content-addressed, so it never changes; private because it may need a token.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400, immutable"));
    Ok(r)
}

/// The daemon proves itself to the CLI over TCP before it sends the admin
/// token (see `auth::proof`). Open: the answer reveals nothing of the token.
pub async fn proof(
    State(st): State<AppState>,
    arrival: Option<Extension<super::Arrival>>,
    headers: HeaderMap,
) -> R<Response> {
    let challenge = headers
        .get(super::auth::CHALLENGE)
        .and_then(|v| v.to_str().ok())
        .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ApiError::invalid("X-Ticketd-Challenge", "send 64 hex digits of fresh randomness"))?;
    let local = arrival.map(|Extension(a)| a.local).unwrap_or_default();
    let proof = st.tokens.prove(challenge, &local).ok_or_else(|| ApiError::not_found("no admin token is set"))?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "proof": proof, "listener": local })))
}

pub async fn openapi() -> Response {
    json(StatusCode::OK, &super::openapi::document())
}

/// A consistent snapshot of the whole desk as a tar (the format of
/// `ticketd backup`). The writer takes it between two commits; the file is
/// spooled to an unnamed temporary file, then streamed.
pub async fn backup(State(st): State<AppState>) -> R<Response> {
    // Streamed as it is written: no copy of the archive in a temporary
    // file, and a slow reader slows the writing (a bounded channel).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let desk = st.desk.clone();
    tokio::spawn(async move {
        let out = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHANNEL_PIECE) };
        match desk.backup(out).await {
            // The last piece, from here: blocking sends belong to the
            // blocking pool the archive was written on.
            Ok((_, out)) if !out.buf.is_empty() => {
                if tx.send(Ok(Bytes::from(out.buf))).await.is_err() {
                    tracing::debug!("the backup's reader went away");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the backup failed");
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
            }
        }
    });
    // A failure half way (a damaged blob) ends the body with a trailer
    // naming it (the CLI asks for trailers); the archive then has no
    // manifest, so any reader can tell it is not whole.
    let frames = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(|piece| {
        Ok::<_, std::convert::Infallible>(match piece {
            Ok(bytes) => http_body::Frame::data(bytes),
            Err(e) => {
                let mut t = HeaderMap::new();
                let text = crate::text::clean_line(&e.to_string());
                t.insert(BACKUP_ERROR, HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("failed")));
                http_body::Frame::trailers(t)
            }
        })
    });
    let mut r = Response::new(Body::new(http_body_util::StreamBody::new(frames)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    r.headers_mut().insert(header::TRAILER, HeaderValue::from_static(BACKUP_ERROR));
    Ok(r)
}

/// The trailer that says a backup stream broke off, and why.
pub const BACKUP_ERROR: &str = "x-ticketd-error";

const CHANNEL_PIECE: usize = 256 << 10;

/// A blocking writer (the archive is written on the blocking pool) into
/// the response's bounded channel.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHANNEL_PIECE {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHANNEL_PIECE)));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader went away"))
    }
}

/// What the store holds (`ticketd store stats`).
pub async fn store_stats(State(st): State<AppState>) -> R<Response> {
    let stats = blocking(&st, |d| d.stats()).await?;
    Ok(json(StatusCode::OK, &stats))
}

/// An agent blocks the ticket's sender: the ticket is closed and tagged
/// `spam`, their later mail is held (the same rules as `#block` by mail).
pub async fn block_sender(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> R<Response> {
    let n = ticket_number(id)?;
    let expect = if_match(&headers)?;
    let rec = st.desk.act(n, caller.actor, vec![Action::BlockSender], Vec::new(), expect).await?;
    Ok(ticket_response(StatusCode::OK, &rec))
}

pub async fn list_spam(State(st): State<AppState>, RawQuery(raw): RawQuery) -> R<Response> {
    no_parameters(raw.as_deref())?;
    let entries = blocking(&st, |d| d.spam()).await?;
    Ok(json(StatusCode::OK, &crate::desk::spam::SpamList { entries }))
}

pub async fn get_spam(State(st): State<AppState>, id: Result<Path<String>, PathRejection>) -> R<Response> {
    let n = entry_number(id, "spam entry")?;
    let found = blocking(&st, move |d| d.spam_entry(n)).await?;
    let (entry, raw) = found.ok_or_else(|| ApiError::not_found(format!("no spam entry {n}")).field("id"))?;
    Ok(json(StatusCode::OK, &wire::SpamDetail::new(entry, &raw)))
}

pub async fn release_spam(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> R<Response> {
    let n = entry_number(id, "spam entry")?;
    let outcome = st.desk.spam_release(n, caller.actor).await?;
    Ok(json(StatusCode::OK, &outcome))
}

pub async fn drop_spam(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> R<Response> {
    let n = entry_number(id, "spam entry")?;
    st.desk.spam_drop(n, caller.actor).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_blocklist(State(st): State<AppState>, RawQuery(raw): RawQuery) -> R<Response> {
    no_parameters(raw.as_deref())?;
    let entries = blocking(&st, |d| d.blocklist()).await?;
    Ok(json(StatusCode::OK, &crate::desk::spam::Blocklist { entries }))
}

fn block_entry(text: &str) -> R<crate::spam::BlockEntry> {
    crate::spam::BlockEntry::parse(text)
        .map_err(|e| ApiError::invalid("entry", crate::text::clean_line(&e.to_string())))
}

pub async fn add_block(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> R<Response> {
    let body = body.map_err(|e| body_rejection(e, wire::MAX_JSON_BYTES))?;
    let req: wire::BlockRequest = parse_json(&headers, &body)?;
    let entry = block_entry(&req.entry)?;
    let changed = st.desk.block(entry, true, caller.actor).await?;
    let status = if changed.changed { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, &changed))
}

pub async fn remove_block(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    entry: Result<Path<String>, PathRejection>,
) -> R<Response> {
    let entry = block_entry(&segment(entry)?)?;
    st.desk.block(entry, false, caller.actor).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_encoded_both_ways() {
        assert_eq!(ext_value("résumé 1.pdf"), "UTF-8''r%C3%A9sum%C3%A9%201.pdf");
        assert_eq!(ascii_fallback("résumé \"1\".pdf"), "r_sum_ _1_.pdf");
        assert!(is_sha256(&"a".repeat(64)));
        assert!(!is_sha256(&format!("../{}", "a".repeat(61))));
        assert!(!is_sha256(&"A".repeat(64)));
    }

    #[test]
    fn an_empty_patch_changes_nothing_and_says_so() {
        assert_eq!(patch_actions(TicketPatch::default()).unwrap_err().body.field.as_deref(), Some("request"));
        let both = TicketPatch { tags: Some(vec![]), tags_remove: Some(vec!["x".into()]), ..TicketPatch::default() };
        assert_eq!(patch_actions(both).unwrap_err().body.field.as_deref(), Some("tags"));
        let p = TicketPatch {
            tags_add: Some(vec!["a".into()]),
            tags_remove: Some(vec!["b".into()]),
            ..TicketPatch::default()
        };
        assert_eq!(patch_actions(p).unwrap(), vec![Action::Tag(vec!["a".into()]), Action::Untag(vec!["b".into()])]);
    }
}
