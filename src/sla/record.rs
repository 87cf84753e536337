//! What a ticket record keeps of time (#19): its response targets, when it
//! entered its status, whether the pending reminder went out, and the two
//! instants the store indexes it by. Only the rules in `triage::timers`
//! write it; `desk::apply` keeps the indexes in step when a record is saved.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SlaState;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    #[serde(default, skip_serializing_if = "SlaState::is_empty")]
    pub sla: SlaState,
    /// When the ticket entered its status; while it is pending, the last
    /// agent answer that reached the customer (the wait starts again).
    /// The lifecycle timers run from here.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant::opt")]
    pub since: Option<DateTime<Utc>>,
    /// The pending reminder went out (never twice for one wait).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reminded: bool,
    /// The next instant the desk's clock must look at the ticket, filed in
    /// the store's wake index whenever it changes. `None`: nothing can come
    /// due.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant::opt")]
    pub wake: Option<DateTime<Utc>>,
    /// The earliest due instant of a target whose clock runs (the queue's
    /// "overdue" and "due soon" compare it): the overdue count finds it
    /// through the wake when that comes first, else under a key of its own
    /// (see the store's `Table::Timers`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant::opt")]
    pub due: Option<DateTime<Utc>>,
}

impl Timers {
    /// Nothing to store (a record written before #19, or a desk without
    /// targets or timers, looks like this).
    pub fn is_empty(&self) -> bool {
        *self == Timers::default()
    }
}

/// Instants as a record's clocks store them: whole seconds since the epoch
/// (a ticket with targets holds up to eight, and formatting them as RFC 3339
/// text was a quarter of the cost of writing its record, #19), RFC 3339
/// text when an instant has a fraction (the rules work in whole seconds, so
/// only a hand-made record would). Either is read, so records written
/// before keep loading.
pub(crate) mod instant {
    use std::fmt;

    use chrono::{DateTime, Utc};
    use serde::de::{self, Deserializer, SeqAccess, Visitor};
    use serde::ser::{SerializeSeq, SerializeTuple, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        if t.timestamp_subsec_nanos() == 0 {
            s.serialize_i64(t.timestamp())
        } else {
            s.serialize_str(&crate::ticket::rfc3339::format(t))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_any(Instant)
    }

    struct Instant;

    impl Visitor<'_> for Instant {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("seconds since the epoch or an RFC 3339 timestamp")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            DateTime::from_timestamp(v, 0).ok_or_else(|| E::custom(format!("timestamp {v} is out of range")))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            let v = i64::try_from(v).map_err(|_| E::custom(format!("timestamp {v} is out of range")))?;
            self.visit_i64(v)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| E::custom(format!("invalid timestamp {v:?}: {e}")))
        }
    }

    /// An instant that may be absent (`skip_serializing_if` keeps `None`
    /// out of the record; a `null` still reads).
    pub mod opt {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
            d.deserialize_option(Opt)
        }

        struct Opt;

        impl<'de> Visitor<'de> for Opt {
            type Value = Option<DateTime<Utc>>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an instant or null")
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
    }

    /// Wall-clock intervals, each a pair of instants.
    pub mod pairs {
        use super::*;

        type Intervals = Vec<(DateTime<Utc>, DateTime<Utc>)>;

        struct One<'a>(&'a DateTime<Utc>);

        impl serde::Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                super::serialize(self.0, s)
            }
        }

        struct Pair<'a>(&'a (DateTime<Utc>, DateTime<Utc>));

        impl serde::Serialize for Pair<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut t = s.serialize_tuple(2)?;
                t.serialize_element(&One(&self.0.0))?;
                t.serialize_element(&One(&self.0.1))?;
                t.end()
            }
        }

        pub fn serialize<S: Serializer>(v: &[(DateTime<Utc>, DateTime<Utc>)], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for p in v {
                seq.serialize_element(&Pair(p))?;
            }
            seq.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Intervals, D::Error> {
            d.deserialize_seq(Pairs)
        }

        struct Pairs;

        impl<'de> Visitor<'de> for Pairs {
            type Value = Intervals;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of [from, to] instants")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some([a, b]) = seq.next_element::<[In; 2]>()? {
                    out.push((a.0, b.0));
                }
                Ok(out)
            }
        }

        struct In(DateTime<Utc>);

        impl<'de> serde::Deserialize<'de> for In {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::deserialize(d).map(In)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_store_whole_seconds_and_still_read_the_text_written_before() {
        let old = r#"{"sla":{"since":"2026-11-26T10:00:00Z","pauses":[["2026-11-26T11:00:00Z","2026-11-26T12:00:00+01:00"]],"first_response":{"secs":3600,"due":"2026-11-26T11:00:00Z","warned":true}},"since":"2026-11-26T10:00:00Z","reminded":true,"wake":"2026-11-26T11:00:00Z","due":null}"#;
        let t: Timers = serde_json::from_str(old).unwrap();
        assert_eq!(t.since, DateTime::from_timestamp(1_795_687_200, 0));
        assert_eq!(t.wake, DateTime::from_timestamp(1_795_690_800, 0));
        assert_eq!(t.due, None);
        assert!(t.reminded);

        let new = serde_json::to_string(&t).unwrap();
        assert!(!new.contains("2026"), "whole seconds are written as numbers: {new}");
        assert!(new.contains("\"pauses\":[[1795690800,1795690800]]"), "{new}");
        assert_eq!(serde_json::from_str::<Timers>(&new).unwrap(), t);

        // A fraction is kept exactly, as text.
        let odd = Timers { wake: DateTime::from_timestamp(1_795_690_800, 5), ..Timers::default() };
        let text = serde_json::to_string(&odd).unwrap();
        assert!(text.contains("\"wake\":\"2026-11-26T11:00:00.000000005Z\""), "{text}");
        assert_eq!(serde_json::from_str::<Timers>(&text).unwrap(), odd);

        for bad in [r#"{"wake":"yesterday"}"#, r#"{"wake":99999999999999999}"#, r#"{"wake":true}"#] {
            assert!(serde_json::from_str::<Timers>(bad).is_err(), "{bad} is refused");
        }
    }
}
