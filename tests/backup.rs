//! `ticketd backup` / `restore`: a backup taken while the desk works on a
//! real mailbox restores into a fresh store as the same desk (byte for
//! byte), which then goes on without fetching or sending anything twice; a
//! snapshot is one committed state however busy the writer is; damaged,
//! cut-off and misplaced restores are refused before anything is written.

mod common;

use std::path::Path;
use std::time::Duration;

use axum::http::Method;
use common::desk::World;
use common::{Daemon, Lab};
use serde_json::json;
use ticketd::archive::ArchiveError;
use ticketd::cli::http::Body;
use ticketd::desk::backup::{self, BackupError};
use ticketd::desk::{Desk, Item, Mode};
use ticketd::store::{IngestRecord, Records, Scan, Store, Table, WriteSet, keys};
use ticketd::testkit::TestConfig;

fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ticketd")).arg("--config").arg(config).args(args).output().unwrap()
}

fn ok(config: &Path, args: &[&str]) -> Vec<u8> {
    let out = cli(config, args);
    assert!(
        out.status.success(),
        "ticketd {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn customer_mail(id: &str, subject: &str, extra: &str, body: &str) -> String {
    format!(
        "From: Cora <customer@example.test>\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 01 Dec 2025 09:00:00 +0000\r\n{extra}\r\n{body}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_desk_restores_as_the_same_desk() {
    let lab = Lab::start();
    // Both desks share a secret file, as a restore onto a new machine with
    // the same /etc/ticketd/credentials would.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "a-desk-secret-0123456789abcdef\n").unwrap();
    let desk = |c: &mut TestConfig| {
        c.desk.acks_per_sender_per_hour = Some(100);
        c.desk.max_message_bytes = Some(4000);
        c.desk.secret_file = Some(secret.path().to_owned());
    };
    let mut a = Daemon::in_process(&lab, desk).await;

    let attachment = "Q1JBU0ggUkVQT1JUIDQyCg==\r\n".repeat(20);
    let with_file = customer_mail(
        "m1@customer.test",
        "Printer jams",
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n",
        &format!(
            "--b\r\nContent-Type: text/plain\r\n\r\nIt jams, log attached.\r\n--b\r\nContent-Type: text/plain; name=\"log.txt\"\r\nContent-Disposition: attachment; filename=\"log.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{attachment}--b--\r\n"
        ),
    );
    let reply = customer_mail(
        "m2@customer.test",
        "Re: Printer jams",
        "In-Reply-To: <m1@customer.test>\r\n",
        "Also on envelopes.\r\n",
    );
    let other = customer_mail("m3@customer.test", "Invoice", "", "Where is my invoice?\r\n");
    let huge = customer_mail("m4@customer.test", "Scan", "", &"A big scan.\r\n".repeat(600));
    // The first mail is in before its reply is sent: Postfix may deliver
    // two queued mails in either order.
    lab.smtp_send("customer@example.test", &["support@example.test"], with_file.as_bytes()).await.unwrap();
    common::all_seen(&lab, "support", 1, Duration::from_secs(30)).await;
    for m in [&reply, &other, &huge] {
        lab.smtp_send("customer@example.test", &["support@example.test"], m.as_bytes()).await.unwrap();
    }
    common::all_seen(&lab, "support", 4, Duration::from_secs(30)).await;
    let r = a
        .api_as_alice()
        .send(Method::POST, "/api/v1/tickets/1/replies", &[], Some(Body::json(&json!({"text": "Try the rear tray."}))))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    a.eventually_outbox("everything sent", Duration::from_secs(30), |e| {
        e.iter().all(|m| m["state"] != "queued") && e.iter().filter(|m| m["state"] == "sent").count() >= 5
    })
    .await;
    // Sent is handed to Postfix, not yet in the customer's mailbox.
    lab.wait_for_messages("customer", "INBOX", 3, Duration::from_secs(30)).await.unwrap();
    let acks_before = lab.imap_fetch_all("customer", "INBOX").await.unwrap().len();
    assert!(acks_before >= 3, "two acknowledgements and the relay");
    let quarantined: Vec<serde_json::Value> =
        serde_json::from_slice(&ok(&a.config, &["quarantine", "list", "--json"])).unwrap();
    assert_eq!(quarantined.len(), 1, "the big scan: {quarantined:?}");

    // While the worker and the sender run: through the daemon's API.
    let file = a.dir.path().join("desk.backup");
    let said = String::from_utf8(ok(&a.config, &["backup", file.to_str().unwrap()])).unwrap();
    let count = |what: &str| -> u64 {
        let at = said.find(what).unwrap_or_else(|| panic!("{what}: {said}"));
        said[..at].split_whitespace().last().unwrap().parse().unwrap()
    };
    assert!(count(" record(s)") > 10 && count(" blob(s)") >= 5, "{said}");
    a.stop().await;
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600,
            "it holds mail and the secret"
        );
    }
    let listing = std::process::Command::new("tar").arg("tf").arg(&file).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.starts_with("ticketd-backup\n") && listing.ends_with("manifest.json\n"), "{listing}");
    assert!(listing.contains("tables/tickets.jsonl") && listing.contains("blobs/attachment/"), "{listing}");

    let export = ok(&a.config, &["export"]);
    let outbox = ok(&a.config, &["outbox", "--all", "--json"]);
    let quarantine = ok(&a.config, &["quarantine", "list", "--json"]);
    let raw = ok(&a.config, &["tickets", "raw", "1"]);
    assert_eq!(String::from_utf8_lossy(&export).lines().count(), 2);

    let b = Daemon::prepare_with(&lab, desk);
    let restored = ok(&b.config, &["restore", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&restored).contains("restored the backup"));
    assert_eq!(ok(&b.config, &["export"]), export, "export is byte for byte the same");
    assert_eq!(ok(&b.config, &["outbox", "--all", "--json"]), outbox);
    assert_eq!(ok(&b.config, &["quarantine", "list", "--json"]), quarantine);
    assert_eq!(ok(&b.config, &["tickets", "raw", "1"]), raw, "raw mail restored");
    let stats =
        |c: &Path| -> serde_json::Value { serde_json::from_slice(&ok(c, &["store", "stats", "--json"])).unwrap() };
    let (sa, sb) = (stats(&a.config), stats(&b.config));
    assert_eq!(sa["cursors"], sb["cursors"]);
    assert_eq!(sa["blobs"], sb["blobs"]);
    assert_eq!(sa["tables"], sb["tables"]);
    let again = cli(&b.config, &["restore", file.to_str().unwrap()]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // The restored desk goes on: nothing fetched, nothing sent twice.
    let mut b = b;
    b.start_in_process().await;
    let fresh = customer_mail("m5@customer.test", "Toner", "", "Toner is empty.\r\n");
    lab.smtp_send("customer@example.test", &["support@example.test"], fresh.as_bytes()).await.unwrap();
    lab.wait_for_messages("customer", "INBOX", acks_before + 1, Duration::from_secs(30)).await.unwrap();
    // The fresh mail is the folder's newest: every older one the worker
    // could have fetched again was fetched before it, and counted.
    let metrics = b.api().get("/metrics").await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(!metrics.contains("outcome=\"duplicate\""), "a mail was fetched again:\n{metrics}");
    b.stop().await;
    let export_b = ok(&b.config, &["export"]);
    assert!(export_b.starts_with(&export), "the old tickets are as they were");
    let lines: Vec<&str> = std::str::from_utf8(&export_b).unwrap().lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[2].contains("\"_id\":\"support_ticket_3\"") && lines[2].contains("Toner"), "{}", lines[2]);
    let out_b: Vec<serde_json::Value> = std::str::from_utf8(&ok(&b.config, &["outbox", "--all", "--json"]))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let old: Vec<serde_json::Value> =
        std::str::from_utf8(&outbox).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(&out_b[..old.len()], &old[..], "nothing old was queued again");
    assert!(out_b[old.len()..].iter().all(|e| e["ticket"] == 3), "{out_b:?}");
    let new_acks = out_b[old.len()..].iter().filter(|e| e["kind"] == "ack").count();
    assert_eq!(new_acks, 1, "only the new ack: {out_b:?}");

    // With the daemon stopped the CLI backs up the store itself.
    let second = a.dir.path().join("stopped.backup");
    ok(&a.config, &["backup", second.to_str().unwrap()]);
    let verified = ok(&a.config, &["restore", "--verify-only", second.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&verified).contains("a whole backup"));
    assert!(
        String::from_utf8_lossy(&verified).contains("signed by this desk"),
        "{}",
        String::from_utf8_lossy(&verified)
    );
    // A desk without the secret cannot tell who made it: only with --trust.
    let c = Daemon::prepare(&lab, "", "");
    let refused = cli(&c.config, &["restore", second.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--trust"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    ok(&c.config, &["restore", "--trust", second.to_str().unwrap()]);
    assert_eq!(ok(&c.config, &["export"]), export);
}

/// The secret of every [`World`] desk.
const SECRET: &[u8] = ticketd::testkit::SECRET.as_bytes();

/// `backup::restore` through `desk`'s writer, on the blocking pool as the
/// CLI runs it.
async fn restore(desk: &Desk, file: &Path, secret: Option<&[u8]>, trust: bool) -> Result<(), BackupError> {
    let (desk, file, secret) = (desk.clone(), file.to_owned(), secret.map(|s| s.to_vec()));
    tokio::task::spawn_blocking(move || backup::restore(&desk, &file, secret.as_deref(), trust).map(drop))
        .await
        .unwrap()
}

fn numbered(uid: u32) -> Vec<u8> {
    // Every fourth mail answers the one before it.
    let extra = if uid.is_multiple_of(4) { format!("In-Reply-To: <n{}@c.test>\r\n", uid - 1) } else { String::new() };
    format!(
        "From: <c{}@c.test>\r\nTo: support@example.test\r\nSubject: Question {uid}\r\nMessage-ID: <n{uid}@c.test>\r\n{extra}\r\nbody {uid}\r\n",
        uid % 7
    )
    .into_bytes()
}

fn ingested(store: &Store) -> Vec<IngestRecord> {
    store
        .backend()
        .scan(Table::Ingested, Scan::default())
        .map(|r| serde_json::from_slice(&r.unwrap().1).unwrap())
        .collect()
}

/// Tables copied one after the other still agree with each other.
fn check_one_state(store: &Store) -> usize {
    let tickets = store.tickets().unwrap();
    assert_eq!(store.counter(keys::NEXT_TICKET).unwrap(), tickets.len() as u64 + 1, "counter and tickets agree");
    let records = ingested(store);
    for t in &tickets {
        let mails = records.iter().filter(|r| r.ticket == Some(t.number)).count();
        assert_eq!(t.ticket.threads.len(), mails, "ticket {} and its ingest records agree", t.number);
        for id in &t.thread_ids {
            assert_eq!(store.ticket_by_message_id(id).unwrap(), Some(t.number));
        }
    }
    for r in &records {
        assert!(store.raw(&r.raw_sha256).unwrap().is_some(), "raw copy of uid {}", r.uid);
    }
    let top = records.iter().map(|r| r.uid).max().unwrap_or(0);
    assert_eq!(store.cursor("support").unwrap().map_or(0, |c| c.last_uid), top, "cursor and records agree");
    for (_, e) in store.pending_entries().unwrap() {
        assert!(tickets.iter().any(|t| t.number == e.mail.ticket), "outbox names a ticket that exists");
    }
    tickets.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_one_committed_state_while_the_writer_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let w = World::new();
    let desk = &w.desk;
    let writer = desk.clone();
    let load = tokio::spawn(async move {
        for batch in 0..60u32 {
            let items: Vec<Item> =
                (1..=10).map(|i| batch * 10 + i).map(|uid| Item::Mail { uid, raw: numbered(uid) }).collect();
            let r = writer.ingest_with("support", 1, items, Mode::Live).await;
            assert_eq!(r.error, None);
        }
    });
    let mut files = Vec::new();
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let f = dir.path().join(format!("b{i}.backup"));
        backup::backup_to_file(desk, &f).await.unwrap();
        files.push(f);
    }
    load.await.unwrap();
    let mut sizes = Vec::new();
    for f in &files {
        let restored = World::new();
        restore(&restored.desk, f, Some(SECRET), false).await.unwrap();
        sizes.push(check_one_state(restored.desk.store()));
    }
    assert!(sizes.iter().any(|n| *n > 0), "the snapshots were taken while tickets existed: {sizes:?}");
    assert!(sizes.iter().any(|n| *n < 450), "and while mail was still coming in: {sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_cut_off_and_misplaced_restores_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = World::new();
    let desk = &w.desk;
    let items = (1..=5).map(|uid| Item::Mail { uid, raw: numbered(uid) }).collect();
    assert_eq!(desk.ingest_with("support", 1, items, Mode::Quiet).await.error, None);
    let file = dir.path().join("good.backup");
    backup::backup_to_file(desk, &file).await.unwrap();
    let bytes = std::fs::read(&file).unwrap();

    let target_world = World::new();
    let (target, d) = (target_world.desk.store(), target_world.desk.clone());
    let fail = async |name: &str, content: &[u8]| -> BackupError {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        let e = restore(&d, &p, Some(SECRET), false).await.unwrap_err();
        assert_eq!(target.tickets().unwrap().len(), 0, "{name}: nothing written");
        assert!(!backup::unfinished(target).unwrap(), "{name}: not even the marker");
        e
    };
    let e = fail("cut.backup", &bytes[..bytes.len() / 2]).await;
    assert!(
        matches!(e, BackupError::Archive(ArchiveError::Incomplete) | BackupError::Archive(ArchiveError::Damaged(_))),
        "{e}"
    );
    // The first "Question 3" is the ticket's title in tables/tickets.jsonl.
    let at = bytes.windows(10).position(|w| w == b"Question 3").unwrap();
    let mut flipped = bytes.clone();
    flipped[at] ^= 0x20;
    let e = fail("flipped.backup", &flipped).await;
    assert!(e.to_string().contains("damaged"), "{e}");
    let e = fail("notes.txt", b"just some text, not a tar at all\n").await;
    assert!(matches!(e, BackupError::Archive(ArchiveError::NotABackup(_))), "{e}");
    // A 37 KB-style bomb: an entry that claims 3 GiB (a GNU sparse one, or
    // a plain one whose header lies) is refused before anything is read.
    for kind in [tar::EntryType::GNUSparse, tar::EntryType::Regular] {
        let mut bomb = bytes[..1024].to_vec();
        let mut h = tar::Header::new_gnu();
        h.set_path("blobs/raw/".to_owned() + &"a".repeat(64)).unwrap();
        h.set_size(3 << 30);
        h.set_entry_type(kind);
        h.set_cksum();
        bomb.extend_from_slice(h.as_bytes());
        bomb.extend_from_slice(&[0u8; 1024 * 40]);
        let started = std::time::Instant::now();
        let e = fail("bomb.backup", &bomb).await;
        assert!(
            matches!(
                e,
                BackupError::Archive(ArchiveError::Damaged(_)) | BackupError::Archive(ArchiveError::Incomplete)
            ),
            "{kind:?}: {e}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{kind:?}: refused at once");
    }
    // Made by a newer ticketd (a store format this build does not know):
    // refused with what to do, at the first record (meta comes first).
    let newer_world = World::new();
    let mut w = WriteSet::default();
    w.put(Table::Meta, keys::FORMAT, (ticketd::desk::migrate::STORE_FORMAT + 1).to_be_bytes().to_vec());
    newer_world.desk.store().backend().commit(w).unwrap();
    let newer = dir.path().join("newer.backup");
    backup::backup_to_file(&newer_world.desk, &newer).await.unwrap();
    let e = restore(&d, &newer, Some(SECRET), false).await.unwrap_err();
    assert!(e.to_string().contains("written by a newer ticketd"), "{e}");
    assert_eq!(target.tickets().unwrap().len(), 0, "nothing but the unfinished-restore marker");
    assert!(backup::unfinished(target).unwrap(), "the next start says to restore again");
    let target_world = World::new();
    let (target, d) = (target_world.desk.store(), target_world.desk.clone());
    // Signed with another desk's secret: refused unless trusted.
    let e = restore(&d, &file, Some(b"another-desk-secret-0000"), false).await.unwrap_err();
    assert!(matches!(e, BackupError::Untrusted { .. }), "{e}");
    assert!(e.to_string().contains("--trust"), "{e}");
    assert_eq!(target.tickets().unwrap().len(), 0, "nothing written");
    let e = restore(&d, &file, None, false).await.unwrap_err();
    assert!(matches!(e, BackupError::Untrusted { has_secret: false, .. }), "{e}");

    restore(&d, &file, Some(SECRET), false).await.unwrap();
    assert_eq!(target.tickets().unwrap(), desk.store().tickets().unwrap());
    let e = restore(&d, &file, Some(SECRET), false).await.unwrap_err();
    assert!(matches!(e, BackupError::NotEmpty { .. }), "{e}");

    // A restore that died half-way (its marker written, the process killed)
    // leaves a store no desk starts on.
    let World { dir: half_dir, cfg: cfg2, desk: d } = World::new();
    d.join_when_last().await;
    common::inproc::wait_unlocked(&cfg2.store.path).await;
    {
        let store = Store::open(&cfg2.store).unwrap();
        let mut w = WriteSet::default();
        w.put(Table::Meta, backup::RESTORING, vec![1]);
        store.take_committer().unwrap().commit(w).unwrap();
    }
    common::inproc::wait_unlocked(&cfg2.store.path).await;
    let e = Desk::open(cfg2, false).err().expect("no desk starts on a half-restored store");
    assert!(e.to_string().contains("a restore into"), "{e}");
    let out = cli(&half_dir.path().join("ticketd.toml"), &["export"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a restore into"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_backs_up_the_running_daemon_through_its_api() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process_at(&lab, common::ApiAt::Tcp, |_| {}).await;
    for i in 0..3 {
        let m = customer_mail(&format!("live{i}@customer.test"), &format!("Live {i}"), "", "While it runs.\r\n");
        lab.smtp_send("customer@example.test", &["support@example.test"], m.as_bytes()).await.unwrap();
    }
    common::all_seen(&lab, "support", 3, Duration::from_secs(30)).await;
    let file = daemon.dir.path().join("live.tar");
    let out = cli(&daemon.config, &["backup", file.to_str().unwrap()]);
    assert!(out.status.success(), "backup while running: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("record(s)"));
    let stats = cli(&daemon.config, &["store", "stats", "--json"]);
    assert!(stats.status.success(), "stats while running: {}", String::from_utf8_lossy(&stats.stderr));
    daemon.stop().await;
    let export = ok(&daemon.config, &["export"]);

    // Into a fresh store: the same desk (no secret file here to check the
    // signature with, so the admin vouches for it).
    let fresh = Daemon::prepare(&lab, "", "");
    let out = cli(&fresh.config, &["restore", "--trust", file.to_str().unwrap()]);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ok(&fresh.config, &["export"]), export, "export is byte-identical");
}
