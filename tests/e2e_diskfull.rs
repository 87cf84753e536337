//! A full disk under the store: ticketd stops marking mail processed, says
//! so once at ERROR, and carries on by itself when space returns. The store
//! lives on a small tmpfs mounted for this test (CI runs as root).

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ApiAt, Daemon, Lab, wait_for_text};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mail(subject: &str, id: &str) -> Vec<u8> {
    format!("From: customer@example.test\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\r\n{}\r\n", "some text ".repeat(500)).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acknowledging_and_recovers() {
    let lab = Lab::start();
    let mut daemon = Daemon::prepare_api(&lab, ApiAt::Unix, "", "");
    let db = daemon.dir.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"]).arg(&db).status().unwrap();
    assert!(ok.success(), "mounting a tmpfs needs root (CI runs as root)");
    let _mount = Mount(db.clone());
    daemon.spawn();

    lab.smtp_send("customer@example.test", &["support@example.test"], &mail("Before", "df1@c.test")).await.unwrap();
    wait_for_text(&lab, "customer", "[Ticket #1] Before", Duration::from_secs(30)).await;

    // Fill the disk.
    let filler = db.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    drop(f);

    lab.smtp_send("customer@example.test", &["support@example.test"], &mail("During", "df2@c.test")).await.unwrap();
    // The mailbox waits for the store, as ticketd reports.
    daemon.wait_mailbox("support", &["store_wait"], Duration::from_secs(30), |_| true).await;
    // Retries go on (with backoff) while the disk stays full, and the log
    // says so once; the mail is not marked.
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.log_text().matches("waiting for the store").count() < 2 {
        assert!(Instant::now() < deadline, "no retries:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flags = lab.imap_flags("support", "INBOX").await.unwrap();
    assert_eq!(flags.len(), 2);
    assert!(!flags[1].1.iter().any(|f| f == "\\Seen"), "nothing is marked processed that was not stored: {flags:?}");
    let log = daemon.log_text();
    assert_eq!(log.lines().filter(|l| l.contains("ERROR") && l.contains("cannot store changes")).count(), 1, "{log}");
    assert!(log.contains("cannot store changes (the disk is full)"), "the ERROR names the cause: {log}");

    // Space returns: the mail becomes a ticket without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while lab.imap_count("customer", "INBOX").await.unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "no recovery:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_text(&lab, "customer", "[Ticket #2] During", Duration::from_secs(5)).await;
    assert!(daemon.log_text().contains("the store accepts writes again"), "{}", daemon.log_text());
    daemon.stop_ok();
    let titles: Vec<String> = daemon.tickets_json().iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect();
    assert_eq!(titles, vec!["During", "Before"]);
    let flags = lab.imap_flags("support", "INBOX").await.unwrap();
    assert!(flags.iter().all(|(_, f)| f.iter().any(|x| x == "\\Seen")), "{flags:?}");
}

/// A mail from `from` carrying one attachment.
fn mail_with_file(from: &str, id: &str, subject: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines: Vec<&str> = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!(
        "From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nFile attached.\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        lines.join("\r\n")
    )
    .into_bytes()
}

/// Bytes nobody could confuse with another file's (and that do not compress).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Fills the file system of `dir` and then gives back `free` bytes: the
/// next write larger than that fails part of the way through.
fn fill_leaving(dir: &std::path::Path, free: u64) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&filler).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0u8]).is_ok() {}
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(free)).unwrap();
    filler
}

async fn mailbox_state(api: &ticketd::cli::http::HttpClient) -> String {
    let r = api.get("/readyz").await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["mailboxes"]["support"]["state"].as_str().unwrap_or("").to_owned()
}

/// The finding of the attack pass: a blob write that a full disk cut off
/// half way left its bytes in the segment file, and every blob stored after
/// it was recorded at the wrong offset — served with 200 and another
/// customer's bytes. Here the disk under the blob files fills in the middle
/// of an attachment three times; afterwards every attachment, through the
/// API and in a relayed reply, is byte for byte what was sent, and a blob
/// damaged on disk is refused by name, never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_writes_cut_off_by_a_full_disk_never_shift_another_customers_bytes() {
    let lab = Lab::start();
    let mut daemon = Daemon::prepare_api(&lab, ApiAt::Tcp, "", "");
    let blobs = daemon.dir.path().join("attachments");
    std::fs::create_dir_all(&blobs).unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"]).arg(&blobs).status().unwrap();
    assert!(ok.success(), "mounting a tmpfs needs root (CI runs as root)");
    let _mount = Mount(blobs.clone());
    daemon.start_in_process().await;
    let api = daemon.api();

    let mut sent: Vec<(u64, String, Vec<u8>)> = Vec::new();
    let first = noise(100, 50_000);
    lab.imap_append(
        "support",
        "INBOX",
        &mail_with_file("customer+0@example.test", "f0@c.test", "First", "f0.bin", &first),
    )
    .await
    .unwrap();
    daemon.eventually_json("/api/v1/tickets/1", Duration::from_secs(30), |s, _| s == 200).await;
    sent.push((1, "f0.bin".into(), first));

    for round in 1..=3u64 {
        let file = noise(round, 120_000 + round as usize * 9_000);
        // Room for about half of the attachment: its write stops in the middle.
        let filler = fill_leaving(&blobs, 48 * 1024);
        let raw = mail_with_file(
            &format!("customer+{round}@example.test"),
            &format!("f{round}@c.test"),
            &format!("Round {round}"),
            &format!("f{round}.bin"),
            &file,
        );
        lab.imap_append("support", "INBOX", &raw).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while mailbox_state(&api).await != "store_wait" {
            assert!(Instant::now() < deadline, "the store never refused the write");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::fs::remove_file(&filler).unwrap();
        let n = round + 1;
        daemon.eventually_json(&format!("/api/v1/tickets/{n}"), Duration::from_secs(60), |s, _| s == 200).await;
        sent.push((n, format!("f{round}.bin"), file));
    }
    // Stored after the faults, in the same segment file.
    for k in 4..=5u64 {
        let file = noise(k, 30_000 + k as usize * 1_000);
        let raw = mail_with_file(
            &format!("customer+{k}@example.test"),
            &format!("f{k}@c.test"),
            &format!("After {k}"),
            "after.bin",
            &file,
        );
        lab.imap_append("support", "INBOX", &raw).await.unwrap();
        daemon.eventually_json(&format!("/api/v1/tickets/{}", k + 1), Duration::from_secs(30), |s, _| s == 200).await;
        sent.push((k + 1, "after.bin".into(), file));
    }

    let base = daemon.listen().base_url();
    let mut urls = Vec::new();
    for (n, name, bytes) in &sent {
        let t: serde_json::Value =
            serde_json::from_slice(&api.get(&format!("/api/v1/tickets/{n}")).await.unwrap().body).unwrap();
        let a = t["attachments"].as_array().unwrap().iter().find(|a| a["filename"] == name.as_str()).unwrap().clone();
        let path = a["url"].as_str().unwrap().strip_prefix(&base).unwrap().to_owned();
        let r = api.get(&path).await.unwrap();
        assert_eq!(r.status, 200, "ticket {n}");
        assert!(
            r.body.as_ref() == bytes.as_slice(),
            "ticket {n}: the attachment's bytes are not what the customer sent"
        );
        urls.push(path);
    }

    // An agent's reply with a 200 kB file reaches the customer intact.
    let file = noise(77, 200_000);
    let out = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(&daemon.config)
        .args(["tickets", "reply", "2", "--text", "Here is the patched build."])
        .arg("--attach")
        .arg({
            let p = daemon.dir.path().join("patch.bin");
            std::fs::write(&p, &file).unwrap();
            p
        })
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for_text(&lab, "customer", "Here is the patched build.", Duration::from_secs(30)).await;
    let all = lab.imap_fetch_all("customer", "INBOX").await.unwrap_or_default();
    let got = all
        .iter()
        .filter_map(|m| mail_parser::MessageParser::default().parse(m.as_slice()))
        .flat_map(|m| m.attachments().map(|a| a.contents().to_vec()).collect::<Vec<_>>())
        .find(|c| c.len() == file.len())
        .expect("the relayed attachment");
    assert!(got == file, "the relayed attachment holds other bytes than the agent's file");

    // The backup of this store is sound; a blob damaged on disk is refused.
    let backup = daemon.dir.path().join("good.tar");
    let out = daemon.cli(&["backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = daemon.cli(&["restore", "--verify-only", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let victim = &sent[0].2;
    let seg = std::fs::read_dir(&blobs)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("seg-"))
        .unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let at = data.windows(64).position(|w| w == &victim[..64]).expect("the first attachment is in the first segment");
    data[at + 10] ^= 0xff;
    std::fs::write(&seg, &data).unwrap();
    let r = api.get(&urls[0]).await.unwrap();
    assert_ne!(r.status, 200, "a damaged blob is never served");
    let sha = urls[0].split('/').nth(2).unwrap();
    assert!(
        String::from_utf8_lossy(&r.body).contains(sha),
        "the error names the blob: {}",
        String::from_utf8_lossy(&r.body)
    );
    let out = daemon.cli(&["backup", daemon.dir.path().join("bad.tar").to_str().unwrap()]);
    assert!(!out.status.success(), "a backup of a damaged store fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains(sha), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!daemon.dir.path().join("bad.tar").exists());
    daemon.stop().await;
}
