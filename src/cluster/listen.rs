//! The change feed on every node. The leader's writer hands each commit's
//! [`Changes`] to the database as `pg_notify` notes inside the commit's
//! own transaction (see `Committer::commit_noting`), so a note is delivered
//! if and only if its commit landed, in commit order. Every node — the
//! leader too — LISTENs on a connection of its own and publishes what
//! arrives to its desk's subscribers (the console's live updates).
//!
//! Notifications are not durable: one sent while a node's listening
//! connection was down is lost. So after every reconnect the node
//! publishes a hint that the queues may have moved (the outbox and the
//! quarantine), and a page re-reads what it shows when it is next used.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::desk::{Changes, Desk};
use crate::store::postgres::conn::{self, Role};
use crate::store::postgres::{CHANGES_CHANNEL, PgSettings};

/// Parses one note: the committing node's name, a newline, the changes.
pub fn parse(payload: &str) -> Option<(&str, Changes)> {
    let (node, json) = payload.split_once('\n')?;
    Some((node, serde_json::from_str(json).ok()?))
}

/// Listens until `stop`, reconnecting (after a second, then up to 10 s).
pub fn start(settings: PgSettings, desk: Desk, stop: CancellationToken) -> Result<(), crate::store::StoreError> {
    conn::spawn(async move {
        let mut first = true;
        let mut delay = Duration::from_secs(1);
        loop {
            let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
            let connected = async {
                let c = settings.connect_with_messages(Role::Listen, tx).await?;
                c.client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}")).await?;
                Ok::<_, tokio_postgres::Error>(c)
            };
            let c = tokio::select! {
                c = tokio::time::timeout(Duration::from_secs(10), connected) => c,
                _ = stop.cancelled() => return,
            };
            match c {
                Ok(Ok(c)) => {
                    if !first {
                        info!("listening for changes again; pages re-read what they show");
                        desk.publish(Changes { tickets: Vec::new(), outbox: true, quarantine: true });
                    }
                    first = false;
                    delay = Duration::from_secs(1);
                    loop {
                        let m = tokio::select! {
                            m = rx.recv() => m,
                            _ = stop.cancelled() => return,
                        };
                        let Some(m) = m else { break };
                        if let tokio_postgres::AsyncMessage::Notification(n) = m
                            && n.channel() == CHANGES_CHANNEL
                        {
                            match parse(n.payload()) {
                                Some((_, changes)) => desk.publish(changes),
                                None => debug!(payload = n.payload(), "a change note this node cannot read"),
                            }
                        }
                    }
                    drop(c);
                    warn!("the connection listening for changes was lost; reconnecting");
                }
                Ok(Err(e)) => debug!(error = %e, "cannot listen for changes yet"),
                Err(_) => debug!("listening for changes: no answer in 10 s"),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_its_node_and_its_changes() {
        let c = Changes { tickets: vec![4, 2], outbox: true, quarantine: false };
        let notes = c.notes();
        assert_eq!(notes.len(), 1);
        let payload = format!("n1\n{}", notes[0]);
        assert_eq!(parse(&payload), Some(("n1", c)));
        assert_eq!(parse("no newline"), None);
        let many = Changes { tickets: (1..=1000).collect(), outbox: false, quarantine: true };
        let notes = many.notes();
        assert!(notes.len() >= 3 && notes.iter().all(|n| n.len() < 7000), "{:?}", notes.iter().map(String::len));
        let back: Vec<Changes> = notes.iter().map(|n| serde_json::from_str(n).unwrap()).collect();
        assert_eq!(back.iter().flat_map(|c| c.tickets.clone()).collect::<Vec<_>>(), many.tickets);
        assert_eq!(back.iter().filter(|c| c.quarantine).count(), 1, "the flags ride once");
        assert!(Changes::default().notes().is_empty());
    }
}
