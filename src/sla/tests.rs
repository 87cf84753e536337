//! The response-target rules as examples: goldens of due times (business
//! hours, weekends, holidays, DST, split days, wall clock), pausing, a
//! priority change, a late first answer, and exactly-once notices under
//! repeated calls, restarts and clock jumps.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use super::*;
use crate::ticket::{Category, Priority, Status, ThreadType};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn rfc(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| crate::ticket::rfc3339::format(&t))
}

fn hours(week: [&str; 5]) -> RawHours {
    let s = |h: &str| Some(h.to_owned());
    RawHours {
        mon: s(week[0]),
        tue: s(week[1]),
        wed: s(week[2]),
        thu: s(week[3]),
        fri: s(week[4]),
        sat: None,
        sun: None,
    }
}

fn rule(priority: &str, fr: &str, res: &str, calendar: Option<&str>) -> RawSla {
    RawSla {
        priority: Some(priority.into()),
        first_response: Some(fr.into()),
        resolution: Some(res.into()),
        calendar: calendar.map(Into::into),
        ..RawSla::default()
    }
}

/// The desk of the examples: a Berlin office open 9–17 on weekdays (closed
/// 24 and 25 December), a split-day calendar for the "vip" mailbox, round
/// the clock for urgent technical tickets, and plain wall-clock targets for
/// medium tickets.
fn desk() -> SlaConfig {
    let nine_five = "09:00-17:00";
    let split = "09:00-12:00,13:00-17:00";
    let raw = RawSlaConfig {
        sla: vec![
            rule("urgent", "1h", "8h", Some("office")),
            rule("high", "4h", "16h", Some("office")),
            rule("low", "8h", "40h", Some("office")),
            rule("medium", "30m", "4h", None),
            RawSla { category: Some("technical".into()), ..rule("urgent", "1h", "24h", Some("always")) },
            RawSla { mailbox: Some("vip".into()), ..rule("high", "1h", "16h", Some("split")) },
        ],
        calendars: vec![
            RawCalendar {
                name: Some("office".into()),
                timezone: Some("Europe/Berlin".into()),
                hours: Some(hours([nine_five; 5])),
                holidays: vec!["2026-12-24".into(), "2026-12-25".into()],
            },
            RawCalendar {
                name: Some("split".into()),
                timezone: Some("Europe/Berlin".into()),
                hours: Some(hours([split; 5])),
                holidays: vec![],
            },
            RawCalendar {
                name: Some("always".into()),
                timezone: Some("Europe/Berlin".into()),
                hours: Some(RawHours {
                    sat: Some("00:00-24:00".into()),
                    sun: Some("00:00-24:00".into()),
                    ..hours(["00:00-24:00"; 5])
                }),
                holidays: vec![],
            },
        ],
        desk: RawDeskTimers::default(),
    };
    build(&raw, &["support", "vip"]).unwrap()
}

fn key(priority: Priority) -> TicketKey<'static> {
    TicketKey { priority, category: Category::General, mailbox: "support" }
}

const WARN: TimeDelta = DEFAULT_WARN_BEFORE;

/// (priority, category, mailbox, created, firstResponseDue, resolutionDue, why)
type Golden = (Priority, Category, &'static str, &'static str, &'static str, &'static str, &'static str);

fn goldens() -> Vec<Golden> {
    use Category::*;
    use Priority::*;
    vec![
        (
            Urgent,
            General,
            "support",
            "2026-01-14T15:30:00Z",
            "2026-01-15T08:30:00Z",
            "2026-01-15T15:30:00Z",
            "overnight: Wed 16:30 + 1h is Thu 09:30; + 8h is Thu 16:30",
        ),
        (
            Urgent,
            General,
            "support",
            "2026-01-16T15:30:00Z",
            "2026-01-19T08:30:00Z",
            "2026-01-19T15:30:00Z",
            "weekend: Fri 16:30 → Mon 09:30 / 16:30",
        ),
        (
            Urgent,
            General,
            "support",
            "2026-01-17T09:00:00Z",
            "2026-01-19T09:00:00Z",
            "2026-01-19T16:00:00Z",
            "created on Saturday: the clock starts Monday 09:00",
        ),
        (
            Urgent,
            General,
            "support",
            "2026-12-23T15:30:00Z",
            "2026-12-28T08:30:00Z",
            "2026-12-28T15:30:00Z",
            "holidays: Wed 16:30, 24+25 Dec closed, weekend, Mon 28 Dec",
        ),
        (
            Urgent,
            General,
            "support",
            "2026-03-27T15:30:00Z",
            "2026-03-30T07:30:00Z",
            "2026-03-30T14:30:00Z",
            "spring forward: Fri 16:30 CET → Mon 09:30 CEST (UTC+2)",
        ),
        (
            Urgent,
            General,
            "support",
            "2026-10-23T14:30:00Z",
            "2026-10-26T08:30:00Z",
            "2026-10-26T15:30:00Z",
            "fall back: Fri 16:30 CEST → Mon 09:30 CET (UTC+1)",
        ),
        (
            Low,
            General,
            "support",
            "2026-01-14T08:00:00Z",
            "2026-01-14T16:00:00Z",
            "2026-01-20T16:00:00Z",
            "8h from opening is due at closing; 40h is five working days",
        ),
        (
            High,
            General,
            "vip",
            "2026-01-14T10:30:00Z",
            "2026-01-14T12:30:00Z",
            "2026-01-16T13:30:00Z",
            "split day (vip): 11:30 + 1h skips lunch; 16h ends Fri 14:30",
        ),
        (
            High,
            General,
            "support",
            "2026-01-14T10:30:00Z",
            "2026-01-14T14:30:00Z",
            "2026-01-16T10:30:00Z",
            "the same ticket in another mailbox: the office calendar",
        ),
        (
            Urgent,
            Technical,
            "support",
            "2026-03-28T23:30:00Z",
            "2026-03-29T00:30:00Z",
            "2026-03-29T23:30:00Z",
            "00:00-24:00 across the spring change: plain UTC arithmetic",
        ),
        (
            Medium,
            General,
            "support",
            "2026-01-17T10:00:00Z",
            "2026-01-17T10:30:00Z",
            "2026-01-17T14:00:00Z",
            "wall clock: no calendar, Saturday counts",
        ),
    ]
}

#[test]
fn due_time_goldens() {
    let cfg = desk();
    let table = goldens();
    assert!(table.len() >= 10, "the golden table ran");
    for (priority, category, mailbox, created, fr, res, why) in table {
        let s = SlaState::start(&cfg, TicketKey { priority, category, mailbox }, t(created));
        assert_eq!(rfc(s.first_response_due()).as_deref(), Some(fr), "firstResponseDue: {why}");
        assert_eq!(rfc(s.resolution_due()).as_deref(), Some(res), "resolutionDue: {why}");
    }
}

#[test]
fn no_rule_no_due_times() {
    let cfg = SlaConfig::default();
    let s = SlaState::start(&cfg, key(Priority::Urgent), t("2026-01-14T08:00:00Z"));
    assert_eq!((s.first_response_due(), s.resolution_due()), (None, None));
    assert_eq!(s.next_wakeup(WARN), None);
    assert!(s.due(t("2030-01-01T00:00:00Z"), WARN).is_empty());
}

#[test]
fn pending_for_two_business_hours_moves_the_due_time_two_hours() {
    let cfg = desk();
    let k = key(Priority::Urgent);
    // Wed 09:00 Berlin: first response 10:00, resolution 17:00.
    let mut s = SlaState::start(&cfg, k, t("2026-01-14T08:00:00Z"));
    s.on_entry(ThreadType::Agent, false, t("2026-01-14T08:30:00Z"));
    assert_eq!(s.first_response_due(), None, "met");
    assert!(!s.target(TargetKind::FirstResponse).breached);

    s.set_status(&cfg, k, Status::Pending, t("2026-01-14T09:00:00Z"));
    assert!(s.is_paused(TargetKind::Resolution));
    assert_eq!(rfc(s.resolution_due()).as_deref(), Some("2026-01-14T16:00:00Z"), "as of the stop");
    assert_eq!(s.next_wakeup(WARN), None, "nothing comes due while stopped");
    assert!(s.due(t("2026-01-14T17:00:00Z"), WARN).is_empty(), "no breach while pending");

    s.set_status(&cfg, k, Status::Open, t("2026-01-14T11:00:00Z"));
    assert!(!s.is_paused(TargetKind::Resolution));
    // 17:00 + 2h of business time is Thursday 11:00 Berlin.
    assert_eq!(rfc(s.resolution_due()).as_deref(), Some("2026-01-15T10:00:00Z"));
}

#[test]
fn a_stop_over_the_night_counts_business_time_only() {
    let cfg = desk();
    let k = key(Priority::Urgent);
    let mut s = SlaState::start(&cfg, k, t("2026-01-14T08:00:00Z"));
    s.on_entry(ThreadType::Agent, false, t("2026-01-14T08:10:00Z"));
    // Pending Wed 16:00 → Thu 10:00: 1h + 1h of business time.
    s.set_status(&cfg, k, Status::Pending, t("2026-01-14T15:00:00Z"));
    s.set_status(&cfg, k, Status::InProgress, t("2026-01-15T09:00:00Z"));
    assert_eq!(s.resolution_due(), Some(t("2026-01-15T10:00:00Z")), "17:00 + 2h = Thu 11:00");
}

#[test]
fn a_stop_after_the_due_time_does_not_hide_the_breach() {
    let cfg = desk();
    let k = key(Priority::Urgent);
    let mut s = SlaState::start(&cfg, k, t("2026-01-14T08:00:00Z"));
    // No answer by 10:00; set pending at 10:30.
    s.set_status(&cfg, k, Status::Pending, t("2026-01-14T09:30:00Z"));
    assert!(!s.is_paused(TargetKind::FirstResponse), "already overdue: not paused");
    assert!(s.is_paused(TargetKind::Resolution));
    let due = s.due(t("2026-01-14T09:30:00Z"), WARN);
    assert_eq!(
        due,
        vec![SlaEvent {
            target: TargetKind::FirstResponse,
            kind: SlaEventKind::Breach,
            due: t("2026-01-14T09:00:00Z")
        }]
    );
    s.set_status(&cfg, k, Status::Open, t("2026-01-14T12:00:00Z"));
    assert_eq!(s.first_response_due(), Some(t("2026-01-14T09:00:00Z")), "no credit for that stop");
}

#[test]
fn priority_change_recomputes_from_the_start() {
    let cfg = desk();
    let created = t("2026-01-14T08:00:00Z"); // Wed 09:00 Berlin
    let mut s = SlaState::start(&cfg, key(Priority::Low), created);
    assert_eq!(s.first_response_due(), Some(t("2026-01-14T16:00:00Z")));

    // At 10:30 → high (4h): due 13:00, the 1h30 already spent counts.
    let mut high = s.clone();
    high.retarget(&cfg, key(Priority::High));
    assert_eq!(high.first_response_due(), Some(t("2026-01-14T12:00:00Z")));
    assert_eq!(high.resolution_due(), Some(t("2026-01-15T16:00:00Z")));

    // At 10:30 → urgent (1h): due 10:00, already passed: a breach now.
    s.retarget(&cfg, key(Priority::Urgent));
    assert_eq!(s.first_response_due(), Some(t("2026-01-14T09:00:00Z")));
    let now = t("2026-01-14T09:30:00Z");
    let kinds: Vec<_> = s.due(now, WARN).into_iter().map(|e| (e.target, e.kind)).collect();
    assert_eq!(kinds, vec![(TargetKind::FirstResponse, SlaEventKind::Breach)], "the breach alone, no warning");
}

#[test]
fn priority_change_keeps_time_paused_out_even_without_an_earlier_target() {
    // Only urgent has targets: a low ticket has none until it is raised.
    let raw = RawSlaConfig { sla: vec![rule("urgent", "1h", "8h", None)], ..RawSlaConfig::default() };
    let cfg = build(&raw, &[]).unwrap();
    let created = t("2026-01-14T08:00:00Z");
    let mut s = SlaState::start(&cfg, key(Priority::Low), created);
    assert_eq!(s.first_response_due(), None);
    s.set_status(&cfg, key(Priority::Low), Status::Pending, t("2026-01-14T08:30:00Z"));
    s.set_status(&cfg, key(Priority::Low), Status::Open, t("2026-01-14T10:30:00Z"));
    s.retarget(&cfg, key(Priority::Urgent));
    // 30 minutes ran, 2h paused out: 1h is reached at 11:00.
    assert_eq!(s.first_response_due(), Some(t("2026-01-14T11:00:00Z")));

    // Raised while still pending: the due time waits for the stop to end.
    let mut p = SlaState::start(&cfg, key(Priority::Low), created);
    p.set_status(&cfg, key(Priority::Low), Status::Pending, t("2026-01-14T08:30:00Z"));
    p.retarget(&cfg, key(Priority::Urgent));
    assert!(p.is_paused(TargetKind::FirstResponse));
    assert!(p.due(t("2026-01-14T12:00:00Z"), WARN).is_empty());
    p.set_status(&cfg, key(Priority::Urgent), Status::Open, t("2026-01-14T12:00:00Z"));
    assert_eq!(p.first_response_due(), Some(t("2026-01-14T12:30:00Z")));
}

#[test]
fn a_late_first_answer_is_met_late() {
    let cfg = desk();
    let k = key(Priority::Urgent);
    let mut s = SlaState::start(&cfg, k, t("2026-01-14T08:00:00Z"));
    s.on_entry(ThreadType::Agent, true, t("2026-01-14T08:10:00Z"));
    s.on_entry(ThreadType::System, false, t("2026-01-14T08:20:00Z"));
    s.on_entry(ThreadType::User, false, t("2026-01-14T08:30:00Z"));
    assert_eq!(s.target(TargetKind::FirstResponse).met, None, "a note, a system entry, the customer: not an answer");
    s.on_entry(ThreadType::Agent, false, t("2026-01-14T09:20:00Z"));
    let fr = s.target(TargetKind::FirstResponse);
    assert_eq!(fr.met, Some(t("2026-01-14T09:20:00Z")));
    assert!(fr.breached, "met late stays breached");
    assert_eq!(s.first_response_due(), None);
    assert!(s.due(t("2026-01-14T09:30:00Z"), WARN).is_empty(), "no notice for a target already met");
    // A second answer changes nothing.
    s.on_entry(ThreadType::Agent, false, t("2026-01-14T09:40:00Z"));
    assert_eq!(s.target(TargetKind::FirstResponse).met, Some(t("2026-01-14T09:20:00Z")));
}

#[test]
fn resolving_meets_both_and_reopening_resumes_the_resolution_clock() {
    let cfg = desk();
    let k = key(Priority::Medium); // wall clock: 30m / 4h
    let mut s = SlaState::start(&cfg, k, t("2026-01-14T10:00:00Z"));
    s.on_entry(ThreadType::Agent, false, t("2026-01-14T10:10:00Z"));
    s.set_status(&cfg, k, Status::Resolved, t("2026-01-14T11:00:00Z"));
    assert_eq!((s.first_response_due(), s.resolution_due()), (None, None), "met");
    assert!(!s.target(TargetKind::Resolution).breached);
    assert_eq!(s.next_wakeup(WARN), None);
    s.set_status(&cfg, k, Status::Closed, t("2026-01-14T12:00:00Z"));
    assert_eq!(s.target(TargetKind::Resolution).met, Some(t("2026-01-14T11:00:00Z")), "closing keeps the time");

    // The customer writes back at 20:00: 3h of the 4h are left.
    s.set_status(&cfg, k, Status::Open, t("2026-01-14T20:00:00Z"));
    assert_eq!(s.resolution_due(), Some(t("2026-01-14T23:00:00Z")));
    assert_eq!(s.first_response_due(), None, "the first response stays met");
}

#[test]
fn resolving_late_then_reopening_stays_overdue_without_a_second_notice() {
    let cfg = desk();
    let k = key(Priority::Medium);
    let mut s = SlaState::start(&cfg, k, t("2026-01-14T10:00:00Z"));
    s.set_status(&cfg, k, Status::Resolved, t("2026-01-14T15:00:00Z"));
    for kind in TargetKind::ALL {
        assert!(s.target(kind).breached, "{kind:?} met late by the resolution");
    }
    s.set_status(&cfg, k, Status::Open, t("2026-01-14T16:00:00Z"));
    assert_eq!(s.resolution_due(), Some(t("2026-01-14T14:00:00Z")), "no credit for the resolved time");
    assert_eq!(s.next_due(), Some(t("2026-01-14T14:00:00Z")), "the queue lists it as overdue");
    assert!(s.due(t("2026-01-14T16:00:00Z"), WARN).is_empty());
}

#[test]
fn resolving_while_pending_is_on_time() {
    let cfg = desk();
    let k = key(Priority::Medium);
    let mut s = SlaState::start(&cfg, k, t("2026-01-14T10:00:00Z"));
    s.set_status(&cfg, k, Status::Pending, t("2026-01-14T10:20:00Z"));
    s.set_status(&cfg, k, Status::Resolved, t("2026-01-14T18:00:00Z"));
    for kind in TargetKind::ALL {
        assert!(!s.target(kind).breached, "{kind:?}: the clock was stopped");
    }
    // Back to pending from resolved: still stopped, resolution unmet again.
    s.set_status(&cfg, k, Status::Pending, t("2026-01-15T09:00:00Z"));
    assert!(s.is_paused(TargetKind::Resolution));
    s.set_status(&cfg, k, Status::Open, t("2026-01-15T10:00:00Z"));
    // 20 minutes ran before the stop: 3h40 left.
    assert_eq!(s.resolution_due(), Some(t("2026-01-15T13:40:00Z")));
}

#[test]
fn each_notice_once_under_repeats_restarts_and_clock_jumps() {
    let cfg = desk();
    let k = key(Priority::Medium); // 30m / 4h on the wall clock, warned 15m ahead
    let mut s = SlaState::start(&cfg, k, t("2026-01-14T10:00:00Z"));
    let mut sent: Vec<(TargetKind, SlaEventKind, String)> = Vec::new();
    let tick = |s: &mut SlaState, sent: &mut Vec<_>, now: &str| {
        for ev in s.due(t(now), WARN) {
            s.mark_emitted(&ev);
            sent.push((ev.target, ev.kind, now.to_owned()));
        }
        // A restart between any two ticks: the flags are in the record.
        *s = serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap();
    };
    assert_eq!(s.next_wakeup(WARN), Some(t("2026-01-14T10:15:00Z")));
    for now in ["2026-01-14T10:00:00Z", "2026-01-14T10:14:59Z"] {
        tick(&mut s, &mut sent, now);
    }
    assert!(sent.is_empty());
    for _ in 0..50 {
        tick(&mut s, &mut sent, "2026-01-14T10:15:00Z");
    }
    assert_eq!(s.next_wakeup(WARN), Some(t("2026-01-14T10:30:00Z")));
    for _ in 0..50 {
        tick(&mut s, &mut sent, "2026-01-14T10:31:00Z");
    }
    // The clock jumps back an hour, then forward past the resolution target.
    tick(&mut s, &mut sent, "2026-01-14T09:30:00Z");
    tick(&mut s, &mut sent, "2026-01-14T10:31:00Z");
    assert_eq!(s.next_wakeup(WARN), Some(t("2026-01-14T13:45:00Z")));
    tick(&mut s, &mut sent, "2026-01-15T08:00:00Z");
    tick(&mut s, &mut sent, "2026-01-14T09:00:00Z");
    tick(&mut s, &mut sent, "2026-01-16T08:00:00Z");
    use SlaEventKind::*;
    use TargetKind::*;
    assert_eq!(
        sent,
        vec![
            (FirstResponse, Warning, "2026-01-14T10:15:00Z".to_owned()),
            (FirstResponse, Breach, "2026-01-14T10:31:00Z".to_owned()),
            (Resolution, Breach, "2026-01-15T08:00:00Z".to_owned()),
        ]
    );
    assert_eq!(s.next_wakeup(WARN), None, "nothing more can come due");

    // A priority change afterwards starts no second round.
    s.retarget(&cfg, key(Priority::Low));
    s.retarget(&cfg, key(Priority::Urgent));
    assert!(s.due(t("2026-02-01T00:00:00Z"), WARN).is_empty());
}

#[test]
fn the_warning_lead_is_at_most_half_the_target() {
    let raw = RawSlaConfig { sla: vec![rule("urgent", "2s", "10m", None)], ..RawSlaConfig::default() };
    let cfg = build(&raw, &[]).unwrap();
    let start = t("2026-01-14T10:00:00Z");
    let s = SlaState::start(&cfg, key(Priority::Urgent), start);
    assert_eq!(s.next_wakeup(cfg.warn_before), Some(start + TimeDelta::seconds(1)));
    let kinds: Vec<_> = s.due(start + TimeDelta::seconds(1), cfg.warn_before).into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![SlaEventKind::Warning]);
    assert!(s.due(start, cfg.warn_before).is_empty(), "no warning the moment it starts");
    assert_eq!(s.next_wakeup(TimeDelta::zero()), Some(start + TimeDelta::seconds(2)), "warnings off: the breach");
    assert!(s.due(start + TimeDelta::seconds(1), TimeDelta::zero()).is_empty());
}

#[test]
fn old_records_load_and_adopting_sends_nothing_for_the_past() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Record {
        number: u64,
        #[serde(default, skip_serializing_if = "SlaState::is_empty")]
        sla: SlaState,
    }
    let old: Record = serde_json::from_str(r#"{"number":7}"#).unwrap();
    assert!(old.sla.is_empty() && !old.sla.is_started());
    assert_eq!(serde_json::to_string(&old).unwrap(), r#"{"number":7}"#, "the empty state is not written");

    let cfg = desk();
    let k = key(Priority::Medium);
    let mut still = old.sla.clone();
    still.set_status(&cfg, k, Status::Pending, t("2026-01-14T10:00:00Z"));
    still.on_entry(ThreadType::Agent, false, t("2026-01-14T10:00:00Z"));
    assert!(still.is_empty(), "an unstarted state ignores transitions");

    let s = SlaState::adopt(&cfg, k, Status::Open, t("2026-01-14T10:00:00Z"), t("2026-01-14T11:00:00Z"));
    assert_eq!(s.first_response_due(), Some(t("2026-01-14T10:30:00Z")), "overdue, shown");
    assert!(s.target(TargetKind::FirstResponse).breached);
    assert!(s.due(t("2026-01-14T11:00:00Z"), WARN).is_empty(), "but no notice for the past");
    assert_eq!(s.next_wakeup(WARN), Some(t("2026-01-14T13:45:00Z")), "the future still warns");

    let json = serde_json::to_string(&s).unwrap();
    assert!(json.len() < 200, "compact: {json}");
    assert_eq!(serde_json::from_str::<SlaState>(&json).unwrap(), s);
}

#[test]
fn clock_going_backwards_while_pending_pauses_nothing_twice() {
    let cfg = desk();
    let k = key(Priority::Medium);
    let mut s = SlaState::start(&cfg, k, t("2026-01-14T10:00:00Z"));
    s.set_status(&cfg, k, Status::Pending, t("2026-01-14T11:00:00Z"));
    s.set_status(&cfg, k, Status::Open, t("2026-01-14T10:30:00Z")); // the clock went back
    assert_eq!(s.resolution_due(), Some(t("2026-01-14T14:00:00Z")), "an empty stop");
    s.set_status(&cfg, k, Status::Pending, t("2026-01-14T11:00:00Z"));
    s.set_status(&cfg, k, Status::Open, t("2026-01-14T12:00:00Z"));
    s.set_status(&cfg, k, Status::Pending, t("2026-01-14T11:30:00Z"));
    s.set_status(&cfg, k, Status::Open, t("2026-01-14T12:30:00Z"));
    // Stops 11:00–12:00 and 11:30–12:30 overlap: 1h30 paused, not 2h.
    assert_eq!(s.resolution_due(), Some(t("2026-01-14T15:30:00Z")));
}

#[derive(Debug, Clone)]
enum Op {
    Status(Status),
    Priority(Priority),
    Entry(ThreadType, bool),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::sample::select(Status::ALL.to_vec()).prop_map(Op::Status),
        prop::sample::select(Priority::ALL.to_vec()).prop_map(Op::Priority),
        (prop::sample::select(ThreadType::ALL.to_vec()), any::<bool>()).prop_map(|(k, i)| Op::Entry(k, i)),
        Just(Op::Tick),
        Just(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever happens, in whatever order, with a clock that may jump
    /// either way: never two notices of a kind for a target, and after each
    /// tick nothing overdue is left without its breach.
    #[test]
    fn never_a_storm_never_a_lost_breach(
        steps in prop::collection::vec((op(), -600i64..(3 * 86_400)), 1..40),
    ) {
        let cfg = desk();
        let base = t("2026-03-26T08:00:00Z");
        let mut priority = Priority::Medium;
        let mut s = SlaState::start(&cfg, key(priority), base);
        let mut sent = std::collections::HashMap::new();
        let mut now = base;
        for (op, offset) in steps {
            // Random instants over three days, or a step back of up to
            // ten hours: the clock jumps both ways.
            now = if offset < 0 { now + TimeDelta::seconds(offset * 60) } else { base + TimeDelta::seconds(offset) };
            match op {
                Op::Status(st) => s.set_status(&cfg, key(priority), st, now),
                Op::Priority(p) => {
                    priority = p;
                    s.retarget(&cfg, key(priority));
                }
                Op::Entry(kind, internal) => s.on_entry(kind, internal, now),
                Op::Tick => {
                    for ev in s.due(now, WARN) {
                        *sent.entry((ev.target, ev.kind)).or_insert(0) += 1;
                        s.mark_emitted(&ev);
                    }
                    prop_assert!(s.due(now, WARN).is_empty());
                    for kind in TargetKind::ALL {
                        if s.running_due(kind).is_some_and(|d| d <= now) {
                            prop_assert!(s.target(kind).breached, "{:?} overdue without a breach", kind);
                        }
                    }
                    // The schedule is honest: the next wake-up lies ahead
                    // and something is owed then.
                    if let Some(w) = s.next_wakeup(WARN) {
                        prop_assert!(w > now);
                        prop_assert!(!s.due(w, WARN).is_empty());
                    }
                }
            }
        }
        for (k, n) in sent {
            prop_assert!(n <= 1, "{:?} sent {} times", k, n);
        }
    }
}
