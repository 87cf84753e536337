//! The desk console: agents and the admin work the queue in a browser, at
//! `/desk/` on the API's listener (DESIGN section 10). Pages are rendered
//! here ([`pages`] with askama templates) from the desk's own queries and
//! every change goes through `Desk::act` and the writer's other jobs, so a
//! click, an API PATCH and an email `#command` follow one rule set. Every
//! action is a form POST answered with a redirect; the one script
//! ([`assets`]) adds live updates, keyboard shortcuts, drafts and presence.
//!
//! Security ([`guard`]): sessions from a token exchange, stored by hash
//! through the writer ([`session`]); a nonce-only Content-Security-Policy
//! on every page; state changes only from our own origin with a
//! per-session token; mail HTML only in a sandboxed frame of its own
//! ([`original`]). Live updates ([`events`]): the writer's change feed and
//! the in-memory presence ([`presence`]) over one Server-Sent Events stream
//! per browser.

pub mod assets;
pub mod events;
pub mod guard;
pub mod original;
pub mod pages;
pub mod presence;
pub mod queue;
pub mod session;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::config::ConsoleConfig;

/// Everything the console's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

pub struct Inner {
    pub app: AppState,
    pub cfg: ConsoleConfig,
    pub presence: presence::Presence,
    pub hub: events::Hub,
    pub signin: session::Limiter,
    pub once: session::Once,
    pub seen: session::Seen,
    /// Cancelled when the server shuts down: live streams end.
    pub stop: CancellationToken,
}

impl std::ops::Deref for Console {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Console {
    pub fn desk(&self) -> &crate::desk::Desk {
        &self.app.desk
    }
}

/// Largest form without files (a note, a bulk change).
const FORM_LIMIT: usize = 2 << 20;

/// The console's routes, for the API router to merge (nothing when
/// `[console] enabled = false`). `stop` ends the live streams at shutdown.
pub fn router(app: AppState, stop: CancellationToken) -> Router<AppState> {
    let cfg = app.api.console.clone();
    if !cfg.enabled {
        return Router::new();
    }
    let upload = usize::try_from(app.api.max_upload_bytes).unwrap_or(usize::MAX).saturating_add(1 << 20);
    let presence = presence::Presence::default();
    let console = Console(Arc::new(Inner {
        hub: events::Hub::start(app.desk.subscribe(), presence.clone(), stop.clone()),
        presence,
        signin: session::Limiter::default(),
        once: session::Once::default(),
        seen: session::Seen::default(),
        cfg,
        app: app.clone(),
        stop,
    }));
    // Pages and forms wait for the API's concurrency permits like any
    // request; the event stream and the CSP report endpoint do not hold one.
    let pages = Router::new()
        .route("/desk", get(pages::to_queue))
        .route("/desk/", get(pages::queue))
        .route("/desk/bulk", post(pages::bulk))
        .route("/desk/login", get(session::login_page).post(session::login))
        .route("/desk/logout", post(session::logout))
        .route("/desk/tickets/{number}", get(pages::ticket))
        .route("/desk/tickets/{number}/reply", post(pages::reply).layer(DefaultBodyLimit::max(upload)))
        .route("/desk/tickets/{number}/note", post(pages::note))
        .route("/desk/tickets/{number}/fields", post(pages::fields))
        .route("/desk/tickets/{number}/tags", post(pages::tags))
        .route("/desk/tickets/{number}/merge", post(pages::merge))
        .route("/desk/tickets/{number}/version", get(pages::version))
        .route("/desk/tickets/{number}/presence", post(presence::beat))
        .route("/desk/tickets/{number}/entries/{index}/original", get(original::page))
        .route("/desk/tickets/{number}/entries/{index}/body", get(original::body))
        .route("/desk/files/{sha256}/{filename}", get(pages::file))
        .route("/desk/inline/{sha256}/{filename}", get(original::inline))
        .route("/desk/admin", get(pages::admin))
        .route("/desk/admin/quarantine/{id}", get(pages::quarantine_entry))
        .route("/desk/admin/quarantine/{id}/retry", post(pages::quarantine_retry))
        .route("/desk/admin/quarantine/{id}/drop", post(pages::quarantine_drop))
        .route("/desk/admin/outbox/{seq}/retry", post(pages::outbox_retry))
        .route("/desk/admin/outbox/{seq}/drop", post(pages::outbox_drop))
        .route("/desk/admin/sessions/end", post(pages::end_sessions))
        .route("/desk/admin/spam/{id}", get(pages::spam_entry))
        .route("/desk/admin/spam/{id}/release", post(pages::spam_release))
        .route("/desk/admin/spam/{id}/drop", post(pages::spam_drop))
        .route("/desk/admin/blocklist", post(pages::block_add))
        .route("/desk/admin/blocklist/remove", post(pages::block_remove))
        .route("/desk/static/{name}", get(assets::serve))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .route_layer(middleware::from_fn_with_state(app.clone(), crate::api::guard::bounded));
    let streams = Router::new()
        .route("/desk/events", get(events::stream))
        .route("/desk/csp-report", post(guard::csp_report).layer(DefaultBodyLimit::max(guard::MAX_REPORT_BYTES)));
    pages.merge(streams).layer(middleware::from_fn_with_state(console.clone(), guard::protect)).with_state(console)
}

#[cfg(test)]
mod tests;
