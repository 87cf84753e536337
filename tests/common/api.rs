//! Test daemons with the local API switched on: a unix socket in the
//! daemon's own directory (no port to collide on) or a free loopback port,
//! an admin token and one for agent_alice.

use std::time::{Duration, Instant};

use ticketd::api::auth::Token;
use ticketd::cli::http::HttpClient;
use ticketd::config::{Config, Listen};

use super::{Daemon, Lab, config_text_with};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
pub const ALICE_TOKEN: &str = "test-alice-token-0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAt {
    /// `unix:<dir>/api.sock`, with `attachments.base_url` left as in [`super::config_text`].
    Unix,
    /// A free 127.0.0.1 port and the default `attachments.base_url` (the API's own).
    Tcp,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Daemon {
    /// Writes a config with `[api]` but starts nothing.
    pub fn prepare_api(lab: &Lab, at: ApiAt, mailbox_extra: &str, desk_extra: &str) -> Daemon {
        let d = Daemon::prepare(lab, mailbox_extra, desk_extra);
        let dir = d.dir.path();
        std::fs::write(dir.join("api-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
        std::fs::write(dir.join("api-alice"), format!("{ALICE_TOKEN}\n")).unwrap();
        let (listen, base_url) = match at {
            ApiAt::Unix => (format!("unix:{}/api.sock", dir.display()), Some("http://127.0.0.1:8080/attachments")),
            ApiAt::Tcp => (format!("127.0.0.1:{}", free_port()), None),
        };
        // The agents table comes last in the text, so its key lands there.
        let text = format!(
            "{}token_file = \"{dir}/api-alice\"\n\n[api]\nlisten = \"{listen}\"\ntoken_file = \"{dir}/api-token\"\n",
            config_text_with(lab, dir, mailbox_extra, desk_extra, base_url),
            dir = dir.display(),
        );
        std::fs::write(&d.config, text).unwrap();
        d
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
