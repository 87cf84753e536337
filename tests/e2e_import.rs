//! `ticketd import` of an old helpdesk's mbox and Maildir++ export into a
//! desk that already reads a real mailbox: history becomes tickets quietly
//! and threads into what IMAP brought, a second run creates nothing, the
//! mailbox's cursor never moves, and bad input is named.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Daemon, Lab};

fn mail(id: &str, from: &str, date: &str, subject: &str, extra: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: {date}\r\n{extra}\r\n{body}"
    )
}

/// mboxrd: a `From ` line, body lines starting with (quoted) `From `
/// quoted once more, an empty line after each message.
fn mbox(messages: &[String]) -> Vec<u8> {
    let mut out = String::new();
    for m in messages {
        out.push_str("From old-desk@example.test Mon Jun  2 09:00:00 2025\n");
        for line in m.replace("\r\n", "\n").split_inclusive('\n') {
            if line.trim_start_matches('>').starts_with("From ") {
                out.push('>');
            }
            out.push_str(line);
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    out.into_bytes()
}

fn write_maildir(root: &Path) {
    let m1 = mail(
        "m1@old.test",
        "Mia <mia@customer.test>",
        "Tue, 03 Mar 2020 10:00:00 +0000",
        "Maildir question",
        "",
        "Where is my parcel?\r\n",
    );
    let m2 = mail(
        "m2@old.test",
        "Mia <mia@customer.test>",
        "Wed, 04 Mar 2020 10:00:00 +0000",
        "Re: Maildir question",
        "In-Reply-To: <m1@old.test>\r\n",
        "Still waiting for the parcel.\r\n",
    );
    for (dir, name, text) in
        [("cur", "1583229600.M1P1.olddesk:2,S", &m1), (".Archive/new", "1583316000.M2P1.olddesk", &m2)]
    {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join(name), text).unwrap();
    }
    std::fs::create_dir_all(root.join(".Archive/cur")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::write(root.join("tmp/1583316001.M3P1.olddesk"), "half-delivered").unwrap();
}

fn run_ok(d: &Daemon, args: &[&str]) -> (String, String) {
    let out = d.cli(args);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "ticketd {args:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

fn run_err(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(!out.status.success(), "ticketd {args:?} should fail:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stat(d: &Daemon) -> serde_json::Value {
    serde_json::from_str(&run_ok(d, &["store", "stats", "--json"]).0).unwrap()
}

fn cursor(stats: &serde_json::Value, mailbox: &str) -> Option<serde_json::Value> {
    stats["cursors"].as_array().unwrap().iter().find(|c| c["mailbox"] == mailbox).cloned()
}

fn summary_line(text: &str, label: &str) -> u64 {
    let line =
        text.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{text}"));
    line.trim_start()[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_imported_quietly_once_and_threads_into_live_mail() {
    let lab = Lab::start();
    let mut d = Daemon::in_process(&lab, |c| c.desk.acks_per_sender_per_hour = Some(100)).await;
    let live = mail(
        "live1@customer.test",
        "Cora <customer@example.test>",
        "Mon, 01 Dec 2025 09:00:00 +0000",
        "Printer jams",
        "",
        "The printer jams on every page.\r\n",
    );
    lab.smtp_send("customer@example.test", &["support@example.test"], live.as_bytes()).await.unwrap();
    common::all_seen(&lab, "support", 1, Duration::from_secs(30)).await;
    lab.wait_for_messages("customer", "INBOX", 1, Duration::from_secs(30)).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.mbox");
    let h1 = mail(
        "h1@old.test",
        "Olga <olga@customer.test>",
        "Fri, 01 Feb 2019 08:00:00 +0000",
        "Old question",
        "",
        "How do I reset the toner counter?\r\n>From the old FAQ: hold the button.\r\n",
    );
    let h2 = mail(
        "h2@old.test",
        "Olga <olga@customer.test>",
        "Sat, 02 Feb 2019 08:00:00 +0000",
        "Re: Old question",
        "In-Reply-To: <h1@old.test>\r\n",
        "From the manual it is not clear.\r\n",
    );
    let h3 = mail(
        "h3@customer.test",
        "Cora <customer@example.test>",
        "Mon, 01 Dec 2025 09:30:00 +0000",
        "Re: Printer jams",
        "In-Reply-To: <live1@customer.test>\r\n",
        "It also jams on envelopes.\r\n",
    );
    let corrupt = "\u{1}\u{2} this is not a message at all\r\n".to_owned();
    std::fs::write(&old, mbox(&[h1, h2, h3, live.clone(), corrupt])).unwrap();
    let maildir = dir.path().join("Maildir");
    write_maildir(&maildir);
    let (old_s, maildir_s) = (old.to_str().unwrap(), maildir.to_str().unwrap());

    // The daemon holds the store: the import says so and does nothing.
    let err = run_err(&d, &["import", old_s]);
    assert!(err.contains("in use by another process") && err.contains("daemon"), "{err}");
    d.stop().await;
    let outbox_before = run_ok(&d, &["outbox", "--all", "--json"]).0;
    let before = stat(&d);
    let support_cursor = cursor(&before, "support").expect("IMAP cursor");

    let (out, err) = run_ok(&d, &["import", old_s, maildir_s]);
    assert_eq!(summary_line(&out, "tickets created"), 2, "h1 and m1:\n{out}");
    assert_eq!(summary_line(&out, "replies added"), 3, "h2, h3, m2:\n{out}");
    assert_eq!(summary_line(&out, "duplicates skipped"), 1, "the copy of the live mail:\n{out}");
    assert_eq!(summary_line(&out, "quarantined"), 1, "{out}");
    assert!(err.contains("quarantined as entry") && err.contains("old.mbox (message at byte"), "{err}");
    assert!(err.contains("2 message file(s)"), "tmp/ is not read: {err}");

    let tickets = d.tickets_json();
    assert_eq!(tickets.len(), 3, "{tickets:?}");
    let by_title = |t: &str| tickets.iter().find(|x| x["title"] == t).unwrap_or_else(|| panic!("no {t:?}")).clone();
    let old_t = by_title("Old question");
    assert_eq!(old_t["createdAt"], "2019-02-01T08:00:00Z", "original date");
    assert!(old_t["tags"].as_array().unwrap().iter().any(|t| t == "imported"));
    let texts: Vec<&str> =
        old_t["threads"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(
        texts.iter().any(|m| m.starts_with("From the manual it is not clear.")),
        "mboxrd quoting undone: {texts:?}"
    );
    assert!(old_t["description"].as_str().unwrap().contains("\n>From the old FAQ"), "one level undone: {old_t}");
    let md = by_title("Maildir question");
    assert!(md["threads"].as_array().unwrap().iter().any(|e| e["message"].as_str().unwrap().contains("Still waiting")));
    let printer = by_title("Printer jams");
    assert!(
        printer["threads"].as_array().unwrap().iter().any(|e| e["message"].as_str().unwrap().contains("envelopes")),
        "the old reply joined the ticket IMAP made: {printer}"
    );
    assert_eq!(run_ok(&d, &["outbox", "--all", "--json"]).0, outbox_before, "history sends nothing");

    let after = stat(&d);
    assert_eq!(cursor(&after, "support"), Some(support_cursor.clone()), "the IMAP cursor did not move");
    assert!(cursor(&after, "@import").is_some());
    assert_eq!(after["quarantine"], 1);

    // Twice: nothing new, not even a second quarantine entry.
    let export = run_ok(&d, &["export"]).0;
    let (out, _) = run_ok(&d, &["import", old_s, maildir_s]);
    assert_eq!(summary_line(&out, "tickets created"), 0, "{out}");
    assert_eq!(summary_line(&out, "replies added"), 0, "{out}");
    assert_eq!(summary_line(&out, "duplicates skipped"), 7, "{out}");
    assert_eq!(summary_line(&out, "quarantined"), 0, "{out}");
    assert_eq!(run_ok(&d, &["export"]).0, export, "the desk is byte for byte the same");
    assert_eq!(stat(&d)["quarantine"], 1);

    // The daemon goes on where it was: nothing is fetched again, new mail is new.
    d.start_in_process().await;
    let fresh = mail(
        "fresh@customer.test",
        "Cora <customer@example.test>",
        "Tue, 02 Dec 2025 09:00:00 +0000",
        "Toner empty",
        "",
        "New today.\r\n",
    );
    lab.smtp_send("customer@example.test", &["support@example.test"], fresh.as_bytes()).await.unwrap();
    lab.wait_for_messages("customer", "INBOX", 2, Duration::from_secs(30)).await.unwrap();
    // The fresh mail is the folder's newest: anything fetched again came
    // before it, and would be counted as a duplicate.
    let metrics = String::from_utf8_lossy(&d.api().get("/metrics").await.unwrap().body).into_owned();
    assert!(!metrics.contains("outcome=\"duplicate\""), "a mail was fetched twice:\n{metrics}");
    d.stop().await;
    let tickets = d.tickets_json();
    assert_eq!(tickets.len(), 4);
    assert_eq!(by_title("Printer jams")["_id"], "support_ticket_1");
    assert!(tickets.iter().any(|t| t["title"] == "Toner empty" && t["_id"] == "support_ticket_4"), "{tickets:?}");
}

#[test]
fn bad_input_is_named_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ticketd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\npath = \"{0}/db\"\n[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n[[mailboxes]]\nname = \"support\"\naddress = \"support@example.test\"\nhost = \"127.0.0.1\"\ntls = \"none\"\npassword = \"x\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let good = dir.path().join("good.mbox");
    std::fs::write(
        &good,
        mbox(&[mail("g@x.test", "g@x.test", "Mon, 01 Dec 2025 09:00:00 +0000", "Good", "", "ok\r\n")]),
    )
    .unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "Subject: not an mbox\n\nhello\n").unwrap();
    let plain_dir = dir.path().join("photos");
    std::fs::create_dir(&plain_dir).unwrap();
    let missing = dir.path().join("missing.mbox");
    let cli = |args: &[&Path]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .arg("--config")
            .arg(&cfg)
            .arg("import")
            .args(args)
            .output()
            .unwrap()
    };
    for (bad, says) in [(&missing, "No such file"), (&text, "not an mbox file"), (&plain_dir, "not a Maildir")] {
        let out = cli(&[&good, bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(&bad.display().to_string()) && err.contains(says), "{err}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(&cfg)
        .args(["store", "stats", "--json"])
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["tables"]["tickets"], 0, "a bad path stops the run before anything is imported");
    let out = cli(&[&good]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tickets created     1"));
}

/// `import` stays inside the paths it is given and reads only regular
/// files: a Maildir's symlinks (to another user's mail, to /etc) are not
/// followed, and a FIFO neither hangs the run nor counts as mail.
#[test]
fn import_stays_inside_its_paths_and_never_hangs_on_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ticketd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\npath = \"{0}/db\"\n[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n[[mailboxes]]\nname = \"support\"\naddress = \"support@example.test\"\nhost = \"127.0.0.1\"\ntls = \"none\"\npassword = \"x\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let secret =
        |id: &str| mail(id, "x@x.test", "Mon, 01 Dec 2025 09:00:00 +0000", "SECRET ELSEWHERE", "", "private\r\n");
    // Mail that is not the admin's to import, in a Maildir of its own.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("cur")).unwrap();
    std::fs::write(elsewhere.join("cur/1.M1P1.x:2,S"), secret("s1@x.test")).unwrap();
    std::fs::write(dir.path().join("lone.eml"), secret("s2@x.test")).unwrap();
    let root = dir.path().join("Maildir");
    write_maildir(&root);
    std::os::unix::fs::symlink(&elsewhere, root.join(".Sneaky")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("lone.eml"), root.join("cur/1583229601.M9P1.x:2,S")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(root.join("cur/1583229602.M8P1.x")).status().unwrap().success());
    let fifo = dir.path().join("pipe.mbox");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let run = |args: &[&Path]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .arg("--config")
            .arg(&cfg)
            .arg("import")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("ticketd import {args:?} hangs");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    let out = run(&[fifo.as_path()]);
    assert!(!out.status.success(), "a FIFO is not an mbox");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a regular file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[root.as_path()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(&cfg)
        .args(["tickets", "list", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("Maildir question"), "{text}");
    assert!(!text.contains("SECRET ELSEWHERE"), "nothing outside the Maildir was imported: {text}");
}
