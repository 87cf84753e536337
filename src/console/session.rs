//! Signing in and out, and who a request is.
//!
//! An agent or the admin signs in with the token they already have (the
//! API's bearer token). The console then sets a session cookie holding a
//! fresh random id; the store keeps only its SHA-256 (written by the
//! desk's writer, so sessions survive a restart and are shared by every
//! node on one database). The cookie is `HttpOnly; SameSite=Strict`, with
//! `Secure` and the `__Host-` prefix when a TLS proxy is in front
//! (`console.behind_tls`); it is never looked at by `/api/v1`, which stays
//! bearer-only. A session ends after `console.session_idle` unused or
//! `console.session_max` in all, at sign-out, when the admin ends the
//! agent's sessions, and when the token it came from is replaced. Its
//! last use is written at most once a minute.
//!
//! Each session has its own token against cross-site requests: an HMAC of
//! the session id under the desk's secret (nothing more to store), sent in
//! every form and by the script. Sign-in attempts are limited per address
//! and overall, and every refusal reads the same.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use hmac::Mac;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Console;
use super::views::{self, Chrome, Page};
use crate::api::Arrival;
use crate::api::auth::Principal;
use crate::desk::ActorRef;
use crate::desk::sessions::{SessionOp, SessionRecord};

const COOKIE: &str = "ticketd_session";
const COOKIE_TLS: &str = "__Host-ticketd_session";
const LOGIN_COOKIE: &str = "ticketd_login";
const LOGIN_COOKIE_TLS: &str = "__Host-ticketd_login";
/// A session's last use is written when it is older than this.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// Failed sign-ins one address may make per [`ADDRESS_WINDOW`].
const ADDRESS_FAILURES: usize = 10;
const ADDRESS_WINDOW: Duration = Duration::from_secs(600);
/// Failed sign-ins from everywhere per [`ALL_WINDOW`].
const ALL_FAILURES: usize = 60;
const ALL_WINDOW: Duration = Duration::from_secs(60);

/// The one answer to every refused sign-in.
pub const SIGN_IN_FAILED: &str = "Sign-in failed. Check the token, or wait a few minutes if there were many attempts.";

fn cookie_names(c: &Console) -> (&'static str, &'static str) {
    if c.cfg.behind_tls { (COOKIE_TLS, LOGIN_COOKIE_TLS) } else { (COOKIE, LOGIN_COOKIE) }
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn set_cookie(c: &Console, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if c.cfg.behind_tls { "; Secure" } else { "" };
    let v = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("x=; Max-Age=0"))
}

/// The stored key of a session id.
pub fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
        m.update(b"\n");
    }
    hex::encode(&m.finalize().into_bytes()[..16])
}

/// The session's token against cross-site requests.
pub fn csrf_of(secret: &[u8], id: &str) -> String {
    mac(secret, &[b"console csrf", id.as_bytes()])
}

/// Names the token a session came from, without keeping it.
fn token_tag(secret: &[u8], digest: &[u8; 32]) -> String {
    mac(secret, &[b"console session token", digest])
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Who is using the console.
#[derive(Debug, Clone)]
pub struct User {
    pub key: [u8; 32],
    /// None: the admin.
    pub agent: Option<String>,
    /// How pages name them.
    pub name: String,
    pub csrf: String,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.agent.is_none()
    }

    pub fn actor(&self) -> ActorRef {
        match &self.agent {
            Some(a) => ActorRef::Agent(a.clone()),
            None => ActorRef::Admin,
        }
    }

    /// As thread entries and presence name them (`agent_alice`, `admin`).
    pub fn label(&self) -> &str {
        self.agent.as_deref().unwrap_or("admin")
    }

    /// Whether `sent` is this session's token.
    pub fn token_ok(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|s| bool::from(s.as_bytes().ct_eq(self.csrf.as_bytes())))
    }

    pub fn chrome(&self, c: &Console) -> Chrome {
        Chrome::new(c, Some(self))
    }
}

/// Whether browsers may hold sessions on the connection this came in on:
/// over a TLS proxy, or on loopback (or the unix socket, which no browser
/// reaches), never in clear text across a network.
pub fn transport_ok(c: &Console, parts_ext: Option<&Arrival>) -> bool {
    if c.cfg.behind_tls {
        return true;
    }
    match parts_ext {
        None => true,
        Some(a) => match a.local.parse::<std::net::SocketAddr>() {
            Ok(addr) => addr.ip().is_loopback(),
            Err(_) => a.local.starts_with("unix:"),
        },
    }
}

/// The client's address: the connection's, or behind a TLS proxy on this
/// machine the last hop of `X-Forwarded-For`.
pub fn client_ip(c: &Console, parts: &Parts) -> Option<IpAddr> {
    let peer = parts.extensions.get::<Arrival>().and_then(|a| a.peer);
    if c.cfg.behind_tls && peer.is_none_or(|p| p.is_loopback()) {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    peer
}

pub enum Rejection {
    /// A page: sign in first.
    SignIn(String),
    /// A form or a stream: the session is gone.
    Ended,
    Transport,
    NotAdmin,
    Failed(String),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::SignIn(next) => Redirect::to(&format!("/desk/login?next={}", urlencode(&next))).into_response(),
            Rejection::Ended => super::pages::refused(
                StatusCode::UNAUTHORIZED,
                "Your session has ended (signed out, expired, or ended by the admin). Sign in again.",
            ),
            Rejection::Transport => super::pages::refused(StatusCode::FORBIDDEN, TRANSPORT),
            Rejection::NotAdmin => {
                super::pages::refused(StatusCode::FORBIDDEN, "This page is the admin's: sign in with the admin token.")
            }
            Rejection::Failed(why) => super::pages::refused(StatusCode::SERVICE_UNAVAILABLE, &why),
        }
    }
}

pub const TRANSPORT: &str = "The console is not served over this connection: it would send session cookies in clear text \
     across the network. Open it on the machine itself (127.0.0.1), or put a TLS proxy in front and set \
     console.behind_tls = true.";

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The session a request carries, checked; None without one.
async fn current(c: &Console, headers: &HeaderMap) -> Result<Option<(User, SessionRecord)>, Rejection> {
    let (name, _) = cookie_names(c);
    let Some(id) = cookie(headers, name).filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())) else {
        return Ok(None);
    };
    let key = key_of(id);
    let desk = c.desk().clone();
    let rec = tokio::task::spawn_blocking(move || desk.session(&key))
        .await
        .map_err(|e| Rejection::Failed(format!("reading the session failed: {e}")))?
        .map_err(|e| Rejection::Failed(format!("reading the session failed: {e}")))?;
    let Some(mut rec) = rec else { return Ok(None) };
    let now = Utc::now();
    // Use seen on this node and not yet recorded (a standby cannot write):
    // it counts against the idle limit all the same.
    rec.last_seen = rec.last_seen.max(c.seen.get(&key).unwrap_or(rec.last_seen));
    let idle = chrono::Duration::from_std(c.cfg.session_idle).unwrap_or(chrono::Duration::MAX);
    let max = chrono::Duration::from_std(c.cfg.session_max).unwrap_or(chrono::Duration::MAX);
    if !rec.live(now, idle, max) {
        return Ok(None);
    }
    let principal = match &rec.agent {
        None => Principal::Admin,
        Some(a) => Principal::Agent(a.clone()),
    };
    let cfg = c.desk().config();
    let name = match &rec.agent {
        None => "Admin".to_owned(),
        Some(id) => match cfg.agents.iter().find(|a| &a.id == id) {
            Some(a) if !a.name.is_empty() => a.name.clone(),
            Some(a) => a.id.clone(),
            None => return Ok(None),
        },
    };
    let secret = c.desk().secret();
    let current_tag = c.app.tokens.digest_of(&principal).map(|d| token_tag(secret, &d));
    if current_tag.as_deref() != Some(rec.token_tag.as_str()) {
        return Ok(None);
    }
    // Touched well within the idle limit, however short it is set.
    if now - rec.last_seen > TOUCH_EVERY.min(idle / 4) {
        let desk = c.desk().clone();
        c.seen.note(key, now, idle);
        tokio::spawn(async move {
            if let Err(e) = desk.session_op(SessionOp::Touch { key, at: now }).await {
                tracing::debug!(error = %e, "recording a session's use failed");
            }
        });
    }
    let user = User { key, agent: rec.agent.clone(), name, csrf: csrf_of(secret, id) };
    Ok(Some((user, rec)))
}

/// Whether the session these headers carry still counts (a live stream
/// asks now and then).
pub async fn still_valid(c: &Console, headers: &HeaderMap) -> bool {
    matches!(current(c, headers).await, Ok(Some(_)))
}

impl FromRequestParts<Console> for User {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<User, Rejection> {
        if !transport_ok(c, parts.extensions.get::<Arrival>()) {
            return Err(Rejection::Transport);
        }
        match current(c, &parts.headers).await? {
            Some((u, _)) => Ok(u),
            None if parts.method == axum::http::Method::GET && parts.uri.path() != "/desk/events" => {
                let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/desk/");
                Err(Rejection::SignIn(next.to_owned()))
            }
            None => Err(Rejection::Ended),
        }
    }
}

/// A signed-in admin.
pub struct AdminUser(pub User);

impl FromRequestParts<Console> for AdminUser {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<AdminUser, Rejection> {
        let u = User::from_request_parts(parts, c).await?;
        if u.is_admin() { Ok(AdminUser(u)) } else { Err(Rejection::NotAdmin) }
    }
}

/// Where to go after signing in: a console page, nothing else.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/desk/")
                && !n.contains("//")
                && !n.contains('\\')
                && n.len() < 2048
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/desk/".to_owned(),
    }
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_response(c: &Console, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let (_, login_name) = cookie_names(c);
    let login_token = random_hex();
    let chrome = Chrome::new(c, None);
    let page = views::Login { c: chrome, next: next.to_owned(), login_token: login_token.clone(), error };
    let mut r = super::pages::html(status, &page.c.nonce.clone(), page.render_page());
    r.headers_mut().append(header::SET_COOKIE, set_cookie(c, login_name, &login_token, 3600));
    r
}

pub async fn login_page(State(c): State<Console>, Query(q): Query<LoginQuery>, parts: Parts) -> Response {
    if !transport_ok(&c, parts.extensions.get::<Arrival>()) {
        return Rejection::Transport.into_response();
    }
    let next = safe_next(q.next.as_deref());
    if let Ok(Some(_)) = current(&c, &parts.headers).await {
        return Redirect::to(&next).into_response();
    }
    login_response(&c, &next, None, StatusCode::OK)
}

/// Failed sign-ins, per address and overall.
#[derive(Default)]
pub struct Limiter(Mutex<LimiterState>);

#[derive(Default)]
struct LimiterState {
    per: HashMap<Option<IpAddr>, VecDeque<Instant>>,
    all: VecDeque<Instant>,
}

impl Limiter {
    fn prune(s: &mut LimiterState, now: Instant) {
        while s.all.front().is_some_and(|t| now.duration_since(*t) > ALL_WINDOW) {
            s.all.pop_front();
        }
        s.per.retain(|_, q| {
            while q.front().is_some_and(|t| now.duration_since(*t) > ADDRESS_WINDOW) {
                q.pop_front();
            }
            !q.is_empty()
        });
    }

    /// Whether `ip` may try now.
    pub fn allowed(&self, ip: Option<IpAddr>) -> bool {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Self::prune(&mut s, Instant::now());
        s.all.len() < ALL_FAILURES && s.per.get(&ip).is_none_or(|q| q.len() < ADDRESS_FAILURES)
    }

    pub fn failed(&self, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Self::prune(&mut s, now);
        s.all.push_back(now);
        // Bounded however many addresses try: the window prunes, and a
        // flood past this many addresses counts in `all` alone.
        if s.per.len() < 10_000 || s.per.contains_key(&ip) {
            s.per.entry(ip).or_default().push_back(now);
        }
    }
}

/// The fields of a urlencoded form.
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub async fn login(State(c): State<Console>, parts: Parts, body: Bytes) -> Response {
    if !transport_ok(&c, parts.extensions.get::<Arrival>()) {
        return Rejection::Transport.into_response();
    }
    let f = Fields::parse(&body);
    let next = safe_next(f.get("next"));
    let (session_name, login_name) = cookie_names(&c);
    let sent = f.get("login_token").unwrap_or("");
    let expected = cookie(&parts.headers, login_name).unwrap_or("");
    let token_ok = !expected.is_empty() && bool::from(sent.as_bytes().ct_eq(expected.as_bytes()));
    let ip = client_ip(&c, &parts);
    if !token_ok || !c.signin.allowed(ip) {
        if token_ok {
            tracing::warn!(client = ?ip, "console sign-in refused: too many failed attempts");
        }
        return login_response(&c, &next, Some(SIGN_IN_FAILED), StatusCode::FORBIDDEN);
    }
    let presented = f.get("token").unwrap_or("").trim();
    let principal = (presented.len() <= 4096).then(|| c.app.tokens.check(presented)).flatten();
    let Some(principal) = principal else {
        c.signin.failed(ip);
        tracing::info!(client = ?ip, "console sign-in with a wrong token");
        return login_response(&c, &next, Some(SIGN_IN_FAILED), StatusCode::FORBIDDEN);
    };
    let Some(digest) = c.app.tokens.digest_of(&principal) else {
        return login_response(&c, &next, Some(SIGN_IN_FAILED), StatusCode::FORBIDDEN);
    };
    let agent = match principal {
        Principal::Admin => None,
        Principal::Agent(a) => Some(a),
    };
    let id = random_hex();
    let now = Utc::now();
    let record = SessionRecord {
        agent: agent.clone(),
        token_tag: token_tag(c.desk().secret(), &digest),
        created: now,
        last_seen: now,
        from: ip.map(|i| i.to_string()).unwrap_or_default(),
    };
    if let Err(e) = c.desk().session_op(SessionOp::Create { key: key_of(&id), record }).await {
        return super::pages::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The session could not be stored: {e}"),
        );
    }
    tracing::info!(who = agent.as_deref().unwrap_or("admin"), client = ?ip, "console sign-in");
    // Sessions that no longer count go now and then: at a sign-in.
    let desk = c.desk().clone();
    let idle = chrono::Duration::from_std(c.cfg.session_idle).unwrap_or(chrono::Duration::MAX);
    let max = chrono::Duration::from_std(c.cfg.session_max).unwrap_or(chrono::Duration::MAX);
    tokio::spawn(async move {
        if let Err(e) = desk.session_op(SessionOp::Purge { now, idle, max }).await {
            tracing::debug!(error = %e, "removing ended sessions failed");
        }
    });
    let mut r = Redirect::to(&next).into_response();
    let max_age = c.cfg.session_max.as_secs() as i64;
    r.headers_mut().append(header::SET_COOKIE, set_cookie(&c, session_name, &id, max_age));
    r.headers_mut().append(header::SET_COOKIE, set_cookie(&c, login_name, "", 0));
    r
}

pub async fn logout(State(c): State<Console>, user: User, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    if !user.token_ok(f.get("csrf")) {
        return super::pages::bad_token();
    }
    if let Err(e) = c.desk().session_op(SessionOp::End { key: user.key }).await {
        return super::pages::refused(StatusCode::SERVICE_UNAVAILABLE, &format!("Signing out failed: {e}"));
    }
    c.presence.forget(&user.key, &c.hub);
    let (session_name, _) = cookie_names(&c);
    let mut r = Redirect::to("/desk/login").into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(&c, session_name, "", 0));
    r
}

/// When each session was last used on this node, as far as the store may
/// not know it yet: on a cluster standby the writer is the leader's, so a
/// touch there fails and the session would end after `session_idle` while
/// in use. Its absolute limit and its removal (sign-out, an admin ending
/// it) still come from the store. Bounded: entries past the idle limit go.
#[derive(Default)]
pub struct Seen(Mutex<HashMap<[u8; 32], DateTime<Utc>>>);

const SEEN_MAX: usize = 10_000;

impl Seen {
    pub fn get(&self, key: &[u8; 32]) -> Option<DateTime<Utc>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied()
    }

    fn note(&self, key: [u8; 32], at: DateTime<Utc>, idle: chrono::Duration) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= SEEN_MAX {
            m.retain(|_, seen| at - *seen < idle);
        }
        if m.len() < SEEN_MAX {
            m.insert(key, at);
        }
    }
}

/// A form sent twice (a double click, a resend after a reload) acts once:
/// the second gets the first one's answer. Keys come from the page
/// (`idem`), per session; kept ten minutes. On another node, the ticket
/// version the form carries refuses the copy instead.
#[derive(Default)]
pub struct Once(Mutex<HashMap<String, (Instant, Cell)>>);

type Cell = Arc<tokio::sync::OnceCell<String>>;

const ONCE_KEEP: Duration = Duration::from_secs(600);
const ONCE_MAX: usize = 10_000;

impl Once {
    /// Runs `act` unless this session already did under `key`; the answer
    /// is where to go next (or the failure, which is not remembered).
    pub async fn run<F, Fut>(&self, user: &User, key: Option<&str>, act: F) -> Result<String, Response>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<String, Response>>,
    {
        let Some(key) = key.filter(|k| !k.is_empty() && k.len() <= 64) else { return act().await };
        let cell = {
            let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if m.len() >= ONCE_MAX {
                m.retain(|_, (at, _)| now.duration_since(*at) < ONCE_KEEP);
            }
            if m.len() >= ONCE_MAX {
                m.clear();
            }
            let k = format!("{}:{key}", hex::encode(&user.key[..8]));
            m.entry(k).or_insert_with(|| (now, Arc::new(tokio::sync::OnceCell::new()))).1.clone()
        };
        cell.get_or_try_init(act).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; ticketd_session_x=2; ticketd_session=abc"));
        assert_eq!(cookie(&h, "ticketd_session"), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn next_stays_in_the_console() {
        assert_eq!(safe_next(Some("/desk/tickets/4?x=1")), "/desk/tickets/4?x=1");
        for bad in
            ["https://evil.test/", "//evil.test/desk/", "/desk//evil", "/api/v1/tickets", "/desk/\\x", "/desk/ a"]
        {
            assert_eq!(safe_next(Some(bad)), "/desk/", "{bad}");
        }
    }

    #[test]
    fn failed_sign_ins_are_limited_per_address_and_overall() {
        let l = Limiter::default();
        let a = Some("10.0.0.1".parse().unwrap());
        for _ in 0..ADDRESS_FAILURES {
            assert!(l.allowed(a));
            l.failed(a);
        }
        assert!(!l.allowed(a), "one address is cut off");
        assert!(l.allowed(Some("10.0.0.2".parse().unwrap())), "another is not");
        for i in 0..ALL_FAILURES {
            l.failed(Some(IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8])));
        }
        assert!(!l.allowed(Some("10.0.0.3".parse().unwrap())), "past the overall limit nobody is let in");
    }

    #[test]
    fn tokens_and_tags_are_keyed() {
        assert_ne!(csrf_of(b"k1", "id"), csrf_of(b"k2", "id"));
        assert_ne!(csrf_of(b"k1", "id"), csrf_of(b"k1", "id2"));
        assert_eq!(csrf_of(b"k1", "id").len(), 32);
        assert_ne!(token_tag(b"k", &[1; 32]), token_tag(b"k", &[2; 32]));
    }
}
