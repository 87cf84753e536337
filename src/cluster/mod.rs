//! Several nodes on one database: the pure decisions of the cluster, for
//! the daemon to drive (the I/O lives in `store::postgres`).

pub mod lease;
