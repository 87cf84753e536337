//! The desk console in a real browser: Debian's Chromium, driven over
//! WebDriver (chromedriver) with fantoccini, against the real daemon and
//! the real lab (Dovecot and Postfix on loopback). Two browsers — Alice
//! and Bob — work the same desk: sign in, filter, open, reply (the
//! customer's IMAP inbox receives it, threaded), note (ticketd's outbox
//! gets nothing), edit fields, bulk edit; Bob sees Alice's changes and her
//! presence live, and his stale reply is refused with his draft kept; then
//! the admin retries a quarantined mail and drops a waiting one. Hostile
//! mail modelled on the published XSS bugs of helpdesks and webmail must
//! run nothing: a canary HTTP server on loopback gets no request, no
//! console page reports a CSP violation, the mail frame keeps its sandbox,
//! the console's DOM keeps its shape, and a cross-site form POST is
//! refused. axe-core finds no WCAG 2 A/AA violation on the queue, ticket
//! and admin pages. Screenshots go to target/console-screens/ (and to
//! docs/ with TICKETD_UPDATE_SCREENSHOTS=1).
//!
//! Needs `chromium`, `chromium-driver` (scripts/install-deps.sh) and
//! axe-core (`npm ci --prefix tests/browser`); without them it fails,
//! saying what to install — it never skips.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{ADMIN_TOKEN, ALICE_TOKEN, ApiAt, Daemon, Lab, header as mail_header, wait_for_text};
use ticketd::testkit::AgentKeys;

const WAIT: Duration = Duration::from_secs(60);
/// The whole test: past this it fails (and its browsers are killed).
const WHOLE: Duration = Duration::from_secs(15 * 60);
/// What one page load or one script may take in the browser.
const PAGE_LOAD: Duration = Duration::from_secs(60);
const BOB_TOKEN: &str = "test-bob-token-0123456789abcdef0";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver on a free loopback port, in a process group of its own
/// that holds every Chromium process it starts. Dropping it (also while a
/// panic unwinds, or when the whole test times out) kills that group;
/// a watchdog process outside the group kills it too if this test process
/// dies without unwinding (SIGKILL, abort). Headless Chromium left behind
/// by a failed run kept its pages, their timers and live streams running
/// for hours.
struct Driver {
    child: Child,
    stopped: bool,
    watchdog: Option<Child>,
    url: String,
    profiles: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        use std::os::unix::process::CommandExt;
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser test needs Debian's {package} (bash scripts/install-deps.sh installs it)"
            );
        }
        let left = browsers_running();
        if !left.is_empty() {
            eprintln!(
                "warning: Chromium processes not started by this test are running (pid, seconds, RSS KiB):\n{left}"
            );
        }
        let port = free_port();
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let group = child.id();
        // It waits for the end of a pipe only this process holds (the fd is
        // close-on-exec: no other child inherits it), which ends however
        // this process ends.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!("read _; kill -9 -{group} 2>/dev/null"))
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!("chromedriver did not listen within 20s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, stopped: false, watchdog, url, profiles: tempfile::tempdir().unwrap() }
    }

    /// Kills chromedriver and every browser process of its group, and waits
    /// (at most 10 s) until none is left.
    fn stop(&mut self) -> Result<(), String> {
        if std::mem::replace(&mut self.stopped, true) {
            return Ok(());
        }
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let profiles = self.profiles.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // SAFETY: as above; signal 0 only asks whether the group still has a member.
            let group_left = unsafe { libc::kill(-group, 0) } == 0;
            let strays = processes_mentioning(&profiles);
            for pid in &strays {
                // SAFETY: as above, one process that runs on our own profile directory.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            if !group_left && strays.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "browser processes outlived the test: group {group} left: {group_left}, strays {strays:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("{e}");
        }
    }
}

/// Processes whose command line names `needle` (our profile directory).
fn processes_mentioning(needle: &str) -> Vec<libc::pid_t> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<libc::pid_t>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// `ps -eo pid,etimes,rss,comm` lines of Chromium processes (ours or not).
fn browsers_running() -> String {
    let out = Command::new("ps").args(["-eo", "pid,etimes,rss,comm"]).output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| l.split_whitespace().nth(3).is_some_and(|c| c.contains("chrom")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Requests the canary and the attacker's site receive, by path.
#[derive(Clone, Default)]
struct Hits(Arc<Mutex<Vec<String>>>);

impl Hits {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A loopback HTTP server: records every request; `/attack` answers with
/// `page`, anything else with an empty 200.
async fn http_server(page: String) -> (u16, Hits) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Hits::default();
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (h, page) = (h.clone(), page.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("?").to_owned();
                h.0.lock().unwrap().push(path.clone());
                let body = if path == "/attack" { page } else { String::new() };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, hits)
}

struct Browser {
    c: Client,
    base: String,
    who: &'static str,
}

async fn eventually<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        match f().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => last = e,
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?} ({last})");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

impl Browser {
    async fn open(d: &Driver, base: &str, who: &'static str) -> Browser {
        let profile = d.profiles.path().join(who);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000", "--lang=en-US",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector).capabilities(caps).connect(&d.url).await.expect("a WebDriver session");
        c.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            Some(PAGE_LOAD),
            Some(PAGE_LOAD),
            Some(Duration::ZERO),
        ))
        .await
        .expect("WebDriver timeouts");
        Browser { c, base: base.to_owned(), who }
    }

    async fn go(&self, path: &str) {
        let t = Instant::now();
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap_or_else(|e| panic!("{}: {path}: {e}", self.who));
        eprintln!("{}: {path} in {:.2}s", self.who, t.elapsed().as_secs_f64());
    }

    async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    async fn css(&self, sel: &str) -> Element {
        self.c
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(sel))
            .await
            .unwrap_or_else(|e| panic!("{}: no {sel}: {e}", self.who))
    }

    /// The control a `<label>` with this exact text names.
    async fn field(&self, label: &str) -> Element {
        let l = self
            .c
            .find(Locator::XPath(&format!("//label[normalize-space()='{label}']")))
            .await
            .unwrap_or_else(|e| panic!("{}: no label {label:?}: {e}", self.who));
        let id = l.attr("for").await.unwrap().expect("labels name their control");
        self.c.find(Locator::Id(&id)).await.unwrap()
    }

    /// The button with this accessible name (its text or aria-label).
    async fn button(&self, name: &str) -> Element {
        let xp = format!("//button[normalize-space()='{name}' or @aria-label='{name}']");
        self.c.find(Locator::XPath(&xp)).await.unwrap_or_else(|e| panic!("{}: no button {name:?}: {e}", self.who))
    }

    async fn text(&self, sel: &str) -> String {
        self.css(sel).await.text().await.unwrap()
    }

    async fn js(&self, script: &str) -> Value {
        self.c.execute(script, vec![]).await.unwrap()
    }

    async fn sign_in(&self, token: &str) {
        self.go("/desk/login").await;
        self.field("Token").await.send_keys(token).await.unwrap();
        self.button("Sign in").await.click().await.unwrap();
        let c = &self.c;
        eventually("signed in", WAIT, || async move {
            Ok(c.find(Locator::Css("form[action='/desk/logout']")).await.is_ok())
        })
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        let dir = root().join("target/console-screens");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        if std::env::var_os("TICKETD_UPDATE_SCREENSHOTS").is_some() {
            std::fs::write(root().join(format!("docs/console-{name}.png")), &png).unwrap();
        }
    }

    /// axe-core's WCAG 2 A and AA rules on the page as it is.
    async fn axe(&self, page: &str) {
        let path = root().join("tests/browser/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: the browser test needs axe-core (npm ci --prefix tests/browser; scripts/test.sh runs it)",
                path.display()
            )
        });
        self.c.execute(&source, vec![]).await.unwrap();
        let found = self
            .c
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})
                   .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                       nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))))
                   .catch(e => done([{id: 'axe failed', help: String(e)}]));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(found, json!([]), "axe-core: WCAG 2 A/AA violations on the {page} page");
    }

    /// What must hold on any console page whatever mail it shows.
    async fn intact(&self, what: &str) {
        let v = self
            .js(
                "return {
                   pwned: window.__pwned === undefined ? null : String(window.__pwned),
                   scripts: Array.from(document.scripts).map(s => s.getAttribute('src')),
                   handlers: Array.from(document.querySelectorAll('*')).flatMap(e => Array.from(e.attributes)
                       .filter(a => a.name.startsWith('on') || a.name.startsWith('hx-')).map(a => e.tagName + ' ' + a.name)),
                   foreign: Array.from(document.querySelectorAll('svg, math, img, object, embed, base, meta[http-equiv]')).length,
                   frames: Array.from(document.querySelectorAll('iframe')).map(f => ({
                       sandbox: f.getAttribute('sandbox'), readable: (() => { try { return f.contentDocument !== null; } catch (e) { return false; } })()
                   })),
                   title: document.title,
                 };",
            )
            .await;
        assert_eq!(v["pwned"], Value::Null, "{what}: a payload ran");
        let scripts = v["scripts"].as_array().unwrap();
        assert_eq!(scripts.len(), 1, "{what}: only the console's script: {scripts:?}");
        assert!(scripts[0].as_str().unwrap().starts_with("/desk/static/console."), "{what}: {scripts:?}");
        assert_eq!(v["handlers"], json!([]), "{what}: event handler attributes in the console's DOM");
        assert_eq!(v["foreign"], json!(0), "{what}: mail markup in the console's DOM");
        for f in v["frames"].as_array().unwrap() {
            assert_eq!(f["sandbox"], json!(""), "{what}: the mail frame has sandbox and no permission");
            assert_eq!(f["readable"], json!(false), "{what}: the mail frame has an origin of its own");
        }
        assert!(v["title"].as_str().unwrap().ends_with(" · ticketd"), "{what}: the title is ours: {}", v["title"]);
    }
}

fn mail(from: &str, id: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 07 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn html_mail(from: &str, id: &str, subject: &str, html: &str, extra_parts: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 07 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n{extra_parts}--zz--\r\n"
    )
    .into_bytes()
}

async fn api_json(daemon: &Daemon, path: &str) -> Value {
    let r = daemon.api().get(path).await.unwrap();
    assert_eq!(r.status, 200, "GET {path}: {}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

async fn console_csp_reports(daemon: &Daemon) -> u64 {
    let r = daemon.api().get("/metrics").await.unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("ticketd_console_csp_reports_total{source=\"console\"}"))
        .expect("the metric");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The daemon with the API on a loopback port, a second agent (Bob), a
/// response target for urgent tickets and a blocked sender.
fn start_daemon(lab: &Lab) -> Daemon {
    let mut d = Daemon::prepare_api_with(lab, ApiAt::Tcp, |c| {
        let bob = c.dir.join("api-bob");
        std::fs::write(&bob, format!("{BOB_TOKEN}\n")).unwrap();
        let mut b = AgentKeys::new("agent_bob", "bob@example.test", "Bob");
        b.token_file = Some(bob);
        c.agents.push(b);
    });
    let text = std::fs::read_to_string(&d.config).unwrap();
    let targets = "[[sla]]\npriority = \"urgent\"\nfirst_response = \"4h\"\nresolution = \"2d\"\n\n[spam]\nblock = [\"stranger+offers@example.test\"]\n";
    std::fs::write(&d.config, format!("{text}\n{targets}")).unwrap();
    d.spawn();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser_and_hostile_mail_runs_nothing() {
    let mut driver = Driver::start();
    let done = tokio::time::timeout(WHOLE, scenario(&driver)).await;
    let stopped = driver.stop();
    assert!(done.is_ok(), "the browser test did not finish within {WHOLE:?}");
    stopped.unwrap();
}

async fn scenario(driver: &Driver) {
    let started = Instant::now();
    let lab = Lab::start();
    let daemon = start_daemon(&lab);
    let base = daemon.listen().base_url();
    let (canary, canary_hits) = http_server(String::new()).await;
    let c = format!("http://127.0.0.1:{canary}");
    let api = daemon.api();

    // The desk: four customers, one mail without a sender (quarantined).
    let seed = [
        (
            "Carla Customer",
            "customer@example.test",
            "b1",
            "Printer on fire",
            "It smokes since this morning. The paper tray is empty.",
        ),
        (
            "Dan Doe",
            "stranger@example.test",
            "b2",
            "Invoice 2026-114 charged twice",
            "My card was charged twice for the November invoice.",
        ),
        (
            "Carol Chen",
            "carol@example.test",
            "b3",
            "Cannot log in after password reset",
            "The reset link says it expired.",
        ),
        (
            "Helpdesk Team",
            "helpdesk@example.test",
            "b4",
            "Feature idea: dark mode",
            "Our night shift would love a dark theme.",
        ),
    ];
    for (name, address, id, subject, body) in seed {
        let raw = mail(&format!("{name} <{address}>"), &format!("{id}@{}", address.replace('@', ".")), subject, body);
        lab.smtp_send(address, &["support@example.test"], &raw).await.unwrap();
        // One at a time: the queue's order (waiting longest first) is the order they came in.
        daemon.eventually_json(&format!("/api/v1/tickets/{}", &id[1..]), WAIT, |s, _| s == 200).await;
    }
    let nobody =
        b"To: support@example.test\r\nSubject: who am I\r\nMessage-ID: <q1@nowhere.test>\r\n\r\nno sender at all\r\n";
    // Straight into the mailbox: Postfix would add a From.
    lab.imap_append("support", "INBOX", nobody).await.unwrap();
    daemon
        .eventually_json("/api/v1/tickets?limit=10", WAIT, |_, v| v["tickets"].as_array().is_some_and(|t| t.len() == 4))
        .await;
    daemon
        .eventually_json("/api/v1/quarantine", WAIT, |_, v| v["entries"].as_array().is_some_and(|e| e.len() == 1))
        .await;
    let offer = mail("Offers <stranger+offers@example.test>", "s1@offers.example.test", "Cheap printers", "Buy now.");
    lab.smtp_send("stranger+offers@example.test", &["support@example.test"], &offer).await.unwrap();
    daemon.eventually_json("/api/v1/spam", WAIT, |_, v| v["entries"].as_array().is_some_and(|e| e.len() == 1)).await;
    let patch = |n: u64, body: Value| {
        let api = &api;
        async move {
            let r = api
                .send(
                    axum::http::Method::PATCH,
                    &format!("/api/v1/tickets/{n}"),
                    &[],
                    Some(ticketd::cli::http::Body::json(&body)),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    };
    patch(2, json!({"priority": "urgent", "category": "billing", "tagsAdd": ["billing"]})).await;
    patch(3, json!({"assignedTo": "agent_bob", "status": "in_progress"})).await;
    patch(4, json!({"priority": "low", "category": "feature_request", "status": "pending"})).await;

    let alice = Browser::open(driver, &base, "alice").await;
    let bob = Browser::open(driver, &base, "bob").await;

    // Sign in, the queue, a filter.
    alice.sign_in(ALICE_TOKEN).await;
    assert_eq!(alice.path().await, "/desk/");
    let rows = alice.c.find_all(Locator::Css("#queue tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 4);
    let first = alice.text("#queue tbody tr:first-child td.subj").await;
    assert!(first.contains("Printer on fire") || first.contains("Invoice"), "waiting longest first: {first}");
    let customer = alice.text("#t1 td.cust").await;
    assert!(customer.contains("Carla Customer") && customer.contains("customer@example.test"), "{customer}");
    alice.axe("queue").await;
    alice.intact("the queue").await;
    alice.screenshot("queue").await;
    alice.field("Search").await.send_keys("printer").await.unwrap();
    alice.button("Filter").await.click().await.unwrap();
    eventually("the filter", WAIT, || async { Ok(alice.path().await.contains("q=printer")) }).await;
    let rows = alice.c.find_all(Locator::Css("#queue tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "only the printer");
    // Open it.
    alice.css("#t1 a.open").await.click().await.unwrap();
    eventually("the ticket page", WAIT, || async { Ok(alice.path().await == "/desk/tickets/1") }).await;
    let h1 = alice.text("h1").await;
    assert!(h1.contains("#1") && h1.contains("Printer on fire"), "{h1}");

    // Bob opens it too: Alice sees him there.
    bob.sign_in(BOB_TOKEN).await;
    bob.go("/desk/tickets/1").await;
    eventually("Bob's presence on Alice's page", WAIT, || async {
        Ok(alice.text("#presence").await.contains("Bob viewing"))
    })
    .await;

    // Alice replies with a file: the customer gets it in their thread.
    let file = daemon.dir.path().join("report.txt");
    std::fs::write(&file, "diagnostics: fuser at 240C\n").unwrap();
    alice.field("Reply").await.send_keys("Please unplug it and wait ten minutes.").await.unwrap();
    alice.field("Attach files").await.send_keys(file.to_str().unwrap()).await.unwrap();
    alice.button("Send reply").await.click().await.unwrap();
    eventually("the reply is sent", WAIT, || async { Ok(alice.path().await == "/desk/tickets/1?done=reply") }).await;
    let relay = wait_for_text(&lab, "customer", "Please unplug it and wait ten minutes.", WAIT).await;
    assert_eq!(mail_header(&relay, "In-Reply-To").as_deref(), Some("<b1@customer.example.test>"), "{relay}");
    assert!(mail_header(&relay, "Subject").unwrap().starts_with("Re: [Ticket #1]"));
    assert!(relay.contains("attachment: report.txt"), "{relay}");

    // Bob's page is stale now: he is told, and his reply is refused with
    // his text kept.
    eventually("Bob is told the ticket changed", WAIT, || async {
        Ok(bob.css("#changed").await.is_displayed().await.unwrap_or(false))
    })
    .await;
    bob.field("Reply").await.send_keys("I can come by and look at it.").await.unwrap();
    bob.button("Send reply").await.click().await.unwrap();
    eventually("Bob's stale reply is refused", WAIT, || async { Ok(bob.c.find(Locator::Css("#error")).await.is_ok()) })
        .await;
    assert!(bob.text("#error").await.contains("changed while you were working"));
    assert_eq!(bob.field("Reply").await.prop("value").await.unwrap().as_deref(), Some("I can come by and look at it."));
    let t1 = api_json(&daemon, "/api/v1/tickets/1").await;
    let bobs = t1["threads"].as_array().unwrap().iter().filter(|e| e["author"] == "agent_bob").count();
    assert_eq!(bobs, 0, "nothing of Bob's was stored");

    // Alice's internal note: nothing is queued for anyone.
    let queued = |v: &Value| v["entries"].as_array().unwrap().iter().filter(|e| e["ticket"] == 1).count();
    let before = queued(&api_json(&daemon, "/api/v1/outbox?all=true").await);
    alice.field("Internal note").await.send_keys("Enterprise plan: call them if it happens again.").await.unwrap();
    alice.button("Add note").await.click().await.unwrap();
    eventually("the note is stored", WAIT, || async { Ok(alice.path().await == "/desk/tickets/1?done=note") }).await;
    assert_eq!(queued(&api_json(&daemon, "/api/v1/outbox?all=true").await), before, "a note queues no mail");
    let t1 = api_json(&daemon, "/api/v1/tickets/1").await;
    let last = t1["threads"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["internal"].as_bool(), last["author"].as_str()), (Some(true), Some("agent_alice")));

    // Fields, in place.
    alice.field("Priority").await.select_by_value("high").await.unwrap();
    alice.field("Status").await.select_by_value("pending").await.unwrap();
    alice.button("Save").await.click().await.unwrap();
    eventually("saved", WAIT, || async { Ok(alice.path().await == "/desk/tickets/1?done=fields") }).await;
    let t1 = api_json(&daemon, "/api/v1/tickets/1").await;
    assert_eq!((t1["priority"].as_str(), t1["status"].as_str()), (Some("high"), Some("pending")));
    alice.axe("ticket").await;
    alice.intact("the ticket").await;
    alice.screenshot("ticket").await;

    // Response targets: urgent #2 is due in four hours, in the queue and on its page.
    alice.go("/desk/").await;
    let due = alice.text("#t2 [data-col=due]").await;
    assert!(due.starts_with("in 3 h") || due.starts_with("in 4 h"), "#2's first response is due: {due:?}");
    alice.go("/desk/tickets/2").await;
    assert!(alice.text("#due").await.contains("First response due"));

    // Bulk, while Bob watches the queue with a row selected.
    bob.go("/desk/").await;
    bob.css("#sel2").await.click().await.unwrap();
    bob.js("window.__sameDocument = 1; return 1;").await;
    alice.go("/desk/").await;
    alice.css("#sel2").await.click().await.unwrap();
    alice.css("#sel3").await.click().await.unwrap();
    alice.field("Set assignee").await.select_by_value("agent_alice").await.unwrap();
    alice.field("Add tag").await.send_keys("callback").await.unwrap();
    alice.button("Apply to selected").await.click().await.unwrap();
    eventually("the bulk change", WAIT, || async { Ok(alice.path().await.contains("done=bulk-2")) }).await;
    for n in [2, 3] {
        let t = api_json(&daemon, &format!("/api/v1/tickets/{n}")).await;
        assert_eq!(t["assignedTo"], "agent_alice", "#{n}");
        assert!(t["tags"].as_array().unwrap().contains(&json!("callback")), "#{n}");
    }
    eventually("Bob's queue updates itself", WAIT, || async {
        Ok(bob.text("#t2 [data-col=assignee]").await.contains("Alice")
            && bob.text("#t3 [data-col=assignee]").await.contains("Alice"))
    })
    .await;
    assert_eq!(bob.js("return window.__sameDocument;").await, json!(1), "updated in place, not reloaded");
    assert!(bob.css("#sel2").await.is_selected().await.unwrap(), "Bob's selection survived");
    alice.go("/desk/tickets/3").await;
    eventually("Alice's presence in Bob's queue", WAIT, || async {
        Ok(bob.text("#t3 [data-col=presence]").await.contains("Alice viewing"))
    })
    .await;

    // Merge #4 into #3: through the desk's merge; #4 says where it went.
    alice.go("/desk/tickets/4").await;
    alice.field("Merge into ticket").await.send_keys("3").await.unwrap();
    alice.button("Merge").await.click().await.unwrap();
    eventually("merged", WAIT, || async { Ok(alice.path().await == "/desk/tickets/3?done=merged-4") }).await;
    assert!(alice.text("#notice").await.contains("#4 was merged into this one"));
    alice.go("/desk/tickets/4").await;
    assert!(alice.text("#merged").await.contains("#3"));
    assert_eq!(api_json(&daemon, "/api/v1/tickets/4").await["mergedInto"], "support_ticket_3");

    // The admin: quarantine retry, outbox drop, held spam.
    bob.button("Sign out").await.click().await.unwrap();
    eventually("signed out", WAIT, || async { Ok(bob.path().await.starts_with("/desk/login")) }).await;
    bob.sign_in(ADMIN_TOKEN).await;
    bob.go("/desk/admin").await;
    bob.axe("admin").await;
    bob.intact("the admin page").await;
    assert!(bob.text("#spam").await.contains("Cheap printers"), "the held offer is listed");
    bob.button("Retry quarantine entry 1").await.click().await.unwrap();
    eventually("retried", WAIT, || async { Ok(bob.path().await.starts_with("/desk/admin?done=")) }).await;
    assert!(bob.text(".notice").await.contains("Retried, and quarantined again"), "a mail with no sender stays out");
    let held = api_json(&daemon, "/api/v1/spam").await["entries"][0]["id"].as_u64().unwrap();
    bob.button(&format!("Drop spam entry {held}")).await.click().await.unwrap();
    eventually("spam dropped", WAIT, || async { Ok(bob.path().await == "/desk/admin?done=dropped") }).await;
    assert_eq!(api_json(&daemon, "/api/v1/spam").await["entries"], json!([]));
    lab.stop_smtp();
    alice.go("/desk/tickets/2").await;
    alice.field("Reply").await.send_keys("We are checking the double charge.").await.unwrap();
    alice.button("Send reply").await.click().await.unwrap();
    eventually("the reply is queued", WAIT, || async { Ok(alice.path().await == "/desk/tickets/2?done=reply") }).await;
    let waiting = api_json(&daemon, "/api/v1/outbox").await;
    let seq = waiting["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ticket"] == 2 && e["kind"] == "relay")
        .expect("the relay waits")["seq"]
        .as_u64()
        .unwrap();
    bob.go("/desk/admin").await;
    bob.button(&format!("Drop outbox entry {seq}")).await.click().await.unwrap();
    eventually("dropped", WAIT, || async { Ok(bob.path().await == "/desk/admin?done=dropped") }).await;
    let waiting = api_json(&daemon, "/api/v1/outbox").await;
    assert!(waiting["entries"].as_array().unwrap().iter().all(|e| e["seq"] != seq));
    let t2 = api_json(&daemon, "/api/v1/tickets/2").await;
    assert!(
        t2["threads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("dropped from the outbox by admin"))
    );
    lab.start_smtp();

    // A form on another site that posts to the console: refused.
    let attack = format!(
        "<!doctype html><form id=f method=post action=\"{base}/desk/tickets/1/note\"><input name=text value=pwned><input name=csrf value=x></form><script>document.getElementById('f').submit()</script>"
    );
    let (attacker, attacker_hits) = http_server(attack).await;
    alice.c.goto(&format!("http://localhost:{attacker}/attack")).await.unwrap();
    eventually("the cross-site post lands on a refusal", WAIT, || async {
        Ok(alice.path().await == "/desk/tickets/1/note")
    })
    .await;
    assert!(alice.text("h1").await.contains("Not allowed"));
    assert_eq!(attacker_hits.all(), vec!["/attack".to_owned()]);
    let t1 = api_json(&daemon, "/api/v1/tickets/1").await;
    assert!(t1["threads"].as_array().unwrap().iter().all(|e| e["message"] != "pwned"), "nothing was stored");

    // Hostile mail, modelled on published helpdesk and webmail XSS bugs.
    let js = format!("fetch('{c}/js-attachment-ran'); window.__pwned = 'js';");
    let js_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(js.as_bytes()));
    let pwn = |tag: &str| format!("fetch('{c}/{tag}');window.__pwned='{tag}'");
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        // Zammad CVE-2018-1000154: the subject; FreeScout/OTRS: the sender's name.
        (
            "subject and name",
            mail(
                &format!("\"<img src={c}/name onerror=\\\"{}\\\">\" <stranger@example.test>", pwn("name")),
                "x1@attacker.test",
                &format!("\"><svg onload=\"{}\"><script>{}</script>", pwn("subject-svg"), pwn("subject-script")),
                &format!("<script>{}</script> <img src=x onerror=\"{}\">", pwn("text-body"), pwn("text-img")),
            ),
        ),
        // FreeScout CVE-2026-32754 / RTIR / Roundcube: HTML body, links, SVG, MathML, CSS, a pixel.
        (
            "html body",
            html_mail(
                "Mallory <stranger@example.test>",
                "x2@attacker.test",
                "Quarterly report",
                &format!(
                    "<p onclick=\"{p1}\">Hello <a href=\"jAvAsCrIpT:{p2}\">click</a> <a href=\"&#106;avascript:{p2}\">again</a></p>\
                 <script>{p3}</script><img src=x onerror=\"{p4}\"><svg><animate onbegin=\"{p5}\" attributeName=x dur=1s></svg>\
                 <math><annotation-xml encoding=\"text/html\"><img src=y onerror=\"{p6}\"></annotation-xml></math>\
                 <style>@import url({c}/css-import);</style><div style=\"background:url({c}/css-bg)\">styled</div>\
                 <meta http-equiv=\"refresh\" content=\"0;url={c}/refresh\"><base href=\"{c}/base/\">\
                 <form action=\"/desk/logout\" method=post><button>Win a prize</button></form><iframe src=\"{c}/iframe\"></iframe>\
                 <div hx-post=\"/desk/bulk\" hx-trigger=\"load\">htmx</div><img src=\"{c}/pixel.gif\" width=1 height=1>\
                 <script src=\"/attachments/{js_sha}/evil.js\"></script><script src=\"/desk/files/{js_sha}/evil.js\"></script>\
                 <object data=\"{c}/object\"></object><link rel=stylesheet href=\"{c}/link.css\">",
                    p1 = pwn("onclick"),
                    p2 = pwn("javascript"),
                    p3 = pwn("script"),
                    p4 = pwn("onerror"),
                    p5 = pwn("svg"),
                    p6 = pwn("mathml"),
                ),
                // FreeScout GHSA-fffc-phh8-5h4v: a script uploaded as an attachment;
                // osTicket CVE-2019-13397: the file name; RT CVE-2022-25802: a lying type.
                &format!(
                    "--zz\r\nContent-Type: application/javascript\r\nContent-Disposition: attachment; filename=\"evil.js\"\r\n\r\n{js}\r\n\
                 --zz\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"x\\\"><img src={c}/filename onerror=alert(1)>.pdf\"\r\n\r\n%PDF-1.4\r\n\
                 --zz\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"photo.png\"\r\n\r\n<html><script>{}</script></html>\r\n\
                 --zz\r\nContent-Type: image/svg+xml\r\nContent-Disposition: attachment; filename=\"logo.svg\"\r\n\r\n<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"{}\"/>\r\n",
                    pwn("lying-type"),
                    pwn("svg-file")
                ),
            ),
        ),
    ];
    for (_, raw) in &hostile {
        lab.smtp_send("stranger@example.test", &["support@example.test"], raw).await.unwrap();
    }
    // A 10 MB single line and 100,000 nested elements go straight into the mailbox.
    let huge = html_mail(
        "Big <stranger@example.test>",
        "x3@attacker.test",
        "One long line",
        &format!("<p>{}<img src=\"{c}/after-10mb\"></p>", "A".repeat(10 << 20)),
        "",
    );
    let deep = html_mail(
        "Deep <stranger@example.test>",
        "x4@attacker.test",
        "Deeply nested",
        &format!("{}<img src=\"{c}/deep\">{}", "<div>".repeat(100_000), "</div>".repeat(100_000)),
        "",
    );
    lab.imap_append("support", "INBOX", &huge).await.unwrap();
    lab.imap_append("support", "INBOX", &deep).await.unwrap();
    daemon
        .eventually_json("/api/v1/tickets?limit=20", Duration::from_secs(120), |_, v| {
            v["tickets"].as_array().is_some_and(|t| t.len() == 8)
        })
        .await;

    alice.go("/desk/?status=any").await;
    alice.intact("the queue with hostile mail").await;
    assert!(alice.text("#queue").await.contains("<svg onload="), "the subject is shown, as text");
    for n in 5..=8 {
        alice.go(&format!("/desk/tickets/{n}")).await;
        alice.intact(&format!("ticket {n}")).await;
        alice.go(&format!("/desk/tickets/{n}/entries/0/original")).await;
        alice.css("#mail-frame").await;
        alice.intact(&format!("the original of ticket {n}")).await;
    }
    // Postfix may deliver the two hostile mails it took in either order:
    // the one with the script attached is found by its attachment.
    let mut with_script = None;
    for n in 5..=8 {
        let t = api_json(&daemon, &format!("/api/v1/tickets/{n}")).await;
        if t["attachments"].as_array().unwrap().iter().any(|a| a["filename"] == "evil.js") {
            with_script = Some(n);
        }
    }
    let n = with_script.expect("the mail with evil.js attached is a ticket");
    alice.go(&format!("/desk/tickets/{n}/entries/0/original")).await;
    assert!(alice.text("#blocked").await.contains("remote image(s) blocked"), "the tracking pixel is named");
    // Whatever a frame or page might still load or send, it has had time to.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(canary_hits.all(), Vec::<String>::new(), "the canary was reached: something ran or loaded");
    assert_eq!(console_csp_reports(&daemon).await, 0, "a console page broke its own policy");

    println!("browser test: {:.1}s", started.elapsed().as_secs_f64());
    alice.c.close().await.unwrap();
    bob.c.close().await.unwrap();
}
