//! Commands on the leading lines of an agent's mail (`#status resolved`, …).

use crate::config::Config;
use crate::ticket::{Category, Priority, Status};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status(Status),
    Priority(Priority),
    Category(Category),
    /// An agent id, already resolved from `me`, an id or an address.
    Assign(String),
    Tag(Vec<String>),
    Untag(Vec<String>),
    Resolution(String),
    /// The rest of the mail is an internal note, not relayed.
    Note,
    /// Block the ticket's sender: the ticket is closed and tagged `spam`,
    /// and their later mail is held (the rest of the mail is a note).
    Block,
    /// Merge this ticket into that one (#19), after everything else.
    Merge(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub line: usize,
    pub text: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub commands: Vec<Command>,
    pub errors: Vec<CommandError>,
    /// The text after the command lines.
    pub rest: String,
}

/// A leading line is a command when it starts with `#` and a letter; the
/// first other non-blank line ends the command block.
pub fn parse(text: &str, me: &str, cfg: &Config) -> Parsed {
    let mut out = Parsed::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.is_empty() {
            i += 1;
            continue;
        }
        let Some(body) = line.strip_prefix('#').filter(|b| b.starts_with(|c: char| c.is_ascii_alphabetic())) else {
            break;
        };
        let (word, arg) = match body.split_once(char::is_whitespace) {
            Some((w, a)) => (w, a.trim()),
            None => (body, ""),
        };
        let mut fail = |why: String| out.errors.push(CommandError { line: i + 1, text: line.to_owned(), why });
        let needs_arg = |what: &str| format!("#{word} needs {what}");
        match word.to_ascii_lowercase().as_str() {
            "status" | "priority" | "category" if arg.is_empty() => fail(needs_arg("a value")),
            "status" => match arg.parse() {
                Ok(s) => out.commands.push(Command::Status(s)),
                Err(e) => fail(e.to_string()),
            },
            "priority" => match arg.parse() {
                Ok(p) => out.commands.push(Command::Priority(p)),
                Err(e) => fail(e.to_string()),
            },
            "category" => match arg.parse() {
                Ok(c) => out.commands.push(Command::Category(c)),
                Err(e) => fail(e.to_string()),
            },
            "assign" => {
                let found = if arg.eq_ignore_ascii_case("me") {
                    Some(me.to_owned())
                } else {
                    cfg.agents
                        .iter()
                        .find(|a| a.id.eq_ignore_ascii_case(arg) || a.email.eq_ignore_ascii_case(arg))
                        .map(|a| a.id.clone())
                };
                match found {
                    Some(id) => out.commands.push(Command::Assign(id)),
                    None if arg.is_empty() => fail(needs_arg("an agent id or \"me\"")),
                    None => fail(format!(
                        "unknown agent {arg:?}: expected \"me\" or one of {}",
                        cfg.agents.iter().map(|a| a.id.as_str()).collect::<Vec<_>>().join(", ")
                    )),
                }
            }
            "tag" | "untag" => {
                let tags: Vec<String> =
                    arg.split([',', ' ']).map(|t| t.trim().to_ascii_lowercase()).filter(|t| !t.is_empty()).collect();
                if tags.is_empty() {
                    fail(needs_arg("at least one tag"));
                } else if let Some(bad) = tags.iter().find(|t| t.chars().any(|c| c.is_control() || c == '"')) {
                    fail(format!("invalid tag {bad:?}"));
                } else if word.eq_ignore_ascii_case("tag") {
                    out.commands.push(Command::Tag(tags));
                } else {
                    out.commands.push(Command::Untag(tags));
                }
            }
            "block" if !arg.is_empty() => fail("#block takes no value: it blocks the ticket's sender".into()),
            "block" => out.commands.push(Command::Block),
            "merge" => match merge_arg(arg) {
                Some(n) => out.commands.push(Command::Merge(n)),
                None => fail(needs_arg("the ticket to merge into, e.g. #merge 42")),
            },
            "resolution" if arg.is_empty() => fail(needs_arg("text")),
            "resolution" => out.commands.push(Command::Resolution(arg.to_owned())),
            "note" => {
                out.commands.push(Command::Note);
                if !arg.is_empty() {
                    // `#note text` on one line: the text is the note.
                    i += 1;
                    let mut rest = vec![arg];
                    rest.extend(&lines[i..]);
                    out.rest = rest.join("\n").trim().to_owned();
                    return out;
                }
            }
            other => fail(format!(
                "unknown command #{other}: expected #status, #priority, #category, #assign, #tag, #untag, #resolution, #note, #block or #merge"
            )),
        }
        i += 1;
    }
    out.rest = lines[i.min(lines.len())..].join("\n").trim().to_owned();
    out
}

/// `42`, `#42` or `support_ticket_42`.
fn merge_arg(arg: &str) -> Option<u64> {
    crate::ticket::parse_ticket_ref(arg.trim().trim_start_matches('#')).filter(|n| *n > 0)
}

/// The ticket a `#merge N` among the leading command lines names: what
/// the desk must look up before the rules run (they read no store).
pub fn merge_target(text: &str) -> Option<u64> {
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        let body = line.strip_prefix('#').filter(|b| b.starts_with(|c: char| c.is_ascii_alphabetic()))?;
        let (word, arg) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        if word.eq_ignore_ascii_case("merge") {
            return merge_arg(arg);
        }
        if word.eq_ignore_ascii_case("note") && !arg.is_empty() {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[store]\npath = \"/tmp/x\"\n[smtp]\nhost = \"h\"\ntls = \"none\"\n[[mailboxes]]\nname = \"s\"\naddress = \"s@x.test\"\nhost = \"h\"\ntls = \"none\"\npassword = \"p\"\n[[agents]]\nid = \"agent_alice\"\nemail = \"alice@x.test\"\n[[agents]]\nid = \"agent_bob\"\nemail = \"bob@x.test\"\n").unwrap();
        Config::load_with_env(&p, Some(Default::default())).unwrap()
    }

    #[test]
    fn leading_commands_are_parsed_and_the_rest_kept() {
        let p = parse(
            "\n#status pending\n#assign bob@x.test\n#tag a,b c\nHello #status done\n#priority low",
            "agent_alice",
            &cfg(),
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(
            p.commands,
            vec![
                Command::Status(Status::Pending),
                Command::Assign("agent_bob".into()),
                Command::Tag(vec!["a".into(), "b".into(), "c".into()])
            ]
        );
        assert_eq!(p.rest, "Hello #status done\n#priority low", "commands only count at the top");
    }

    #[test]
    fn errors_name_the_line_and_the_reason() {
        let p = parse("#status open\n#frobnicate\n#assign carol\n#priority", "agent_alice", &cfg());
        let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert!(p.errors[0].why.starts_with("unknown command #frobnicate"));
        assert!(p.errors[1].why.contains("unknown agent \"carol\""));
        assert_eq!(p.errors[2].why, "#priority needs a value");
    }

    #[test]
    fn merge_names_the_survivor() {
        let p = parse("#merge 42\nSame problem as #42.", "agent_alice", &cfg());
        assert_eq!(p.commands, vec![Command::Merge(42)]);
        assert_eq!(p.rest, "Same problem as #42.");
        assert_eq!(parse("#merge #7", "agent_alice", &cfg()).commands, vec![Command::Merge(7)]);
        assert_eq!(parse("#merge support_ticket_7", "agent_alice", &cfg()).commands, vec![Command::Merge(7)]);
        let bad = parse("#merge soon", "agent_alice", &cfg());
        assert_eq!(bad.errors.len(), 1);
        assert!(bad.errors[0].why.contains("#merge needs the ticket to merge into"), "{:?}", bad.errors);
        assert_eq!(merge_target("\n#status open\n#merge 42\nhi"), Some(42));
        assert_eq!(merge_target("hi\n#merge 42"), None, "commands only count at the top");
        assert_eq!(merge_target("#note #merge 42"), None);
    }

    #[test]
    fn note_takes_the_rest_and_me_is_the_sender() {
        let p = parse("#assign me\n#note call back tomorrow\nsecond line", "agent_alice", &cfg());
        assert_eq!(p.commands, vec![Command::Assign("agent_alice".into()), Command::Note]);
        assert_eq!(p.rest, "call back tomorrow\nsecond line");
        let p = parse("#1 is the line number\nhi", "agent_alice", &cfg());
        assert!(p.commands.is_empty() && p.errors.is_empty());
        assert_eq!(p.rest, "#1 is the line number\nhi");
    }
}
