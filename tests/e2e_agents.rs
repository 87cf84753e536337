//! Agents work entirely by email, end to end through real Postfix and
//! Dovecot: authenticated replies, commands, relay, lifecycle, participants.

mod common;

use std::time::Duration;

use common::{Daemon, Lab, header, wait_for_text};

const WAIT: Duration = Duration::from_secs(30);

fn mail(from: &str, to: &str, extra: &str, subject: &str, id: &str, body: &str) -> Vec<u8> {
    format!("From: {from}\r\nTo: {to}\r\n{extra}Subject: {subject}\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n")
        .into_bytes()
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_answer_by_email_and_forgeries_get_nowhere() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |_| {}).await;

    // The customer writes, with a colleague in Cc: the colleague becomes a participant.
    let first = mail(
        "Carla <customer@example.test>",
        "support@example.test",
        "Cc: carol@example.test\r\n",
        "Printer on fire",
        "c1@customer.example.test",
        "The printer smokes.",
    );
    lab.smtp_send("customer@example.test", &["support@example.test", "carol@example.test"], &first).await.unwrap();
    let notes = lab.wait_for_messages("alice", "INBOX", 1, WAIT).await.unwrap();
    let note = text(&notes[0]);
    assert!(header(&note, "Subject").unwrap().contains("[Ticket #1]"));
    let notify_id = header(&note, "Message-ID").unwrap();
    lab.wait_for_messages("customer", "INBOX", 1, WAIT).await.unwrap();

    // 1. A forged From: alice's address, no proof. Not an agent.
    let forged = mail(
        "Alice <alice@example.test>",
        "support@example.test",
        "",
        "Re: [Ticket #1] Printer on fire",
        "forged@evil.example.test",
        "#status closed\r\nThis ticket is closed, send your password to me.",
    );
    lab.smtp_send("alice@example.test", &["support@example.test"], &forged).await.unwrap();

    // 2. Alice's real reply to her notification: commands + text + an attachment.
    let reply = format!(
        "From: Alice <alice@example.test>\r\nTo: support@example.test\r\nSubject: Re: [Ticket #1] Printer on fire\r\nMessage-ID: <a1@example.test>\r\nIn-Reply-To: {notify_id}\r\nReferences: {notify_id}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"z\"\r\n\r\n--z\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n#priority high\r\n#tag printer\r\nPlease unplug it and follow the attached guide. Questions? alice@example.test\r\n\r\nOn Thu, 26 Nov 2026 at 10:00, Example Support <support@example.test> wrote:\r\n> New ticket on ticket #1\r\n--z\r\nContent-Type: text/plain; name=\"guide.txt\"\r\nContent-Disposition: attachment; filename=\"guide.txt\"\r\n\r\nStep 1: unplug.\r\n--z--\r\n"
    );
    lab.smtp_send("alice@example.test", &["support@example.test"], reply.as_bytes()).await.unwrap();

    // The customer gets the relay (ack + relay), carol too (relay only).
    let relay = wait_for_text(&lab, "customer", "Please unplug it", WAIT).await;
    assert!(relay.contains("Please unplug it"), "{relay}");
    assert!(!relay.to_ascii_lowercase().contains("alice@example.test"), "the agent's address leaks:\n{relay}");
    assert!(!relay.contains("#priority"), "commands are removed");
    assert!(!relay.contains("wrote:"), "quoted text is removed");
    assert!(header(&relay, "From").unwrap().contains("support@example.test"));
    assert_eq!(header(&relay, "Subject").unwrap(), "Re: [Ticket #1] Printer on fire", "reads like a reply");
    assert_eq!(header(&relay, "In-Reply-To").as_deref(), Some("<c1@customer.example.test>"));
    assert!(header(&relay, "Auto-Submitted").is_none(), "a human reply is not auto-submitted");
    assert!(relay.contains("guide.txt"), "the attachment goes along");
    wait_for_text(&lab, "carol", "Please unplug it", WAIT).await;

    // 3. A bad command: nothing changes, alice is told which line and why.
    let bad = format!(
        "From: alice@example.test\r\nTo: support@example.test\r\nSubject: Re: [Ticket #1] x\r\nMessage-ID: <a2@example.test>\r\nIn-Reply-To: {notify_id}\r\n\r\n#status done\r\nShould not go out.\r\n"
    );
    lab.smtp_send("alice@example.test", &["support@example.test"], bad.as_bytes()).await.unwrap();
    let error = wait_for_text(&lab, "alice", "line 1", WAIT).await;
    assert!(error.contains("#status done") && error.contains("invalid status \"done\""), "{error}");

    // 4. Resolve with a resolution: the customer is told.
    let resolve = format!(
        "From: alice@example.test\r\nTo: support@example.test\r\nSubject: Re: [Ticket #1] x\r\nMessage-ID: <a3@example.test>\r\nIn-Reply-To: {notify_id}\r\n\r\n#status resolved\r\n#resolution Replaced the fuser unit\r\n"
    );
    lab.smtp_send("alice@example.test", &["support@example.test"], resolve.as_bytes()).await.unwrap();
    let resolved = wait_for_text(&lab, "customer", "Replaced the fuser unit", WAIT).await;
    assert!(resolved.contains("has been resolved"), "{resolved}");
    daemon.stop().await;

    let t = daemon.ticket_json(1);
    assert_eq!(t["status"], "resolved");
    assert_eq!(t["priority"], "high");
    assert_eq!(t["assignedTo"], "agent_alice");
    assert_eq!(t["resolution"], "Replaced the fuser unit");
    assert!(t["resolvedAt"].is_string());
    assert_eq!(t["tags"], serde_json::json!(["printer"]));
    assert_eq!(t["participants"], serde_json::json!(["carol@example.test"]));
    let threads = t["threads"].as_array().unwrap();
    let agent: Vec<&serde_json::Value> = threads.iter().filter(|e| e["type"] == "agent").collect();
    assert_eq!(agent.len(), 1, "{t:#}");
    assert_eq!(agent[0]["author"], "agent_alice");
    assert!(agent[0]["message"].as_str().unwrap().starts_with("Please unplug it"));
    let system: Vec<&str> =
        threads.iter().filter(|e| e["type"] == "system").map(|e| e["message"].as_str().unwrap()).collect();
    assert!(system.contains(&"priority medium → high by agent_alice"), "{system:?}");
    assert!(system.contains(&"status in_progress → resolved by agent_alice"), "{system:?}");
    assert!(
        !threads.iter().any(|e| e["message"].as_str().unwrap().contains("password")),
        "the forgery is not on ticket 1"
    );
    assert_eq!(t["attachments"][0]["filename"], "guide.txt");
    let forged_ticket = daemon.ticket_json(2);
    assert_eq!(forged_ticket["status"], "open", "the forged #status did nothing");
    assert_eq!(forged_ticket["threads"][0]["type"], "user");

    // The raw mails stay retrievable, quotes and commands included.
    let raw = String::from_utf8_lossy(&daemon.cli(&["tickets", "raw", "1"]).stdout).into_owned();
    assert!(raw.starts_with("From ticketd "), "{raw}");
    assert!(
        raw.contains("#priority high") && raw.contains("wrote:") && raw.contains("Message-ID: <a1@example.test>"),
        "{raw}"
    );

    // The readable view shows the conversation.
    let out = daemon.cli(&["tickets", "show", "support_ticket_1"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("agent_alice · agent") && shown.contains("client_1 · customer") && shown.contains("· system"),
        "{shown}"
    );
    // Who wrote, by name and address, not only `client_1`.
    let customer = shown.lines().find(|l| l.starts_with("customer ")).unwrap_or_default();
    assert!(customer.contains("customer@example.test") && customer.ends_with("(client_1)"), "{shown}");

    // 5. The customer answers the resolved ticket: it reopens.
    daemon.start_in_process().await;
    let resolved_id = header(&resolved, "Message-ID").unwrap();
    let again = mail(
        "customer@example.test",
        "support@example.test",
        &format!("In-Reply-To: {resolved_id}\r\n"),
        "Re: [Ticket #1] Printer on fire",
        "c2@customer.example.test",
        "It smokes again.",
    );
    lab.smtp_send("customer@example.test", &["support@example.test"], &again).await.unwrap();
    wait_for_text(&lab, "alice", "It smokes again.", WAIT).await;
    daemon.stop().await;
    let t = daemon.ticket_json(1);
    assert_eq!(t["status"], "open");
    assert!(t["resolvedAt"].is_null());
    let last = t["threads"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message"], "It smokes again.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_closed_ticket_opens_a_follow_up() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |c| c.desk.send_receipts = Some(true)).await;
    let first = mail(
        "customer@example.test",
        "support@example.test",
        "",
        "Invoice wrong",
        "inv1@customer.example.test",
        "Please fix.",
    );
    lab.smtp_send("customer@example.test", &["support@example.test"], &first).await.unwrap();
    let notes = lab.wait_for_messages("alice", "INBOX", 1, WAIT).await.unwrap();
    let notify_id = header(&text(&notes[0]), "Message-ID").unwrap();
    let close = format!(
        "From: alice@example.test\r\nTo: support@example.test\r\nSubject: Re: [Ticket #1] Invoice wrong\r\nMessage-ID: <close@example.test>\r\nIn-Reply-To: {notify_id}\r\n\r\n#status closed\r\n#note refunded\r\n"
    );
    lab.smtp_send("alice@example.test", &["support@example.test"], close.as_bytes()).await.unwrap();
    let receipt = wait_for_text(&lab, "alice", "Applied to ticket #1", WAIT).await;
    assert!(receipt.contains("status open → closed by agent_alice"), "{receipt}");
    let late = mail(
        "customer@example.test",
        "support@example.test",
        "In-Reply-To: <inv1@customer.example.test>\r\n",
        "Re: [Ticket #1] Invoice wrong",
        "inv2@customer.example.test",
        "One more thing.",
    );
    lab.smtp_send("customer@example.test", &["support@example.test"], &late).await.unwrap();
    wait_for_text(&lab, "alice", "One more thing.", WAIT).await;
    daemon.stop().await;
    let old = daemon.ticket_json(1);
    assert_eq!(old["status"], "closed");
    let t = daemon.ticket_json(2);
    assert!(t["tags"].as_array().unwrap().contains(&serde_json::json!("follow-up")), "{t:#}");
    assert!(t["threads"][0]["message"].as_str().unwrap().contains("support_ticket_1"));
    assert_eq!(t["threads"][1]["message"], "One more thing.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_pass_from_the_trusted_authserv_id_proves_an_agent() {
    let lab = Lab::start();
    let mut daemon = Daemon::in_process(&lab, |c| c.desk.trusted_authserv_id = Some("mx.example.test".into())).await;
    let first = mail(
        "customer@example.test",
        "support@example.test",
        "",
        "Login broken",
        "d1@customer.example.test",
        "Cannot log in.",
    );
    lab.smtp_send("customer@example.test", &["support@example.test"], &first).await.unwrap();
    wait_for_text(&lab, "customer", "[Ticket #1]", WAIT).await;
    // A fresh mail from Alice (no notification referenced), as the border
    // MTA would hand it over after checking DKIM. Only the trusted
    // authserv-id counts; a second, forged header from elsewhere does not.
    // The border's results stand above the Received line it wrote.
    let border = "Received: from out.example.test by mx.example.test (Postfix) with ESMTPS id 1; Thu, 26 Nov 2026 10:00:00 +0000\r\n";
    let reply = format!(
        "Authentication-Results: mx.example.test; dkim=pass header.d=example.test header.s=sel\r\nAuthentication-Results: evil.test; dkim=pass header.d=example.test\r\n{border}From: alice@example.test\r\nTo: support@example.test\r\nSubject: [Ticket #1] Login broken\r\nMessage-ID: <dk1@example.test>\r\n\r\n#priority high\r\nI reset your account.\r\n"
    );
    lab.imap_append("support", "INBOX", reply.as_bytes()).await.unwrap();
    wait_for_text(&lab, "customer", "I reset your account.", WAIT).await;
    let forged = format!(
        "Authentication-Results: mx.example.test; dkim=fail header.d=example.test\r\n{border}From: alice@example.test\r\nTo: support@example.test\r\nSubject: [Ticket #1] Login broken\r\nMessage-ID: <dk2@evil.test>\r\n\r\n#status closed\r\nForged.\r\n"
    );
    lab.imap_append("support", "INBOX", forged.as_bytes()).await.unwrap();
    // A pass the sender wrote itself sits below the border's Received line.
    let smuggled = format!(
        "{border}Authentication-Results: mx.example.test; dkim=pass header.d=example.test\r\nFrom: alice@example.test\r\nTo: support@example.test\r\nSubject: [Ticket #1] Login broken\r\nMessage-ID: <dk3@evil.test>\r\n\r\n#status closed\r\nSmuggled.\r\n"
    );
    lab.imap_append("support", "INBOX", smuggled.as_bytes()).await.unwrap();
    common::all_seen(&lab, "support", 4, WAIT).await;
    daemon.stop().await;
    let t = daemon.ticket_json(1);
    assert_eq!(t["priority"], "high");
    assert_eq!(t["assignedTo"], "agent_alice");
    assert_ne!(t["status"], "closed", "dkim=fail proves nothing");
    assert_eq!(daemon.tickets_json().len(), 3, "each unproven mail opened a ticket of its own");
}
