//! Bodies of the mail ticketd writes itself. Built-in defaults; an admin can
//! replace any of them with a file of the same name in `desk.templates_dir`.
//! Placeholders are `{{name}}`; unknown ones are left as written.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    pub ack: String,
    pub agent_notify: String,
    pub resolved: String,
    pub command_error: String,
    pub receipt: String,
    /// To the customer of a ticket pending too long (#19).
    pub pending_reminder: String,
}

const ACK: &str = "Hello,

thank you for writing to {{display_name}}. We have opened ticket #{{number}}
({{title}}) and will get back to you soon.

To add anything, just reply to this message and keep [{{tag}} #{{number}}] in
the subject.

-- 
{{display_name}}
";

const AGENT_NOTIFY: &str = "{{event}}: {{title}}
From: {{customer}}
Status: {{status}}   Priority: {{priority}}   Category: {{category}}

{{message}}

-- 
Reply to this mail to answer the customer. Lines at the top such as
#status resolved, #priority high, #assign me, #tag x or #note change the ticket.
";

const RESOLVED: &str = "Hello,

your ticket #{{number}} ({{title}}) has been resolved.

{{resolution}}

If anything is still wrong, just reply to this message.

-- 
{{display_name}}
";

const COMMAND_ERROR: &str = "Your mail to ticket #{{number}} was not applied.

{{errors}}

Nothing was changed and nothing was sent to the customer. Fix the line and
send it again.
";

const RECEIPT: &str = "Applied to ticket #{{number}}:

{{changes}}
";

const PENDING_REMINDER: &str = "Hello,

your ticket #{{number}} ({{title}}) is waiting for your answer.
{{next_step}}
To answer, just reply to this message.

-- 
{{display_name}}
";

impl Default for Templates {
    fn default() -> Self {
        Templates {
            ack: ACK.into(),
            agent_notify: AGENT_NOTIFY.into(),
            resolved: RESOLVED.into(),
            command_error: COMMAND_ERROR.into(),
            receipt: RECEIPT.into(),
            pending_reminder: PENDING_REMINDER.into(),
        }
    }
}

impl Templates {
    /// Defaults, overridden by `ack.txt`, `agent_notify.txt`, `resolved.txt`,
    /// `command_error.txt`, `receipt.txt` and `pending_reminder.txt` where
    /// present.
    pub fn load(dir: Option<&Path>) -> std::io::Result<Templates> {
        let mut t = Templates::default();
        let Some(dir) = dir else { return Ok(t) };
        for (name, slot) in [
            ("ack.txt", &mut t.ack),
            ("agent_notify.txt", &mut t.agent_notify),
            ("resolved.txt", &mut t.resolved),
            ("command_error.txt", &mut t.command_error),
            ("receipt.txt", &mut t.receipt),
            ("pending_reminder.txt", &mut t.pending_reminder),
        ] {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(s) => *slot = s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(t)
    }
}

pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = after[..end].trim();
                match vars.iter().find(|(k, _)| *k == key) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_and_keeps_unknown() {
        assert_eq!(render("#{{number}} {{ title }} {{x}} {{", &[("number", "4"), ("title", "T")]), "#4 T {{x}} {{");
    }
}
