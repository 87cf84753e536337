//! Test daemons with the local API switched on: a unix socket in the
//! daemon's own directory (no port to collide on) or a free loopback port,
//! an admin token and one for agent_alice.

use std::time::{Duration, Instant};

use ticketd::api::auth::Token;
use ticketd::cli::http::HttpClient;
use ticketd::config::{Config, Listen};
use ticketd::testkit::{ApiKeys, TestConfig};

use super::{Daemon, Lab, lines};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
pub const ALICE_TOKEN: &str = "test-alice-token-0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAt {
    /// `unix:<dir>/api.sock`, with `attachments.base_url` left as in [`super::config_text`].
    Unix,
    /// A free 127.0.0.1 port and the default `attachments.base_url` (the API's own).
    Tcp,
}

/// Adds `[api]` at `at` to `c`, with an admin token and one for agent_alice
/// (files in `c.dir`).
pub fn with_api(c: &mut TestConfig, at: ApiAt) {
    let dir = c.dir.clone();
    std::fs::write(dir.join("api-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("api-alice"), format!("{ALICE_TOKEN}\n")).unwrap();
    let listen = match at {
        ApiAt::Unix => format!("unix:{}/api.sock", dir.display()),
        ApiAt::Tcp => {
            c.attachments.base_url = None;
            format!("127.0.0.1:{}", free_port())
        }
    };
    if let Some(alice) = c.agents.iter_mut().find(|a| a.id == "agent_alice") {
        alice.token_file = Some(dir.join("api-alice"));
    }
    c.api = Some(ApiKeys::new(listen, dir.join("api-token")));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Daemon {
    /// Writes a config with `[api]` but starts nothing.
    pub fn prepare_api(lab: &Lab, at: ApiAt, mailbox_extra: &str, desk_extra: &str) -> Daemon {
        Daemon::prepare_api_with(lab, at, |c| {
            c.mailbox().extra = lines(mailbox_extra);
            c.desk.extra = lines(desk_extra);
        })
    }

    /// [`Daemon::prepare_with`] plus the API at `at`, an admin token and
    /// one for agent_alice.
    pub fn prepare_api_with(lab: &Lab, at: ApiAt, edit: impl FnOnce(&mut TestConfig)) -> Daemon {
        Daemon::prepare_with(lab, |c| {
            with_api(c, at);
            edit(c);
        })
    }

    pub fn start_api(lab: &Lab, at: ApiAt) -> Daemon {
        let mut d = Daemon::prepare_api(lab, at, "", "");
        d.spawn();
        d
    }

    pub fn listen(&self) -> Listen {
        let cfg = Config::load_with_env(&self.config, Some(Default::default())).expect("the test config loads");
        cfg.api.expect("an [api] section").listen
    }

    /// An HTTP client with the admin token.
    pub fn api(&self) -> HttpClient {
        HttpClient::new(self.listen()).with_token(Token::new(ADMIN_TOKEN))
    }

    /// An HTTP client with agent_alice's token.
    pub fn api_as_alice(&self) -> HttpClient {
        HttpClient::new(self.listen()).with_token(Token::new(ALICE_TOKEN))
    }

    /// An HTTP client with no token.
    pub fn api_anonymous(&self) -> HttpClient {
        HttpClient::new(self.listen())
    }

    /// GET `path` with the admin token until `ok` holds for the JSON body.
    pub async fn eventually_json(
        &self,
        path: &str,
        limit: Duration,
        ok: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        let api = self.api();
        loop {
            let last = match api.get(path).await {
                Ok(r) => {
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                    if ok(r.status.as_u16(), &v) {
                        return v;
                    }
                    format!("{} {v}", r.status)
                }
                Err(e) => e.to_string(),
            };
            assert!(Instant::now() < deadline, "GET {path}: not as expected within {limit:?}; last: {last}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Daemon {
    /// Waits until `/readyz` (every detail: the admin's view) shows
    /// mailbox `name` in one of `states` (connecting, idle, fetching, down,
    /// login_failed, store_wait, stopped) and `ok` holds for its entry;
    /// returns the entry.
    pub async fn wait_mailbox(
        &self,
        name: &str,
        states: &[&str],
        limit: Duration,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let v = self
            .eventually_json("/readyz", limit, |_, v| {
                let m = &v["mailboxes"][name];
                m["state"].as_str().is_some_and(|s| states.contains(&s)) && ok(m)
            })
            .await;
        v["mailboxes"][name].clone()
    }

    /// Waits until `/readyz` says ready: every mailbox logged in, the store
    /// and the writer fine.
    pub async fn wait_ready(&self, limit: Duration) -> serde_json::Value {
        self.eventually_json("/readyz", limit, |status, v| status == 200 && v["ready"] == true).await
    }

    /// Waits until mailbox `name` is idle after a finished fetch round of
    /// this run: what was in the folder when the daemon started (and its
    /// first contact with the folder) has been handled.
    pub async fn wait_fetched(&self, name: &str, limit: Duration) -> serde_json::Value {
        self.wait_mailbox(name, &["idle"], limit, |m| m["last_fetch"].is_string()).await
    }
}
