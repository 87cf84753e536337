//! How the CLI reaches the desk: by opening the store itself when it can,
//! else — the daemon holds it (sled lets one process open the store) —
//! through the daemon's API, verified before any token is sent (see
//! `http::Trust`). Both paths return the same view types and the same
//! error words (the API sends the desk's own messages), so the output is
//! the same either way. Each path needs only its own credentials: the API
//! path reads `api.token_file` and nothing else; the local path needs the
//! store (and the desk secret), never an IMAP or SMTP password.

use std::sync::Arc;

use anyhow::anyhow;
use axum::http::{HeaderName, Method, StatusCode};
use serde::de::DeserializeOwned;

use super::http::{Body, HttpClient, HttpError, Reply, Trust};
use crate::api::auth::read_token;
use crate::api::error::ErrorBody;
use crate::api::wire::BlockRequest;
use crate::api::wire::{
    Entries, MergeBody, QuarantineDetail, SpamDetail, TextBody, TicketPatch, WithRaw, ticket_query_string,
};
use crate::config::{ApiConfig, Config, Listen};
use crate::desk::spam::{BlockChanged, BlockView, Blocklist, SpamList, SpamView};
use crate::desk::views::{OutboxView, QuarantineView, TicketPage, TicketQuery};
use crate::desk::{ActorRef, Desk, DeskError, OpenError, RetryOutcome, Upload};
use crate::spam::BlockEntry;
use crate::store::StoreError;
use crate::ticket::Ticket;
use crate::triage::act::Action;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Desk(#[from] DeskError),
    /// The API refused; its message is the desk's own words.
    #[error("{}", .0.message)]
    Api(ErrorBody),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{0}")]
    Unsupported(String),
}

pub enum Access {
    /// The store opened by this process, with a writer of its own.
    Local(Desk),
    /// The running daemon, through its API.
    Remote(Remote),
}

pub struct Remote {
    http: HttpClient,
    token_file: std::path::PathBuf,
}

impl Access {
    /// Whether the daemon runs is decided by the store, never by whoever
    /// answers a port: a store this process can open is used directly
    /// (nothing is sent anywhere); one the daemon holds is reached through
    /// the daemon's API, verified before the admin token is sent.
    pub async fn open(cfg: Config) -> anyhow::Result<Access> {
        let cfg = Arc::new(cfg);
        if let crate::config::StoreBackend::Postgres { .. } = cfg.store.backend {
            return Access::open_cluster(cfg).await;
        }
        match Desk::open(cfg.clone(), false) {
            Ok(started) => Ok(Access::Local(started.desk)),
            Err(OpenError::Store(StoreError::Locked(path))) => {
                let Some(api) = &cfg.api else {
                    return Err(anyhow!(
                        "the store {} is in use by the running daemon, and this config has no [api] section for the CLI to talk to it: add [api] (see the example config) and restart the daemon",
                        path.display()
                    ));
                };
                let remote = Remote::connect(api, &cfg.store.path).await.map_err(|e| {
                    anyhow!(
                        "the ticketd daemon holds the store {}, but {e}; check `systemctl status ticketd`",
                        path.display()
                    )
                })?;
                Ok(Access::Remote(remote))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// On PostgreSQL: the lease decides (see `cli::cluster`): a node's API
    /// while one leads — this machine's node first, else the leader's
    /// advertised address — otherwise the store itself, this process
    /// holding the lease.
    async fn open_cluster(cfg: Arc<Config>) -> anyhow::Result<Access> {
        use super::cluster::{Found, leader_addr, open};
        let info = match open(cfg.clone()).await? {
            Found::Local(desk) => return Ok(Access::Local(desk)),
            Found::Leader(info) => info,
        };
        let leader = info.node.clone().unwrap_or_else(|| "?".into());
        let Some(api) = &cfg.api else {
            return Err(anyhow!(
                "node {leader} leads the cluster, and this config has no [api] section (whose token_file the CLI needs to talk to a node): add [api] (see the example config)"
            ));
        };
        let mut why = Vec::new();
        match Remote::connect(api, &cfg.store.path).await {
            Ok(r) => return Ok(Access::Remote(r)),
            Err(e) => why.push(format!("this node's API: {e}")),
        }
        if let Some(addr) = leader_addr(&info).await {
            match Remote::connect_tcp(api, addr).await {
                Ok(r) => return Ok(Access::Remote(r)),
                Err(e) => why.push(format!("the leader's API: {e}")),
            }
        }
        Err(anyhow!("node {leader} leads the cluster, but no node's API answered: {}", why.join("; ")))
    }

    /// Lets a local writer finish what it was asked.
    pub async fn close(self) {
        match self {
            Access::Local(desk) => {
                let d = desk.clone();
                drop(desk);
                d.join_when_last().await;
            }
            Access::Remote(_) => {}
        }
    }

    pub async fn list(&self, q: &TicketQuery) -> Result<TicketPage, AccessError> {
        match self {
            Access::Local(d) => Ok(d.list(q)?),
            Access::Remote(r) => {
                r.json(Method::GET, &format!("/api/v1/tickets?{}", ticket_query_string(q)), None).await
            }
        }
    }

    /// Every page of a list.
    pub async fn list_all(&self, q: &TicketQuery) -> Result<Vec<Ticket>, AccessError> {
        let mut q = TicketQuery { limit: Some(crate::desk::views::MAX_LIMIT), ..q.clone() };
        let mut out = Vec::new();
        loop {
            let page = self.list(&q).await?;
            out.extend(page.tickets);
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    pub async fn ticket(&self, n: u64) -> Result<Option<Ticket>, AccessError> {
        match self {
            Access::Local(d) => Ok(d.ticket(n)?.map(|r| r.ticket)),
            Access::Remote(r) => r.optional(&format!("/api/v1/tickets/{n}")).await,
        }
    }

    /// Who a ticket's `client_N` is: address, display name, their tickets.
    pub async fn client(&self, n: u64) -> Result<Option<crate::desk::summary::ClientView>, AccessError> {
        match self {
            Access::Local(d) => Ok(d.client(n)?),
            Access::Remote(r) => r.optional(&format!("/api/v1/clients/{n}")).await,
        }
    }

    pub async fn raw_mbox(&self, n: u64) -> Result<Vec<u8>, AccessError> {
        match self {
            Access::Local(d) => Ok(d.raw_mbox(n)?),
            // No ticket means no mail, as the store says it locally.
            Access::Remote(r) => match r.request(Method::GET, &format!("/api/v1/tickets/{n}/raw"), &[], None).await {
                Ok(reply) => Ok(reply.body.to_vec()),
                Err(AccessError::Api(e)) if e.error == "not_found" => Ok(Vec::new()),
                Err(e) => Err(e),
            },
        }
    }

    pub async fn act(
        &self,
        n: u64,
        actor: ActorRef,
        actions: Vec<Action>,
        uploads: Vec<Upload>,
    ) -> Result<Ticket, AccessError> {
        match self {
            Access::Local(d) => Ok(d.act(n, actor, actions, uploads, None).await?.ticket),
            Access::Remote(r) => r.act(n, actor, actions, uploads).await,
        }
    }

    /// Merges ticket `n` into `into`; returns the survivor.
    pub async fn merge(&self, n: u64, into: u64, actor: ActorRef) -> Result<Ticket, AccessError> {
        match self {
            Access::Local(d) => Ok(d.merge(n, into, actor).await?.ticket),
            Access::Remote(r) => {
                let http = match actor {
                    ActorRef::Admin => r.http.acting_as(None),
                    ActorRef::Agent(id) => r.http.acting_as(Some(id)),
                    ActorRef::System => {
                        return Err(AccessError::Unsupported("the API does not act as the system".into()));
                    }
                };
                let path = format!("/api/v1/tickets/{n}/merge");
                let body = Body::json(&MergeBody { into });
                decode(&r.request_as(&http, Method::POST, &path, &[], Some(body)).await?)
            }
        }
    }

    pub async fn outbox(&self, all: bool) -> Result<Vec<OutboxView>, AccessError> {
        match self {
            Access::Local(d) => Ok(d.outbox(all)?),
            Access::Remote(r) => {
                let page: Entries<OutboxView> = r.json(Method::GET, &format!("/api/v1/outbox?all={all}"), None).await?;
                Ok(page.entries)
            }
        }
    }

    pub async fn outbox_retry(&self, seq: u64) -> Result<(), AccessError> {
        match self {
            Access::Local(d) => Ok(d.outbox_retry(seq, ActorRef::Admin).await?),
            Access::Remote(r) => {
                r.request(Method::POST, &format!("/api/v1/outbox/{seq}/retry"), &[], None).await.map(drop)
            }
        }
    }

    pub async fn outbox_drop(&self, seq: u64) -> Result<(), AccessError> {
        match self {
            Access::Local(d) => Ok(d.outbox_drop(seq, ActorRef::Admin).await?),
            Access::Remote(r) => r.request(Method::DELETE, &format!("/api/v1/outbox/{seq}"), &[], None).await.map(drop),
        }
    }

    /// A consistent backup of the whole desk into `file` (written beside
    /// it under a temporary name, synced, then renamed): by the daemon
    /// through the API while it runs, else from the store directly.
    pub async fn backup(&self, file: &std::path::Path) -> Result<crate::archive::BackupSummary, AccessError> {
        match self {
            Access::Local(d) => {
                crate::desk::backup::backup_to_file(d, file).await.map_err(|e| AccessError::Unsupported(e.to_string()))
            }
            Access::Remote(r) => r.backup(file).await,
        }
    }

    pub async fn stats(&self) -> Result<crate::desk::stats::StoreStats, AccessError> {
        match self {
            Access::Local(d) => Ok(d.stats()?),
            Access::Remote(r) => r.json(Method::GET, "/api/v1/store/stats", None).await,
        }
    }

    pub async fn quarantine(&self) -> Result<Vec<QuarantineView>, AccessError> {
        match self {
            Access::Local(d) => Ok(d.quarantine()?),
            Access::Remote(r) => {
                let page: Entries<QuarantineView> = r.json(Method::GET, "/api/v1/quarantine", None).await?;
                Ok(page.entries)
            }
        }
    }

    pub async fn quarantine_entry(&self, id: u64) -> Result<Option<(QuarantineView, Vec<u8>)>, AccessError> {
        match self {
            Access::Local(d) => Ok(d.quarantine_entry(id)?),
            Access::Remote(r) => {
                let d = r.optional::<QuarantineDetail>(&format!("/api/v1/quarantine/{id}")).await?;
                d.map(with_raw).transpose()
            }
        }
    }

    pub async fn quarantine_retry(&self, id: u64) -> Result<RetryOutcome, AccessError> {
        match self {
            Access::Local(d) => Ok(d.quarantine_retry(id, ActorRef::Admin).await?),
            Access::Remote(r) => r.json(Method::POST, &format!("/api/v1/quarantine/{id}/retry"), None).await,
        }
    }

    pub async fn spam(&self) -> Result<Vec<SpamView>, AccessError> {
        match self {
            Access::Local(d) => Ok(d.spam()?),
            Access::Remote(r) => Ok(r.json::<SpamList>(Method::GET, "/api/v1/spam", None).await?.entries),
        }
    }

    pub async fn spam_entry(&self, id: u64) -> Result<Option<(SpamView, Vec<u8>)>, AccessError> {
        match self {
            Access::Local(d) => Ok(d.spam_entry(id)?),
            Access::Remote(r) => {
                let d = r.optional::<SpamDetail>(&format!("/api/v1/spam/{id}")).await?;
                d.map(with_raw).transpose()
            }
        }
    }

    pub async fn spam_release(&self, id: u64) -> Result<RetryOutcome, AccessError> {
        match self {
            Access::Local(d) => Ok(d.spam_release(id, ActorRef::Admin).await?),
            Access::Remote(r) => r.json(Method::POST, &format!("/api/v1/spam/{id}/release"), None).await,
        }
    }

    pub async fn spam_drop(&self, id: u64) -> Result<(), AccessError> {
        match self {
            Access::Local(d) => Ok(d.spam_drop(id, ActorRef::Admin).await?),
            Access::Remote(r) => r.request(Method::DELETE, &format!("/api/v1/spam/{id}"), &[], None).await.map(drop),
        }
    }

    pub async fn blocklist(&self) -> Result<Vec<BlockView>, AccessError> {
        match self {
            Access::Local(d) => Ok(d.blocklist()?),
            Access::Remote(r) => Ok(r.json::<Blocklist>(Method::GET, "/api/v1/blocklist", None).await?.entries),
        }
    }

    /// Adds (`add`) or removes a run-time blocklist entry.
    pub async fn block(&self, entry: BlockEntry, add: bool) -> Result<BlockChanged, AccessError> {
        match self {
            Access::Local(d) => Ok(d.block(entry, add, ActorRef::Admin).await?),
            Access::Remote(r) if add => {
                let body = Body::json(&BlockRequest { entry: entry.to_string() });
                r.json(Method::POST, "/api/v1/blocklist", Some(body)).await
            }
            Access::Remote(r) => {
                let path = format!("/api/v1/blocklist/{}", path_segment(&entry.to_string()));
                r.request(Method::DELETE, &path, &[], None).await?;
                Ok(BlockChanged { entry: entry.to_string(), changed: true })
            }
        }
    }

    pub async fn quarantine_drop(&self, id: u64) -> Result<(), AccessError> {
        match self {
            Access::Local(d) => Ok(d.quarantine_drop(id, ActorRef::Admin).await?),
            Access::Remote(r) => {
                r.request(Method::DELETE, &format!("/api/v1/quarantine/{id}"), &[], None).await.map(drop)
            }
        }
    }
}

/// `s` as one URL path segment (an internationalised domain is not ASCII).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A multipart/form-data body: the text, then the files.
fn multipart(text: &str, uploads: &[Upload]) -> Body {
    let boundary = format!("ticketd-{}", hex::encode(rand::random::<[u8; 12]>()));
    let mut b = Vec::new();
    b.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n{text}\r\n").as_bytes(),
    );
    for u in uploads {
        // The desk keeps this same safe form; it has no quotes or line breaks.
        let name = crate::mail::safe_filename(&u.filename, "attachment.bin");
        let ct = u.mime_type.as_deref().unwrap_or("application/octet-stream");
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: {ct}\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(&u.bytes);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Body { content_type: format!("multipart/form-data; boundary={boundary}"), bytes: b }
}

impl Remote {
    /// Reaches the daemon that holds the store: over the unix socket when
    /// one is configured (served by the store's owner or root, checked on
    /// the connection), else over TCP after the daemon proved it holds the
    /// admin token; then authenticates once, so a wrong or unreadable token
    /// is one clear error up front.
    async fn connect(api: &ApiConfig, store_path: &std::path::Path) -> anyhow::Result<Remote> {
        use std::os::unix::fs::MetadataExt;
        let token =
            read_token(&api.token_file).map_err(|e| anyhow!("the CLI talks to it with the admin token, but {e}"))?;
        let socket = api.socket.clone().or(match &api.listen {
            Listen::Unix(p) => Some(p.clone()),
            Listen::Tcp(_) => None,
        });
        let mut failed = None;
        if let Some(p) = socket {
            let owner = std::fs::metadata(store_path).map(|m| m.uid()).unwrap_or(0);
            let http =
                HttpClient::new(Listen::Unix(p)).with_trust(Trust::PeerUid(vec![owner, 0])).with_token(token.clone());
            match Remote::first_call(http, &api.token_file).await {
                Ok(r) => return Ok(r),
                // No socket (the daemon was started without one): TCP, with its proof.
                Err(AccessError::Http(e)) if e.nobody_listens() && matches!(api.listen, Listen::Tcp(_)) => {
                    failed = Some(e.to_string())
                }
                Err(e) => return Err(anyhow!("{e}")),
            }
        }
        let http = HttpClient::new(api.listen.clone()).with_trust(Trust::Proof(token.clone())).with_token(token);
        Remote::first_call(http, &api.token_file).await.map_err(|e| match failed {
            Some(f) => anyhow!("{f}; and {e}"),
            None => anyhow!("{e}"),
        })
    }

    /// Another node's API over TCP (a cluster's leader), after it proved
    /// it holds the admin token (all nodes share it).
    async fn connect_tcp(api: &ApiConfig, addr: std::net::SocketAddr) -> anyhow::Result<Remote> {
        let token =
            read_token(&api.token_file).map_err(|e| anyhow!("the CLI talks to it with the admin token, but {e}"))?;
        let http = HttpClient::new(Listen::Tcp(addr)).with_trust(Trust::Proof(token.clone())).with_token(token);
        Remote::first_call(http, &api.token_file).await.map_err(|e| anyhow!("{e}"))
    }

    async fn first_call(http: HttpClient, token_file: &std::path::Path) -> Result<Remote, AccessError> {
        let remote = Remote { http, token_file: token_file.to_owned() };
        remote.request(Method::GET, "/api/v1/tickets?limit=1", &[], None).await?;
        Ok(remote)
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, String)],
        body: Option<Body>,
    ) -> Result<Reply, AccessError> {
        self.request_as(&self.http, method, path, headers, body).await
    }

    async fn request_as(
        &self,
        http: &HttpClient,
        method: Method,
        path: &str,
        headers: &[(HeaderName, String)],
        body: Option<Body>,
    ) -> Result<Reply, AccessError> {
        let reply = http.send(method, path, headers, body).await?;
        if reply.status.is_success() {
            return Ok(reply);
        }
        let mut e = serde_json::from_slice::<ErrorBody>(&reply.body).unwrap_or_else(|_| ErrorBody {
            error: "http".into(),
            message: format!("the API answered {}", reply.status),
            field: None,
            errors: Vec::new(),
            current_version: None,
        });
        if reply.status == StatusCode::UNAUTHORIZED {
            e.message = format!(
                "the API at {} refused the token in api.token_file ({}): {}",
                self.http.endpoint(),
                self.token_file.display(),
                e.message
            );
        }
        Err(AccessError::Api(e))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<T, AccessError> {
        let reply = self.request(method, path, &[], body).await?;
        decode(&reply)
    }

    async fn backup(&self, file: &std::path::Path) -> Result<crate::archive::BackupSummary, AccessError> {
        let io = |e: std::io::Error| AccessError::Unsupported(format!("{}: {e}", file.display()));
        let (partial, mut out) = crate::archive::create_partial(file).map_err(io)?;
        let got = self.http.download("/api/v1/backup", &mut out).await;
        let body = match got {
            Ok((_, _, body)) => body,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e.into());
            }
        };
        if let Some(body) = body {
            let _ = std::fs::remove_file(&partial);
            let e: ErrorBody = serde_json::from_slice(&body)
                .map_err(|_| AccessError::Unsupported("the API refused the backup".into()))?;
            return Err(AccessError::Api(e));
        }
        out.sync_all().map_err(io)?;
        drop(out);
        // What arrived must be a whole, sound backup, or it is not one.
        let manifest = match crate::archive::verify(&partial) {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(AccessError::Unsupported(format!("the daemon's backup did not check out: {e}")));
            }
        };
        std::fs::rename(&partial, file).map_err(io)?;
        if let Some(dir) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(crate::archive::BackupSummary {
            records: manifest.records(),
            blobs: manifest.blob_count(),
            blob_bytes: manifest.blob_bytes(),
        })
    }

    /// A resource that may not exist: 404 is `None`.
    async fn optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, AccessError> {
        match self.request(Method::GET, path, &[], None).await {
            Ok(reply) => decode(&reply).map(Some),
            Err(AccessError::Api(e)) if e.error == "not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn act(
        &self,
        n: u64,
        actor: ActorRef,
        actions: Vec<Action>,
        uploads: Vec<Upload>,
    ) -> Result<Ticket, AccessError> {
        let http = match actor {
            ActorRef::Admin => self.http.acting_as(None),
            ActorRef::Agent(id) => self.http.acting_as(Some(id)),
            ActorRef::System => return Err(AccessError::Unsupported("the API does not act as the system".into())),
        };
        match actions.as_slice() {
            [Action::Reply { text, attachments }] if attachments.is_empty() => {
                let body = if uploads.is_empty() {
                    Body::json(&TextBody { text: text.clone() })
                } else {
                    multipart(text, &uploads)
                };
                let path = format!("/api/v1/tickets/{n}/replies");
                decode(&self.request_as(&http, Method::POST, &path, &[], Some(body)).await?)
            }
            [Action::Note { text }] if uploads.is_empty() => {
                let path = format!("/api/v1/tickets/{n}/notes");
                let body = Body::json(&TextBody { text: text.clone() });
                decode(&self.request_as(&http, Method::POST, &path, &[], Some(body)).await?)
            }
            _ if !uploads.is_empty() => Err(DeskError::invalid("attachments", "attachments go with a reply").into()),
            _ => self.update(&http, n, &actions).await,
        }
    }

    /// A PATCH. Tags added or removed travel as changes (`tagsAdd`,
    /// `tagsRemove`), so the rules normalise them and a concurrent edit of
    /// other tags is never overwritten.
    async fn update(&self, http: &HttpClient, n: u64, actions: &[Action]) -> Result<Ticket, AccessError> {
        let mut patch = TicketPatch::default();
        for a in actions {
            match a {
                Action::Status(s) => patch.status = Some(*s),
                Action::Priority(p) => patch.priority = Some(*p),
                Action::Category(c) => patch.category = Some(*c),
                Action::Assign(a) => patch.assigned_to = Some(a.clone()),
                Action::Tag(t) => patch.tags_add.get_or_insert_with(Vec::new).extend(t.iter().cloned()),
                Action::Untag(t) => patch.tags_remove.get_or_insert_with(Vec::new).extend(t.iter().cloned()),
                Action::SetTags(t) => patch.tags = Some(t.clone()),
                Action::Resolution(r) => patch.resolution = Some(r.clone()),
                Action::Reply { .. } | Action::Note { .. } | Action::System(_) | Action::BlockSender => {
                    return Err(AccessError::Unsupported("combine a reply or note with no other change".into()));
                }
            }
        }
        let path = format!("/api/v1/tickets/{n}");
        decode(&self.request_as(http, Method::PATCH, &path, &[], Some(Body::json(&patch))).await?)
    }
}

/// An entry the API sent with its raw mail.
fn with_raw<T>(d: WithRaw<T>) -> Result<(T, Vec<u8>), AccessError> {
    d.into_parts().map_err(|e| AccessError::Unsupported(format!("the API sent a bad raw_base64: {e}")))
}

fn decode<T: DeserializeOwned>(reply: &Reply) -> Result<T, AccessError> {
    serde_json::from_slice(&reply.body)
        .map_err(|e| AccessError::Unsupported(format!("the API sent an answer this CLI cannot read: {e}")))
}
