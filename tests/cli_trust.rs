//! The CLI trusts only the daemon (the attack pass's second finding): while
//! the daemon is down any local user can bind `api.listen`, and the CLI used
//! to send whatever answered there the admin token. Now the store decides
//! whether the daemon runs (a store the CLI can open is used directly and
//! nothing is sent anywhere), the CLI prefers the daemon's unix socket and
//! checks who serves it, and over TCP the daemon proves it holds the token
//! before the token is sent. A squatter on the port keeps neither the CLI
//! nor the daemon from working.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, ApiAt, Daemon, Lab};
use ticketd::testkit::{ApiKeys, TestConfig};

/// A program squatting on a TCP port: records every byte it is sent and
/// answers every request with `reply`.
struct Squatter {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Squatter {
    fn on(listener: TcpListener, reply: &'static str) -> Squatter {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, c, st) = (seen.clone(), connections.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        *c.lock().unwrap() += 1;
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = conn.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            s.lock().unwrap().extend_from_slice(&buf[..n]);
                            let _ = conn.write_all(reply.as_bytes());
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Squatter { port, seen, connections, stop }
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

const FAKE_OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n{\"tickets\":[],\"next_cursor\":null}";

fn cli(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn tcp_port(d: &Daemon) -> u16 {
    match d.listen() {
        ticketd::config::Listen::Tcp(a) => a.port(),
        other => panic!("a TCP listener, not {other}"),
    }
}

/// The daemon's config with `api.socket` added (the package's setup).
fn add_socket(d: &mut Daemon) -> std::path::PathBuf {
    let sock = d.dir.path().join("cli.sock");
    d.reconfigure(|c| api_keys(c).socket = Some(sock.clone()));
    sock
}

fn api_keys(c: &mut TestConfig) -> &mut ApiKeys {
    c.api.as_mut().expect("an [api] section")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_on_the_api_port_never_gets_the_admin_token() {
    let lab = Lab::start();
    let mut daemon = Daemon::prepare_api(&lab, ApiAt::Tcp, "", "");
    add_socket(&mut daemon);
    let port = tcp_port(&daemon);

    // The daemon is down and someone else holds its port.
    let squatter = Squatter::on(TcpListener::bind(("127.0.0.1", port)).unwrap(), FAKE_OK);
    let out = cli(&daemon.config, &["tickets", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]", "read from the store itself");
    let backup = daemon.dir.path().join("down.tar");
    let out = cli(&daemon.config, &["backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&daemon.config, &["restore", "--verify-only", backup.to_str().unwrap()]);
    assert!(out.status.success(), "the backup is the store's, not the squatter's bytes");
    assert_eq!(squatter.connections(), 0, "with the daemon down the CLI connects nowhere");

    // The daemon starts although its port is taken: mail goes on, the CLI
    // uses the socket, /readyz names the listener.
    daemon.spawn();
    lab.smtp_send("customer@example.test", &["support@example.test"], b"From: customer@example.test\r\nTo: support@example.test\r\nSubject: Squatted\r\nMessage-ID: <sq1@c.test>\r\n\r\nHello\r\n").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cli(&daemon.config, &["tickets", "list", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        if String::from_utf8_lossy(&out.stdout).contains("Squatted") {
            break;
        }
        assert!(Instant::now() < deadline, "no ticket through the socket");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sock = ticketd::config::Listen::Unix(daemon.dir.path().join("cli.sock"));
    let api = ticketd::cli::http::HttpClient::new(sock);
    let ready: serde_json::Value = serde_json::from_slice(&api.get("/readyz").await.unwrap().body).unwrap();
    let name = format!("127.0.0.1:{port}");
    assert_eq!(ready["listeners"][&name]["ok"], false, "{ready:#}");
    assert!(ready["problems"].to_string().contains(&name), "{ready:#}");
    assert!(!squatter.seen().contains(ADMIN_TOKEN), "the squatter saw the token:\n{}", squatter.seen());
    assert_eq!(squatter.connections(), 0, "the CLI went to the socket");

    // The port comes free: the daemon takes it within its retry period.
    drop(squatter);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r: serde_json::Value = serde_json::from_slice(&api.get("/readyz").await.unwrap().body).unwrap();
        if r["listeners"][&name]["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never bound its port: {r:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(daemon.api().get("/healthz").await.unwrap().status, 200);
    daemon.stop_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_the_daemon_proves_itself_before_the_token_is_sent() {
    let lab = Lab::start();
    let daemon = Daemon::start_api(&lab, ApiAt::Tcp);
    let port = tcp_port(&daemon);
    let out = cli(&daemon.config, &["tickets", "list", "--json"]);
    assert!(out.status.success(), "the real daemon proves itself: {}", String::from_utf8_lossy(&out.stderr));

    // A config pointing at a squatter while the daemon holds the store: a
    // squatter cannot answer the challenge, so it never sees the token.
    let liar = Squatter::on(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"proof\":\"00\"}",
    );
    let other = daemon.config_variant("liar.toml", |c| api_keys(c).listen = format!("127.0.0.1:{}", liar.port));
    let out = cli(&other, &["tickets", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to send the admin token"), "{err}");
    assert!(liar.connections() > 0, "the CLI asked it for proof");
    assert!(!liar.seen().contains(ADMIN_TOKEN), "{}", liar.seen());
    assert!(!liar.seen().to_lowercase().contains("authorization"), "{}", liar.seen());

    // A squatter that relays the challenge to the real daemon gets a proof
    // for the daemon's own address, which does not fit the squatter's.
    let relay_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay_listener.local_addr().unwrap().port();
    let relayed = Arc::new(Mutex::new(Vec::<u8>::new()));
    {
        let relayed = relayed.clone();
        std::thread::spawn(move || {
            for conn in relay_listener.incoming().take(4) {
                let Ok(mut client) = conn else { continue };
                let Ok(mut upstream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { continue };
                let mut c2 = client.try_clone().unwrap();
                let mut u2 = upstream.try_clone().unwrap();
                let relayed = relayed.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = c2.read(&mut buf) {
                        if n == 0 || u2.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        relayed.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
                let _ = std::io::copy(&mut upstream, &mut client);
            }
        });
    }
    let relay_cfg = daemon.config_variant("relay.toml", |c| api_keys(c).listen = format!("127.0.0.1:{relay_port}"));
    let out = cli(&relay_cfg, &["tickets", "list"]);
    assert!(!out.status.success(), "a relayed proof does not fit");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could not prove"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = String::from_utf8_lossy(&relayed.lock().unwrap()).into_owned();
    assert!(seen.contains("x-ticketd-challenge"), "the challenge went through the relay: {seen}");
    assert!(!seen.contains(ADMIN_TOKEN), "{seen}");
}

/// A process of another user serving the configured socket is refused
/// before the token is sent (`SO_PEERCRED`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_served_by_another_user_is_refused() {
    let lab = Lab::start();
    let mut daemon = Daemon::prepare_api(&lab, ApiAt::Tcp, "", "");
    add_socket(&mut daemon);
    daemon.spawn();
    // Another user's socket in a directory of its own (the daemon's test
    // directory is private, as /run/ticketd would be).
    let outside = tempfile::tempdir().unwrap();
    assert!(Command::new("chmod").arg("755").arg(outside.path()).status().unwrap().success());
    let dir = outside.path().join("other");
    std::fs::create_dir(&dir).unwrap();
    assert!(Command::new("chown").arg("ticketd-lab:ticketd-lab").arg(&dir).status().unwrap().success());
    let fake = dir.join("api.sock");
    let seen = outside.path().join("seen.bin");
    std::fs::write(&seen, b"").unwrap();
    assert!(Command::new("chmod").arg("666").arg(&seen).status().unwrap().success());
    let script = format!(
        "import socket,os\ns=socket.socket(socket.AF_UNIX)\ns.bind({fake:?})\nos.chmod({fake:?},0o777)\ns.listen(4)\nwhile True:\n  c,_=s.accept()\n  c.settimeout(1)\n  try:\n    d=c.recv(65536)\n    open({seen:?},'ab').write(d)\n    c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{{}}')\n  except Exception:\n    pass\n  c.close()\n",
        fake = fake.to_str().unwrap(),
        seen = seen.to_str().unwrap(),
    );
    let mut other = Command::new("setpriv")
        .args(["--reuid", "ticketd-lab", "--regid", "ticketd-lab", "--clear-groups", "/usr/bin/python3", "-c", &script])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake.exists() {
        assert!(Instant::now() < deadline, "the other user's socket did not appear");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cfg = daemon.config_variant("other.toml", |c| api_keys(c).socket = Some(fake.clone()));
    let out = cli(&cfg, &["tickets", "list"]);
    let _ = other.kill();
    let _ = other.wait();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not by the owner of the store"), "{err}");
    let got = std::fs::read(&seen).unwrap();
    assert!(got.is_empty(), "nothing was sent to the other user's socket: {}", String::from_utf8_lossy(&got));
    daemon.stop_ok();
}

/// What comes back as a backup must be one: a daemon that proves itself
/// but sends something else leaves no file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_does_not_check_out_is_an_error_not_a_file() {
    let lab = Lab::start();
    let daemon = Daemon::start_api(&lab, ApiAt::Tcp);
    // A stand-in daemon on another port that knows the token (so it passes
    // the proof) but sends garbage for the backup.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in fake.incoming().take(4) {
            let Ok(mut c) = conn else { continue };
            let local = c.local_addr().unwrap().to_string();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            loop {
                let mut buf = vec![0u8; 8192];
                let Ok(n) = c.read(&mut buf) else { break };
                if n == 0 {
                    break;
                }
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let body = if let Some(ch) =
                    req.lines().find_map(|l| l.strip_prefix("x-ticketd-challenge: ").map(|v| v.trim().to_owned()))
                {
                    let p =
                        ticketd::api::auth::expected_proof(&ticketd::api::auth::Token::new(ADMIN_TOKEN), &ch, &local);
                    format!("{{\"proof\":\"{p}\"}}")
                } else if req.starts_with("GET /api/v1/tickets") {
                    "{\"tickets\":[],\"next_cursor\":null}".to_owned()
                } else {
                    "this is not a tar file at all".to_owned()
                };
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        }
    });
    let cfg = daemon.config_variant("fake.toml", |c| api_keys(c).listen = format!("127.0.0.1:{fake_port}"));
    let file = daemon.dir.path().join("b.tar");
    let out = cli(&cfg, &["backup", file.to_str().unwrap()]);
    assert!(!out.status.success(), "garbage is not a backup");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not check out"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!file.exists(), "no file is left behind");
    let leftovers: Vec<_> = std::fs::read_dir(daemon.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
