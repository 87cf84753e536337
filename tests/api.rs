//! The local API end to end: the real daemon binary against a private
//! Dovecot and Postfix, reached over a unix socket or loopback TCP with the
//! crate's own HTTP client, and the CLI talking to the running daemon.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, Method, header};
use serde_json::{Value, json};
use ticketd::api::auth::Token;
use ticketd::cli::http::{Body, HttpClient, Reply};

use common::{ALICE_TOKEN, ApiAt, Daemon, Lab, all_seen, header as mail_header, wait_for_text};

const WAIT: Duration = Duration::from_secs(60);

fn mail(from: &str, id: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
}

async fn patch(api: &HttpClient, path: &str, extra: &[(HeaderName, String)], body: Value) -> Reply {
    api.send(Method::PATCH, path, extra, Some(Body::json(&body))).await.unwrap()
}

/// Every ticket through the API, page by page.
async fn all_tickets(api: &HttpClient) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/api/v1/tickets?limit=500&sort=number".to_owned();
    loop {
        let page = json_of(&api.get(&path).await.unwrap());
        out.extend(page["tickets"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/tickets?limit=500&sort=number&cursor={c}"),
            None => return out,
        }
    }
}

fn cli_ok(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.cli(args);
    assert!(out.status.success(), "ticketd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_and_a_cli_reply_land_while_ingest_is_busy() {
    let lab = Lab::start();
    let daemon = Daemon::in_process_at(&lab, ApiAt::Unix, |_| {}).await;
    let api = daemon.api();

    let first =
        mail("Carla <customer@example.test>", "api-first@customer.example.test", "Printer on fire", "It smokes.");
    lab.smtp_send("customer@example.test", &["support@example.test"], &first).await.unwrap();
    daemon.eventually_json("/api/v1/tickets/1", WAIT, |s, _| s == 200).await;

    // 499 more, appended straight into the mailbox so ingest has a backlog.
    let backlog: Vec<Vec<u8>> = (0..499)
        .map(|i| {
            mail(
                &format!("bob+{i}@example.test"),
                &format!("busy-{i}@bob.example.test"),
                &format!("Question {i}"),
                "Hello?",
            )
        })
        .collect();
    let act = async {
        daemon
            .eventually_json("/api/v1/tickets?limit=1", WAIT, |_, v| v["tickets"][0]["number"].as_u64() >= Some(20))
            .await;
        // While ingest runs: a PATCH through the API and a reply through the CLI.
        let r =
            patch(&api, "/api/v1/tickets/1", &[], json!({"priority": "high", "tags": ["printer", "hardware"]})).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let config = daemon.config.clone();
        let reply = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
                .arg("--config")
                .arg(&config)
                .args(["tickets", "reply", "1", "--as", "agent_alice", "--text", "Please unplug it now."])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(reply.status.success(), "{}", String::from_utf8_lossy(&reply.stderr));
        assert!(String::from_utf8_lossy(&reply.stdout).contains("support_ticket_1: reply stored and queued"));
        json_of(&api.get("/api/v1/tickets?limit=1").await.unwrap())["tickets"][0]["number"].as_u64().unwrap()
    };
    let (appended, newest) = tokio::join!(lab.imap_append_many("support", "INBOX", backlog), act);
    assert_eq!(appended.unwrap(), 499);
    assert!(newest < 500, "the changes were made while ingest was still busy (newest ticket {newest})");
    all_seen(&lab, "support", 500, Duration::from_secs(180)).await;

    // Nothing lost or doubled.
    let tickets = all_tickets(&api).await;
    assert_eq!(tickets.len(), 500);
    let ids: BTreeSet<&str> = tickets.iter().map(|t| t["_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 500);
    let t1 = json_of(&api.get("/api/v1/tickets/1").await.unwrap());
    let threads = t1["threads"].as_array().unwrap();
    let replies: Vec<&Value> = threads.iter().filter(|e| e["type"] == "agent" && e["internal"].is_null()).collect();
    assert_eq!(replies.len(), 1, "{t1:#}");
    assert_eq!(
        (replies[0]["author"].as_str(), replies[0]["message"].as_str()),
        (Some("agent_alice"), Some("Please unplug it now."))
    );
    let system: Vec<&str> =
        threads.iter().filter(|e| e["type"] == "system").filter_map(|e| e["message"].as_str()).collect();
    for want in [
        "priority medium → high by admin",
        "tagged printer, hardware by admin",
        "assigned nobody → agent_alice (first agent reply)",
    ] {
        assert!(system.contains(&want), "{want:?} in {system:?}");
    }
    assert_eq!((t1["priority"].as_str(), t1["assignedTo"].as_str()), (Some("high"), Some("agent_alice")));

    // The customer gets the answer in their own thread.
    let relay = wait_for_text(&lab, "customer", "Please unplug it now.", WAIT).await;
    assert_eq!(mail_header(&relay, "In-Reply-To").as_deref(), Some("<api-first@customer.example.test>"), "{relay}");
    assert!(mail_header(&relay, "References").unwrap().contains("<api-first@customer.example.test>"));
    assert!(mail_header(&relay, "Subject").unwrap().starts_with("Re: [Ticket #1]"), "a relay reads as a reply");
    assert!(!relay.contains("alice@example.test"), "the agent's address never reaches the customer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let lab = Lab::start();
    let daemon = Daemon::in_process_at(&lab, ApiAt::Tcp, |_| {}).await;
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &mail("customer@example.test", "e1@c.test", "Help", "Hi"),
    )
    .await
    .unwrap();
    let got = daemon.eventually_json("/api/v1/tickets/support_ticket_1", WAIT, |s, _| s == 200).await;
    assert_eq!(got["_id"], "support_ticket_1");
    let api = daemon.api();

    // 401: no token, a wrong token; both say how to authenticate.
    for client in
        [daemon.api_anonymous(), daemon.api_anonymous().with_token(Token::new("wrong-token-0123456789abcdef"))]
    {
        let r = client.get("/api/v1/tickets").await.unwrap();
        assert_eq!(r.status, 401);
        assert!(r.headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
        assert_eq!(json_of(&r)["error"], "unauthorized");
    }

    // 400s name the field.
    let r = patch(&api, "/api/v1/tickets/1", &[], json!({"status": "wip"})).await;
    let e = json_of(&r);
    assert_eq!(
        (r.status.as_u16(), e["error"].as_str(), e["field"].as_str()),
        (400, Some("invalid"), Some("status")),
        "{e}"
    );
    let r = patch(&api, "/api/v1/tickets/1", &[], json!({"stauts": "open"})).await;
    let e = json_of(&r);
    assert_eq!(
        (r.status.as_u16(), e["error"].as_str(), e["field"].as_str()),
        (400, Some("unknown_field"), Some("stauts")),
        "{e}"
    );
    let r = api.get("/api/v1/tickets?cursor=garbage").await.unwrap();
    let e = json_of(&r);
    assert_eq!((r.status.as_u16(), e["field"].as_str()), (400, Some("cursor")), "{e}");
    let r = api.get("/api/v1/tickets?limit=999999999").await.unwrap();
    assert_eq!((r.status.as_u16(), json_of(&r)["field"].as_str()), (400, Some("limit")));

    // 404.
    let r = api.get("/api/v1/tickets/support_ticket_77").await.unwrap();
    assert_eq!((r.status.as_u16(), json_of(&r)["error"].as_str()), (404, Some("not_found")));
    let r = api.send(Method::DELETE, "/api/v1/quarantine/5", &[], None).await.unwrap();
    assert_eq!(r.status, 404);

    // 409: a change based on an old version; the current one is named.
    let r = api.get("/api/v1/tickets/1").await.unwrap();
    let etag = r.headers[header::ETAG].to_str().unwrap().to_owned();
    let ok = patch(&api, "/api/v1/tickets/1", &[(header::IF_MATCH, etag.clone())], json!({"status": "pending"})).await;
    assert_eq!(ok.status, 200);
    let stale = patch(&api, "/api/v1/tickets/1", &[(header::IF_MATCH, etag)], json!({"status": "open"})).await;
    let e = json_of(&stale);
    assert_eq!((stale.status.as_u16(), e["error"].as_str()), (409, Some("conflict")), "{e}");
    assert_eq!(
        e["current_version"].as_u64().map(|v| format!("\"{v}\"")),
        ok.headers[header::ETAG].to_str().ok().map(str::to_owned)
    );
    assert_eq!(
        json_of(&api.get("/api/v1/tickets/1").await.unwrap())["status"],
        "pending",
        "the stale change was refused whole"
    );

    // An agent's own token attributes the change to that agent.
    let alice = daemon.api_anonymous().with_token(Token::new(ALICE_TOKEN));
    let r = patch(&alice, "/api/v1/tickets/1", &[], json!({"assignedTo": "agent_alice"})).await;
    let t = json_of(&r);
    assert!(
        t["threads"].as_array().unwrap().iter().any(|e| e["message"] == "assigned nobody → agent_alice by agent_alice"),
        "{t:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attachment_url_of_a_ticket_downloads_the_same_bytes() {
    let lab = Lab::start();
    let daemon = Daemon::in_process_at(&lab, ApiAt::Tcp, |_| {}).await;
    let bytes: Vec<u8> = (0..3000u32).flat_map(|i| i.to_le_bytes()).collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let b64: Vec<&str> = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let b64 = b64.join("\r\n");
    let raw = format!(
        "From: customer@example.test\r\nTo: support@example.test\r\nSubject: Crash dump\r\nMessage-ID: <att@c.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nDump attached.\r\n--b1\r\nContent-Type: application/x-dump\r\nContent-Disposition: attachment; filename*=UTF-8''crash%20r%C3%A9sum%C3%A9.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b1--\r\n"
    );
    lab.smtp_send("customer@example.test", &["support@example.test"], raw.as_bytes()).await.unwrap();
    let t = daemon.eventually_json("/api/v1/tickets/1", WAIT, |s, _| s == 200).await;
    let a = &t["attachments"][0];
    assert_eq!((a["filename"].as_str(), a["type"].as_str()), (Some("crash résumé.bin"), Some("application/x-dump")));
    let url = a["url"].as_str().unwrap();
    let base = daemon.listen().base_url();
    let path = url.strip_prefix(&base).unwrap_or_else(|| panic!("{url} is served by the API at {base}"));
    assert!(path.starts_with("/attachments/"), "{path}");

    let r = daemon.api().get(path).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), &bytes[..], "the same bytes");
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/x-dump");
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let cd = r.headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(cd.starts_with("attachment;") && cd.contains("filename*=UTF-8''crash%20r%C3%A9sum%C3%A9.bin"), "{cd}");

    // Only with the token, and only under a recorded name.
    assert_eq!(daemon.api_anonymous().get(path).await.unwrap().status, 401);
    let sha = path.split('/').nth(2).unwrap();
    assert_eq!(daemon.api().get(&format!("/attachments/{sha}/other.bin")).await.unwrap().status, 404);
    assert_eq!(daemon.api().get(&format!("/attachments/{}/x.bin", "f".repeat(64))).await.unwrap().status, 404);

    // A reply with a file through the CLI (multipart over the API): relayed, stored, served.
    let file = daemon.dir.path().join("fix résumé.txt");
    std::fs::write(&file, b"Step 1: unplug.\n").unwrap();
    let file = file.to_str().unwrap();
    cli_ok(&daemon, &["tickets", "reply", "1", "--text", "The fix is attached.", "--attach", file]);
    let relay = wait_for_text(&lab, "customer", "The fix is attached.", WAIT).await;
    assert!(relay.contains("attachment: fix résumé.txt"), "{relay}");
    let t = json_of(&daemon.api().get("/api/v1/tickets/1").await.unwrap());
    let a = t["attachments"].as_array().unwrap().iter().find(|a| a["filename"] == "fix résumé.txt").unwrap().clone();
    let path = a["url"].as_str().unwrap().strip_prefix(&base).unwrap().to_owned();
    let r = daemon.api().get(&path).await.unwrap();
    assert_eq!((r.status.as_u16(), r.body.as_ref()), (200, &b"Step 1: unplug.\n"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_imap_server() {
    let lab = Lab::start();
    let daemon = Daemon::in_process_at(&lab, ApiAt::Unix, |_| {}).await;
    let anon = daemon.api_anonymous();
    assert_eq!(anon.get("/healthz").await.unwrap().status, 200);
    let ready = |want: bool| {
        let anon = anon.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let r = anon.get("/readyz").await.unwrap();
                let v = json_of(&r);
                if v["ready"].as_bool() == Some(want) {
                    assert_eq!(r.status, if want { 200 } else { 503 });
                    return v;
                }
                assert!(Instant::now() < deadline, "/readyz never became ready={want}: {v}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let up = ready(true).await;
    assert_eq!(up["mailboxes"]["support"]["up"], true);
    assert_eq!(up["store"]["ok"], true);
    let full = json_of(&daemon.api().get("/readyz").await.unwrap());
    assert!(full["mailboxes"]["support"]["last_fetch"].is_string(), "with a token, the details: {full}");

    lab.stop_imap();
    let down = ready(false).await;
    assert_eq!(down["mailboxes"]["support"]["up"], false, "{down}");
    assert_eq!(down["problems"][0], "mailbox support", "{down}");
    assert_eq!(down["store"]["ok"], true, "the store is fine meanwhile");
    // Without a token: up or down, never the account or the server's words.
    assert!(down["mailboxes"]["support"].get("last_error").is_none(), "{down}");
    assert!(!down.to_string().contains("support@example.test"), "{down}");
    let full = json_of(&daemon.api().get("/readyz").await.unwrap());
    assert!(full["mailboxes"]["support"]["last_error"].is_string(), "with a token, the error: {full}");

    lab.start_imap();
    ready(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_real_scrape() {
    let lab = Lab::start();
    let daemon = Daemon::in_process_at(&lab, ApiAt::Unix, |_| {}).await;
    lab.smtp_send(
        "customer@example.test",
        &["support@example.test"],
        &mail("customer@example.test", "p1@c.test", "Hi", "Hello"),
    )
    .await
    .unwrap();
    daemon.eventually_json("/api/v1/tickets/1", WAIT, |s, _| s == 200).await;
    let api = daemon.api();
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let r = api.get("/metrics").await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        // Wait for the acknowledgement's send so every family has samples.
        let delivered = text.lines().find_map(|l| l.strip_prefix("ticketd_smtp_sends_total{result=\"delivered\"} "));
        if delivered.is_some_and(|n| n != "0") {
            break text;
        }
        assert!(Instant::now() < deadline, "no delivered send in:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for want in [
        "ticketd_messages_total{mailbox=\"support\",outcome=",
        "ticketd_ingest_latency_seconds_count 1",
        "ticketd_outbox_messages{state=\"queued\"}",
        "ticketd_outbox_oldest_age_seconds{state=\"retrying\"}",
        "ticketd_imap_up{mailbox=\"support\"} 1",
        "ticketd_imap_last_fetch_timestamp_seconds{mailbox=\"support\"}",
        "ticketd_quarantine_messages 0",
        "ticketd_store_size_bytes ",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by scripts/install-deps.sh)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_matches_the_routes() {
    let lab = Lab::start();
    let daemon = Daemon::in_process_at(&lab, ApiAt::Tcp, |_| {}).await;
    let anon = daemon.api_anonymous();
    let doc = json_of(&anon.get("/api/v1/openapi.json").await.unwrap());
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> =
        ticketd::api::routes::route_table().iter().map(|r| (r.method.as_str().to_owned(), r.path.to_owned())).collect();
    assert_eq!(documented, routed, "every route documented, nothing documented that is not routed");
    for (method, path) in &routed {
        let uri = path.replace("{id}", "1").replace("{sha256}", &"0".repeat(64)).replace("{filename}", "f");
        let r = anon.send(Method::from_bytes(method.as_bytes()).unwrap(), &uri, &[], None).await.unwrap();
        let code = serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| v["error"].as_str().map(str::to_owned));
        assert!(!matches!(code.as_deref(), Some("no_route" | "method_not_allowed")), "{method} {uri} is not routed");
    }
    assert_eq!(json_of(&anon.get("/api/v1/nothing").await.unwrap())["error"], "no_route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_the_same_through_the_api_as_from_the_store() {
    let lab = Lab::start();
    let mut daemon = Daemon::start_api(&lab, ApiAt::Unix);
    for (i, subject) in ["Printer on fire", "Invoice question", "Cannot log in"].iter().enumerate() {
        let m = mail(&format!("carol+{i}@example.test"), &format!("same-{i}@c.test"), subject, "Details inside.");
        lab.smtp_send("carol@example.test", &["support@example.test"], &m).await.unwrap();
    }
    daemon.eventually_json("/api/v1/tickets/3", WAIT, |s, _| s == 200).await;
    cli_ok(&daemon, &["tickets", "update", "2", "--status", "pending", "--tag", "billing", "--tag", "VIP"]);
    cli_ok(&daemon, &["tickets", "update", "2", "--untag", "vip", "--assign", "agent_alice"]);
    cli_ok(&daemon, &["tickets", "note", "2", "--text", "called the customer"]);
    // Let the outbox settle so both runs see the same states.
    daemon.eventually_json("/api/v1/outbox", WAIT, |_, v| v["entries"].as_array().is_some_and(|e| e.is_empty())).await;

    let commands: &[&[&str]] = &[
        &["tickets", "list", "--json"],
        &["tickets", "list"],
        &["tickets", "list", "--status", "pending", "--json"],
        &["tickets", "show", "2", "--json"],
        &["tickets", "show", "support_ticket_2"],
        &["tickets", "raw", "1"],
        &["export"],
        &["outbox", "--all", "--json"],
        &["quarantine", "list", "--json"],
    ];
    let via_api: Vec<String> = commands.iter().map(|c| cli_ok(&daemon, c)).collect();
    assert!(daemon.log_text().contains("/api/v1/tickets"), "the CLI went through the API");
    let t2: Value = serde_json::from_str(&via_api[3]).unwrap();
    assert_eq!(t2["tags"], json!(["billing"]), "--tag then --untag through the API: {t2:#}");

    // A wrong token is a plain error, not a fallback to the store.
    std::fs::write(daemon.dir.path().join("api-token"), "another-token-0123456789abcdef\n").unwrap();
    let out = daemon.cli(&["tickets", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the token in api.token_file"), "{err}");
    std::fs::write(daemon.dir.path().join("api-token"), format!("{}\n", common::ADMIN_TOKEN)).unwrap();

    // A config whose API nobody serves, while the daemon holds the store.
    let nobody = format!("unix:{}/nobody.sock", daemon.dir.path().display());
    let other = daemon.config_variant("other.toml", |c| c.api.as_mut().unwrap().listen = nobody);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(&other)
        .args(["tickets", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds the store")
            && String::from_utf8_lossy(&out.stderr).contains("cannot connect to the API at unix:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    daemon.stop_ok();
    assert!(!daemon.dir.path().join("api.sock").exists(), "the socket is removed at shutdown");
    let from_store: Vec<String> = commands.iter().map(|c| cli_ok(&daemon, c)).collect();
    for ((c, a), s) in commands.iter().zip(&via_api).zip(&from_store) {
        assert_eq!(a, s, "ticketd {c:?} differs between the API and the store");
    }
}
