//! A desk in the test's own process, for tests at the desk's level (no
//! servers, no daemon): a fresh store in a temp dir, the one test config
//! ([`TestConfig`], typed) with the secret [`ticketd::testkit::SECRET`],
//! opened the way the daemon opens it.

use std::sync::Arc;

use ticketd::config::Config;
use ticketd::desk::{Desk, Item};
use ticketd::record::TicketRecord;
use ticketd::testkit::TestConfig;

/// The mailbox mail arrives in, and its UIDVALIDITY.
pub const MAILBOX: &str = "support";
pub const UID_VALIDITY: u32 = 1;

/// A desk on `cfg`'s store, opened as the CLI opens one (no run marker).
pub fn open_desk(cfg: Config) -> Desk {
    Desk::open(Arc::new(cfg), false).expect("open the test desk").desk
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub cfg: Arc<Config>,
    pub desk: Desk,
}

impl World {
    /// The default test desk ([`TestConfig::new`]).
    pub fn new() -> World {
        World::with(|_| {})
    }

    /// A test desk with its config changed first, e.g.
    /// `World::with(|c| c.desk.send_receipts = Some(true))`.
    pub fn with(edit: impl FnOnce(&mut TestConfig)) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut setup = TestConfig::new(dir.path());
        // A known secret, so a test can check what the desk signs.
        setup.desk.secret_file = Some(dir.path().join("desk-secret"));
        let desk = open_desk(setup.with(edit).load());
        World { cfg: desk.config().clone(), desk, dir }
    }

    /// A mail as the IMAP worker hands it over (mailbox `support`); it must
    /// be stored.
    pub async fn ingest(&self, uid: u32, raw: impl Into<Vec<u8>>) {
        let r = self.desk.ingest(MAILBOX, UID_VALIDITY, vec![Item::Mail { uid, raw: raw.into() }]).await;
        assert_eq!(r.done, vec![uid], "mail {uid} not stored: {:?}", r.error);
    }

    /// Ticket `n`, which must exist.
    pub fn ticket(&self, n: u64) -> TicketRecord {
        self.desk.ticket(n).expect("read the store").unwrap_or_else(|| panic!("no ticket {n}"))
    }
}
