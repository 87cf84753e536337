//! The time rules as the admin writes them (`[[sla]]`, `[[calendars]]` and
//! the timer keys of `[desk]`, DESIGN §12) and as the desk uses them.
//!
//! The raw shapes are strict serde structs the config file embeds; [`build`]
//! checks all of them at once and reports every problem with its key path,
//! so `ticketd check-config` lists everything in one run. Durations are
//! humantime strings in whole seconds ("1h", "30m", "2s").
//!
//! Which rule applies to a ticket: among the rules for its priority whose
//! `category` and `mailbox` (where given) match it, the most specific wins —
//! mailbox and category, then mailbox alone, then category alone, then the
//! priority alone. A mailbox is usually a contract ("premium@"), so the
//! promise made to it outweighs one made for a kind of question. Two rules
//! with the same priority, category and mailbox are refused, which makes the
//! choice independent of the order in the file.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::TimeDelta;
use serde::Deserialize;

use super::TicketKey;
use super::calendar::{Calendar, Clock, DAY_NAMES, DayHours};
use super::lifecycle::LifecycleConfig;
use crate::ticket::{Category, Priority};

/// Default lead time of the "target about to pass" warning.
pub const DEFAULT_WARN_BEFORE: TimeDelta = TimeDelta::minutes(15);

/// Longest target accepted: longer ones are typos, and business time must
/// fit in the calendar's horizon.
const MAX_TARGET: TimeDelta = TimeDelta::days(366);

/// Longest lifecycle delay accepted (about ten years).
const MAX_TIMER: TimeDelta = TimeDelta::days(3660);

/// One `[[sla]]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSla {
    pub priority: Option<String>,
    pub category: Option<String>,
    pub mailbox: Option<String>,
    pub first_response: Option<String>,
    pub resolution: Option<String>,
    pub calendar: Option<String>,
}

/// One `[[calendars]]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalendar {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub hours: Option<RawHours>,
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// `hours = { mon = "09:00-17:00", … }`; a day left out is closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHours {
    pub mon: Option<String>,
    pub tue: Option<String>,
    pub wed: Option<String>,
    pub thu: Option<String>,
    pub fri: Option<String>,
    pub sat: Option<String>,
    pub sun: Option<String>,
}

impl RawHours {
    fn days(&self) -> [&Option<String>; 7] {
        [&self.mon, &self.tue, &self.wed, &self.thu, &self.fri, &self.sat, &self.sun]
    }
}

/// The timer keys of `[desk]`. Not a serde struct: they sit beside the
/// desk's other keys, so the config's own `[desk]` shape reads them and
/// hands them over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawDeskTimers {
    /// `desk.sla_warn_before`: how long before a target passes the warning
    /// goes out; default [`DEFAULT_WARN_BEFORE`], "0s" turns warnings off.
    pub sla_warn_before: Option<String>,
    pub pending_reminder_after: Option<String>,
    pub pending_resolve_after: Option<String>,
    pub close_resolved_after: Option<String>,
}

/// Everything [`build`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSlaConfig {
    pub sla: Vec<RawSla>,
    pub calendars: Vec<RawCalendar>,
    pub desk: RawDeskTimers,
}

/// A problem in the time configuration, at its key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SlaConfigError {
    pub path: String,
    pub message: String,
}

/// One response target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaRule {
    pub priority: Priority,
    pub category: Option<Category>,
    pub mailbox: Option<String>,
    pub first_response: Option<TimeDelta>,
    pub resolution: Option<TimeDelta>,
    pub clock: Clock,
}

impl SlaRule {
    fn matches(&self, key: &TicketKey<'_>) -> bool {
        self.priority == key.priority
            && self.category.is_none_or(|c| c == key.category)
            && self.mailbox.as_deref().is_none_or(|m| m == key.mailbox)
    }

    fn specificity(&self) -> u8 {
        2 * u8::from(self.mailbox.is_some()) + u8::from(self.category.is_some())
    }
}

/// The time rules in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaConfig {
    pub rules: Vec<SlaRule>,
    pub calendars: Vec<Arc<Calendar>>,
    /// Zero: no warnings.
    pub warn_before: TimeDelta,
    pub lifecycle: LifecycleConfig,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig {
            rules: Vec::new(),
            calendars: Vec::new(),
            warn_before: DEFAULT_WARN_BEFORE,
            lifecycle: LifecycleConfig::default(),
        }
    }
}

impl SlaConfig {
    /// The rule for a ticket; see the module note for which one wins.
    pub fn rule_for(&self, key: &TicketKey<'_>) -> Option<&SlaRule> {
        self.rules.iter().filter(|r| r.matches(key)).max_by_key(|r| r.specificity())
    }

    pub fn calendar(&self, name: &str) -> Option<&Arc<Calendar>> {
        self.calendars.iter().find(|c| c.name() == name)
    }
}

/// Checks and builds the time rules. `mailboxes` are the configured mailbox
/// names, which `sla[].mailbox` must name. Every problem is reported, each
/// with its path (`sla[1].calendar`, `calendars[0].hours.mon`,
/// `desk.pending_resolve_after`).
pub fn build(raw: &RawSlaConfig, mailboxes: &[&str]) -> Result<SlaConfig, Vec<SlaConfigError>> {
    let mut errs = Errors::default();
    // A name maps to None when that calendar is broken: its own problems
    // are reported, the rules naming it are not blamed again.
    let mut by_name: BTreeMap<String, Option<Arc<Calendar>>> = BTreeMap::new();
    let mut calendars = Vec::new();
    for (i, rc) in raw.calendars.iter().enumerate() {
        let path = format!("calendars[{i}]");
        let name = errs.required(&format!("{path}.name"), &rc.name);
        if let Some(name) = &name {
            if name.trim().is_empty() {
                errs.push(format!("{path}.name"), "must not be empty");
            } else if by_name.contains_key(name) {
                errs.push(format!("{path}.name"), format!("a second calendar named {name:?}"));
            }
        }
        let built = build_calendar(&mut errs, &path, rc, name.as_deref().unwrap_or_default());
        if let Some(name) = name.filter(|n| !by_name.contains_key(n)) {
            if let Some(cal) = &built {
                calendars.push(cal.clone());
            }
            by_name.insert(name, built);
        }
    }

    let mut rules: Vec<SlaRule> = Vec::new();
    let mut seen: BTreeMap<(Priority, Option<Category>, Option<String>), usize> = BTreeMap::new();
    for (i, rs) in raw.sla.iter().enumerate() {
        let path = format!("sla[{i}]");
        let priority = errs
            .required(&format!("{path}.priority"), &rs.priority)
            .and_then(|p| p.parse::<Priority>().map_err(|e| errs.push(format!("{path}.priority"), e.to_string())).ok());
        let category = rs
            .category
            .as_ref()
            .and_then(|c| c.parse::<Category>().map_err(|e| errs.push(format!("{path}.category"), e.to_string())).ok());
        let mut ok = true;
        if let Some(m) = &rs.mailbox
            && !mailboxes.contains(&m.as_str())
        {
            ok = false;
            let known = if mailboxes.is_empty() { "none configured".to_owned() } else { mailboxes.join(", ") };
            errs.push(format!("{path}.mailbox"), format!("no mailbox named {m:?} (mailboxes: {known})"));
        }
        let first_response = errs.duration(&format!("{path}.first_response"), &rs.first_response, MAX_TARGET);
        let resolution = errs.duration(&format!("{path}.resolution"), &rs.resolution, MAX_TARGET);
        if rs.first_response.is_none() && rs.resolution.is_none() {
            ok = false;
            errs.push(path.clone(), "give first_response, resolution or both");
        }
        let clock = match &rs.calendar {
            None => Some(Clock::Wall),
            Some(name) => match by_name.get(name) {
                Some(Some(cal)) => Some(Clock::Business(cal.clone())),
                Some(None) => None,
                None => {
                    let known: Vec<&str> = by_name.keys().map(String::as_str).collect();
                    let known = if known.is_empty() { "none configured".to_owned() } else { known.join(", ") };
                    errs.push(format!("{path}.calendar"), format!("no calendar named {name:?} (calendars: {known})"));
                    None
                }
            },
        };
        let Some(priority) = priority else { continue };
        if let Some(earlier) = seen.insert((priority, category, rs.mailbox.clone()), i) {
            errs.push(
                path.clone(),
                format!("the same priority, category and mailbox as sla[{earlier}]: only one of them could apply"),
            );
            continue;
        }
        if let (true, Some(clock)) = (ok, clock) {
            let (first_response, resolution) = (first_response.flatten(), resolution.flatten());
            rules.push(SlaRule { priority, category, mailbox: rs.mailbox.clone(), first_response, resolution, clock });
        }
    }

    let desk = &raw.desk;
    let warn_before = match &desk.sla_warn_before {
        None => DEFAULT_WARN_BEFORE,
        Some(text) => errs.parse_duration("desk.sla_warn_before", text, MAX_TARGET, true).unwrap_or_default(),
    };
    let lifecycle = LifecycleConfig {
        pending_reminder_after: errs
            .duration("desk.pending_reminder_after", &desk.pending_reminder_after, MAX_TIMER)
            .flatten(),
        pending_resolve_after: errs
            .duration("desk.pending_resolve_after", &desk.pending_resolve_after, MAX_TIMER)
            .flatten(),
        close_resolved_after: errs
            .duration("desk.close_resolved_after", &desk.close_resolved_after, MAX_TIMER)
            .flatten(),
    };
    if let (Some(remind), Some(resolve)) = (lifecycle.pending_reminder_after, lifecycle.pending_resolve_after)
        && remind >= resolve
    {
        errs.push(
            "desk.pending_reminder_after",
            "must be shorter than desk.pending_resolve_after, or the reminder would never be sent",
        );
    }

    if errs.0.is_empty() { Ok(SlaConfig { rules, calendars, warn_before, lifecycle }) } else { Err(errs.0) }
}

fn build_calendar(errs: &mut Errors, path: &str, rc: &RawCalendar, name: &str) -> Option<Arc<Calendar>> {
    let before = errs.0.len();
    let tz = errs
        .required(&format!("{path}.timezone"), &rc.timezone)
        .and_then(|tz| Calendar::parse_tz(&tz).map_err(|e| errs.push(format!("{path}.timezone"), e.to_string())).ok());
    let mut week: [DayHours; 7] = std::array::from_fn(|_| DayHours::CLOSED);
    match &rc.hours {
        None => errs.push(format!("{path}.hours"), "missing: the weekly opening hours, e.g. mon = \"09:00-17:00\""),
        Some(hours) => {
            for (day, (text, slot)) in hours.days().into_iter().zip(week.iter_mut()).enumerate() {
                if let Some(text) = text {
                    match DayHours::parse(text) {
                        Ok(h) => *slot = h,
                        Err(e) => errs.push(format!("{path}.hours.{}", DAY_NAMES[day]), e.to_string()),
                    }
                }
            }
        }
    }
    let mut holidays = Vec::with_capacity(rc.holidays.len());
    for (k, h) in rc.holidays.iter().enumerate() {
        match Calendar::parse_holiday(h) {
            Ok(d) => holidays.push(d),
            Err(e) => errs.push(format!("{path}.holidays[{k}]"), e.to_string()),
        }
    }
    let tz = tz?;
    if errs.0.len() > before {
        return None;
    }
    match Calendar::new(name, tz, week, holidays) {
        Ok(cal) => Some(Arc::new(cal)),
        Err(e) => {
            errs.push(format!("{path}.hours"), e.to_string());
            None
        }
    }
}

#[derive(Default)]
struct Errors(Vec<SlaConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(SlaConfigError { path: path.into(), message: message.into() });
    }

    fn required(&mut self, path: &str, v: &Option<String>) -> Option<String> {
        if v.is_none() {
            self.push(path, "missing");
        }
        v.clone()
    }

    /// `Some(None)`: not given; `None`: given and wrong (reported).
    fn duration(&mut self, path: &str, v: &Option<String>, max: TimeDelta) -> Option<Option<TimeDelta>> {
        match v {
            None => Some(None),
            Some(text) => self.parse_duration(path, text, max, false).map(Some),
        }
    }

    fn parse_duration(&mut self, path: &str, text: &str, max: TimeDelta, zero_ok: bool) -> Option<TimeDelta> {
        let d = match humantime::parse_duration(text.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.push(path, format!("invalid duration {text:?} ({e}); write e.g. \"30m\", \"8h\" or \"2d\""));
                return None;
            }
        };
        let problem = if d.subsec_nanos() != 0 {
            Some("must be a whole number of seconds".to_owned())
        } else if d.is_zero() && !zero_ok {
            Some("must be greater than zero".to_owned())
        } else if d.as_secs() > max.num_seconds().unsigned_abs() {
            Some(format!("at most {}d", max.num_days()))
        } else {
            None
        };
        if let Some(p) = problem {
            self.push(path, p);
            return None;
        }
        i64::try_from(d.as_secs()).ok().map(TimeDelta::seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar(name: &str, tz: &str) -> RawCalendar {
        RawCalendar {
            name: Some(name.into()),
            timezone: Some(tz.into()),
            hours: Some(RawHours {
                mon: Some("09:00-17:00".into()),
                fri: Some("09:00-12:00".into()),
                ..Default::default()
            }),
            holidays: vec!["2026-12-25".into()],
        }
    }

    fn sla(priority: &str, fr: &str, res: &str) -> RawSla {
        RawSla {
            priority: Some(priority.into()),
            first_response: Some(fr.into()),
            resolution: Some(res.into()),
            ..Default::default()
        }
    }

    fn paths(r: Result<SlaConfig, Vec<SlaConfigError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn the_design_example_builds() {
        let toml_like = serde_json::json!({
            "sla": [{"priority": "urgent", "first_response": "1h", "resolution": "8h", "calendar": "office"}],
            "calendars": [{"name": "office", "timezone": "Europe/Berlin",
                "hours": {"mon": "09:00-17:00", "tue": "09:00-17:00", "wed": "09:00-17:00",
                          "thu": "09:00-17:00", "fri": "09:00-17:00"},
                "holidays": ["2026-12-25"]}],
        });
        #[derive(Deserialize)]
        struct Shape {
            sla: Vec<RawSla>,
            calendars: Vec<RawCalendar>,
        }
        let shape: Shape = serde_json::from_value(toml_like).unwrap();
        let raw = RawSlaConfig { sla: shape.sla, calendars: shape.calendars, desk: RawDeskTimers::default() };
        let cfg = build(&raw, &["support"]).unwrap();
        assert_eq!(cfg.rules.len(), 1);
        assert_eq!(cfg.rules[0].first_response, Some(TimeDelta::hours(1)));
        assert_eq!(cfg.rules[0].clock.calendar(), Some("office"));
        assert_eq!(cfg.warn_before, DEFAULT_WARN_BEFORE);
        assert_eq!(cfg.lifecycle, LifecycleConfig::default(), "every lifecycle timer is off unless set");
    }

    #[test]
    fn unknown_keys_are_refused_by_the_raw_shapes() {
        let err =
            serde_json::from_value::<RawSla>(serde_json::json!({"priority": "high", "first_reply": "1h"})).unwrap_err();
        assert!(err.to_string().contains("first_reply"), "{err}");
        let err = serde_json::from_value::<RawHours>(serde_json::json!({"monday": "09:00-17:00"})).unwrap_err();
        assert!(err.to_string().contains("monday"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut bad_cal = calendar("office", "Europe/Berln");
        bad_cal.hours.as_mut().unwrap().tue = Some("17:00-09:00".into());
        bad_cal.holidays.push("25.12.2026".into());
        let never = RawCalendar { hours: Some(RawHours::default()), ..calendar("never", "UTC") };
        let raw = RawSlaConfig {
            sla: vec![
                sla("urgent", "1h", "8h"),
                RawSla { calendar: Some("office".into()), ..sla("high", "4h", "2d") },
                RawSla { calendar: Some("nope".into()), ..sla("low", "1x", "0s") },
                RawSla { mailbox: Some("sales".into()), category: Some("bills".into()), ..sla("medium", "1h", "1h") },
                RawSla { priority: Some("medium".into()), ..Default::default() },
                sla("urgent", "2h", "9h"),
                sla("critical", "500ms", "400d"),
            ],
            calendars: vec![bad_cal, never, calendar("never", "UTC")],
            desk: RawDeskTimers {
                sla_warn_before: Some("soon".into()),
                pending_reminder_after: Some("7d".into()),
                pending_resolve_after: Some("3d".into()),
                close_resolved_after: Some("0s".into()),
            },
        };
        let got = paths(build(&raw, &["support"]));
        let want = [
            "calendars[0].timezone: unknown time zone \"Europe/Berln\": use an IANA name such as \"Europe/Berlin\"",
            "calendars[0].hours.tue: invalid hours \"17:00-09:00\"",
            "calendars[0].holidays[1]: invalid holiday \"25.12.2026\"",
            "calendars[1].hours: the calendar is never open",
            "calendars[2].name: a second calendar named \"never\"",
            "sla[2].first_response: invalid duration \"1x\"",
            "sla[2].resolution: must be greater than zero",
            "sla[2].calendar: no calendar named \"nope\" (calendars: never, office)",
            "sla[3].category: invalid category \"bills\"",
            "sla[3].mailbox: no mailbox named \"sales\" (mailboxes: support)",
            "sla[4]: give first_response, resolution or both",
            "sla[5]: the same priority, category and mailbox as sla[0]",
            "sla[6].priority: invalid priority \"critical\"",
            "sla[6].first_response: must be a whole number of seconds",
            "sla[6].resolution: at most 366d",
            "desk.sla_warn_before: invalid duration \"soon\"",
            "desk.close_resolved_after: must be greater than zero",
            "desk.pending_reminder_after: must be shorter than desk.pending_resolve_after",
        ];
        for w in want {
            assert!(got.iter().any(|g| g.starts_with(w)), "missing {w:?} in:\n{}", got.join("\n"));
        }
        assert_eq!(got.len(), want.len(), "nothing reported twice or extra:\n{}", got.join("\n"));
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let raw = RawSlaConfig {
            sla: vec![
                sla("high", "4h", "2d"),
                RawSla { category: Some("billing".into()), ..sla("high", "3h", "2d") },
                RawSla { mailbox: Some("vip".into()), ..sla("high", "2h", "2d") },
                RawSla { mailbox: Some("vip".into()), category: Some("billing".into()), ..sla("high", "1h", "2d") },
            ],
            calendars: vec![],
            desk: RawDeskTimers { sla_warn_before: Some("0s".into()), ..Default::default() },
        };
        let cfg = build(&raw, &["support", "vip"]).unwrap();
        assert_eq!(cfg.warn_before, TimeDelta::zero(), "0s turns warnings off");
        let fr = |priority, category, mailbox| {
            cfg.rule_for(&TicketKey { priority, category, mailbox }).and_then(|r| r.first_response)
        };
        let h = TimeDelta::hours;
        assert_eq!(fr(Priority::High, Category::General, "support"), Some(h(4)));
        assert_eq!(fr(Priority::High, Category::Billing, "support"), Some(h(3)));
        assert_eq!(fr(Priority::High, Category::General, "vip"), Some(h(2)));
        assert_eq!(fr(Priority::High, Category::Billing, "vip"), Some(h(1)));
        assert_eq!(fr(Priority::Low, Category::Billing, "vip"), None, "no rule for low");
    }

    #[test]
    fn short_durations_work() {
        let raw = RawSlaConfig {
            sla: vec![RawSla { resolution: None, ..sla("urgent", "2s", "") }],
            calendars: vec![],
            desk: RawDeskTimers { pending_reminder_after: Some("1s".into()), ..Default::default() },
        };
        let cfg = build(&raw, &[]).unwrap();
        assert_eq!(cfg.rules[0].first_response, Some(TimeDelta::seconds(2)));
        assert_eq!(cfg.rules[0].resolution, None, "a rule may give one target only");
        assert_eq!(cfg.lifecycle.pending_reminder_after, Some(TimeDelta::seconds(1)));
    }
}
