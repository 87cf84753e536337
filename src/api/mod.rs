//! The local JSON API (DESIGN section 9): the daemon serves it, the CLI
//! uses it while the daemon runs ([`client`]).

pub mod client;
