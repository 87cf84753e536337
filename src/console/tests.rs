//! The console in-process over a real store (no sockets, no browser):
//! sign-in and sessions, the guards on every form, stale edits, bulk
//! changes, admin pages, the headers of every kind of response, and
//! hostile mail shown escaped. tests/console_browser.rs does it all again
//! in Chromium against the daemon and a real mail lab.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use tower::ServiceExt;

use crate::api::auth::{Principal, Token, Tokens};
use crate::api::routes::router_with;
use crate::api::{AppState, Arrival};
use crate::config::Config;
use crate::desk::{Desk, Item};
use crate::store::Store;
use crate::triage::act::Action;

const ADMIN: &str = "admin-token-0123456789abcdef";
const ALICE: &str = "alice-token-0123456789abcdef";
const ORIGIN: &str = "http://desk.test";

struct World {
    _dir: tempfile::TempDir,
    desk: Desk,
    app: axum::Router,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The value of hidden field `name` (the first one).
    fn field(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let at = self.body.find(&needle).unwrap_or_else(|| panic!("no field {name} in {}", self.body));
        let rest = &self.body[at + needle.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

fn config(dir: &std::path::Path, console: &str) -> Arc<Config> {
    std::fs::write(dir.join("token"), format!("{ADMIN}\n")).unwrap();
    let toml = format!(
        "[store]\npath = \"{0}/db\"\n[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n[[mailboxes]]\nname = \"support\"\naddress = \"support@example.test\"\nhost = \"127.0.0.1\"\ntls = \"none\"\npassword = \"x\"\n[[agents]]\nid = \"agent_alice\"\nemail = \"alice@example.test\"\nname = \"Alice\"\n[[agents]]\nid = \"agent_bob\"\nemail = \"bob@example.test\"\nname = \"Bob\"\n[api]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{0}/token\"\n{console}\n",
        dir.display()
    );
    let p = dir.join("c.toml");
    std::fs::write(&p, toml).unwrap();
    Arc::new(Config::load_with_env(&p, Some(Default::default())).unwrap())
}

/// The API's router with the console's routes, on `desk`.
fn app(desk: Desk, cfg: Arc<Config>) -> axum::Router {
    let api = cfg.api.clone().unwrap();
    let tokens = Tokens::from_values(vec![
        (Token::new(ADMIN), Principal::Admin),
        (Token::new(ALICE), Principal::Agent("agent_alice".into())),
    ]);
    let st = AppState {
        desk,
        tokens: Arc::new(tokens),
        permits: Arc::new(tokio::sync::Semaphore::new(api.concurrency)),
        api: Arc::new(api),
        listeners: Default::default(),
    };
    router_with(st.clone(), super::router(st, tokio_util::sync::CancellationToken::new()))
}

async fn world(console: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), console);
    let desk = Desk::open(cfg.clone(), false).expect("open the desk").desk;
    let app = app(desk.clone(), cfg);
    World { _dir: dir, desk, app }
}

fn mail(from: &str, id: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

impl World {
    async fn ingest(&self, uid: u32, raw: Vec<u8>) {
        let r = self.desk.ingest("support", 1, vec![Item::Mail { uid, raw }]).await;
        assert_eq!(r.done, vec![uid], "{:?}", r.error);
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Reply { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn get(&self, uri: &str, cookie: Option<&str>) -> Reply {
        let mut req = Request::builder().method(Method::GET).uri(uri).header(header::HOST, "desk.test");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, uri: &str, cookie: Option<&str>, origin: Option<&str>, form: &[(&str, &str)]) -> Reply {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::HOST, "desk.test")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    /// Signs in with `token`; the cookie header to send from then on.
    async fn sign_in(&self, token: &str) -> String {
        let page = self.get("/desk/login?next=/desk/", None).await;
        assert_eq!(page.status, StatusCode::OK);
        let login_cookie = set_cookie(&page.headers, "ticketd_login");
        let lt = page.field("login_token");
        let r = self
            .post(
                "/desk/login",
                Some(&login_cookie),
                Some(ORIGIN),
                &[("login_token", &lt), ("token", token), ("next", "/desk/")],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        set_cookie(&r.headers, "ticketd_session")
    }
}

/// As the templates escape text.
fn esc(s: &str) -> String {
    askama::filters::escape(s, askama::filters::Html).unwrap().to_string()
}

/// `name=value` of the Set-Cookie named `name`.
fn set_cookie(h: &HeaderMap, name: &str) -> String {
    h.get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no cookie {name} in {h:?}"))
}

fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let b = "XyZboundary42";
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    if let Some((name, ctype, bytes)) = file {
        out.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), out)
}

#[tokio::test]
async fn a_token_buys_a_session_that_never_opens_the_api() {
    let w = world("").await;
    w.ingest(1, mail("Carla Customer <carla@customer.test>", "m1@c.test", "Printer on fire", "It smokes.")).await;
    let r = w.get("/desk/", None).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/desk/login?next=%2Fdesk%2F"));
    let page = w.get("/desk/login", None).await;
    for name in ["<label for=\"token\">Token</label>", ">Sign in</button>"] {
        assert!(page.body.contains(name), "{name} in {}", page.body);
    }
    let login_cookie = set_cookie(&page.headers, "ticketd_login");
    let lt = page.field("login_token");
    let w = &w;
    let try_with = |token: &'static str, origin: Option<&'static str>, lt: String, cookie: String| async move {
        w.post("/desk/login", Some(&cookie), origin, &[("login_token", &lt), ("token", token)]).await
    };
    let r = try_with(ALICE, None, lt.clone(), login_cookie.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no Origin: refused");
    let r = try_with(ALICE, Some(ORIGIN), "forged".into(), login_cookie.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a login form from elsewhere");
    let wrong = try_with("wrong-token-0123456789abcdef", Some(ORIGIN), lt.clone(), login_cookie.clone()).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.body.contains(super::session::SIGN_IN_FAILED));
    let ok = try_with(ALICE, Some(ORIGIN), lt, login_cookie).await;
    assert_eq!((ok.status, ok.location()), (StatusCode::SEE_OTHER, "/desk/"));
    let raw = ok.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
    let session = raw.iter().find(|c| c.starts_with("ticketd_session=")).unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
        assert!(session.contains(attr), "{attr} in {session}");
    }
    assert!(!session.contains("Secure"), "plain http on loopback: {session}");
    let cookie = session.split(';').next().unwrap().to_owned();
    let id = cookie.split_once('=').unwrap().1;
    // Stored by its hash only.
    let stored = w.desk.sessions().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, super::session::key_of(id));
    assert_eq!(stored[0].1.agent.as_deref(), Some("agent_alice"));

    let q = w.get("/desk/", Some(&cookie)).await;
    assert_eq!(q.status, StatusCode::OK);
    for want in ["Printer on fire", "Carla Customer", "carla@customer.test", "#1", "It smokes."] {
        assert!(q.body.contains(want), "{want} in the queue");
    }
    // The cookie is no bearer token.
    let api = w.get("/api/v1/tickets", Some(&cookie)).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);

    let csrf = q.field("csrf");
    let out = w.post("/desk/logout", Some(&cookie), Some(ORIGIN), &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.location()), (StatusCode::SEE_OTHER, "/desk/login"));
    assert!(w.desk.sessions().unwrap().is_empty());
    assert_eq!(w.get("/desk/", Some(&cookie)).await.status, StatusCode::SEE_OTHER, "signed out");
}

#[tokio::test]
async fn every_change_needs_our_origin_and_the_sessions_token() {
    let w = world("").await;
    w.ingest(1, mail("carla@customer.test", "m1@c.test", "Help", "Hi")).await;
    let cookie = w.sign_in(ALICE).await;
    let page = w.get("/desk/tickets/1", Some(&cookie)).await;
    let (csrf, version) = (page.field("csrf"), page.field("version"));
    let note = |origin: Option<&'static str>, token: String| {
        let (cookie, version) = (cookie.clone(), version.clone());
        let w = &w;
        async move {
            w.post(
                "/desk/tickets/1/note",
                Some(&cookie),
                origin,
                &[("csrf", &token), ("version", &version), ("text", "psst")],
            )
            .await
        }
    };
    assert_eq!(note(Some("https://evil.test"), csrf.clone()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(note(Some("http://desk.test:8080"), csrf.clone()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(note(None, csrf.clone()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(note(Some(ORIGIN), "0".repeat(32)).await.status, StatusCode::FORBIDDEN);
    let cross = w
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/desk/tickets/1/note")
                .header(header::HOST, "desk.test")
                .header(header::ORIGIN, ORIGIN)
                .header("sec-fetch-site", "cross-site")
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("csrf={csrf}&version={version}&text=x")))
                .unwrap(),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(w.desk.ticket(1).unwrap().unwrap().ticket.threads.iter().all(|e| !e.internal), "nothing was stored");
    let ok = note(Some(ORIGIN), csrf).await;
    assert_eq!((ok.status, ok.location()), (StatusCode::SEE_OTHER, "/desk/tickets/1?done=note"));
    let t = w.desk.ticket(1).unwrap().unwrap().ticket;
    let last = t.threads.last().unwrap();
    assert_eq!((last.author.as_str(), last.message.as_str(), last.internal), ("agent_alice", "psst", true));
    assert!(
        w.desk.outbox(false).unwrap().iter().all(|o| o.kind != crate::outbox::OutKind::Relay),
        "a note goes to no customer"
    );
    let shown = w.get("/desk/tickets/1?done=note", Some(&cookie)).await.body;
    assert!(shown.contains("entry internal") && shown.contains("Internal note"), "internal is unmistakable");
}

#[tokio::test]
async fn a_stale_reply_is_refused_with_the_draft_kept_and_a_double_send_acts_once() {
    let w = world("").await;
    w.ingest(1, mail("carla@customer.test", "m1@c.test", "Help", "Hi")).await;
    let cookie = w.sign_in(ALICE).await;
    let page = w.get("/desk/tickets/1", Some(&cookie)).await;
    for name in [
        "<label for=\"reply-text\">Reply</label>",
        ">Send reply</button>",
        ">Internal note</label>",
        ">Add note</button>",
        ">Status</label>",
        ">Priority</label>",
        ">Assignee</label>",
        ">Save</button>",
        "<span class=\"num\">#1</span> Help",
    ] {
        assert!(page.body.contains(name), "{name}");
    }
    let (csrf, version, idem) = (page.field("csrf"), page.field("version"), page.field("idem"));
    // Meanwhile the customer writes again (any change bumps the version).
    w.desk
        .act(
            1,
            crate::desk::ActorRef::Agent("agent_bob".into()),
            vec![Action::Note { text: "looking".into() }],
            vec![],
            None,
        )
        .await
        .unwrap();
    let send = |version: String, idem: String, text: &'static str| {
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        let w = &w;
        async move {
            let (ct, body) = multipart(
                &[("csrf", &csrf), ("version", &version), ("idem", &idem), ("text", text)],
                Some(("log.txt", "text/plain", b"ERROR 42")),
            );
            let req = Request::builder()
                .method(Method::POST)
                .uri("/desk/tickets/1/reply")
                .header(header::HOST, "desk.test")
                .header(header::ORIGIN, ORIGIN)
                .header(header::COOKIE, cookie)
                .header(header::CONTENT_TYPE, ct)
                .body(Body::from(body))
                .unwrap();
            w.send(req).await
        }
    };
    let stale = send(version, idem.clone(), "Please <b>unplug</b> it.").await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(stale.body.contains("changed while you were working on it"), "{}", stale.body);
    let area = &stale.body[stale.body.find("id=\"reply-text\"").unwrap()..];
    assert!(
        area.contains(&format!("{}</textarea>", esc("Please <b>unplug</b> it."))),
        "the draft is kept, escaped: {}",
        &area[..200]
    );
    let fresh = stale.field("version");
    let idem2 = stale.field("idem");
    let (a, b) = tokio::join!(send(fresh.clone(), idem2.clone(), "Unplug it."), send(fresh, idem2, "Unplug it."));
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/desk/tickets/1?done=reply"));
    assert_eq!((b.status, b.location()), (StatusCode::SEE_OTHER, "/desk/tickets/1?done=reply"), "{}", b.body);
    let t = w.desk.ticket(1).unwrap().unwrap().ticket;
    let replies: Vec<_> =
        t.threads.iter().filter(|e| e.kind == crate::ticket::ThreadType::Agent && !e.internal).collect();
    assert_eq!(replies.len(), 1, "sent once");
    assert_eq!(t.attachments.last().unwrap().filename, "log.txt");
    let relays = w.desk.outbox(false).unwrap().into_iter().filter(|o| o.kind == crate::outbox::OutKind::Relay).count();
    assert_eq!(relays, 1);
}

#[tokio::test]
async fn fields_tags_and_bulk_changes_go_through_the_rules() {
    let w = world("").await;
    for i in 1..=3 {
        w.ingest(i, mail("carla@customer.test", &format!("m{i}@c.test"), &format!("Case {i}"), "Hi")).await;
    }
    let cookie = w.sign_in(ALICE).await;
    let page = w.get("/desk/tickets/2", Some(&cookie)).await;
    let (csrf, version, idem) = (page.field("csrf"), page.field("version"), page.field("idem"));
    let r = w
        .post(
            "/desk/tickets/2/fields",
            Some(&cookie),
            Some(ORIGIN),
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("idem", &idem),
                ("status", "pending"),
                ("priority", "high"),
                ("category", "general"),
                ("assignee", "agent_bob"),
                ("resolution", ""),
            ],
        )
        .await;
    assert_eq!(r.location(), "/desk/tickets/2?done=fields", "{}", r.body);
    let t = w.desk.ticket(2).unwrap().unwrap().ticket;
    assert_eq!(
        (t.status.as_str(), t.priority.as_str(), t.assigned_to.as_deref()),
        ("pending", "high", Some("agent_bob"))
    );
    assert!(t.threads.iter().any(|e| e.message == "status open → pending by agent_alice"), "the same words as email");
    // The old version again: refused.
    let stale = w
        .post(
            "/desk/tickets/2/fields",
            Some(&cookie),
            Some(ORIGIN),
            &[("csrf", &csrf), ("version", &version), ("status", "closed")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    for (k, v) in [("add", "vip, printer"), ("remove", "printer")] {
        let r = w.post("/desk/tickets/2/tags", Some(&cookie), Some(ORIGIN), &[("csrf", &csrf), (k, v)]).await;
        assert_eq!(r.location(), "/desk/tickets/2?done=tags");
    }
    assert_eq!(w.desk.ticket(2).unwrap().unwrap().ticket.tags, vec!["vip".to_owned()]);

    let q = w.get("/desk/", Some(&cookie)).await;
    let r = w
        .post(
            "/desk/bulk",
            Some(&cookie),
            Some(ORIGIN),
            &[
                ("csrf", &q.field("csrf")),
                ("back", "/desk/?sort=newest"),
                ("t", "1"),
                ("t", "3"),
                ("assignee", "agent_alice"),
                ("priority", "urgent"),
                ("tag_add", "batch"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/desk/?sort=newest&done=bulk-2", "{}", r.body);
    for n in [1, 3] {
        let t = w.desk.ticket(n).unwrap().unwrap().ticket;
        assert_eq!(
            (t.assigned_to.as_deref(), t.priority.as_str(), t.tags.clone()),
            (Some("agent_alice"), "urgent", vec!["batch".to_owned()])
        );
    }
    let mine = w.get("/desk/?assignee=agent_alice", Some(&cookie)).await;
    assert!(mine.body.contains("Changed") || mine.body.contains("Case 1"));
    assert!(mine.body.contains("Case 3") && !mine.body.contains(">Case 2<"), "{}", mine.body);
    let too_many: Vec<(&str, String)> = (1..=101).map(|i| ("t", i.to_string())).collect();
    let mut form: Vec<(&str, &str)> = too_many.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let csrf_q = q.field("csrf");
    form.extend([("csrf", csrf_q.as_str()), ("status", "closed")]);
    let r = w.post("/desk/bulk", Some(&cookie), Some(ORIGIN), &form).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("At most 100 tickets"));
}

#[tokio::test]
async fn admin_pages_are_the_admins_and_an_admin_ends_an_agents_sessions() {
    let w = world("").await;
    let alice = w.sign_in(ALICE).await;
    assert_eq!(w.get("/desk/admin", Some(&alice)).await.status, StatusCode::FORBIDDEN);
    let admin = w.sign_in(ADMIN).await;
    let page = w.get("/desk/admin", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    for want in ["Quarantine", "Outbox", "Mailboxes, as /readyz sees them", "support", "Console sessions", "Alice"] {
        assert!(page.body.contains(want), "{want}");
    }
    let r = w
        .post(
            "/desk/admin/sessions/end",
            Some(&admin),
            Some(ORIGIN),
            &[("csrf", &page.field("csrf")), ("agent", "agent_alice")],
        )
        .await;
    assert_eq!(r.location(), "/desk/admin?done=ended-1");
    assert_eq!(w.get("/desk/", Some(&alice)).await.status, StatusCode::SEE_OTHER, "alice is signed out");
    assert_eq!(w.get("/desk/", Some(&admin)).await.status, StatusCode::OK, "the admin is not");
}

#[tokio::test]
async fn sessions_need_loopback_or_tls_and_tls_cookies_are_host_only() {
    let w = world("").await;
    let mut req =
        Request::builder().uri("/desk/login").header(header::HOST, "10.0.0.5:8025").body(Body::empty()).unwrap();
    req.extensions_mut().insert(Arrival { local: "10.0.0.5:8025".into(), peer: Some("10.0.0.9".parse().unwrap()) });
    let r = w.send(req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("behind_tls"), "{}", r.body);

    let w = world("[console]\nbehind_tls = true\nsession_idle = \"1s\"\nsession_max = \"1h\"\n").await;
    let page = w.get("/desk/login", None).await;
    let login =
        page.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert!(login[0].starts_with("__Host-ticketd_login=") && login[0].contains("; Secure"), "{login:?}");
    assert!(page.headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
    let lt = page.field("login_token");
    let cookie = login[0].split(';').next().unwrap().to_owned();
    let r = w
        .post("/desk/login", Some(&cookie), Some("https://desk.test"), &[("login_token", &lt), ("token", ALICE)])
        .await;
    let session = set_cookie(&r.headers, "__Host-ticketd_session");
    assert_eq!(w.get("/desk/", Some(&session)).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(w.get("/desk/", Some(&session)).await.status, StatusCode::SEE_OTHER, "idle too long");
}

#[tokio::test]
async fn a_session_in_use_stays_signed_in_where_its_use_cannot_be_recorded() {
    // As on a cluster standby: the session is read from the store, but
    // touching it (a write) fails. Its use on this node still counts
    // against the idle limit; idle, it still ends.
    let w = world("[console]\nsession_idle = \"2s\"\nsession_max = \"1h\"\n").await;
    let cookie = w.sign_in(ALICE).await;
    w.desk.end_run().await.unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(5) {
        assert_eq!(w.get("/desk/", Some(&cookie)).await.status, StatusCode::OK, "in use at {:?}", started.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(w.get("/desk/", Some(&cookie)).await.status, StatusCode::SEE_OTHER, "idle too long");
}

#[tokio::test]
async fn sign_ins_are_limited_with_one_answer() {
    let w = world("").await;
    let page = w.get("/desk/login", None).await;
    let cookie = set_cookie(&page.headers, "ticketd_login");
    let lt = page.field("login_token");
    for _ in 0..10 {
        let r = w
            .post(
                "/desk/login",
                Some(&cookie),
                Some(ORIGIN),
                &[("login_token", &lt), ("token", "guess-0123456789abcdef")],
            )
            .await;
        assert!(r.body.contains(super::session::SIGN_IN_FAILED));
    }
    let r = w.post("/desk/login", Some(&cookie), Some(ORIGIN), &[("login_token", &lt), ("token", ALICE)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the right token too, for a while");
    assert!(r.body.contains(super::session::SIGN_IN_FAILED));
}

#[tokio::test]
async fn every_response_carries_the_policy_and_hostile_mail_stays_text() {
    let w = world("").await;
    let hostile = "From: \"<img src=x onerror=alert(2)>\" <evil@attacker.test>\r\nTo: support@example.test\r\nSubject: \"><svg onload=alert(1)><script>alert(3)</script>\r\nMessage-ID: <h1@a.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hi <a href=\"javascript:alert(4)\">x</a><img src=\"http://127.0.0.1:9/pixel.gif\"><script>alert(5)</script></p>\r\n--b\r\nContent-Type: application/javascript\r\nContent-Disposition: attachment; filename=\"x\\\"><img src=y onerror=alert(6)>.js\"\r\n\r\nalert(7)\r\n--b--\r\n";
    w.ingest(1, hostile.as_bytes().to_vec()).await;
    let cookie = w.sign_in(ALICE).await;
    for uri in ["/desk/", "/desk/tickets/1", "/desk/tickets/1/entries/0/original"] {
        let r = w.get(uri, Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
        assert!(r.body.contains(&format!("nonce=\"{nonce}\"></script>")), "{uri}: the script carries the nonce");
        assert_eq!(r.body.matches("<script").count(), 1, "{uri}: our one script, nothing else");
        // Mail text may say anything; as markup, none of it reaches the page.
        for bad in ["<svg", "<img", "<a href=\"javascript"] {
            assert!(!r.body.contains(bad), "{uri}: {bad} reached the page");
        }
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            csp.contains("frame-ancestors 'none'")
                && csp.contains("base-uri 'none'")
                && csp.contains("form-action 'self'")
        );
    }
    let original = w.get("/desk/tickets/1/entries/0/original", Some(&cookie)).await;
    assert!(original.body.contains("1 remote image(s) blocked"), "{}", original.body);
    assert!(original.body.contains("sandbox referrerpolicy"), "a frame without any permission");
    let frame = w.get("/desk/tickets/1/entries/0/body", Some(&cookie)).await;
    assert_eq!(frame.headers[header::CONTENT_SECURITY_POLICY], super::guard::MAIL_POLICY);
    assert_eq!(frame.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    for bad in ["<script", "javascript:", "127.0.0.1:9", "onerror"] {
        assert!(!frame.body.contains(bad), "{bad} in the frame: {}", frame.body);
    }
    let redirect = w.get("/desk/", None).await;
    assert_eq!(redirect.headers[header::CONTENT_SECURITY_POLICY], super::guard::BASE_POLICY);
    let q = w.get("/desk/", Some(&cookie)).await;
    assert!(q.body.contains(&esc("\"><svg onload=alert(1)>")), "the subject is shown as text");
    // The JSON API's raw mail is sandboxed too.
    let req = Request::builder()
        .uri("/api/v1/tickets/1/raw")
        .header(header::AUTHORIZATION, format!("Bearer {ALICE}"))
        .body(Body::empty())
        .unwrap();
    let raw = w.send(req).await;
    assert_eq!(raw.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(raw.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("sandbox"));
    // The script and the stylesheet are ours, kept for good.
    let js = w.get(super::assets::js_url(), None).await;
    assert_eq!(js.headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert!(js.headers[header::CACHE_CONTROL].to_str().unwrap().contains("immutable"));
}

#[tokio::test]
async fn the_event_stream_says_hello_then_passes_on_the_writers_changes() {
    let w = world("").await;
    w.ingest(1, mail("carla@customer.test", "m1@c.test", "Help", "Hi")).await;
    let cookie = w.sign_in(ALICE).await;
    let req = Request::builder()
        .uri("/desk/events")
        .header(header::HOST, "desk.test")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let res = w.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = res.into_body().into_data_stream();
    use futures::StreamExt;
    let first = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("event: hello"), "{first}");
    w.desk
        .act(1, crate::desk::ActorRef::Admin, vec![Action::Priority(crate::ticket::Priority::High)], vec![], None)
        .await
        .unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), body.next()).await.unwrap().unwrap().unwrap();
    let next = String::from_utf8(next.to_vec()).unwrap();
    assert!(next.contains("event: tickets") && next.contains("\"tickets\":[1]"), "{next}");
    let anon = w.get("/desk/events", None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}

/// The numbers of the queue's rows, in order.
fn rows(page: &str) -> Vec<u64> {
    page.split("<tr id=\"t").skip(1).filter_map(|s| s.split('"').next()?.parse().ok()).collect()
}

#[tokio::test]
async fn due_times_show_and_the_queue_filters_them_as_the_api_does() {
    let w = world("[[sla]]\npriority = \"medium\"\nfirst_response = \"1h\"\nresolution = \"8h\"\n").await;
    w.ingest(1, mail("carla@customer.test", "m1@c.test", "Help", "Hi")).await;
    w.ingest(2, mail("dan@customer.test", "m2@c.test", "Later", "Hi")).await;
    w.desk
        .act(2, crate::desk::ActorRef::Admin, vec![Action::Priority(crate::ticket::Priority::Low)], vec![], None)
        .await
        .unwrap();
    let cookie = w.sign_in(ALICE).await;
    let q = w.get("/desk/", Some(&cookie)).await;
    assert!(q.body.contains(">Due</th>"), "a due column");
    assert!(q.body.contains("class=\"due due-soon\""), "#1 is due within the hour: {}", q.body);
    assert!(q.body.contains("data-view=\"soon\">Due soon <span class=\"count\">1</span>"));
    assert!(q.body.contains("data-view=\"overdue\">Overdue <span class=\"count\">0</span>"));
    assert_eq!(rows(&w.get("/desk/?due=soon", Some(&cookie)).await.body), vec![1]);
    assert_eq!(rows(&w.get("/desk/?due=overdue", Some(&cookie)).await.body), Vec::<u64>::new());
    assert_eq!(rows(&w.get("/desk/?due=soon&within=10m", Some(&cookie)).await.body), Vec::<u64>::new());
    assert_eq!(rows(&w.get("/desk/?sort=due", Some(&cookie)).await.body), vec![1, 2], "due first");

    // Two hours on, #1 is overdue: the console and the API's list agree.
    let later = chrono::Utc::now() + chrono::TimeDelta::hours(2);
    let f = super::queue::Filter::parse(Some("due=overdue"));
    let found = super::queue::run(&w.desk, &f, None, later, super::queue::PAGE).unwrap();
    assert_eq!((found.numbers.clone(), found.counts.overdue), (vec![1], 1));
    let api = crate::desk::views::TicketQuery {
        due: Some(crate::desk::views::DueFilter::Overdue),
        as_of: Some(later),
        ..Default::default()
    };
    let listed: Vec<u64> = w.desk.list(&api).unwrap().tickets.iter().filter_map(|t| t.number).collect();
    assert_eq!(listed, found.numbers);
    assert_eq!(super::queue::Filter::parse(Some("within=2h&due=soon")).href(None), "/desk/?due=soon&within=120m");

    let t = w.get("/desk/tickets/1", Some(&cookie)).await.body;
    assert!(t.contains("First response due <time") && t.contains("Resolution due <time"), "{t}");
    let t2 = w.get("/desk/tickets/2", Some(&cookie)).await.body;
    assert!(!t2.contains("First response due"), "no target for low priority");

    // Pending, the clocks stand still: the page says so, not "in 59 min".
    w.desk
        .act(1, crate::desk::ActorRef::Admin, vec![Action::Status(crate::ticket::Status::Pending)], vec![], None)
        .await
        .unwrap();
    let t = w.get("/desk/tickets/1", Some(&cookie)).await.body;
    assert!(t.contains("class=\"due due-paused\"") && t.contains("(paused while pending)"), "{t}");
    assert!(!t.contains("due-soon"), "{t}");
}

#[tokio::test]
async fn a_merge_goes_through_the_desks_merge_and_the_merged_ticket_says_where() {
    let w = world("").await;
    w.ingest(1, mail("carla@customer.test", "m1@c.test", "Printer", "It smokes.")).await;
    w.ingest(2, mail("carla@customer.test", "m2@c.test", "Printer again", "Still smoking.")).await;
    let cookie = w.sign_in(ALICE).await;
    let page = w.get("/desk/tickets/2", Some(&cookie)).await;
    assert!(
        page.body.contains("<label for=\"merge-into\">Merge into ticket</label>")
            && page.body.contains(">Merge</button>")
    );
    let (csrf, version) = (page.field("csrf"), page.field("version"));
    let merge = |into: &'static str, version: String| {
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        let w = &w;
        async move {
            w.post(
                "/desk/tickets/2/merge",
                Some(&cookie),
                Some(ORIGIN),
                &[("csrf", &csrf), ("version", &version), ("into", into)],
            )
            .await
        }
    };
    let bad = merge("soon", version.clone()).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("by its number"), "{}", bad.body);
    let itself = merge("2", version.clone()).await;
    assert_eq!(itself.status, StatusCode::BAD_REQUEST, "the rules refuse: {}", itself.body);
    let stale = merge("#1", "0".into()).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    let ok = merge("#1", version).await;
    assert_eq!((ok.status, ok.location()), (StatusCode::SEE_OTHER, "/desk/tickets/1?done=merged-2"));
    let rec = w.desk.ticket(2).unwrap().unwrap();
    assert_eq!((rec.merged_into, rec.ticket.status), (Some(1), crate::ticket::Status::Closed));
    let kept = w.get(ok.location(), Some(&cookie)).await.body;
    assert!(kept.contains("Ticket #2 was merged into this one.") && kept.contains("Still smoking."));
    let gone = w.get("/desk/tickets/2", Some(&cookie)).await.body;
    assert!(gone.contains("Merged into <a href=\"/desk/tickets/1\">#1</a>"), "{gone}");
    assert!(!gone.contains("merge-into"), "no second merge");
    let q = w.get("/desk/?status=any", Some(&cookie)).await.body;
    assert_eq!(rows(&q).len(), 2);
}

#[tokio::test]
async fn the_admin_releases_and_drops_held_spam_and_keeps_the_blocklist() {
    let w = world("[spam]\nblock = [\"@junk.test\"]\n").await;
    w.ingest(1, mail("Offers <offers@junk.test>", "s1@junk.test", "Cheap <b>printers</b>", "Buy now")).await;
    w.ingest(2, mail("offers@junk.test", "s2@junk.test", "Cheap ink", "Buy more")).await;
    let held = w.desk.spam().unwrap();
    assert_eq!(held.len(), 2, "a blocked sender's mail is held");
    let alice = w.sign_in(ALICE).await;
    assert_eq!(w.get("/desk/admin/spam/1", Some(&alice)).await.status, StatusCode::FORBIDDEN);
    let admin = w.sign_in(ADMIN).await;
    let page = w.get("/desk/admin", Some(&admin)).await;
    for want in [
        "Spam <span class=\"count\">2 held</span>",
        &esc("Cheap <b>printers</b>"),
        "Release spam entry",
        "Drop spam entry",
        "@junk.test",
        "in the config",
        "<label for=\"block-entry\">Block address or domain</label>",
    ] {
        assert!(page.body.contains(want), "{want} in {}", page.body);
    }
    let csrf = page.field("csrf");
    let (first, second) = (held[0].id, held[1].id);
    let entry = w.get(&format!("/desk/admin/spam/{first}"), Some(&admin)).await;
    assert!(entry.status == StatusCode::OK && entry.body.contains("Buy now"));
    let r = w.post(&format!("/desk/admin/spam/{first}/release"), Some(&admin), Some(ORIGIN), &[("csrf", &csrf)]).await;
    assert!(r.location().starts_with("/desk/admin?done="), "{}", r.body);
    let r = w.post(&format!("/desk/admin/spam/{second}/drop"), Some(&admin), Some(ORIGIN), &[("csrf", &csrf)]).await;
    assert_eq!(r.location(), "/desk/admin?done=dropped");
    assert!(w.desk.spam().unwrap().is_empty());

    let add = |entry: &'static str| {
        let (admin, csrf) = (admin.clone(), csrf.clone());
        let w = &w;
        async move {
            w.post("/desk/admin/blocklist", Some(&admin), Some(ORIGIN), &[("csrf", &csrf), ("entry", entry)]).await
        }
    };
    assert_eq!(add("nope").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(add("Spammer@Bad.test").await.location(), "/desk/admin?done=blocked");
    let page = w.get("/desk/admin", Some(&admin)).await.body;
    assert!(page.contains("Unblock spammer@bad.test") && page.contains("by Admin"), "{page}");
    let r = w
        .post(
            "/desk/admin/blocklist/remove",
            Some(&admin),
            Some(ORIGIN),
            &[("csrf", &csrf), ("entry", "spammer@bad.test")],
        )
        .await;
    assert_eq!(r.location(), "/desk/admin?done=unblocked");
    assert!(w.desk.blocklist().unwrap().iter().all(|b| b.entry != "spammer@bad.test"));
}

#[tokio::test]
async fn a_page_asks_for_its_tickets_version_alone() {
    let w = world("").await;
    w.ingest(1, mail("carla@customer.test", "m1@c.test", "Help", "Hi")).await;
    let cookie = w.sign_in(ALICE).await;
    let v = w.get("/desk/tickets/1/version", Some(&cookie)).await;
    assert_eq!(v.status, StatusCode::OK);
    let before: serde_json::Value = serde_json::from_str(&v.body).unwrap();
    w.desk
        .act(1, crate::desk::ActorRef::Admin, vec![Action::Priority(crate::ticket::Priority::High)], vec![], None)
        .await
        .unwrap();
    let after: serde_json::Value =
        serde_json::from_str(&w.get("/desk/tickets/1/version", Some(&cookie)).await.body).unwrap();
    assert_eq!(after["version"].as_u64(), Some(before["version"].as_u64().unwrap() + 1));
    assert_eq!(w.get("/desk/tickets/9/version", Some(&cookie)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(w.get("/desk/tickets/1/version", None).await.status, StatusCode::SEE_OTHER, "signed in only");
}

/// A standby of a cluster (on the PostgreSQL lab): it shows the desk, and a
/// change gets a page that names the leader instead of a 403 from the
/// leader's origin check; presence stays on the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_shows_the_desk_and_answers_a_change_with_the_leaders_address() {
    use crate::store::postgres::{LeaderInfo, PgSettings, PostgresBackend};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let (backend, node) = tokio::task::spawn_blocking(|| {
        let lab = crate::store::postgres::lab::PgLab::shared().unwrap();
        let db = lab.fresh_db("console").unwrap();
        let backend = Arc::new(PostgresBackend::open(PgSettings::from_url(&lab.url(&db), "n2").unwrap()).unwrap());
        let cluster = crate::config::ClusterConfig {
            node: "n2".into(),
            advertise: Some("http://10.0.0.12:8025".into()),
            lease_timeout: std::time::Duration::from_secs(10),
            forward: true,
        };
        let node = Arc::new(crate::cluster::Node::new(&cluster, backend.clone()));
        node.set_leader(LeaderInfo {
            node: Some("n1".into()),
            advertise: Some("http://10.0.0.11:8025".into()),
            epoch: 3,
            heartbeat_age: None,
            held: true,
        });
        (backend, node)
    })
    .await
    .unwrap();
    let store = Store::with_backend(backend);
    let desk = Desk::standby(cfg.clone(), store, b"0123456789abcdef0123".to_vec(), Default::default(), node).unwrap();
    let app = app(desk.clone(), cfg);
    let w = World { _dir: dir, desk, app };
    let page = w.get("/desk/login", None).await;
    assert_eq!(page.status, StatusCode::OK, "pages are served");
    let r = w
        .post(
            "/desk/login",
            Some(&set_cookie(&page.headers, "ticketd_login")),
            Some(ORIGIN),
            &[("login_token", &page.field("login_token")), ("token", ALICE)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains("the leader is n1") && r.body.contains("http://10.0.0.11:8025/desk/"), "{}", r.body);
    assert!(r.headers.contains_key(header::CONTENT_SECURITY_POLICY));
    let cross = w.post("/desk/login", None, Some("https://evil.test"), &[]).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "the origin check comes first");
    let beat = w.post("/desk/tickets/1/presence", None, Some(ORIGIN), &[("state", "viewing")]).await;
    assert_eq!(beat.status, StatusCode::UNAUTHORIZED, "presence is this node's: no session, not the leader's");
    assert!(!crate::api::forward::needs_leader(&Method::POST, "/desk/tickets/1/note"));
}
