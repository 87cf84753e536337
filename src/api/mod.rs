//! The local JSON API (DESIGN section 9): [`server`] serves it inside the
//! daemon — [`routes`] for tickets, quarantine, outbox and attachments,
//! [`probes`] for health and [`metrics`], [`auth`] for bearer tokens —
//! and [`client`] is how the CLI reaches the desk, through this API while
//! the daemon runs. [`wire`] holds what both sides send.

pub mod auth;
pub mod client;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod probes;
pub mod routes;
pub mod server;
pub mod wire;

#[cfg(test)]
mod tests;
