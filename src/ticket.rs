//! The Support Ticket object (docs/spec/support-ticket-object.txt) and its
//! vocabularies. Field names and values are a public contract: the public JSON
//! is exactly this struct, `_id` first, camelCase.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A value outside one of the ticket vocabularies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: expected one of {expected}")]
pub struct VocabError {
    pub field: &'static str,
    pub value: String,
    pub expected: &'static str,
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $field:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            const EXPECTED: &'static str = concat!($($text, " "),+);

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = VocabError;
            fn from_str(s: &str) -> Result<Self, VocabError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(VocabError {
                        field: $field,
                        value: s.to_owned(),
                        expected: $name::EXPECTED.trim_end(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

vocabulary!(Status, "status", {
    Open => "open", Pending => "pending", InProgress => "in_progress",
    Resolved => "resolved", Closed => "closed",
});
vocabulary!(Priority, "priority", {
    Low => "low", Medium => "medium", High => "high", Urgent => "urgent",
});
vocabulary!(Category, "category", {
    Technical => "technical", Billing => "billing", Account => "account",
    FeatureRequest => "feature_request", General => "general",
});
vocabulary!(
    /// Who wrote a thread entry.
    ThreadType, "thread type", { User => "user", Agent => "agent", System => "system" }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadEntry {
    pub author: String,
    pub message: String,
    #[serde(with = "rfc3339")]
    pub timestamp: DateTime<Utc>,
    #[serde(rename = "type")]
    pub kind: ThreadType,
    /// An added key: agent-only text (a `#note`, an automatic reply from an
    /// agent, a relay held back) that no customer ever received. Written
    /// only when true, so the seed object round-trips unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub filename: String,
    pub url: String,
    pub size: u64,
    #[serde(rename = "type")]
    pub mime_type: String,
}

/// Most tags one ticket carries; more is an error, not a silent cut.
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_LEN: usize = 64;

/// Why a tag was refused (the same words on every channel).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TagError(pub String);

/// A tag as tickets keep it: trimmed and lower-cased; one word with no
/// spaces, commas, quotes or control characters; nothing invisible
/// (zero-width, joiners, bidi controls) and one script only, so `invоice`
/// with a Cyrillic `о` is refused rather than shown beside `invoice` as if
/// it were the same tag.
pub fn parse_tag(t: &str) -> Result<String, TagError> {
    use unicode_security::MixedScript;
    let t = t.trim().to_lowercase();
    if t.is_empty() {
        return Err(TagError("a tag cannot be empty".into()));
    }
    let shown = || crate::text::clean_line(&t.chars().take(20).collect::<String>());
    if t.chars().count() > MAX_TAG_LEN {
        return Err(TagError(format!("tag {:?}… is longer than {MAX_TAG_LEN} characters", shown())));
    }
    if t.chars().any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == ',' || crate::text::is_invisible(c)) {
        return Err(TagError(format!(
            "invalid tag {:?}: no spaces, commas, quotes, control or invisible characters",
            shown()
        )));
    }
    if !t.as_str().is_single_script() {
        return Err(TagError(format!("invalid tag {:?}: letters of one script only (no look-alikes)", shown())));
    }
    Ok(t)
}

impl Attachment {
    /// The content's SHA-256, which its URL carries (`…/<sha256>/<name>`).
    pub fn sha256(&self) -> Option<&str> {
        self.url.rsplit('/').nth(1).filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// The public Support Ticket. Extra keys (`number`, `participants`) are
/// additions the spec allows; they are omitted when empty so the seed object
/// round-trips unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ticket {
    #[serde(rename = "_id")]
    pub id: String,
    pub title: String,
    pub description: String,
    pub status: Status,
    pub priority: Priority,
    pub category: Category,
    pub client: String,
    pub assigned_to: Option<String>,
    #[serde(default)]
    pub threads: Vec<ThreadEntry>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub resolution: Option<String>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
    #[serde(with = "rfc3339_opt", default)]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<String>,
    /// An added key (#19): when the first agent answer is due under the
    /// response target in force; `null` where no target applies or it was
    /// met. While the ticket is pending, the due time as of the stop.
    #[serde(with = "rfc3339_opt", default)]
    pub first_response_due: Option<DateTime<Utc>>,
    /// An added key (#19): when the resolution is due; `null` as above.
    #[serde(with = "rfc3339_opt", default)]
    pub resolution_due: Option<DateTime<Utc>>,
    /// An added key (#19): this ticket was merged into that one (and is
    /// closed); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
}

pub fn ticket_id(number: u64) -> String {
    format!("support_ticket_{number}")
}

pub fn client_id(number: u64) -> String {
    format!("client_{number}")
}

/// The ticket number behind `support_ticket_<n>`, or a bare `<n>`.
pub fn parse_ticket_ref(s: &str) -> Option<u64> {
    s.strip_prefix("support_ticket_").unwrap_or(s).parse().ok()
}

impl Ticket {
    /// Applies a status change with the lifecycle rules: `resolvedAt` is set on
    /// resolve, kept on close, cleared when the ticket goes back to work.
    pub fn set_status(&mut self, status: Status, now: DateTime<Utc>) {
        match status {
            Status::Resolved => self.resolved_at = Some(now),
            Status::Closed => {}
            Status::Open | Status::Pending | Status::InProgress => self.resolved_at = None,
        }
        self.status = status;
        self.updated_at = now;
    }

    pub fn push_thread(&mut self, author: &str, kind: ThreadType, message: String, now: DateTime<Utc>) {
        self.threads.push(ThreadEntry { author: author.to_owned(), message, timestamp: now, kind, internal: false });
        self.updated_at = now;
    }

    /// An entry only agents see.
    pub fn push_internal(&mut self, author: &str, kind: ThreadType, message: String, now: DateTime<Utc>) {
        self.threads.push(ThreadEntry { author: author.to_owned(), message, timestamp: now, kind, internal: true });
        self.updated_at = now;
    }
}

/// RFC 3339 UTC with a literal `Z`, whole seconds unless the value has more.
pub mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {s:?}: {e}")))
    }
}

pub mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339::format(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(&s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {s:?}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_one_visible_word_in_one_script() {
        assert_eq!(parse_tag("  Billing ").unwrap(), "billing");
        assert_eq!(parse_tag("café").unwrap(), "café");
        assert_eq!(parse_tag("rechnung-2026").unwrap(), "rechnung-2026");
        assert_eq!(parse_tag("日本語").unwrap(), "日本語");
        for bad in [
            "in\u{200B}voice", // zero-width space
            "in\u{200D}voice", // zero-width joiner
            "invoice\u{2060}", // word joiner
            "in\u{00AD}voice", // soft hyphen
            "\u{202E}eciovni", // bidi override
            "inv\u{043E}ice",  // Cyrillic о among Latin letters
            "\u{0430}dmin",    // Cyrillic а
            "two words",
            "a,b",
            "",
        ] {
            assert!(parse_tag(bad).is_err(), "{bad:?} must be refused");
        }
        let e = parse_tag("in\u{200B}voice").unwrap_err().to_string();
        assert!(!e.contains('\u{200B}'), "the error never carries the invisible character back: {e:?}");
    }

    #[test]
    fn vocab_rejects_unknown_values_with_the_choices() {
        let err = "wip".parse::<Status>().unwrap_err();
        assert_eq!(err.to_string(), "invalid status \"wip\": expected one of open pending in_progress resolved closed");
        assert_eq!("feature_request".parse::<Category>(), Ok(Category::FeatureRequest));
        assert!("Urgent".parse::<Priority>().is_err(), "vocabularies are case-sensitive");
    }

    #[test]
    fn lifecycle_sets_and_clears_resolved_at() {
        let t0 = DateTime::parse_from_rfc3339("2024-01-15T10:30:00Z").unwrap().with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::minutes(5);
        let mut t = Ticket {
            id: ticket_id(1),
            title: "x".into(),
            description: "y".into(),
            status: Status::Open,
            priority: Priority::Low,
            category: Category::General,
            client: client_id(1),
            assigned_to: None,
            threads: vec![],
            attachments: vec![],
            tags: vec![],
            resolution: None,
            created_at: t0,
            updated_at: t0,
            resolved_at: None,
            number: Some(1),
            participants: vec![],
            first_response_due: None,
            resolution_due: None,
            merged_into: None,
        };
        t.set_status(Status::Resolved, t0);
        assert_eq!(t.resolved_at, Some(t0));
        t.set_status(Status::Closed, t1);
        assert_eq!(t.resolved_at, Some(t0), "closing keeps resolvedAt");
        t.set_status(Status::Open, t1);
        assert_eq!(t.resolved_at, None);
        assert_eq!(t.updated_at, t1);
    }
}
