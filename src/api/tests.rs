//! The router in-process over a real store (no sockets): auth, the error
//! shapes, the PATCH rules, attachments, and the OpenAPI document against
//! the route table. The lab tests (tests/api.rs) do the same over the wire.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::AppState;
use super::auth::{Principal, Token, Tokens};
use super::routes::{route_table, router};
use crate::desk::{ActorRef, Desk, Item};
use crate::testkit::{AgentKeys, ApiKeys, TestConfig};
use crate::triage::act::Action;

const ADMIN: &str = "admin-token-0123456789abcdef";
const ALICE: &str = "alice-token-0123456789abcdef";

struct World {
    _dir: tempfile::TempDir,
    desk: Desk,
    app: axum::Router,
}

/// The router over a fresh test desk with Alice and Bob, the API's admin
/// token and Alice's; `edit` changes the config first.
async fn world(edit: impl FnOnce(&mut TestConfig)) -> World {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), format!("{ADMIN}\n")).unwrap();
    let cfg = TestConfig::new(dir.path())
        .with(|c| {
            c.agents.push(AgentKeys::new("agent_bob", "bob@example.test", "Bob"));
            c.api = Some(ApiKeys::new("127.0.0.1:0", dir.path().join("token")));
        })
        .with(edit)
        .load();
    let api = cfg.api.clone().unwrap();
    let desk = Desk::open(Arc::new(cfg), false).unwrap().desk;
    let tokens = Tokens::from_values(vec![
        (Token::new(ADMIN), Principal::Admin),
        (Token::new(ALICE), Principal::Agent("agent_alice".into())),
    ]);
    let app = router(AppState {
        desk: desk.clone(),
        tokens: Arc::new(tokens),
        permits: Arc::new(tokio::sync::Semaphore::new(api.concurrency)),
        api: Arc::new(api),
        listeners: Default::default(),
    });
    World { _dir: dir, desk, app }
}

const MAIL: &str = "From: Carla <carla@customer.test>\r\nTo: support@example.test\r\nSubject: Printer on fire\r\nMessage-ID: <m1@c.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nIt smokes.\r\n--b\r\nContent-Type: text/plain; name=\"log file.txt\"\r\nContent-Disposition: attachment; filename=\"log file.txt\"\r\n\r\nERROR 42\r\n--b--\r\n";

impl World {
    async fn ingest(&self) {
        let r = self.desk.ingest("support", 1, vec![Item::Mail { uid: 1, raw: MAIL.as_bytes().to_vec() }]).await;
        assert_eq!(r.done, vec![1], "{:?}", r.error);
    }

    async fn call(&self, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let (s, h, b) =
            self.raw(method, uri, token, &[], body.map(|b| ("application/json", b.to_string().into_bytes()))).await;
        let v = if h.get(header::CONTENT_TYPE).is_some_and(|c| c.to_str().unwrap().starts_with("application/json")) {
            serde_json::from_slice(&b).unwrap()
        } else {
            Value::Null
        };
        (s, v)
    }

    async fn raw(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some((ct, b)) => req.header(header::CONTENT_TYPE, ct).body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec();
        (parts.status, parts.headers, bytes)
    }
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let w = world(|_| {}).await;
    w.ingest().await;
    let (s, e) = w.call(Method::GET, "/api/v1/tickets", None, None).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (_, h, _) = w.raw(Method::GET, "/api/v1/tickets", Some("wrong-token-0123456789"), &[], None).await;
    assert!(h[header::WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_token"));
    let (s, page) = w.call(Method::GET, "/api/v1/tickets", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["tickets"][0]["_id"], "support_ticket_1");
    assert_eq!(w.call(Method::GET, "/healthz", None, None).await.0, StatusCode::OK);
    assert_eq!(w.call(Method::GET, "/metrics", None, None).await.0, StatusCode::UNAUTHORIZED);
    let (s, _) = w.call(Method::GET, "/attachments/x/y", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "attachments need the token unless public_attachments");
}

#[tokio::test]
async fn patches_follow_the_rules_and_name_bad_fields() {
    let w = world(|_| {}).await;
    w.ingest().await;
    let (s, e) = w.call(Method::PATCH, "/api/v1/tickets/1", Some(ADMIN), Some(json!({"status": "wip"}))).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some("status")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("expected one of open pending"), "{e}");
    let (s, e) = w.call(Method::PATCH, "/api/v1/tickets/1", Some(ADMIN), Some(json!({"colour": "red"}))).await;
    assert_eq!(
        (s, e["error"].as_str(), e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_field"), Some("colour"))
    );
    let (s, e) =
        w.call(Method::PATCH, "/api/v1/tickets/1", Some(ADMIN), Some(json!({"assignedTo": "agent_zed"}))).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some("assignedTo")), "{e}");
    assert_eq!(
        w.call(Method::PATCH, "/api/v1/tickets/9", Some(ADMIN), Some(json!({"status": "open"}))).await.0,
        StatusCode::NOT_FOUND
    );

    // An agent's own token: attributed to the agent, same wording as email.
    let (s, t) = w
        .call(
            Method::PATCH,
            "/api/v1/tickets/support_ticket_1",
            Some(ALICE),
            Some(json!({"status": "resolved", "tags": ["printer"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let texts: Vec<&str> = t["threads"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(texts.contains(&"status open → resolved by agent_alice"), "{texts:?}");
    assert!(texts.contains(&"tagged printer by agent_alice"), "{texts:?}");
    assert!(t["resolvedAt"].is_string());
    assert!(
        w.desk.outbox(false).unwrap().iter().any(|o| o.kind == crate::outbox::OutKind::Resolved),
        "the resolved notice is queued"
    );

    // An agent token cannot act as someone else; the admin token can.
    let (s, _, _) = w
        .raw(
            Method::POST,
            "/api/v1/tickets/1/notes",
            Some(ALICE),
            &[("X-Ticketd-Act-As", "agent_bob")],
            Some(("application/json", br#"{"text":"x"}"#.to_vec())),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, h, b) = w
        .raw(
            Method::POST,
            "/api/v1/tickets/1/notes",
            Some(ADMIN),
            &[("X-Ticketd-Act-As", "agent_bob")],
            Some(("application/json", br#"{"text":"checked the logs"}"#.to_vec())),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let t: Value = serde_json::from_slice(&b).unwrap();
    let note = t["threads"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((note["author"].as_str(), note["internal"].as_bool()), (Some("agent_bob"), Some(true)));

    // If-Match: the ETag of a GET; a stale one is a conflict.
    let etag = h[header::ETAG].to_str().unwrap().to_owned();
    let stale = format!("\"{}\"", etag.trim_matches('"').parse::<u64>().unwrap() - 1);
    let (s, _, b) = w
        .raw(
            Method::PATCH,
            "/api/v1/tickets/1",
            Some(ADMIN),
            &[("If-Match", &stale)],
            Some(("application/json", br#"{"priority":"high"}"#.to_vec())),
        )
        .await;
    let e: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{e}");
    let (s, _, _) = w
        .raw(
            Method::PATCH,
            "/api/v1/tickets/1",
            Some(ADMIN),
            &[("If-Match", &etag)],
            Some(("application/json", br#"{"priority":"high"}"#.to_vec())),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) =
        w.raw(Method::PATCH, "/api/v1/tickets/1", Some(ADMIN), &[], Some(("text/plain", b"{}".to_vec()))).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!("{{\"resolution\":\"{}\"}}", "a".repeat(super::wire::MAX_JSON_BYTES));
    let (s, _, _) =
        w.raw(Method::PATCH, "/api/v1/tickets/1", Some(ADMIN), &[], Some(("application/json", big.into_bytes()))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn queries_are_bounded_and_cursors_checked() {
    let w = world(|_| {}).await;
    w.ingest().await;
    for (q, field) in
        [("limit=100000", "limit"), ("cursor=nope", "cursor"), ("status=wip", "status"), ("shoe=1", "shoe")]
    {
        let (s, e) = w.call(Method::GET, &format!("/api/v1/tickets?{q}"), Some(ADMIN), None).await;
        assert_eq!((s, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{q}: {e}");
    }
    let (s, e) = w.call(Method::GET, &format!("/api/v1/tickets?q={}", "x".repeat(5000)), Some(ADMIN), None).await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_query")));
    let (s, page) = w.call(Method::GET, "/api/v1/tickets?q=PRINTER&assignedTo=none", Some(ADMIN), None).await;
    assert_eq!((s, page["tickets"].as_array().unwrap().len()), (StatusCode::OK, 1));
    assert_eq!(w.call(Method::GET, "/api/v1/tickets/abc", Some(ADMIN), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(w.call(Method::GET, "/nowhere", Some(ADMIN), None).await.1["error"], "no_route");
}

#[tokio::test]
async fn attachments_are_served_by_hash_and_recorded_name_only() {
    let w = world(|c| c.api.as_mut().unwrap().public_attachments = Some(true)).await;
    w.ingest().await;
    let t = w.desk.ticket(1).unwrap().unwrap().ticket;
    let url = &t.attachments[0].url;
    let path = &url[url.find("/attachments/").unwrap()..];
    let (s, h, b) = w.raw(Method::GET, path, None, &[], None).await;
    assert_eq!(s, StatusCode::OK, "{path}");
    assert_eq!(b, b"ERROR 42");
    assert_eq!(h[header::CONTENT_TYPE], "text/plain");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"log file.txt\"; filename*=UTF-8''log%20file.txt"
    );
    let sha = path.split('/').nth(2).unwrap();
    assert_eq!(
        w.raw(Method::GET, &format!("/attachments/{sha}/other.txt"), None, &[], None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.raw(Method::GET, &format!("/attachments/{}/log%20file.txt", "0".repeat(64)), None, &[], None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_openapi_document_names_exactly_the_routes() {
    let w = world(|_| {}).await;
    let (s, doc) = w.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> =
        route_table().iter().map(|r| (r.method.as_str().to_owned(), r.path.to_owned())).collect();
    assert_eq!(documented, routed);
    // Each route says who may call it, and an agent's token is refused on
    // every route that is the admin's.
    for spec in route_table() {
        let op = &doc["paths"][spec.path][spec.method.as_str().to_ascii_lowercase()];
        assert_eq!(op["x-ticketd-role"], spec.guard.role(), "{} {}", spec.method, spec.path);
    }
    let admin: Vec<_> = route_table().into_iter().filter(|r| r.guard == crate::api::routes::Guard::Admin).collect();
    for must in [
        "/metrics",
        "/api/v1/outbox",
        "/api/v1/outbox/{id}",
        "/api/v1/outbox/{id}/retry",
        "/api/v1/quarantine",
        "/api/v1/quarantine/{id}",
        "/api/v1/quarantine/{id}/retry",
        "/api/v1/backup",
    ] {
        assert!(admin.iter().any(|r| r.path == must), "{must} is the admin's");
    }
    for r in &admin {
        let uri = r.path.replace("{id}", "1");
        let (s, e) = w.call(r.method.clone(), &uri, Some(ALICE), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{} {uri} with an agent token: {e}", r.method);
    }
    // And each is really wired: no request to one reaches the fallback.
    for (method, path) in &routed {
        let uri = path.replace("{id}", "1").replace("{sha256}", &"0".repeat(64)).replace("{filename}", "f");
        let (_, e) = w.call(Method::from_bytes(method.as_bytes()).unwrap(), &uri, None, None).await;
        assert!(!matches!(e["error"].as_str(), Some("no_route" | "method_not_allowed")), "{method} {uri}: {e}");
    }
}

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let mut b = Vec::new();
    for (name, file, bytes) in parts {
        let file = file.map(|f| format!("; filename=\"{f}\"")).unwrap_or_default();
        b.extend_from_slice(
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n").as_bytes(),
        );
        b.extend_from_slice(bytes);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"--XyZ--\r\n");
    ("multipart/form-data; boundary=XyZ".into(), b)
}

#[tokio::test]
async fn multipart_replies_carry_files_within_their_limits() {
    let w = world(|c| c.attachments.max_bytes = Some(16)).await;
    w.ingest().await;
    let (ct, body) = multipart(&[("text", None, b"See the file."), ("files", Some("fix.txt"), b"unplug it")]);
    let (s, _, b) = w.raw(Method::POST, "/api/v1/tickets/1/replies", Some(ADMIN), &[], Some((&ct, body))).await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
    let t: Value = serde_json::from_slice(&b).unwrap();
    assert!(t["attachments"].as_array().unwrap().iter().any(|a| a["filename"] == "fix.txt" && a["size"] == 9), "{t:#}");
    let relay = w.desk.outbox(false).unwrap().into_iter().find(|o| o.kind == crate::outbox::OutKind::Relay).unwrap();
    assert_eq!(relay.to, vec!["carla@customer.test".to_owned()]);

    let (ct, body) = multipart(&[("text", None, b"x"), ("files", Some("big.bin"), &[0u8; 17])]);
    let (s, _, b) = w.raw(Method::POST, "/api/v1/tickets/1/replies", Some(ADMIN), &[], Some((&ct, body))).await;
    let e: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, e["field"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("files")), "{e}");
    let (ct, body) = multipart(&[("text", None, b"x"), ("colour", None, b"red")]);
    let (s, _, b) = w.raw(Method::POST, "/api/v1/tickets/1/replies", Some(ADMIN), &[], Some((&ct, body))).await;
    let e: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_field")), "{e}");
    let (s, e) = w.call(Method::POST, "/api/v1/tickets/1/replies", Some(ADMIN), Some(json!({"text": "  "}))).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some("text")), "an empty reply is refused: {e}");
}

#[tokio::test]
async fn the_outbox_is_the_admins_and_a_drop_names_who_dropped() {
    let w = world(|_| {}).await;
    w.ingest().await;
    let (s, page) = w.call(Method::GET, "/api/v1/outbox", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK);
    let seq = page["entries"][0]["seq"].as_u64().expect("the acknowledgement waits in the outbox");
    let uri = format!("/api/v1/outbox/{seq}");
    let (s, _) = w.call(Method::DELETE, &uri, Some(ALICE), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "an agent cannot drop a customer's mail");
    let (s, _, _) = w.raw(Method::DELETE, &uri, Some(ADMIN), &[("x-ticketd-act-as", "agent_bob")], None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, t) = w.call(Method::GET, "/api/v1/tickets/1", Some(ADMIN), None).await;
    let texts: Vec<&str> = t["threads"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(
        texts.iter().any(|m| m.contains("was dropped from the outbox by agent_bob, unsent")),
        "the entry names the real actor: {texts:?}"
    );
}

/// Validation has one home, the rule set: an API PATCH and a change through
/// the desk (the CLI's, an email command's path) get the same words.
#[tokio::test]
async fn a_bad_value_gets_the_same_words_on_every_channel() {
    let w = world(|_| {}).await;
    w.ingest().await;
    for (body, field) in [
        (json!({"tags": ["a\u{7}b"]}), "tags"),
        (json!({"tags": ["in\u{200B}voice"]}), "tags"),
        (json!({"resolution": "done\u{1b}[2J"}), "resolution"),
        (json!({"assignedTo": "agent_zed"}), "assignedTo"),
    ] {
        let (s, e) = w.call(Method::PATCH, "/api/v1/tickets/1", Some(ADMIN), Some(body.clone())).await;
        assert_eq!((s, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {e}");
        let action = match field {
            "tags" => Action::SetTags(vec![body["tags"][0].as_str().unwrap().to_owned()]),
            "resolution" => Action::Resolution(Some(body["resolution"].as_str().unwrap().to_owned())),
            _ => Action::Assign(Some("agent_zed".into())),
        };
        let direct = w.desk.act(1, ActorRef::Admin, vec![action], vec![], None).await.unwrap_err().to_string();
        assert!(direct.ends_with(e["message"].as_str().unwrap()), "{direct:?} and {:?} say the same", e["message"]);
    }
}

#[tokio::test]
async fn tags_change_by_delta_and_clients_and_agents_are_people() {
    let w = world(|_| {}).await;
    w.ingest().await;
    let patch = |body: Value| w.call(Method::PATCH, "/api/v1/tickets/1", Some(ALICE), Some(body));
    let (s, t) = patch(json!({"tagsAdd": ["printer", "urgent"]})).await;
    assert_eq!((s, t["tags"].clone()), (StatusCode::OK, json!(["printer", "urgent"])), "{t}");
    // Two agents, each with an old view of the tags: neither erases the other's.
    let (_, t) = patch(json!({"tagsAdd": ["hardware"]})).await;
    let (_, t2) = patch(json!({"tagsRemove": ["urgent", "never-there"]})).await;
    assert_eq!(t["tags"], json!(["printer", "urgent", "hardware"]));
    assert_eq!(t2["tags"], json!(["printer", "hardware"]));
    let (s, e) = patch(json!({"tags": ["a"], "tagsAdd": ["b"]})).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some("tags")), "{e}");
    let (s, e) = patch(json!({"tagsAdd": ["two words"]})).await;
    assert_eq!(
        (s, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("tags")),
        "the rules say what a tag may be: {e}"
    );

    let (s, c) = w.call(Method::GET, "/api/v1/clients/client_1", Some(ALICE), None).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        (c["_id"].as_str(), c["address"].as_str(), c["name"].as_str()),
        (Some("client_1"), Some("carla@customer.test"), Some("Carla"))
    );
    assert_eq!(c["tickets"][0]["_id"], "support_ticket_1");
    assert_eq!(c["tickets"][0]["title"], "Printer on fire");
    assert_eq!(w.call(Method::GET, "/api/v1/clients/1", Some(ALICE), None).await.1["_id"], "client_1");
    let (s, e) = w.call(Method::GET, "/api/v1/clients/client_9", Some(ALICE), None).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::NOT_FOUND, Some("id")));
    assert_eq!(w.call(Method::GET, "/api/v1/clients/client_1", None, None).await.0, StatusCode::UNAUTHORIZED);

    let (s, a) = w.call(Method::GET, "/api/v1/agents", Some(ALICE), None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = a["entries"].as_array().unwrap().iter().filter_map(|x| x["id"].as_str()).collect();
    assert_eq!(ids, ["agent_alice", "agent_bob"]);
    assert_eq!(a["entries"][0]["email"], "alice@example.test");
}
