//! Business time: a weekly calendar of opening hours in one IANA time zone,
//! minus holidays, and the two questions a response target asks of it — when
//! has `d` of business time passed after an instant ([`Calendar::add`]), and
//! how much business time lies between two instants ([`Calendar::between`]).
//!
//! Hours are local wall time, because that is how a desk states them ("we
//! are open 09:00–17:00 in Berlin"). A range is turned into one interval of
//! instants by two rules, so that every day's answer is deterministic:
//!
//! - a range opens at the *first* instant its start shows on the wall clock
//!   and closes at the *last* instant its end shows (fall-back: a range that
//!   holds the repeated hour is an hour longer, and so contains every
//!   instant whose wall time lies in it);
//! - a wall time skipped by spring-forward is taken as the instant of the
//!   jump (a range spanning the gap is an hour shorter; one wholly inside it
//!   is empty, because that wall time never happens).
//!
//! Where those intervals overlap (a range ending in the repeated hour next
//! to one starting in it, or a midnight fold between two days) each instant
//! counts once. The walk goes range by range and skips closed days and
//! holidays without looking at the zone; it never looks further than
//! [`HORIZON_DAYS`] ahead, so no question costs more than that, and a
//! calendar that is never open is refused when it is built.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// How far ahead the calendar looks (about ten years): a target beyond it
/// has no due time, and business time beyond it is not counted.
pub const HORIZON_DAYS: u32 = 3660;

const MINUTES_PER_DAY: u16 = 24 * 60;

/// Day names as the config writes them, Monday first (ISO order).
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("invalid hours {text:?}: {reason}; write e.g. \"09:00-17:00\" or \"09:00-12:00,13:00-17:00\"")]
    Hours { text: String, reason: String },
    #[error("unknown time zone {0:?}: use an IANA name such as \"Europe/Berlin\"")]
    TimeZone(String),
    #[error("invalid holiday {0:?}: write a date as \"2026-12-25\"")]
    Holiday(String),
    #[error("the calendar is never open: give at least one day some hours")]
    NeverOpen,
}

/// Opening hours of one weekday: minutes after local midnight, `[start, end)`,
/// sorted, disjoint and not touching (touching ranges are merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayHours(Vec<(u16, u16)>);

impl DayHours {
    pub const CLOSED: DayHours = DayHours(Vec::new());

    /// Parses `"09:00-17:00"`, `"09:00-12:00, 13:00-17:00"` or
    /// `"00:00-24:00"`. A range cannot cross midnight: the next day has its
    /// own key. Overlapping ranges are refused (a typo, most likely);
    /// touching ones are joined.
    pub fn parse(text: &str) -> Result<DayHours, CalendarError> {
        let bad = |reason: &str| CalendarError::Hours { text: text.to_owned(), reason: reason.to_owned() };
        if text.trim().is_empty() {
            return Err(bad("empty; leave the day out to close it"));
        }
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let Some((from, to)) = part.split_once('-') else {
                return Err(bad(&format!("{part:?} is not a range")));
            };
            let start = parse_hhmm(from.trim()).filter(|&m| m < MINUTES_PER_DAY);
            let end = parse_hhmm(to.trim());
            let (Some(start), Some(end)) = (start, end) else {
                return Err(bad(&format!("{part:?}: times are HH:MM, 00:00 to 24:00")));
            };
            if end <= start {
                return Err(bad(&format!(
                    "{part:?} ends before it starts; a range cannot cross midnight (close at 24:00, open the next day at 00:00)"
                )));
            }
            ranges.push((start, end));
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start < last.1 => return Err(bad("ranges overlap")),
                Some(last) if start == last.1 => last.1 = end,
                _ => merged.push((start, end)),
            }
        }
        Ok(DayHours(merged))
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for DayHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (start, end)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60)?;
        }
        Ok(())
    }
}

/// `HH:MM` (or `H:MM`) as minutes after midnight; 24:00 is allowed here
/// and refused as a start by the caller.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// A business calendar. Immutable once built; share it with an [`Arc`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    name: String,
    tz: Tz,
    week: [DayHours; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// `week` is Monday first. Refuses a calendar with no open hours at all:
    /// every question to it would walk the whole horizon for nothing.
    pub fn new(
        name: impl Into<String>,
        tz: Tz,
        week: [DayHours; 7],
        holidays: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<Calendar, CalendarError> {
        if week.iter().all(DayHours::is_closed) {
            return Err(CalendarError::NeverOpen);
        }
        Ok(Calendar { name: name.into(), tz, week, holidays: holidays.into_iter().collect() })
    }

    pub fn parse_tz(name: &str) -> Result<Tz, CalendarError> {
        name.parse().map_err(|_| CalendarError::TimeZone(name.to_owned()))
    }

    pub fn parse_holiday(text: &str) -> Result<NaiveDate, CalendarError> {
        NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| CalendarError::Holiday(text.to_owned()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The instant at which `d` of business time has passed after `start`.
    /// Counting begins at `start` if the desk is open then, else at the next
    /// opening; a target that ends exactly at a closing is due at the
    /// closing, not at the next opening. A zero (or negative) `d` is `start`
    /// itself. `None` when the answer lies beyond [`HORIZON_DAYS`].
    pub fn add(&self, start: DateTime<Utc>, d: TimeDelta) -> Option<DateTime<Utc>> {
        if d <= TimeDelta::zero() {
            return Some(start);
        }
        let mut left = d;
        for (open, close) in self.spans(start, HORIZON_DAYS + 2) {
            let len = close - open;
            if left <= len {
                return Some(open + left);
            }
            left -= len;
        }
        None
    }

    /// Business time in `[a, b)`; zero when `b <= a` (a clock that went
    /// backwards gives an empty interval, never a negative one). Counts at
    /// most [`HORIZON_DAYS`] after `a`.
    pub fn between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> TimeDelta {
        let mut total = TimeDelta::zero();
        if b <= a {
            return total;
        }
        // Local dates can differ from UTC ones by a day either way.
        let days = (self.local_date(b) - self.local_date(a)).num_days().saturating_add(3);
        let days = u32::try_from(days).unwrap_or(u32::MAX).min(HORIZON_DAYS + 2);
        for (open, close) in self.spans(a, days) {
            if open >= b {
                break;
            }
            total += close.min(b) - open;
        }
        total
    }

    /// Whether the desk is open at `t`.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        self.spans(t, 3).next().is_some_and(|(open, _)| open == t)
    }

    /// Open intervals from `from` on, in order, disjoint, the first clipped
    /// to start no earlier than `from`, over `days` local dates.
    fn spans(&self, from: DateTime<Utc>, days: u32) -> Spans<'_> {
        // From the day before: its last range may close after `from` when
        // midnight falls in a fold.
        let day = self.local_date(from).pred_opt().unwrap_or(NaiveDate::MIN);
        Spans { cal: self, day, days_left: days, cursor: from, today: Vec::new().into_iter() }
    }

    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    /// The open intervals of one local date, in order (they may overlap
    /// around a fold; [`Spans`] clips them).
    fn day_spans(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let hours = &self.week[date.weekday().num_days_from_monday() as usize];
        if hours.is_closed() || self.holidays.contains(&date) {
            return Vec::new();
        }
        hours.0.iter().map(|&(start, end)| (self.instant(date, start, false), self.instant(date, end, true))).collect()
    }

    /// The instant of local `minutes` after midnight on `date` (1440 is the
    /// next midnight): in a fold the earlier or the `latest` occurrence, in a
    /// gap the instant of the jump.
    fn instant(&self, date: NaiveDate, minutes: u16, latest: bool) -> DateTime<Utc> {
        let local = if minutes >= MINUTES_PER_DAY {
            date.succ_opt().unwrap_or(date).and_time(NaiveTime::MIN)
        } else {
            let t = NaiveTime::from_num_seconds_from_midnight_opt(u32::from(minutes) * 60, 0).unwrap_or(NaiveTime::MIN);
            date.and_time(t)
        };
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(early, late) => if latest { late } else { early }.with_timezone(&Utc),
            LocalResult::None => self.end_of_gap(local),
        }
    }

    /// The first instant whose wall time is at or after `local`, which lies
    /// in a gap: the instant of the jump. A bisection over a two-day window
    /// (offsets are under a day), about 18 steps.
    fn end_of_gap(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap_or_default();
        let wall = |secs: i64| at(secs).with_timezone(&self.tz).naive_local();
        let guess = local.and_utc().timestamp();
        let (mut before, mut after) = (guess - 86_400, guess + 86_400);
        while after - before > 1 {
            let mid = before + (after - before) / 2;
            if wall(mid) >= local {
                after = mid;
            } else {
                before = mid;
            }
        }
        at(after)
    }
}

struct Spans<'a> {
    cal: &'a Calendar,
    day: NaiveDate,
    days_left: u32,
    /// Nothing before this instant is yielded again.
    cursor: DateTime<Utc>,
    today: std::vec::IntoIter<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Iterator for Spans<'_> {
    type Item = (DateTime<Utc>, DateTime<Utc>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((open, close)) = self.today.next() {
                let open = open.max(self.cursor);
                if close > open {
                    self.cursor = close;
                    return Some((open, close));
                }
                continue;
            }
            if self.days_left == 0 {
                return None;
            }
            self.days_left -= 1;
            let day = self.day;
            self.day = day.succ_opt()?;
            self.today = self.cal.day_spans(day).into_iter();
        }
    }
}

/// How a target's time passes: on the wall clock, or in a calendar's
/// business hours. Callers ask the clock instead of branching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Clock {
    #[default]
    Wall,
    Business(Arc<Calendar>),
}

impl Clock {
    /// See [`Calendar::add`]; on the wall clock `start + d` (`None` only on
    /// overflow).
    pub fn add(&self, start: DateTime<Utc>, d: TimeDelta) -> Option<DateTime<Utc>> {
        match self {
            Clock::Wall => start.checked_add_signed(d.max(TimeDelta::zero())),
            Clock::Business(cal) => cal.add(start, d),
        }
    }

    /// See [`Calendar::between`]; on the wall clock `b - a`, never negative.
    pub fn between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> TimeDelta {
        match self {
            Clock::Wall => (b - a).max(TimeDelta::zero()),
            Clock::Business(cal) => cal.between(a, b),
        }
    }

    /// The calendar's name; `None` for wall-clock time.
    pub fn calendar(&self) -> Option<&str> {
        match self {
            Clock::Wall => None,
            Clock::Business(cal) => Some(cal.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rfc(t: DateTime<Utc>) -> String {
        crate::ticket::rfc3339::format(&t)
    }

    fn cal(tz: &str, week: [&str; 7], holidays: &[&str]) -> Calendar {
        let week = week.map(|h| if h.is_empty() { DayHours::CLOSED } else { DayHours::parse(h).unwrap() });
        let holidays = holidays.iter().map(|h| Calendar::parse_holiday(h).unwrap());
        Calendar::new("test", Calendar::parse_tz(tz).unwrap(), week, holidays).unwrap()
    }

    const NINE_TO_FIVE: [&str; 7] = ["09:00-17:00", "09:00-17:00", "09:00-17:00", "09:00-17:00", "09:00-17:00", "", ""];
    const SPLIT: [&str; 7] =
        ["09:00-12:00,13:00-17:00", "09:00-12:00,13:00-17:00", "09:00-12:00,13:00-17:00", "", "", "", ""];
    const ALWAYS: [&str; 7] = ["00:00-24:00"; 7];

    fn office() -> Calendar {
        cal("Europe/Berlin", NINE_TO_FIVE, &["2026-12-25", "2026-12-24"])
    }

    #[test]
    fn hours_parse_and_refuse() {
        assert_eq!(DayHours::parse("09:00-17:00").unwrap().to_string(), "09:00-17:00");
        assert_eq!(DayHours::parse(" 13:00-17:00 , 9:00-12:00").unwrap().to_string(), "09:00-12:00,13:00-17:00");
        assert_eq!(
            DayHours::parse("09:00-12:00,12:00-17:00").unwrap().to_string(),
            "09:00-17:00",
            "touching ranges join"
        );
        assert_eq!(DayHours::parse("00:00-24:00").unwrap().to_string(), "00:00-24:00");
        for bad in [
            "",
            "9-17",
            "09:00",
            "17:00-09:00",
            "22:00-06:00",
            "09:00-09:00",
            "24:00-24:00",
            "09:60-10:00",
            "25:00-26:00",
            "09:00-12:00,11:00-13:00",
            "09:00-17:00,",
            "-09:00-10:00",
            "+9:00-10:00",
        ] {
            let err = DayHours::parse(bad).unwrap_err();
            assert!(matches!(err, CalendarError::Hours { .. }), "{bad:?} gave {err:?}");
        }
        assert!(DayHours::parse("22:00-06:00").unwrap_err().to_string().contains("cannot cross midnight"));
    }

    #[test]
    fn a_calendar_that_is_never_open_is_refused() {
        let err = Calendar::new("x", chrono_tz::UTC, std::array::from_fn(|_| DayHours::CLOSED), []).unwrap_err();
        assert_eq!(err, CalendarError::NeverOpen);
        assert!(Calendar::parse_tz("Europe/Berln").is_err());
        assert!(Calendar::parse_holiday("25.12.2026").is_err());
    }

    /// (calendar, start, business duration, expected due, why)
    #[allow(clippy::type_complexity)]
    fn add_goldens() -> Vec<(&'static str, &'static str, TimeDelta, &'static str, &'static str)> {
        let (h, m) = (TimeDelta::hours, TimeDelta::minutes);
        vec![
            // Europe/Berlin is UTC+1 in winter, UTC+2 in summer.
            ("office", "2026-01-14T09:00:00Z", h(1), "2026-01-14T10:00:00Z", "inside hours: plain addition"),
            ("office", "2026-01-14T15:30:00Z", h(1), "2026-01-15T08:30:00Z", "16:30 + 1h is 09:30 the next day"),
            ("office", "2026-01-14T16:00:00Z", h(1), "2026-01-15T09:00:00Z", "17:00 local: ends at the next 10:00"),
            (
                "office",
                "2026-01-14T15:00:00Z",
                h(1),
                "2026-01-14T16:00:00Z",
                "due exactly at closing, not next morning",
            ),
            (
                "office",
                "2026-01-14T05:00:00Z",
                m(30),
                "2026-01-14T08:30:00Z",
                "before opening: counting starts at 09:00",
            ),
            ("office", "2026-01-16T15:30:00Z", h(1), "2026-01-19T08:30:00Z", "Friday 16:30 → Monday 09:30"),
            ("office", "2026-01-17T10:00:00Z", h(2), "2026-01-19T10:00:00Z", "Saturday → Monday 11:00"),
            ("office", "2026-12-23T15:00:00Z", h(2), "2026-12-28T09:00:00Z", "two holidays, then the weekend"),
            ("office", "2026-01-14T09:00:00Z", h(40), "2026-01-21T09:00:00Z", "a working week is 40h"),
            // DST: 2026-03-29 and 2026-10-25 are Sundays; the office is closed, so
            // only the offset changes across them.
            ("office", "2026-03-27T15:00:00Z", h(2), "2026-03-30T08:00:00Z", "spring forward over the weekend"),
            ("office", "2026-10-23T14:00:00Z", h(2), "2026-10-26T09:00:00Z", "fall back over the weekend"),
            // Open round the clock: the DST days are 23h and 25h long.
            ("always", "2026-03-28T23:00:00Z", h(23), "2026-03-29T22:00:00Z", "29 March has 23 hours"),
            ("always", "2026-03-29T00:30:00Z", h(1), "2026-03-29T01:30:00Z", "01:30 CET + 1h = 03:30 CEST"),
            ("always", "2026-10-24T22:00:00Z", h(25), "2026-10-25T23:00:00Z", "25 October has 25 hours"),
            ("always", "2026-01-14T11:00:00Z", h(72), "2026-01-17T11:00:00Z", "24/7 is wall time"),
            (
                "night",
                "2026-03-29T00:00:00Z",
                h(1),
                "2026-03-29T01:00:00Z",
                "01:00-03:30 on spring day: 01:00 CET + 1h",
            ),
            ("night", "2026-03-29T00:00:00Z", h(2), "2026-04-04T23:30:00Z", "…is 1h30 long: 30m left for next Sunday"),
            (
                "night",
                "2026-10-24T23:00:00Z",
                h(3),
                "2026-10-25T02:00:00Z",
                "01:00-03:30 on fall-back day is 3h30 long",
            ),
            ("split", "2026-01-14T10:30:00Z", h(1), "2026-01-14T12:30:00Z", "11:30 + 1h skips lunch: 13:30"),
            ("split", "2026-01-14T10:30:00Z", m(30), "2026-01-14T11:00:00Z", "12:00 is the end of the morning range"),
            ("split", "2026-01-14T11:30:00Z", h(5), "2026-01-19T09:00:00Z", "Wed 12:30 → Mon 10:00 (Thu-Sun closed)"),
            (
                "tokyo",
                "2026-01-14T00:00:00Z",
                h(9),
                "2026-01-15T01:00:00Z",
                "another zone: 09:00 JST + 9h = next 10:00",
            ),
        ]
    }

    fn named(name: &str) -> Calendar {
        match name {
            "office" => office(),
            "always" => cal("Europe/Berlin", ALWAYS, &[]),
            "night" => cal("Europe/Berlin", ["", "", "", "", "", "", "01:00-03:30"], &[]),
            "split" => cal("Europe/Berlin", SPLIT, &[]),
            "tokyo" => cal("Asia/Tokyo", NINE_TO_FIVE, &[]),
            _ => unreachable!("{name}"),
        }
    }

    #[test]
    fn add_goldens_hold() {
        let table = add_goldens();
        assert!(table.len() > 15, "the golden table ran");
        for (name, start, d, want, why) in table {
            let c = named(name);
            let got = c.add(t(start), d).map(rfc);
            assert_eq!(got.as_deref(), Some(want), "{name}: {start} + {d}: {why}");
            assert_eq!(c.between(t(start), t(want)), d, "{name}: between({start}, {want}): {why}");
        }
    }

    #[test]
    fn between_counts_business_time_only() {
        let c = office();
        let cases = [
            ("2026-01-14T08:00:00Z", "2026-01-14T09:00:00Z", TimeDelta::hours(1)),
            ("2026-01-14T16:30:00Z", "2026-01-15T08:30:00Z", TimeDelta::minutes(30)),
            ("2026-01-16T00:00:00Z", "2026-01-19T00:00:00Z", TimeDelta::hours(8)),
            ("2026-12-24T00:00:00Z", "2026-12-26T00:00:00Z", TimeDelta::zero()),
            ("2026-01-15T00:00:00Z", "2026-01-14T00:00:00Z", TimeDelta::zero()),
        ];
        for (a, b, want) in cases {
            assert_eq!(c.between(t(a), t(b)), want, "[{a}, {b})");
        }
        let always = named("always");
        assert_eq!(always.between(t("2026-10-24T22:00:00Z"), t("2026-10-25T23:00:00Z")), TimeDelta::hours(25));
        // Midnight in a fold (Havana, 1 November 2026: 01:00 CDT → 00:00
        // CST): Saturday's 24:00 and Sunday's 00:00 overlap; counted once.
        let havana = cal("America/Havana", ALWAYS, &[]);
        let (a, b) = (t("2026-10-31T04:00:00Z"), t("2026-11-02T05:00:00Z"));
        assert_eq!(havana.between(a, b), b - a, "24/7 is wall time even across a midnight fold");
        let (a, b) = (t("2026-03-07T05:00:00Z"), t("2026-03-09T04:00:00Z"));
        assert_eq!(havana.between(a, b), b - a, "…and across a midnight gap");
    }

    #[test]
    fn gaps_and_folds_are_resolved_by_the_documented_rule() {
        let c = named("always");
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        // 02:30 does not exist on that day: the jump itself, 01:00Z.
        assert_eq!(rfc(c.instant(spring, 150, false)), "2026-03-29T01:00:00Z");
        let autumn = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        // 02:30 happens twice: 00:30Z (CEST) and 01:30Z (CET).
        assert_eq!(rfc(c.instant(autumn, 150, false)), "2026-10-25T00:30:00Z");
        assert_eq!(rfc(c.instant(autumn, 150, true)), "2026-10-25T01:30:00Z");
        // A range inside the gap never happens.
        let gap = cal("Europe/Berlin", ["", "", "", "", "", "", "02:15-02:45"], &[]);
        assert_eq!(gap.between(t("2026-03-28T00:00:00Z"), t("2026-03-30T00:00:00Z")), TimeDelta::zero());
        // Two ranges that meet inside the repeated hour overlap as instants;
        // each instant counts once: 01:00 CEST to 03:00 CET is 3h.
        let fold = cal("Europe/Berlin", ["", "", "", "", "", "", "01:00-02:20,02:40-03:00"], &[]);
        assert_eq!(fold.between(t("2026-10-24T00:00:00Z"), t("2026-10-26T00:00:00Z")), TimeDelta::hours(3));
        assert_eq!(
            fold.add(t("2026-10-24T00:00:00Z"), TimeDelta::hours(3)).map(rfc).as_deref(),
            Some("2026-10-25T02:00:00Z")
        );
    }

    #[test]
    fn open_and_closed_instants() {
        let c = office();
        assert!(c.is_open(t("2026-01-14T08:00:00Z")));
        assert!(!c.is_open(t("2026-01-14T16:00:00Z")), "17:00 is closed: ranges are half-open");
        assert!(!c.is_open(t("2026-12-25T10:00:00Z")), "holiday");
        assert!(!c.is_open(t("2026-01-17T10:00:00Z")), "Saturday");
    }

    #[test]
    fn the_horizon_bounds_the_walk() {
        // One hour a week: about 522 hours fit in the horizon.
        let only_wed = cal("UTC", ["", "", "09:00-10:00", "", "", "", ""], &[]);
        let start = t("2026-01-01T00:00:00Z");
        assert!(only_wed.add(start, TimeDelta::hours(500)).is_some(), "500 Wednesdays fit in ten years");
        assert_eq!(only_wed.add(start, TimeDelta::hours(600)), None, "beyond the horizon: no answer, no endless walk");
        let far = start + TimeDelta::days(i64::from(HORIZON_DAYS) * 3);
        assert!(only_wed.between(start, far) <= TimeDelta::hours(i64::from(HORIZON_DAYS) / 7 + 1));
    }

    #[test]
    fn wall_clock_is_plain_arithmetic() {
        let start = t("2026-03-29T00:30:00Z");
        assert_eq!(Clock::Wall.add(start, TimeDelta::seconds(2)), Some(start + TimeDelta::seconds(2)));
        assert_eq!(Clock::Wall.add(start, TimeDelta::seconds(-2)), Some(start));
        assert_eq!(Clock::Wall.between(start + TimeDelta::hours(1), start), TimeDelta::zero());
        assert_eq!(Clock::Wall.calendar(), None);
        let biz = Clock::Business(Arc::new(office()));
        assert_eq!(biz.calendar(), Some("test"));
        assert_eq!(biz.add(t("2026-01-14T15:30:00Z"), TimeDelta::hours(1)), Some(t("2026-01-15T08:30:00Z")));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The two questions agree: what `add` spends, `between` counts back,
        /// across weekends, holidays, split days and both DST changes.
        #[test]
        fn between_inverts_add(
            which in 0usize..6,
            start_secs in 1_767_225_600i64..1_798_761_600, // 2026-01-01 .. 2027-01-01
            minutes in 0i64..(200 * 60),
            seconds in 0i64..60,
        ) {
            let c = match which {
                0 => office(),
                1 => named("split"),
                2 => named("always"),
                3 => named("night"),
                // Havana changes its clocks at midnight: day boundaries
                // fall in the gap and in the fold.
                4 => cal("America/Havana", ALWAYS, &[]),
                _ => cal("America/Havana", ["", "", "", "", "", "00:00-01:00,22:00-24:00", "00:00-02:00"], &[]),
            };
            let a = DateTime::from_timestamp(start_secs, 0).unwrap();
            let d = TimeDelta::minutes(minutes) + TimeDelta::seconds(seconds);
            let due = c.add(a, d).unwrap();
            prop_assert!(due >= a);
            prop_assert_eq!(c.between(a, due), d);
            if d > TimeDelta::zero() {
                // Nothing earlier would do: due is the first such instant.
                prop_assert!(c.between(a, due - TimeDelta::seconds(1)) < d);
            }
        }
    }
}
