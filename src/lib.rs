pub mod config;
pub mod mail;
pub mod outbound;
pub mod store;
pub mod ticket;
pub mod triage;
