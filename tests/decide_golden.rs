//! Decision goldens: mail in, the desk's decision out.
//!
//! Every `tests/fixtures/decide/NAME.eml` is a mail as a real client or
//! mail system writes it; `NAME.json` is what the desk decided about it:
//! the outcome, the tickets it created or changed (fields that matter and
//! the entries added), the mail it queued (kind, ticket, recipients,
//! subject), outbox entries it marked failed, quarantine reasons, and the
//! rate counters it moved. Timestamps and generated ids are left out.
//!
//! A fixture may start with `X-Golden-After: OTHER` (another fixture's
//! name): the desk first takes OTHER (and what OTHER comes after), so a
//! reply meets the ticket, the acknowledgement and the notification it
//! answers. The real threading lookups run: the mails go through a desk
//! in this process, exactly as the IMAP worker hands them over. Our own
//! Message-IDs are generated, so a fixture names them as placeholders,
//! `{{KIND:TICKET}}` or `{{KIND:TICKET:RECIPIENT}}` (KIND as the outbox
//! says it: ack, agent_notify, relay, resolved, command_error, receipt):
//! the newest such mail queued so far, in angle brackets.
//!
//! Each fixture runs with LF and with CRLF line ends against the same
//! golden. On a mismatch (or a missing golden) the actual decision is
//! written to `NAME.failed` beside the fixture: read it, and rename it to
//! `NAME.json` if the new decision is right.
//!
//! The desk's config for all of them: [`TestConfig::new`] with a second
//! agent (Bob) and `trusted_authserv_id = "mx.example.test"`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use common::desk::World;
use ticketd::store::{Recent, Table};
use ticketd::testkit::AgentKeys;

/// Guards against the glob silently matching nothing and the test passing
/// vacuously.
const MIN_FIXTURES: usize = 20;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decide")
}

fn golden_world() -> World {
    World::with(|c| {
        c.agents.push(AgentKeys::new("agent_bob", "bob@example.test", "Bob"));
        c.desk.trusted_authserv_id = Some("mx.example.test".into());
    })
}

/// A fixture's mail (LF, the `X-Golden-*` lines taken out) and the fixture
/// it comes after.
struct Fixture {
    name: String,
    after: Option<String>,
    text: String,
}

fn load(name: &str) -> Fixture {
    let path = fixture_dir().join(format!("{name}.eml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text.replace("\r\n", "\n");
    let mut after = None;
    let mut kept = String::new();
    let mut in_header = true;
    for line in text.split_inclusive('\n') {
        if in_header && line.trim_end().is_empty() {
            in_header = false;
        }
        if in_header && let Some(v) = line.strip_prefix("X-Golden-After:") {
            after = Some(v.trim().to_owned());
            continue;
        }
        kept.push_str(line);
    }
    Fixture { name: name.to_owned(), after, text: kept }
}

/// The fixtures `name` comes after, oldest first, then `name`.
fn chain(name: &str) -> Vec<Fixture> {
    let mut out = vec![load(name)];
    while let Some(prev) = out.last().unwrap().after.clone() {
        assert!(out.len() < 10 && !out.iter().any(|f| f.name == prev), "{name}: X-Golden-After loops at {prev}");
        out.push(load(&prev));
    }
    out.reverse();
    out
}

#[derive(Clone, Copy, Debug)]
enum Ending {
    Lf,
    Crlf,
}

impl Ending {
    fn apply(self, lf: &str) -> Vec<u8> {
        match self {
            Ending::Lf => lf.as_bytes().to_vec(),
            Ending::Crlf => lf.replace('\n', "\r\n").into_bytes(),
        }
    }
}

/// `{{kind:ticket}}` / `{{kind:ticket:recipient}}` → `<message-id>`.
fn resolve(w: &World, text: &str, fixture: &str) -> String {
    let outbox = w.desk.outbox(true).expect("read the outbox");
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").map(|e| start + e).unwrap_or_else(|| panic!("{fixture}: unclosed {{{{"));
        let spec = &rest[start + 2..end];
        let mut parts = spec.split(':');
        let kind = parts.next().unwrap_or("");
        let ticket: u64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("{fixture}: {spec}"));
        let to = parts.next();
        let id = outbox
            .iter()
            .rev()
            .find(|e| {
                e.ticket == ticket
                    && json!(e.kind) == json!(kind)
                    && to.is_none_or(|to| e.to.iter().any(|t| t.eq_ignore_ascii_case(to)))
            })
            .map(|e| e.message_id.clone())
            .unwrap_or_else(|| panic!("{fixture}: no {spec} queued before it"));
        out.push_str(&format!("<{id}>"));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// What the desk holds that a decision can change.
struct State {
    tickets: BTreeMap<u64, ticketd::record::TicketRecord>,
    outbox: BTreeMap<u64, ticketd::desk::views::OutboxView>,
    quarantine: BTreeSet<u64>,
    counters: BTreeMap<String, u32>,
    digests: BTreeMap<String, Value>,
    outcomes: BTreeMap<String, u64>,
}

fn state(w: &World) -> State {
    let store = w.desk.store();
    let now = chrono::Utc::now();
    let mut counters = BTreeMap::new();
    let mut digests = BTreeMap::new();
    for (table, into) in [(Table::Acks, 0), (Table::Digests, 1)] {
        for row in store.backend().scan(table, Default::default()) {
            let (k, v) = row.expect("scan the store");
            let key = String::from_utf8_lossy(&k).into_owned();
            if into == 0 {
                let r: Recent = serde_json::from_slice(&v).expect("a rate counter");
                counters.insert(key, r.count(now));
            } else {
                let mut d: Value = serde_json::from_slice(&v).expect("a held digest");
                d.as_object_mut().map(|o| o.remove("since"));
                digests.insert(key, d);
            }
        }
    }
    State {
        tickets: store.tickets().expect("tickets").into_iter().map(|t| (t.number, t)).collect(),
        outbox: w.desk.outbox(true).expect("outbox").into_iter().map(|e| (e.seq, e)).collect(),
        quarantine: w.desk.quarantine().expect("quarantine").into_iter().map(|q| q.id).collect(),
        counters,
        digests,
        outcomes: w.desk.health().readings().messages.into_iter().map(|(_, outcome, n)| (outcome, n)).fold(
            BTreeMap::new(),
            |mut m, (o, n)| {
                *m.entry(o).or_default() += n;
                m
            },
        ),
    }
}

/// The decision, read as the difference the last mail made.
fn decision(w: &World, before: &State, after: &State) -> Value {
    let outcome: Vec<&String> = after
        .outcomes
        .iter()
        .filter(|(o, n)| before.outcomes.get(*o).copied().unwrap_or(0) < **n)
        .map(|(o, _)| o)
        .collect();
    let mut tickets = Vec::new();
    for (n, rec) in &after.tickets {
        let old = before.tickets.get(n);
        if old.is_some_and(|o| o == rec) {
            continue;
        }
        let t = &rec.ticket;
        let seen = old.map_or(0, |o| o.ticket.threads.len());
        let entries: Vec<Value> = t.threads[seen.min(t.threads.len())..]
            .iter()
            .map(|e| json!({"type": e.kind, "author": e.author, "internal": e.internal, "message": e.message}))
            .collect();
        let seen_files = old.map_or(0, |o| o.ticket.attachments.len());
        let files: Vec<&str> =
            t.attachments[seen_files.min(t.attachments.len())..].iter().map(|a| a.filename.as_str()).collect();
        let mut v = json!({
            "number": n,
            "new": old.is_none(),
            "title": t.title,
            "status": t.status,
            "priority": t.priority,
            "category": t.category,
            "client": t.client,
            "clientAddress": rec.client_address,
            "assignedTo": t.assigned_to,
            "tags": t.tags,
            "participants": t.participants,
            "resolution": t.resolution,
            "entriesAdded": entries,
            "attachmentsAdded": files,
        });
        if old.is_none() {
            v["description"] = json!(t.description);
        }
        tickets.push(v);
    }
    let queued: Vec<Value> = after
        .outbox
        .iter()
        .filter(|(seq, _)| !before.outbox.contains_key(seq))
        .map(|(_, e)| json!({"kind": e.kind, "ticket": e.ticket, "to": e.to, "subject": e.subject}))
        .collect();
    let failed: Vec<Value> = after
        .outbox
        .iter()
        .filter(|(seq, e)| before.outbox.get(seq).is_some_and(|b| b.state != e.state))
        .map(|(_, e)| json!({"kind": e.kind, "ticket": e.ticket, "state": e.state, "refused": e.refused}))
        .collect();
    let quarantined: Vec<String> = w
        .desk
        .quarantine()
        .expect("quarantine")
        .into_iter()
        .filter(|q| !before.quarantine.contains(&q.id))
        .map(|q| q.reason)
        .collect();
    // The rate counters it moved, by what they limit, with their new value.
    let counters: BTreeMap<String, u32> = after
        .counters
        .iter()
        .filter(|(k, n)| before.counters.get(*k) != Some(n))
        .map(|(k, n)| (counter_name(k), *n))
        .collect();
    let digests: BTreeMap<&String, &Value> =
        after.digests.iter().filter(|(k, d)| before.digests.get(*k) != Some(d)).collect();
    json!({
        "outcome": outcome,
        "tickets": tickets,
        "queued": queued,
        "outboxChanged": failed,
        "quarantined": quarantined,
        "counters": counters,
        "digests": digests,
    })
}

/// `notify:1` → "notifications on #1", `agent:agent_bob` → "notifications
/// to agent_bob", an address → "acknowledgements to ADDRESS".
fn counter_name(key: &str) -> String {
    if let Some(n) = key.strip_prefix("notify:") {
        format!("notifications on #{n}")
    } else if let Some(a) = key.strip_prefix("agent:") {
        format!("notifications to {a}")
    } else {
        format!("acknowledgements to {key}")
    }
}

/// Runs `name`'s chain in a fresh desk; the last mail's decision.
async fn run(name: &str, ending: Ending) -> Value {
    let w = golden_world();
    let mut last = Value::Null;
    for (i, f) in chain(name).iter().enumerate() {
        let raw = ending.apply(&resolve(&w, &f.text, &f.name));
        let before = state(&w);
        w.ingest(i as u32 + 1, raw).await;
        last = decision(&w, &before, &state(&w));
    }
    last
}

/// The lines that differ, with one line of context.
fn diff(golden: &str, actual: &str) -> String {
    // A line diff by longest common subsequence (the files are small), so
    // one line gained or lost shows as that line, not as a shifted tail.
    let (g, a): (Vec<&str>, Vec<&str>) = (golden.lines().collect(), actual.lines().collect());
    let mut common = vec![vec![0usize; a.len() + 1]; g.len() + 1];
    for i in (0..g.len()).rev() {
        for j in (0..a.len()).rev() {
            common[i][j] = if g[i] == a[j] { common[i + 1][j + 1] + 1 } else { common[i + 1][j].max(common[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < g.len() || j < a.len() {
        if i < g.len() && j < a.len() && g[i] == a[j] {
            (i, j) = (i + 1, j + 1);
        } else if j < a.len() && (i == g.len() || common[i][j + 1] >= common[i + 1][j]) {
            out.push_str(&format!("  + {}\n", a[j]));
            j += 1;
        } else {
            out.push_str(&format!("  - {}\n", g[i]));
            i += 1;
        }
    }
    out
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON");
    s.push('\n');
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fixture_gets_its_golden_decision_with_lf_and_crlf() {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("read tests/fixtures/decide")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| p.file_stem().and_then(|s| s.to_str()).expect("utf-8 name").to_owned())
        .collect();
    names.sort();
    let mut failures = Vec::new();
    let mut runs = BTreeMap::from([("LF", 0), ("CRLF", 0)]);
    for name in &names {
        let golden_path = fixture_dir().join(format!("{name}.json"));
        let failed_path = fixture_dir().join(format!("{name}.failed"));
        let golden: Option<Value> =
            std::fs::read_to_string(&golden_path).ok().map(|t| serde_json::from_str(&t).expect("golden is JSON"));
        let mut ok = true;
        for (label, ending) in [("LF", Ending::Lf), ("CRLF", Ending::Crlf)] {
            let actual = run(name, ending).await;
            *runs.get_mut(label).unwrap() += 1;
            if golden.as_ref() != Some(&actual) {
                ok = false;
                std::fs::write(&failed_path, pretty(&actual)).expect("write .failed");
                failures.push(match &golden {
                    Some(g) => format!(
                        "{name} ({label}): differs from {name}.json (- golden, + actual; all of it in {name}.failed)\n{}",
                        diff(&pretty(g), &pretty(&actual))
                    ),
                    None => format!("{name} ({label}): no {name}.json; the decision is in {name}.failed"),
                });
                break;
            }
        }
        if ok {
            let _ = std::fs::remove_file(&failed_path);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} decision fixtures failed:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
    assert!(runs.values().all(|n| *n > 0), "no fixture ran: {runs:?}");
    assert!(names.len() >= MIN_FIXTURES, "only {} fixtures in {}", names.len(), fixture_dir().display());
}
