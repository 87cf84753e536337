//! Merging, decided: what B gains, what A keeps, what is refused.

use chrono::TimeDelta;

use super::*;
use crate::ticket::{Attachment, Priority};
use crate::triage::Snapshot;
use crate::triage::timers::tests::{World, at, systems, t0};

fn merge_as_admin(w: &World, a: &TicketRecord, b: &TicketRecord, chain: &[u64]) -> Result<Merged, Vec<ActError>> {
    let ctx = w.ctx();
    let out = Composer { ctx: &ctx, seed: "merge".into(), inbound_id: None, now: at(90) };
    merged(a, b, chain, Actor::Admin, &out, at(90))
}

fn into_message(e: Vec<ActError>) -> String {
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].field, "into");
    e[0].message.clone()
}

#[test]
fn the_survivor_gains_everything_in_time_order_and_the_other_points_there() {
    let w = World::new();
    // B first (the original), A later (the customer wrote a new mail), from
    // a colleague's address, with a participant, a tag and a file.
    let b = w.ticket_from(1, "carla@customer.test", "Printer broken", t0());
    let b = w.act(
        &b,
        Actor::Agent(&w.cfg.agents[0]),
        &[Action::Reply { text: "Which model?".into(), attachments: vec![] }],
        at(60),
    );
    let mut a = w.ticket_from(2, "dave@customer.test", "Printer still broken", at(30));
    a.ticket.participants.push("boss@customer.test".into());
    a.ticket.tags.push("printer".into());
    a.ticket.attachments.push(Attachment {
        filename: "photo.jpg".into(),
        url: format!("https://x.test/att/{}/photo.jpg", "a".repeat(64)),
        size: 3,
        mime_type: "image/jpeg".into(),
    });
    let m = merge_as_admin(&w, &a, &b, &[]).unwrap();

    let times: Vec<_> = m.into.ticket.threads.iter().map(|e| e.timestamp).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "in time order");
    let authors: Vec<&str> =
        m.into.ticket.threads.iter().filter(|e| e.author != "system").map(|e| e.author.as_str()).collect();
    assert_eq!(authors[..3], ["client_1", "client_2", "agent_alice"], "A's mail sorted between B's entries");
    assert_eq!(m.into.ticket.attachments.len(), 1);
    assert_eq!(m.into.ticket.tags, vec!["printer"]);
    assert_eq!(m.into.ticket.participants, vec!["dave@customer.test", "boss@customer.test"], "A's customer too");
    assert!(systems(&m.into).contains(&"support_ticket_2 merged into this ticket by admin (1 entry; 1 attachment; participants added: dave@customer.test, boss@customer.test)"));

    assert_eq!(m.from.ticket.status, Status::Closed);
    assert_eq!((m.from.merged_into, m.from.ticket.merged_into.as_deref()), (Some(1), Some("support_ticket_1")));
    let s = systems(&m.from);
    assert!(s.contains(&"merged into support_ticket_1 by admin: mail about this ticket now goes there"), "{s:?}");
    assert!(s.contains(&"status open → closed by admin"));
    assert_eq!(m.from.ticket.threads.len(), a.ticket.threads.len() + 2, "A keeps its own conversation");
    let json = serde_json::to_value(&m.from.ticket).unwrap();
    assert_eq!(json["mergedInto"], "support_ticket_1");
}

#[test]
fn merged_entries_meet_no_target_of_the_survivor() {
    let w = World::new();
    let b = w.ticket_from(1, "carla@customer.test", "Site is down", t0());
    let a = w.ticket_from(2, "carla@customer.test", "Site is still down", at(10));
    let a = w.act(
        &a,
        Actor::Agent(&w.cfg.agents[0]),
        &[Action::Reply { text: "Looking".into(), attachments: vec![] }],
        at(20),
    );
    assert_eq!(b.ticket.priority, Priority::Urgent);
    let m = merge_as_admin(&w, &a, &b, &[]).unwrap();
    assert_eq!(m.into.ticket.first_response_due, Some(at(60)), "B's clock runs on");
    assert_eq!(m.from.ticket.first_response_due, None, "A met its own");
    assert_eq!(m.from.timers.wake, None, "closed: nothing more for A");
    assert_eq!(m.into.ticket.participants, Vec::<String>::new(), "the same customer is no participant");
}

#[test]
fn merges_that_cannot_be_are_refused_with_the_reason() {
    let w = World::new();
    let a = w.ticket_from(2, "carla@customer.test", "A", t0());
    let b = w.ticket_from(3, "carla@customer.test", "B", t0());
    assert_eq!(into_message(merge_as_admin(&w, &a, &a, &[]).unwrap_err()), "#2 cannot be merged into itself");
    let closed = w.admin(&b, &[Action::Status(Status::Closed)], at(1));
    assert_eq!(
        into_message(merge_as_admin(&w, &a, &closed, &[]).unwrap_err()),
        "#3 is closed: reopen it first, or merge #3 into #2"
    );
    // B was merged into C, which was merged into A: A → B would be a circle.
    let mut b_merged = b.clone();
    b_merged.merged_into = Some(4);
    let e = into_message(merge_as_admin(&w, &a, &b_merged, &[4, 2]).unwrap_err());
    assert_eq!(e, "merging #2 into #3 would make a merge cycle: #3 → #4 → #2 through earlier merges");
    let e = into_message(merge_as_admin(&w, &a, &b_merged, &[4]).unwrap_err());
    assert_eq!(e, "#3 was merged into #4: merge into #4 instead");
    let mut a_merged = a.clone();
    a_merged.merged_into = Some(9);
    assert_eq!(into_message(merge_as_admin(&w, &a_merged, &b, &[]).unwrap_err()), "#2 was merged into #9 already");
}

#[test]
fn a_merged_ticket_is_not_reopened() {
    let w = World::new();
    let a = w.ticket_from(2, "carla@customer.test", "A", t0());
    let b = w.ticket_from(3, "carla@customer.test", "B", t0());
    let m = merge_as_admin(&w, &a, &b, &[]).unwrap();
    let ctx = w.ctx();
    let out = Composer { ctx: &ctx, seed: "x".into(), inbound_id: None, now: at(100) };
    let e = act::act(&m.from, Actor::Admin, &[Action::Status(Status::Open)], &out, at(100) + TimeDelta::seconds(1))
        .unwrap_err();
    assert_eq!(e[0].field, "status");
    assert!(e[0].message.contains("merged into #3"), "{}", e[0].message);
}

#[test]
fn an_agent_merges_by_mail_and_a_bad_merge_changes_nothing() {
    let w = World::new();
    let b = w.ticket_from(3, "carla@customer.test", "B", t0());
    let a = w.ticket_from(2, "carla@customer.test", "A", t0());
    // Bob answers A's notification with #merge 3.
    let ctx = w.ctx();
    let out = Composer { ctx: &ctx, seed: "n".into(), inbound_id: None, now: at(5) };
    let note = out.notify_agents(&a, "New ticket #2", "Help.").into_iter().find(|(id, _)| id == "agent_bob").unwrap().1;
    let raw = |target: u64| {
        format!(
            "From: bob@example.test\nTo: support@example.test\nMessage-ID: <b{target}@example.test>\nIn-Reply-To: <{}>\nSubject: Re: [Ticket #2] A\n\n#merge {target}\nSame as #3, answering there.\n",
            note.message_id
        )
    };
    let snap = |target: Option<TicketRecord>| Snapshot {
        by_thread: Some(a.clone()),
        merge_into: target.map(Box::new),
        dedupe_key: "id:b".into(),
        ..Snapshot::default()
    };
    let d = w.decide(&raw(3), &snap(Some(b.clone())), at(10));
    assert!(matches!(d.outcome, Outcome::Replied { ticket: 2, .. }), "{:?}", d.outcome);
    let saved: Vec<&TicketRecord> = d
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::SaveTicket(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(saved.len(), 2);
    assert_eq!((saved[0].number, saved[0].ticket.status, saved[0].merged_into), (2, Status::Closed, Some(3)));
    assert!(saved[1].ticket.threads.iter().any(|e| e.message.contains("Same as #3")), "the answer moved along");
    // Into a closed ticket: refused by mail, nothing saved, the agent told.
    let closed = w.admin(&b, &[Action::Status(Status::Closed)], at(1));
    let d = w.decide(&raw(3), &snap(Some(closed)), at(10));
    assert_eq!(d.outcome, Outcome::Rejected { ticket: 2 });
    assert!(d.saved().is_none());
    let told = d.outbox().next().unwrap();
    assert!(told.body.contains("#merge 3: #3 is closed"), "{}", told.body);
    // Into a ticket that does not exist.
    let d = w.decide(&raw(99), &snap(None), at(10));
    assert_eq!(d.outcome, Outcome::Rejected { ticket: 2 });
    assert!(d.outbox().next().unwrap().body.contains("#merge 99: no ticket #99"));
}
