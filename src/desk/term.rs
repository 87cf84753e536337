//! The desk on a node of a cluster: it exists, and serves reads, whether
//! or not this node writes. Changes reach the writer of the current term,
//! if this node has one: the desk's channel is served by a switchboard
//! thread that hands each job to the term's writer, or drops it (the caller
//! is then told which node leads, see `Desk::refused`).
//!
//! A term is one leadership of this node: a writer opened like a daemon's
//! after a crash (the previous leader's `running` marker is still there
//! unless it stepped down cleanly, so the first batch of every mailbox is
//! handled carefully), on a store of its own over the shared backend,
//! stopped (its channel closed, its thread joined) before the lease is let
//! go. One term at a time: [`Desk::lead`] refuses while one runs.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot};

use super::writer::{Job, Writer};
use super::{Changes, Desk};
use crate::config::Config;
use crate::health::Health;
use crate::outbox::templates::Templates;
use crate::store::{Store, StoreError};

type Slot = Option<(mpsc::Sender<Job>, std::thread::JoinHandle<()>)>;

/// The cluster side of a desk.
pub(crate) struct Terms {
    pub(crate) node: Arc<crate::cluster::Node>,
    slot: Mutex<Slot>,
}

/// Change notices kept for subscribers (as the writer keeps them).
const CHANGES: usize = 256;

impl Desk {
    /// A desk that reads `store` and writes only during a term (see the
    /// module note). `secret` is the desk's, known before any term (from
    /// `desk.secret_file` or the database).
    pub fn standby(
        cfg: Arc<Config>,
        store: Store,
        secret: Vec<u8>,
        health: Health,
        node: Arc<crate::cluster::Node>,
    ) -> Result<Desk, StoreError> {
        let terms = Arc::new(Terms { node, slot: Mutex::new(None) });
        let (jobs, mut rx) = mpsc::channel::<Job>(super::QUEUE);
        let t = terms.clone();
        let thread = std::thread::Builder::new()
            .name("desk-switchboard".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    let to = t.slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(tx, _)| tx.clone());
                    // No term: the job is dropped and its caller told who leads.
                    if let Some(tx) = to {
                        let _ = tx.blocking_send(job);
                    }
                }
            })
            .map_err(|e| StoreError::Internal(format!("starting the desk's switchboard: {e}")))?;
        Ok(Desk {
            store,
            cfg,
            secret: secret.into(),
            health,
            wake: Arc::new(Notify::new()),
            jobs,
            changes: tokio::sync::broadcast::channel(CHANGES).0,
            thread: Arc::new(Mutex::new(Some(thread))),
            cluster: Some(terms),
        })
    }

    /// Starts a term: a writer on `store` (a store of its own over the
    /// shared backend, which now holds the lease). Returns whether the last
    /// term ended uncleanly (then the first batches are handled carefully).
    pub fn lead(&self, store: Store) -> Result<bool, StoreError> {
        let Some(terms) = &self.cluster else {
            return Err(StoreError::Internal("a single node's desk has no terms".into()));
        };
        let mut slot = terms.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(StoreError::Internal("a term is running already".into()));
        }
        let templates = Templates::load(self.cfg.desk.templates_dir.as_deref())
            .map_err(|e| StoreError::Internal(format!("loading the templates: {e}")))?;
        let super::writer::Opened { writer, unclean } = Writer::open(
            self.cfg.clone(),
            store,
            Some(self.secret.to_vec()),
            templates,
            self.wake.clone(),
            self.health.clone(),
            true,
        )?;
        let (tx, rx) = mpsc::channel(super::QUEUE);
        let thread = std::thread::Builder::new()
            .name("desk-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Internal(format!("starting the writer thread: {e}")))?;
        *slot = Some((tx, thread));
        Ok(unclean)
    }

    /// Ends the term, if one runs: with `clean`, records a clean stop first
    /// (the next leader need not be careful); then closes the writer's
    /// channel and waits for its thread, so nothing of this term commits
    /// after this returns.
    pub async fn end_term(&self, clean: bool) {
        let Some(terms) = &self.cluster else { return };
        let running = terms.slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(tx, _)| tx.clone());
        let Some(tx) = running else { return };
        if clean {
            let (reply, rx) = oneshot::channel();
            if tx.send(Job::EndRun { reply }).await.is_ok() {
                match rx.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not record the clean end of this term"),
                    Err(_) => {}
                }
            }
        }
        drop(tx);
        let taken = terms.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((tx, thread)) = taken {
            drop(tx);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Hands what a commit changed (on any node) to this desk's subscribers.
    pub fn publish(&self, changes: Changes) {
        let _ = self.changes.send(changes);
    }
}
