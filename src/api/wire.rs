//! What crosses the HTTP API, shared by the server and the CLI's client so
//! the two cannot drift apart: request bodies (strict: unknown fields are
//! errors), the ticket list's query parameters, response envelopes, and
//! the checks every piece of text from a request goes through.

use serde::{Deserialize, Deserializer, Serialize};

use super::error::ApiError;
use crate::desk::views::{DueFilter, MAX_LIMIT, QuarantineView, Sort, TicketQuery};
use crate::ticket::{Category, Priority, Status};

/// Longest query string accepted; a ticket query needs far less.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Longest `q` search text.
pub const MAX_SEARCH_CHARS: usize = 256;
/// Longest identifier-like value (agent id, client, tag filter).
pub const MAX_NAME_CHARS: usize = 320;
/// JSON request bodies are small; uploads have their own limit.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Files in one reply.
pub const MAX_FILES: usize = 20;

/// `PATCH /api/v1/tickets/{id}`: every key optional, at least one given.
/// `assignedTo: null` unassigns and `resolution: null` clears; the other
/// keys cannot be null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TicketPatch {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<Option<String>>,
    /// The full list: tags not in it are removed.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Tags to add, whatever else the ticket carries (two agents adding
    /// tags at once never erase each other's).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub tags_add: Option<Vec<String>>,
    /// Tags to take off, if the ticket carries them.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub tags_remove: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Option<String>>,
}

/// A key that, when given, must have a value (`null` is an error).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A key whose `null` means "none" (absent stays `None`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /api/v1/tickets/{id}/merge` (#19): `{"into": 42}` (or
/// `"support_ticket_42"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    #[serde(deserialize_with = "ticket_ref")]
    pub into: u64,
}

fn ticket_ref<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let n = match &v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => crate::ticket::parse_ticket_ref(s),
        _ => None,
    };
    n.filter(|n| *n > 0)
        .ok_or_else(|| serde::de::Error::custom("into: a ticket number (42) or id (\"support_ticket_42\")"))
}

/// The body of a reply or a note sent as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextBody {
    pub text: String,
}

/// A list of quarantine or outbox entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entries<T> {
    pub entries: Vec<T>,
}

/// A list entry with the raw mail it holds (base64: mail need not be
/// UTF-8): a quarantine entry, a held spam mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithRaw<T> {
    #[serde(flatten)]
    pub entry: T,
    pub raw_base64: String,
}

impl<T> WithRaw<T> {
    pub fn new(entry: T, raw: &[u8]) -> WithRaw<T> {
        use base64::Engine as _;
        WithRaw { entry, raw_base64: base64::engine::general_purpose::STANDARD.encode(raw) }
    }

    /// The entry and the raw bytes, or why the base64 does not decode.
    pub fn into_parts(self) -> Result<(T, Vec<u8>), base64::DecodeError> {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.decode(self.raw_base64.as_bytes())?;
        Ok((self.entry, raw))
    }
}

pub type QuarantineDetail = WithRaw<QuarantineView>;
pub type SpamDetail = WithRaw<crate::desk::spam::SpamView>;

/// Text from a request: no control characters (in `multiline` text, tab
/// and line breaks are fine), no direction overrides, bounded length.
pub fn check_text(field: &str, s: &str, multiline: bool, max_chars: usize) -> Result<(), ApiError> {
    let bad = s
        .chars()
        .find(|c| crate::text::is_format(*c) || (c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'))));
    if let Some(c) = bad {
        return Err(ApiError::invalid(field, format!("{field} contains the control character U+{:04X}", c as u32)));
    }
    if s.chars().count() > max_chars {
        return Err(ApiError::invalid(field, format!("{field} is longer than {max_chars} characters")));
    }
    Ok(())
}

fn vocab<T: std::str::FromStr<Err = crate::ticket::VocabError>>(field: &str, v: &str) -> Result<T, ApiError> {
    v.parse().map_err(|e: crate::ticket::VocabError| ApiError::invalid(field, e.to_string()))
}

/// The query string of `GET /api/v1/tickets`, strictly: unknown or
/// repeated parameters, bad values and absurd limits are 400s that name
/// the parameter.
pub fn parse_ticket_query(raw: Option<&str>) -> Result<TicketQuery, ApiError> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_query",
            format!("the query string is longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    let mut q = TicketQuery::default();
    let mut seen: Vec<String> = Vec::new();
    let mut within = None;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        if seen.contains(&k) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "bad_query",
                format!("the parameter {k} is given twice"),
            )
            .field(k));
        }
        let max = if k == "q" { MAX_SEARCH_CHARS } else { MAX_NAME_CHARS };
        check_text(&k, &v, false, max)?;
        match k.as_str() {
            "status" => q.status = Some(vocab(&k, &v)?),
            "priority" => q.priority = Some(vocab(&k, &v)?),
            "category" => q.category = Some(vocab(&k, &v)?),
            "assignedTo" => q.assigned_to = Some(v),
            "tag" => q.tag = Some(v),
            "client" => q.client = Some(v),
            "q" => q.q = Some(v),
            "sort" => q.sort = Sort::parse(&v).map_err(ApiError::from)?,
            "limit" => {
                let n = v.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                    ApiError::invalid("limit", format!("limit must be a whole number from 1 to {MAX_LIMIT}"))
                })?;
                q.limit = Some(n);
            }
            "cursor" => q.cursor = Some(v),
            "due" => {
                q.due = Some(match v.as_str() {
                    "overdue" => DueFilter::Overdue,
                    "soon" => DueFilter::Within(DueFilter::DEFAULT_WITHIN),
                    _ => return Err(ApiError::invalid("due", format!("invalid due {v:?}: expected overdue or soon"))),
                })
            }
            "within" => {
                let d = humantime::parse_duration(&v)
                    .ok()
                    .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                    .filter(|d| *d > chrono::TimeDelta::zero() && *d <= chrono::TimeDelta::days(366))
                    .ok_or_else(|| {
                        ApiError::invalid("within", format!("invalid within {v:?}: a duration such as 2h or 30m"))
                    })?;
                within = Some(d);
            }
            _ => {
                let shown = crate::text::truncate_chars(&k, 40);
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "unknown_parameter",
                    format!(
                        "unknown parameter {shown:?}: expected status, priority, category, assignedTo, tag, client, q, sort, limit, cursor, due, within"
                    ),
                )
                .field(shown));
            }
        }
        seen.push(k);
    }
    if let Some(w) = within {
        match q.due {
            Some(DueFilter::Within(_)) => q.due = Some(DueFilter::Within(w)),
            _ => return Err(ApiError::invalid("within", "within goes with due=soon")),
        }
    }
    Ok(q)
}

/// The query string the client sends for `q` (the inverse of
/// [`parse_ticket_query`]).
pub fn ticket_query_string(q: &TicketQuery) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    if let Some(v) = q.status {
        s.append_pair("status", v.as_str());
    }
    if let Some(v) = q.priority {
        s.append_pair("priority", v.as_str());
    }
    if let Some(v) = q.category {
        s.append_pair("category", v.as_str());
    }
    for (k, v) in [("assignedTo", &q.assigned_to), ("tag", &q.tag), ("client", &q.client), ("q", &q.q)] {
        if let Some(v) = v {
            s.append_pair(k, v);
        }
    }
    if q.sort != Sort::default()
        && let Ok(serde_json::Value::String(name)) = serde_json::to_value(q.sort)
    {
        s.append_pair("sort", &name);
    }
    if let Some(n) = q.limit {
        // The desk clamps a local limit the same way.
        s.append_pair("limit", &n.clamp(1, MAX_LIMIT).to_string());
    }
    if let Some(c) = &q.cursor {
        s.append_pair("cursor", c);
    }
    match q.due {
        Some(DueFilter::Overdue) => {
            s.append_pair("due", "overdue");
        }
        Some(DueFilter::Within(w)) => {
            s.append_pair("due", "soon");
            if w != DueFilter::DEFAULT_WITHIN {
                s.append_pair("within", &format!("{}s", w.num_seconds()));
            }
        }
        None => {}
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_survives_the_round_trip() {
        let q = TicketQuery {
            status: Some(Status::InProgress),
            priority: Some(Priority::High),
            category: Some(Category::FeatureRequest),
            assigned_to: Some("none".into()),
            tag: Some("vip".into()),
            client: Some("a+b@example.com".into()),
            q: Some("dark mode & more".into()),
            sort: Sort::UpdatedDesc,
            limit: Some(20),
            cursor: Some("1700000000_42".into()),
            due: Some(DueFilter::Within(chrono::TimeDelta::minutes(90))),
            as_of: None,
        };
        assert_eq!(parse_ticket_query(Some(&ticket_query_string(&q))).unwrap(), q);
        let overdue = TicketQuery { due: Some(DueFilter::Overdue), sort: Sort::DueAsc, ..TicketQuery::default() };
        assert_eq!(parse_ticket_query(Some(&ticket_query_string(&overdue))).unwrap(), overdue);
        assert_eq!(parse_ticket_query(None).unwrap(), TicketQuery::default());
    }

    #[test]
    fn bad_parameters_name_themselves() {
        let field = |raw: &str| parse_ticket_query(Some(raw)).unwrap_err().body.field;
        assert_eq!(field("status=wip"), Some("status".into()));
        assert_eq!(field("limit=0"), Some("limit".into()));
        assert_eq!(field("limit=100000000000000000000000"), Some("limit".into()));
        assert_eq!(field("colour=blue"), Some("colour".into()));
        assert_eq!(field("tag=a&tag=b"), Some("tag".into()));
        assert_eq!(field("q=%1b%5b31m"), Some("q".into()));
        assert_eq!(field("sort=random"), Some("sort".into()));
        assert_eq!(field("due=late"), Some("due".into()));
        assert_eq!(field("within=2h"), Some("within".into()), "within needs due=soon");
        assert_eq!(field("due=soon&within=soon"), Some("within".into()));
        let long = format!("q={}", "a".repeat(MAX_QUERY_BYTES));
        assert_eq!(parse_ticket_query(Some(&long)).unwrap_err().body.error, "bad_query");
    }

    #[test]
    fn patch_bodies_are_strict() {
        let p: TicketPatch = serde_json::from_str(r#"{"assignedTo":null,"resolution":"done"}"#).unwrap();
        assert_eq!(p.assigned_to, Some(None));
        assert_eq!(p.resolution, Some(Some("done".into())));
        assert!(serde_json::from_str::<TicketPatch>(r#"{"status":null}"#).is_err());
        assert!(serde_json::from_str::<TicketPatch>(r#"{"colour":"red"}"#).is_err());
        assert!(serde_json::from_str::<TicketPatch>(r#"{"status":"wip"}"#).is_err());
        let p: TicketPatch = serde_json::from_str(r#"{"tagsAdd":["a"],"tagsRemove":["b"]}"#).unwrap();
        assert_eq!((p.tags_add, p.tags_remove), (Some(vec!["a".to_owned()]), Some(vec!["b".to_owned()])));
        let back = serde_json::to_string(&TicketPatch { assigned_to: Some(None), ..TicketPatch::default() }).unwrap();
        assert_eq!(back, r#"{"assignedTo":null}"#);
    }
}

/// `POST /api/v1/blocklist`: one entry, `name@domain` or `@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    pub entry: String,
}
