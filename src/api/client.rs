//! How the CLI reaches the desk: through the running daemon's API when it
//! is up (sled lets one process open the store), else by opening the store
//! itself. Both paths return the same view types, so the output is the same.

use std::sync::Arc;

use crate::config::Config;
use crate::desk::views::{OutboxView, QuarantineView, TicketPage, TicketQuery};
use crate::desk::{ActorRef, Desk, DeskError, Parts, RetryOutcome, Upload};
use crate::outbound::templates::Templates;
use crate::store::Store;
use crate::ticket::Ticket;
use crate::triage::act::Action;

pub enum Access {
    /// The store opened by this process, with a writer of its own.
    Local(Desk),
}

impl Access {
    pub async fn open(cfg: Config) -> anyhow::Result<Access> {
        let cfg = Arc::new(cfg);
        let store = Store::open(&cfg.store)?;
        let secret = crate::daemon::load_secret(&cfg, &store)?;
        let templates = Templates::load(cfg.desk.templates_dir.as_deref())?;
        let started = Desk::start(Parts {
            cfg,
            store,
            secret,
            templates,
            wake: Default::default(),
            health: Default::default(),
            daemon: false,
        })?;
        Ok(Access::Local(started.desk))
    }

    /// Lets a local writer finish what it was asked.
    pub async fn close(self) {
        match self {
            Access::Local(desk) => {
                let d = desk.clone();
                drop(desk);
                d.join_when_last().await;
            }
        }
    }

    pub async fn list(&self, q: &TicketQuery) -> Result<TicketPage, DeskError> {
        match self {
            Access::Local(d) => d.list(q),
        }
    }

    /// Every page of a list.
    pub async fn list_all(&self, q: &TicketQuery) -> Result<Vec<Ticket>, DeskError> {
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

    pub async fn ticket(&self, n: u64) -> Result<Option<Ticket>, DeskError> {
        match self {
            Access::Local(d) => Ok(d.ticket(n)?.map(|r| r.ticket)),
        }
    }

    pub async fn raw_mbox(&self, n: u64) -> Result<Vec<u8>, DeskError> {
        match self {
            Access::Local(d) => d.raw_mbox(n),
        }
    }

    pub async fn act(
        &self,
        n: u64,
        actor: ActorRef,
        actions: Vec<Action>,
        uploads: Vec<Upload>,
    ) -> Result<Ticket, DeskError> {
        match self {
            Access::Local(d) => d.act(n, actor, actions, uploads, None).await.map(|r| r.ticket),
        }
    }

    pub async fn outbox(&self, all: bool) -> Result<Vec<OutboxView>, DeskError> {
        match self {
            Access::Local(d) => d.outbox(all),
        }
    }

    pub async fn outbox_retry(&self, seq: u64) -> Result<(), DeskError> {
        match self {
            Access::Local(d) => d.outbox_retry(seq).await,
        }
    }

    pub async fn outbox_drop(&self, seq: u64) -> Result<(), DeskError> {
        match self {
            Access::Local(d) => d.outbox_drop(seq).await,
        }
    }

    pub async fn quarantine(&self) -> Result<Vec<QuarantineView>, DeskError> {
        match self {
            Access::Local(d) => d.quarantine(),
        }
    }

    pub async fn quarantine_entry(&self, id: u64) -> Result<Option<(QuarantineView, Vec<u8>)>, DeskError> {
        match self {
            Access::Local(d) => d.quarantine_entry(id),
        }
    }

    pub async fn quarantine_retry(&self, id: u64) -> Result<RetryOutcome, DeskError> {
        match self {
            Access::Local(d) => d.quarantine_retry(id).await,
        }
    }

    pub async fn quarantine_drop(&self, id: u64) -> Result<(), DeskError> {
        match self {
            Access::Local(d) => d.quarantine_drop(id).await,
        }
    }
}
