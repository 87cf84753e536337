pub mod config;
pub mod mail;
pub mod outbound;
pub mod ticket;
pub mod triage;
