//! The change feed on every node. The leader's writer hands each commit's
//! [`Changes`] to the database as `pg_notify` notes inside the commit's
//! own transaction (see `Committer::commit_noting`), so a note is delivered
//! if and only if its commit landed, in commit order. Every node — the
//! leader too — LISTENs on a connection of its own and publishes what
//! arrives to its desk's subscribers (the console's live updates).
//!
//! Notifications are not durable: one sent while a node's listening
//! connection was down is lost. So after every reconnect the node
//! publishes a hint that anything may have moved, and every open console
//! page re-reads what it shows (the queue, a ticket, the admin lists).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::desk::Changes;
use crate::store::postgres::conn::{self, Role};
use crate::store::postgres::{CHANGES_CHANNEL, PgSettings};

/// Parses one note: the committing node's name, a newline, the changes.
pub fn parse(payload: &str) -> Option<(&str, Changes)> {
    let (node, json) = payload.split_once('\n')?;
    Some((node, serde_json::from_str(json).ok()?))
}

/// Listens until `stop`, reconnecting (after a second, then up to 10 s),
/// and hands what arrives to `publish` (the node's desk).
pub fn start(
    settings: PgSettings,
    publish: impl Fn(Changes) + Send + 'static,
    stop: CancellationToken,
) -> Result<(), crate::store::StoreError> {
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
                        publish(Changes { everything: true, ..Changes::default() });
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
                                Some((_, changes)) => publish(changes),
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
    use crate::store::postgres::PostgresBackend;
    use crate::store::postgres::lab::PgLab;
    use crate::store::{Backend, Table, WriteSet};

    /// A commit's notes reach every listening node, the committer too; a
    /// refused commit's never do.
    #[test]
    fn notes_reach_every_node_with_their_commit_only() {
        let lab = PgLab::shared().unwrap();
        let db = lab.fresh_db("notes").unwrap();
        let settings = |node: &str| PgSettings::from_url(&lab.url(&db), node).unwrap();
        let a = PostgresBackend::open(settings("na")).unwrap();
        let stop = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        for node in ["na", "nb"] {
            let tx = tx.clone();
            start(settings(node), move |c| drop(tx.send((node, c))), stop.clone()).unwrap();
        }
        // Both listeners are up once a probe note comes through to both.
        let lease = a.try_lease().unwrap().unwrap();
        a.lead(lease);
        let put = |n: u8| {
            let mut w = WriteSet::default();
            w.put(Table::Meta, vec![n], vec![n]);
            w
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut heard = std::collections::HashSet::new();
        while heard.len() < 2 {
            assert!(std::time::Instant::now() < deadline, "the listeners never heard a note");
            a.commit_noted(put(0), vec![r#"{"tickets":[],"outbox":true,"quarantine":false}"#.into()]).unwrap();
            while let Ok((node, _)) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
                heard.insert(node);
            }
        }
        let c = Changes { tickets: vec![7, 9], outbox: false, quarantine: true, spam: false, everything: false };
        a.commit_noted(put(1), c.notes()).unwrap();
        // A deposed writer's commit is refused, and its note never sent.
        a.step_down();
        assert!(a.commit_noted(put(2), Changes { tickets: vec![666], ..Changes::default() }.notes()).is_err());
        let mut got = Vec::new();
        while let Ok(x) = rx.recv_timeout(std::time::Duration::from_secs(2)) {
            got.push(x);
        }
        stop.cancel();
        got.retain(|(_, c)| !c.tickets.is_empty());
        got.sort_by_key(|(n, _)| *n);
        assert_eq!(got, vec![("na", c.clone()), ("nb", c)], "each node hears the commit once; never the refused one");
    }

    #[test]
    fn a_note_names_its_node_and_its_changes() {
        let c = Changes { tickets: vec![4, 2], outbox: true, quarantine: false, spam: true, everything: false };
        let notes = c.notes();
        assert_eq!(notes.len(), 1);
        let payload = format!("n1\n{}", notes[0]);
        assert_eq!(parse(&payload), Some(("n1", c)));
        assert_eq!(parse("no newline"), None);
        let many =
            Changes { tickets: (1..=1000).collect(), outbox: false, quarantine: true, spam: false, everything: false };
        let notes = many.notes();
        assert!(notes.len() >= 3 && notes.iter().all(|n| n.len() < 7000), "{:?}", notes.iter().map(String::len));
        let back: Vec<Changes> = notes.iter().map(|n| serde_json::from_str(n).unwrap()).collect();
        assert_eq!(back.iter().flat_map(|c| c.tickets.clone()).collect::<Vec<_>>(), many.tickets);
        assert_eq!(back.iter().filter(|c| c.quarantine).count(), 1, "the flags ride once");
        assert!(Changes::default().notes().is_empty());
    }
}
