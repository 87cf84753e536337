//! The Support Ticket object of shared/spec, kept as a fixture, must
//! round-trip through our type unchanged, and bad vocabulary must be refused.

use ticketd::ticket::Ticket;

const EXAMPLE: &str = include_str!("fixtures/support-ticket-example.json");

#[test]
fn the_spec_example_round_trips_exactly() {
    let t: Ticket = serde_json::from_str(EXAMPLE).expect("the spec example parses");
    assert_eq!(t.id, "support_ticket_123456789");
    assert_eq!(t.threads.len(), 2);
    let mut back = serde_json::to_value(&t).unwrap();
    // The two keys #19 adds are always written: null where no response
    // target applies, as here. Everything else is the seed, unchanged.
    let added = back.as_object_mut().unwrap();
    assert_eq!(added.remove("firstResponseDue"), Some(serde_json::Value::Null));
    assert_eq!(added.remove("resolutionDue"), Some(serde_json::Value::Null));
    let want: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    assert_eq!(back, want);
    let text = serde_json::to_string(&t).unwrap();
    assert!(text.starts_with("{\"_id\":"), "_id comes first: {text}");
    let keys: Vec<String> = back.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 15, "exactly the seed keys: {keys:?}");
}

#[test]
fn bad_vocabulary_is_rejected_clearly() {
    for (field, bad, msg) in [
        (
            "\"status\": \"in_progress\"",
            "\"status\": \"wip\"",
            "invalid status \"wip\": expected one of open pending in_progress resolved closed",
        ),
        ("\"priority\": \"high\"", "\"priority\": \"critical\"", "invalid priority \"critical\""),
        ("\"category\": \"technical\"", "\"category\": \"tech\"", "invalid category \"tech\""),
        ("\"type\": \"agent\"", "\"type\": \"bot\"", "invalid thread type \"bot\""),
    ] {
        let text = EXAMPLE.replace(field, bad);
        assert_ne!(text, EXAMPLE, "fixture must contain {field}");
        let err = serde_json::from_str::<Ticket>(&text).unwrap_err().to_string();
        assert!(err.contains(msg), "{err}");
    }
    let err = serde_json::from_str::<Ticket>(
        &EXAMPLE.replace("\"createdAt\": \"2024-01-15T10:30:00Z\"", "\"createdAt\": \"yesterday\""),
    )
    .unwrap_err();
    assert!(err.to_string().contains("invalid timestamp"), "{err}");
    let err = serde_json::from_str::<Ticket>(&EXAMPLE.replace("\"tags\"", "\"labels\"")).unwrap_err();
    assert!(err.to_string().contains("unknown field `labels`"), "{err}");
}
