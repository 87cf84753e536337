//! Failover of a two-node cluster (#17): two `ticketd run` processes of the
//! real binary, each in a network namespace of its own on a private bridge,
//! one PostgreSQL and the lab's Dovecot and Postfix. (The server runs with
//! fsync off, for speed: every fault here ends processes or sessions, never
//! the machine, so nothing it wrote can be lost from the page cache.) Mail arrives
//! throughout (new tickets and replies), agents add notes through the API of
//! both nodes, and one fault at a time hits the leader, several rounds each:
//! SIGKILL; SIGSTOP past the detection window, then SIGCONT; its lock
//! session ended (`pg_terminate_backend`); PostgreSQL crashed and restarted
//! (`-m immediate`); its namespace's link taken down (cut off from the
//! database, and from everything else), then up.
//!
//! After healing and draining: every appended Message-ID has exactly one
//! thread entry and nothing stayed unprocessed in the INBOX; no commit
//! landed with an epoch older than one already taken (`ticketd_commits`
//! against `ticketd_epochs`); fence refusals are counted (above 0 in the
//! pause rounds); duplicate sends are at most one per fault (the exact
//! number is printed); every note the API accepted is there once, every
//! one refused is not. Takeover times per fault (fault → the new epoch's
//! first commit, → the new leader's first ingest) are printed as p50/max
//! and bounded: SIGKILL ≤ 5 s, pause and partition ≤ the lease timeout + 5 s.
//!
//! Bounded: the lease timeout here is 4 s (the default is 10 s) and the
//! whole test stops itself after 240 s; the namespaces, the bridge, both
//! nodes and both labs are removed when it ends, however it ends.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::Lab;
use common::pg::PgLab;
use futures::TryStreamExt;
use ticketd::api::auth::Token;
use ticketd::cli::http::HttpClient;
use ticketd::config::Listen;
use ticketd::store::postgres::{PgSettings, PostgresBackend};
use ticketd::store::{Records, Store};

const LEASE_TIMEOUT: Duration = Duration::from_secs(4);
const TOKEN: &str = "failover-admin-token-0123456789abcdef";
const WHOLE_TEST: Duration = Duration::from_secs(240);

fn sh(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

/// A bridge on the host and one namespace per node on it.
struct Net {
    bridge: String,
    /// 10.231.X: the bridge is .1, node i is .(2+i).
    prefix: String,
    namespaces: Vec<(String, String)>,
}

impl Net {
    fn new(nodes: usize) -> Net {
        let tag = std::process::id() % 10000;
        let prefix = format!("10.231.{}", std::process::id() % 250);
        let mut net = Net { bridge: format!("tdbr{tag}"), prefix, namespaces: Vec::new() };
        let b = net.bridge.clone();
        sh(&["ip", "link", "add", &b, "type", "bridge"]).unwrap();
        sh(&["ip", "addr", "add", &format!("{}.1/24", net.prefix), "dev", &b]).unwrap();
        sh(&["ip", "link", "set", &b, "up"]).unwrap();
        for i in 0..nodes {
            let (ns, host, inner) = (format!("tdns{tag}n{i}"), format!("tdh{tag}n{i}"), format!("tdc{tag}n{i}"));
            sh(&["ip", "netns", "add", &ns]).unwrap();
            net.namespaces.push((ns.clone(), inner.clone()));
            sh(&["ip", "link", "add", &host, "type", "veth", "peer", "name", &inner]).unwrap();
            sh(&["ip", "link", "set", &host, "master", &b, "up"]).unwrap();
            sh(&["ip", "link", "set", &inner, "netns", &ns]).unwrap();
            let ip = net.ip(i);
            sh(&["ip", "netns", "exec", &ns, "ip", "addr", "add", &format!("{ip}/24"), "dev", &inner]).unwrap();
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", &inner, "up"]).unwrap();
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]).unwrap();
        }
        net
    }

    fn host_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 2 + i)
    }

    /// Takes node `i`'s link down (a silent partition) or up again.
    fn link(&self, i: usize, up: bool) {
        let (ns, inner) = &self.namespaces[i];
        sh(&["ip", "netns", "exec", ns, "ip", "link", "set", inner, if up { "up" } else { "down" }]).unwrap();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (ns, _) in &self.namespaces {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

/// Relays `listen` (on the bridge) to `to` (the lab on loopback) until dropped.
async fn relay(listen: &str, to: u16) -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind(format!("{listen}:0")).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                }
            });
        }
    });
    (port, task)
}

struct Node {
    name: String,
    index: usize,
    ns: String,
    ip: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn log(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn api(&self) -> HttpClient {
        let addr = format!("{}:8025", self.ip).parse().unwrap();
        HttpClient::new(Listen::Tcp(addr)).with_token(Token::new(TOKEN)).with_timeout(Duration::from_secs(8))
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log()).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(env!("CARGO_BIN_EXE_ticketd"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("TICKETD_LOG", "info,ticketd=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, sig: &str) {
        sh(&["kill", &format!("-{sig}"), &self.pid().to_string()]).unwrap();
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = sh(&["kill", "-CONT", &c.id().to_string()]);
        }
        self.kill9();
    }
}

/// (role, epoch) from a node's `/readyz`, if it answers.
async fn role(node: &Node) -> Option<(String, u64)> {
    let r = node.api().get("/readyz").await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    Some((v["role"].as_str()?.to_owned(), v["epoch"].as_u64()?))
}

/// A metric's value summed over its series, from a node's `/metrics`.
async fn metric(node: &Node, name: &str) -> Option<f64> {
    let r = node.api().get("/metrics").await.ok()?;
    if !r.status.is_success() {
        return None;
    }
    let text = String::from_utf8_lossy(&r.body).into_owned();
    Some(
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// The test's own connection to the database (reconnecting after a restart).
struct Db {
    url: String,
}

impl Db {
    async fn query(&self, sql: &str) -> Option<Vec<tokio_postgres::Row>> {
        let (client, conn) =
            tokio::time::timeout(Duration::from_secs(3), tokio_postgres::connect(&self.url, tokio_postgres::NoTls))
                .await
                .ok()?
                .ok()?;
        let driver = tokio::spawn(conn);
        let rows = tokio::time::timeout(Duration::from_secs(5), client.query(sql, &[])).await.ok()?.ok();
        driver.abort();
        rows
    }

    /// The first epoch above `above` with a commit, when it was taken, by
    /// whom, and its first commit (wall clock of this machine).
    async fn next_epoch(&self, above: u64) -> Option<(u64, String, SystemTime)> {
        let rows = self
            .query(&format!(
                "SELECT c.epoch, coalesce(c.node, ''), EXTRACT(EPOCH FROM c.first_at)::float8 FROM ticketd_commits c \
                 WHERE c.epoch > {above} ORDER BY c.epoch LIMIT 1"
            ))
            .await?;
        let r = rows.first()?;
        let at: f64 = r.get(2);
        Some((r.get::<_, i64>(0) as u64, r.get(1), SystemTime::UNIX_EPOCH + Duration::from_secs_f64(at)))
    }
}

fn raw(i: usize) -> Vec<u8> {
    let (sender, extra) = if i % 4 == 3 {
        (format!("customer+{}@example.test", i - 1), format!("In-Reply-To: <fo-{}@customer.example.test>\r\n", i - 1))
    } else {
        (format!("customer+{i}@example.test"), String::new())
    };
    format!(
        "From: Customer <{sender}>\r\nTo: support@example.test\r\nSubject: Failover {i}\r\nMessage-ID: <fo-{i}@customer.example.test>\r\n{extra}\r\nmarker-{i}-end\r\n"
    )
    .into_bytes()
}

fn is_original(i: usize) -> bool {
    i % 4 != 3
}

/// (Message-ID) of every message in `user`'s INBOX.
async fn message_ids(lab: &Lab, user: &str) -> Vec<String> {
    let Ok(mut s) = lab.session(user).await else { return Vec::new() };
    let mut out = Vec::new();
    if let Ok(mb) = s.examine("INBOX").await
        && mb.exists > 0
        && let Ok(stream) = s.uid_fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])").await
        && let Ok(fetches) = stream.try_collect::<Vec<_>>().await
    {
        for f in &fetches {
            let h = String::from_utf8_lossy(f.header().or(f.body()).unwrap_or_default()).into_owned();
            out.push(common::header(&h, "Message-ID").unwrap_or_default());
        }
    }
    let _ = s.logout().await;
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill,
    Pause,
    Terminate,
    Restart,
    Partition,
}

/// What an agent's note got from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Applied,
    /// A clear refusal: nothing was changed.
    Refused(String),
    /// The answer does not say (a lost connection, a timeout).
    Unknown(String),
}

/// The last lines of every node's log.
fn dump(nodes: &[Node]) -> String {
    nodes.iter().map(|n| format!("--- node {}:\n{}", n.name, n.tail())).collect::<Vec<_>>().join("\n")
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_survive_every_fault_without_loss_or_duplicates() {
    let started = Instant::now();
    let lab = Lab::start();
    let pg = PgLab::start().unwrap();
    let db = pg.fresh_db("failover").unwrap();
    let net = Net::new(2);
    // The nodes reach PostgreSQL over the bridge.
    pg.psql("ALTER SYSTEM SET listen_addresses = '*'").unwrap();
    let hba = pg.dir.path().join("data/pg_hba.conf");
    let mut text = std::fs::read_to_string(&hba).unwrap();
    text.push_str(&format!("host all all {}.0/24 scram-sha-256\n", net.prefix));
    std::fs::write(&hba, text).unwrap();
    pg.crash().unwrap();
    pg.restart().unwrap();
    let host = net.host_ip();
    let (imap_port, _imap_relay) = relay(&host, lab.imap_port).await;
    let (smtp_port, _smtp_relay) = relay(&host, lab.smtp_port).await;
    let url = format!("postgres://{}:{}@{host}:{}/{db}?sslmode=disable", pg.user, pg.password, pg.port);

    let mut nodes: Vec<Node> = (0..2)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            let name = ["a", "b"][i].to_owned();
            std::fs::write(dir.path().join("api-token"), format!("{TOKEN}\n")).unwrap();
            let ip = net.ip(i);
            let config = dir.path().join("ticketd.toml");
            std::fs::write(
                &config,
                format!(
                    r#"[store]
backend = "postgres"
url = "{url}"
path = "{d}/db"

[cluster]
node = "{name}"
advertise = "http://{ip}:8025"
lease_timeout = "{lt}s"

[desk]
display_name = "Example Support"
acks_per_sender_per_hour = 100000
notifications_per_ticket_per_hour = 100000
notifications_per_agent_per_hour = 100000

[api]
listen = "{ip}:8025"
token_file = "{d}/api-token"

[smtp]
host = "{host}"
port = {smtp_port}
tls = "none"
timeout = "10s"
retry_initial = "1s"
retry_max = "4s"

[[mailboxes]]
name = "support"
address = "support@example.test"
host = "{host}"
port = {imap_port}
tls = "none"
username = "support@example.test"
password = "secret"
poll_interval = "1s"
timeout = "5s"
batch_size = 20

"#,
                    d = dir.path().display(),
                    lt = LEASE_TIMEOUT.as_secs(),
                ),
            )
            .unwrap();
            Node { name, index: i, ns: net.namespaces[i].0.clone(), ip, dir, config, child: None }
        })
        .collect();
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let dbc = Db { url: pg.url(&db) };

    // Mail throughout: about four a second, every fourth a reply.
    let appended = Arc::new(AtomicUsize::new(0));
    let stop_feed = Arc::new(AtomicBool::new(false));
    let burst = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (appended, stop, burst) = (appended.clone(), stop_feed.clone(), burst.clone());
        let imap = lab.imap_port;
        tokio::spawn(async move {
            let mut i = 0;
            let mut session: Option<common::ImapSession> = None;
            while !stop.load(Ordering::SeqCst) {
                if session.is_none() {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", imap)).await.unwrap();
                    let mut c = async_imap::Client::new(tcp);
                    let _ = c.read_response().await;
                    session = Some(c.login("support@example.test", "secret").await.map_err(|(e, _)| e).unwrap());
                }
                let s = session.as_mut().unwrap();
                let n = 1 + burst.swap(0, Ordering::SeqCst);
                for _ in 0..n {
                    s.append("INBOX", None, None, raw(i)).await.unwrap();
                    i += 1;
                    appended.store(i, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            if let Some(mut s) = session {
                let _ = s.logout().await;
            }
        })
    };

    let first = stable(&nodes, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{e}\n{}", dump(&nodes)));
    eprintln!("failover: node {} leads at epoch {}", nodes[first.0].name, first.1);
    // Agents: a note every 300 ms, alternately through each node's API.
    let outcomes: Arc<Mutex<Vec<(usize, u64, Outcome)>>> = Default::default();
    let stop_agents = Arc::new(AtomicBool::new(false));
    let agents = {
        let (outcomes, stop) = (outcomes.clone(), stop_agents.clone());
        let apis: Vec<HttpClient> = nodes.iter().map(|n| n.api()).collect();
        tokio::spawn(async move {
            let mut k = 0usize;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let ticket = 1 + (k as u64 * 7) % 20;
                let api = &apis[k % apis.len()];
                let body = ticketd::cli::http::Body::json(&serde_json::json!({ "text": format!("api-note-{k}-end") }));
                let path = format!("/api/v1/tickets/{ticket}/notes");
                let outcome = match api.send(axum::http::Method::POST, &path, &[], Some(body)).await {
                    Ok(r) if r.status.is_success() => Outcome::Applied,
                    // Not a ticket yet: nothing to count.
                    Ok(r) if r.status.as_u16() == 404 => {
                        k += 1;
                        continue;
                    }
                    Ok(r) => {
                        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                        let code = v["error"].as_str().unwrap_or("").to_owned();
                        let message = v["message"].as_str().unwrap_or("").to_owned();
                        let what = format!("{} {code}: {message}", r.status.as_u16());
                        if code == "leader_unreachable" || code == "timeout" || message.contains("outcome is unknown") {
                            Outcome::Unknown(what)
                        } else {
                            Outcome::Refused(what)
                        }
                    }
                    Err(e) if e.nobody_listens() => Outcome::Refused(e.to_string()),
                    Err(ticketd::cli::http::HttpError::Connect { source, .. }) => Outcome::Refused(source.to_string()),
                    Err(e) => Outcome::Unknown(e.to_string()),
                };
                outcomes.lock().unwrap().push((k, ticket, outcome));
                k += 1;
            }
        })
    };

    // Waits until exactly one node leads and the other answers as standby.
    async fn stable(nodes: &[Node], within: Duration) -> Result<(usize, u64), String> {
        let deadline = Instant::now() + within;
        loop {
            let mut roles = Vec::new();
            for n in nodes {
                roles.push(role(n).await);
            }
            let leaders: Vec<usize> = roles
                .iter()
                .enumerate()
                .filter(|(_, r)| r.as_ref().is_some_and(|(r, _)| r == "leader"))
                .map(|(i, _)| i)
                .collect();
            if leaders.len() == 1 && roles.iter().all(|r| r.is_some()) {
                let i = leaders[0];
                return Ok((i, roles[i].as_ref().unwrap().1));
            }
            if Instant::now() > deadline {
                return Err(format!("no single leader within {within:?}: {roles:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Eleven rounds, each fault at least twice; about 2 minutes.
    let plan = [
        Fault::Kill,
        Fault::Pause,
        Fault::Terminate,
        Fault::Restart,
        Fault::Partition,
        Fault::Kill,
        Fault::Terminate,
        Fault::Pause,
        Fault::Partition,
        Fault::Restart,
        Fault::Kill,
    ];
    let mut takeovers: BTreeMap<Fault, Vec<(f64, f64)>> = BTreeMap::new();
    let mut refusals: HashMap<(usize, u32), f64> = HashMap::new();
    let mut pause_refusals = 0.0;
    for (round, fault) in plan.iter().copied().enumerate() {
        assert!(started.elapsed() < WHOLE_TEST, "the failover test is bounded");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (leader, _) =
            stable(&nodes, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{e}\n{}", dump(&nodes)));
        let other = 1 - leader;
        let before = dbc
            .query("SELECT epoch FROM ticketd_lease")
            .await
            .and_then(|r| r.first().map(|r| r.get::<_, i64>(0) as u64))
            .unwrap();
        let mut baseline = [0.0; 2];
        for n in &nodes {
            baseline[n.index] = metric(n, "ticketd_messages_total").await.unwrap_or(0.0);
            if let Some(v) = metric(n, "ticketd_fence_refusals_total").await {
                refusals.insert((n.index, n.pid()), v);
            }
        }
        // A burst just before the fault: work is in hand when it hits.
        burst.store(10, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let t0 = SystemTime::now();
        let i0 = Instant::now();
        match fault {
            Fault::Kill => nodes[leader].kill9(),
            Fault::Pause => nodes[leader].signal("STOP"),
            Fault::Terminate => {
                let n = pg.terminate(&format!("ticketd/{}/lease", nodes[leader].name)).unwrap();
                assert_eq!(n, 1, "the leader's lock session");
            }
            Fault::Restart => {
                pg.crash().unwrap();
                pg.restart().unwrap();
            }
            Fault::Partition => net.link(leader, false),
        }
        // Fault → the first commit of a newer epoch.
        let (epoch, by, first_commit) = loop {
            if let Some(x) = dbc.next_epoch(before).await {
                break x;
            }
            assert!(
                i0.elapsed() < Duration::from_secs(40),
                "round {round} ({fault:?}): no new epoch\n{}",
                dump(&nodes)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let commit_s = first_commit.duration_since(t0).unwrap_or_default().as_secs_f64();
        let new_leader = nodes.iter().position(|n| n.name == by).expect("a node of ours");
        if matches!(fault, Fault::Kill | Fault::Pause | Fault::Partition) {
            assert_eq!(new_leader, other, "round {round} ({fault:?}): the other node takes over");
        }
        // → its first ingest.
        let ingest_s = loop {
            if metric(&nodes[new_leader], "ticketd_messages_total").await.unwrap_or(0.0) > baseline[new_leader] {
                break i0.elapsed().as_secs_f64();
            }
            assert!(
                i0.elapsed() < Duration::from_secs(40),
                "round {round} ({fault:?}): no ingest by the new leader\n{}",
                dump(&nodes)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!(
            "failover round {round}: {fault:?} of {} (epoch {before}) → epoch {epoch} by {by}: first commit after {commit_s:.2} s, first ingest after {ingest_s:.2} s",
            nodes[leader].name
        );
        takeovers.entry(fault).or_default().push((commit_s, ingest_s));
        match fault {
            Fault::Kill => {
                nodes[leader].spawn();
            }
            Fault::Pause => {
                // Past the window: resumed, it finds itself deposed and fenced.
                let past = LEASE_TIMEOUT + Duration::from_secs(1);
                if i0.elapsed() < past {
                    tokio::time::sleep(past - i0.elapsed()).await;
                }
                nodes[leader].signal("CONT");
                let deadline = Instant::now() + Duration::from_secs(20);
                while role(&nodes[leader]).await.is_none_or(|(r, _)| r != "standby") {
                    assert!(Instant::now() < deadline, "the resumed node did not step down\n{}", dump(&nodes));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if std::env::var_os("FAILOVER_DEBUG").is_some() {
                    eprintln!("--- resumed node {}:\n{}", nodes[leader].name, nodes[leader].tail());
                }
                // The term's last batch (fetched as it resumed) meets the fence
                // while the term stops: wait for that.
                let was = refusals.get(&(leader, nodes[leader].pid())).copied().unwrap_or(0.0);
                let mut now = was;
                let deadline = Instant::now() + Duration::from_secs(3);
                while now <= was && Instant::now() < deadline {
                    now = metric(&nodes[leader], "ticketd_fence_refusals_total").await.unwrap_or(was);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                pause_refusals += now - was;
            }
            Fault::Partition => {
                let past = LEASE_TIMEOUT + Duration::from_secs(1);
                if i0.elapsed() < past {
                    tokio::time::sleep(past - i0.elapsed()).await;
                }
                net.link(leader, true);
            }
            Fault::Terminate | Fault::Restart => {}
        }
        for n in &nodes {
            if n.child.is_some()
                && let Some(v) = metric(n, "ticketd_fence_refusals_total").await
            {
                refusals.insert((n.index, n.pid()), v);
            }
        }
    }

    // Heal, stop the load, drain.
    stop_feed.store(true, Ordering::SeqCst);
    stop_agents.store(true, Ordering::SeqCst);
    feeder.await.unwrap();
    agents.await.unwrap();
    let (leader, _) = stable(&nodes, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{e}\n{}", dump(&nodes)));
    let total = appended.load(Ordering::SeqCst);
    let originals = (0..total).filter(|i| is_original(*i)).count();
    let reader = Store::with_backend(Arc::new(
        PostgresBackend::open(PgSettings::from_url(&pg.url(&db), "checker").unwrap()).unwrap(),
    ));
    let drain = Instant::now();
    let mut undrained = None;
    loop {
        let missing = (0..total)
            .filter(|i| {
                reader.ticket_by_message_id(&format!("<fo-{i}@customer.example.test>")).ok().flatten().is_none()
            })
            .count();
        let acks: HashSet<String> = message_ids(&lab, "customer").await.into_iter().collect();
        let pending = reader.pending_count();
        if missing == 0 && acks.len() >= originals && pending == 0 {
            break;
        }
        if drain.elapsed() > Duration::from_secs(60) {
            undrained = Some(format!(
                "not drained in 60 s: {missing} of {total} mails without a ticket, {} of {originals} acknowledgements, {pending} in the outbox\n{}",
                acks.len(),
                dump(&nodes)
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained_s = drain.elapsed().as_secs_f64();
    for n in &nodes {
        if let Some(v) = metric(n, "ticketd_fence_refusals_total").await {
            refusals.insert((n.index, n.pid()), v);
        }
    }
    let standby = 1 - leader;
    // Every node serves the desk: the standby names the leader, takes a
    // change through its API (forwarded) and serves the CLI.
    let ready = |n: &Node| {
        let api = n.api();
        async move { serde_json::from_slice::<serde_json::Value>(&api.get("/readyz").await.unwrap().body).unwrap() }
    };
    let (rl, rs) = (ready(&nodes[leader]).await, ready(&nodes[standby]).await);
    assert_eq!((rl["role"].as_str(), rs["role"].as_str()), (Some("leader"), Some("standby")), "{rl} {rs}");
    assert_eq!(rs["leader"].as_str(), Some(nodes[leader].name.as_str()), "{rs}");
    assert_eq!(rs["leader_address"].as_str(), Some(format!("http://{}:8025", nodes[leader].ip).as_str()), "{rs}");
    assert_eq!(rs["epoch"], rl["epoch"]);
    assert_eq!(rs["ready"], true, "a standby is ready: it serves reads");
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .args(["--config", nodes[standby].config.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&["tickets", "note", "1", "--text", "cli-through-the-standby-end"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["tickets", "show", "1", "--json"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("cli-through-the-standby-end"));
    // An offline command refuses while a node leads.
    let out = cli(&["store", "prune"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("leads the cluster"), "{err}");
    for n in nodes.iter_mut() {
        if let Some(c) = &n.child {
            let _ = sh(&["kill", "-TERM", &c.id().to_string()]);
        }
    }
    for n in nodes.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(c) = n.child.as_mut() {
            if c.try_wait().unwrap().is_some() {
                n.child = None;
                break;
            }
            assert!(Instant::now() < deadline, "node {} did not stop\n{}", n.name, n.tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Lost and duplicated: every mail in exactly one thread entry.
    let tickets = reader.tickets().unwrap();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut notes: HashMap<usize, usize> = HashMap::new();
    for t in &tickets {
        for e in &t.ticket.threads {
            if let Some(i) = e.message.strip_prefix("marker-").and_then(|r| r.strip_suffix("-end")) {
                *seen.entry(i.trim().parse().unwrap()).or_default() += 1;
            }
            if let Some(k) = e.message.strip_prefix("api-note-").and_then(|r| r.strip_suffix("-end")) {
                *notes.entry(k.trim().parse().unwrap()).or_default() += 1;
            }
        }
    }
    let lost: Vec<usize> = (0..total).filter(|i| !seen.contains_key(i)).collect();
    let doubled: Vec<usize> = (0..total).filter(|i| seen.get(i).is_some_and(|n| *n > 1)).collect();
    let flags = lab.imap_flags("support", "INBOX").await.unwrap();
    let unprocessed = flags.iter().filter(|(_, f)| !f.iter().any(|x| x == "\\Seen")).count();
    // Stale commits: an epoch's commit that began after a later epoch was taken.
    let stale: i64 = dbc
        .query(
            "SELECT count(*) FROM ticketd_commits c JOIN ticketd_epochs e ON e.epoch > c.epoch \
             WHERE c.last_at > e.acquired_at",
        )
        .await
        .unwrap()[0]
        .get(0);
    let commits: i64 =
        dbc.query("SELECT coalesce(sum(commits), 0)::int8 FROM ticketd_commits").await.unwrap()[0].get(0);
    let epochs: i64 = dbc.query("SELECT count(*) FROM ticketd_epochs").await.unwrap()[0].get(0);
    let acks = message_ids(&lab, "customer").await;
    let alerts = message_ids(&lab, "alice").await;
    let dup = |v: &[String]| v.len() - v.iter().collect::<HashSet<_>>().len();
    let (dup_acks, dup_alerts) = (dup(&acks), dup(&alerts));
    let outcomes = outcomes.lock().unwrap().clone();
    let mut api_wrong = Vec::new();
    let (mut applied, mut refused, mut unknown) = (0, 0, 0);
    for (k, _, o) in &outcomes {
        let n = notes.get(k).copied().unwrap_or(0);
        match o {
            Outcome::Applied => {
                applied += 1;
                if n != 1 {
                    api_wrong.push(format!("note {k}: accepted, found {n} times"));
                }
            }
            Outcome::Refused(why) => {
                refused += 1;
                if n != 0 {
                    api_wrong.push(format!("note {k}: refused ({why}), found {n} times"));
                }
            }
            Outcome::Unknown(_) => {
                unknown += 1;
                if n > 1 {
                    api_wrong.push(format!("note {k}: outcome unknown, found {n} times"));
                }
            }
        }
    }
    let fence_refusals: f64 = refusals.values().sum();

    eprintln!(
        "failover: {} rounds in {:.0} s; {total} mails ({originals} new tickets), drained in {drained_s:.1} s",
        plan.len(),
        started.elapsed().as_secs_f64()
    );
    for (fault, v) in &takeovers {
        let mut c: Vec<f64> = v.iter().map(|x| x.0).collect();
        let mut i: Vec<f64> = v.iter().map(|x| x.1).collect();
        eprintln!(
            "failover: {fault:?}: {} rounds; fault → first commit p50 {:.2} s, max {:.2} s; → first ingest p50 {:.2} s, max {:.2} s",
            v.len(),
            percentile(&mut c, 0.5),
            percentile(&mut c, 1.0),
            percentile(&mut i, 0.5),
            percentile(&mut i, 1.0)
        );
    }
    eprintln!(
        "failover: lost {}, duplicated entries {}, unprocessed in INBOX {unprocessed}; {commits} commits in {epochs} epochs, stale-epoch commits {stale}; fence refusals {fence_refusals} ({pause_refusals} after pauses)",
        lost.len(),
        doubled.len()
    );
    eprintln!(
        "failover: duplicate sends: {dup_acks} acknowledgements, {dup_alerts} notifications ({} faults); API notes: {applied} applied, {refused} refused, {unknown} unknown",
        plan.len()
    );
    for (k, t, o) in outcomes.iter().filter(|(_, _, o)| !matches!(o, Outcome::Applied)).take(8) {
        eprintln!("failover: note {k} on ticket {t}: {o:?}");
    }
    if let Some(why) = undrained {
        panic!("{why}");
    }
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(doubled.is_empty(), "duplicated: {doubled:?}");
    assert_eq!(flags.len(), total, "nothing left the INBOX");
    assert_eq!(unprocessed, 0, "every mail marked processed");
    assert_eq!(stale, 0, "no commit with a stale epoch");
    assert!(pause_refusals > 0.0, "the fence refused the resumed leader's commits");
    assert!(dup_acks + dup_alerts <= plan.len(), "at most one duplicate send per fault");
    assert!(api_wrong.is_empty(), "API changes: {api_wrong:?}");
    assert!(applied > 0, "agents got changes through");
    for (fault, v) in &takeovers {
        let worst = v.iter().map(|x| x.0).fold(0.0, f64::max);
        let bound = match fault {
            Fault::Kill => 5.0,
            Fault::Pause | Fault::Partition => LEASE_TIMEOUT.as_secs_f64() + 5.0,
            Fault::Terminate | Fault::Restart => LEASE_TIMEOUT.as_secs_f64() + 5.0,
        };
        assert!(worst <= bound, "{fault:?}: takeover took {worst:.2} s, over {bound} s");
    }
    assert!(started.elapsed() < WHOLE_TEST, "the failover test is bounded");
}
