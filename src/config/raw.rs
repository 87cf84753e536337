//! What is parsed: the file's shape as serde sees it. Every leaf is
//! [`Lenient`], so a value of the wrong type is kept as a problem instead of
//! ending deserialisation, and `check-config` lists every problem in one run.
//! Nothing here judges a value; `check.rs` does.

use std::path::PathBuf;

use serde::Deserialize;

/// A leaf value that does not fail deserialisation when it has the wrong
/// type: the problem is kept and reported with every other one, so
/// check-config lists all of them in one run.
#[derive(Debug)]
pub(super) struct Lenient<T>(pub(super) Result<T, String>);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let first = serde_json::from_value::<T>(v.clone());
        Ok(Lenient(match (first, &v) {
            (Ok(t), _) => Ok(t),
            // Environment overrides arrive as strings: "2525", "true".
            (Err(e), serde_json::Value::String(s)) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(parsed) if !parsed.is_string() => serde_json::from_value::<T>(parsed).map_err(|_| e.to_string()),
                _ => Err(e.to_string()),
            },
            (Err(e), _) => Err(e.to_string()),
        }))
    }
}

pub(super) type L<T> = Option<Lenient<T>>;

#[derive(Deserialize, Default)]
pub(super) struct RawConfig {
    pub(super) store: Option<RawStore>,
    #[serde(default)]
    pub(super) desk: RawDesk,
    #[serde(default)]
    pub(super) attachments: RawAttachments,
    pub(super) smtp: Option<RawSmtp>,
    #[serde(default)]
    pub(super) mailboxes: Vec<RawMailbox>,
    #[serde(default)]
    pub(super) agents: Vec<RawAgent>,
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
    pub(super) api: Option<RawApi>,
    pub(super) console: Option<RawConsole>,
    pub(super) cluster: Option<RawCluster>,
    #[serde(default)]
    pub(super) spam: RawSpam,
    #[serde(default)]
    pub(super) sla: Vec<RawSlaRule>,
    #[serde(default)]
    pub(super) calendars: Vec<RawCalendarDef>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawSpam {
    pub(super) border: L<String>,
    pub(super) placement: L<String>,
    pub(super) border_host: L<String>,
    pub(super) score_threshold: L<f64>,
    pub(super) reply_hard_limit: L<f64>,
    pub(super) rspamd_url: L<String>,
    pub(super) rspamd_timeout: L<String>,
    pub(super) unreachable: L<String>,
    pub(super) retention_days: L<u32>,
    pub(super) block: L<Vec<String>>,
}

/// One `[[sla]]` table (the shape `sla::config::build` checks).
#[derive(Deserialize)]
pub(super) struct RawSlaRule {
    pub(super) priority: L<String>,
    pub(super) category: L<String>,
    pub(super) mailbox: L<String>,
    pub(super) first_response: L<String>,
    pub(super) resolution: L<String>,
    pub(super) calendar: L<String>,
}

/// One `[[calendars]]` table.
#[derive(Deserialize)]
pub(super) struct RawCalendarDef {
    pub(super) name: L<String>,
    pub(super) timezone: L<String>,
    pub(super) hours: Option<RawWeek>,
    pub(super) holidays: L<Vec<String>>,
}

/// `hours = { mon = "09:00-17:00", … }`.
#[derive(Deserialize)]
pub(super) struct RawWeek {
    pub(super) mon: L<String>,
    pub(super) tue: L<String>,
    pub(super) wed: L<String>,
    pub(super) thu: L<String>,
    pub(super) fri: L<String>,
    pub(super) sat: L<String>,
    pub(super) sun: L<String>,
}

#[derive(Deserialize)]
pub(super) struct RawCluster {
    pub(super) node: L<String>,
    pub(super) advertise: L<String>,
    pub(super) lease_timeout: L<String>,
    pub(super) forward: L<bool>,
}

#[derive(Deserialize)]
pub(super) struct RawConsole {
    pub(super) enabled: L<bool>,
    pub(super) session_idle: L<String>,
    pub(super) session_max: L<String>,
    pub(super) behind_tls: L<bool>,
    pub(super) public_url: L<String>,
}

#[derive(Deserialize)]
pub(super) struct RawApi {
    pub(super) listen: L<String>,
    pub(super) socket: L<PathBuf>,
    pub(super) token_file: L<PathBuf>,
    pub(super) max_connections: L<usize>,
    pub(super) header_timeout: L<String>,
    pub(super) idle_timeout: L<String>,
    pub(super) public_attachments: L<bool>,
    pub(super) timeout: L<String>,
    pub(super) max_upload_bytes: L<String>,
    pub(super) concurrency: L<usize>,
}

#[derive(Deserialize)]
pub(super) struct RawStore {
    pub(super) path: L<PathBuf>,
    pub(super) attachments_dir: L<PathBuf>,
    pub(super) cache_capacity: L<String>,
    pub(super) retention_days: L<u32>,
    pub(super) backend: L<String>,
    pub(super) url: L<String>,
    pub(super) url_file: L<PathBuf>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawDesk {
    pub(super) subject_tag: L<String>,
    pub(super) display_name: L<String>,
    pub(super) secret_file: L<PathBuf>,
    pub(super) acks_per_sender_per_hour: L<u32>,
    pub(super) notifications_per_ticket_per_hour: L<u32>,
    pub(super) notifications_per_agent_per_hour: L<u32>,
    pub(super) agent_proof_days: L<u32>,
    pub(super) trust_from_header: L<bool>,
    pub(super) trusted_authserv_id: L<String>,
    pub(super) acks_require_aligned_sender: L<bool>,
    pub(super) send_receipts: L<bool>,
    pub(super) max_message_bytes: L<u64>,
    pub(super) clock_interval: L<String>,
    pub(super) message_id_domain: L<String>,
    pub(super) templates_dir: L<PathBuf>,
    pub(super) sla_warn_before: L<String>,
    pub(super) pending_reminder_after: L<String>,
    pub(super) pending_resolve_after: L<String>,
    pub(super) close_resolved_after: L<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawAttachments {
    pub(super) base_url: L<String>,
    pub(super) max_bytes: L<u64>,
}

// Not `#[serde(flatten)]`: flattening hides unknown keys from serde_ignored.
pub(super) struct RawPassword {
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) password_command: Option<String>,
    pub(super) oauth2_token_command: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawSmtp {
    pub(super) host: L<String>,
    pub(super) port: L<u16>,
    pub(super) tls: L<String>,
    pub(super) username: L<String>,
    pub(super) password: L<String>,
    pub(super) password_file: L<PathBuf>,
    pub(super) password_command: L<String>,
    pub(super) oauth2_token_command: L<String>,
    pub(super) hello_name: L<String>,
    pub(super) ca_file: L<PathBuf>,
    pub(super) timeout: L<String>,
    pub(super) retry_initial: L<String>,
    pub(super) retry_max: L<String>,
}

#[derive(Deserialize)]
pub(super) struct RawMailbox {
    pub(super) name: L<String>,
    pub(super) address: L<String>,
    pub(super) display_name: L<String>,
    pub(super) host: L<String>,
    pub(super) port: L<u16>,
    pub(super) tls: L<String>,
    pub(super) username: L<String>,
    pub(super) password: L<String>,
    pub(super) password_file: L<PathBuf>,
    pub(super) password_command: L<String>,
    pub(super) oauth2_token_command: L<String>,
    pub(super) folder: L<String>,
    pub(super) category: L<String>,
    pub(super) priority: L<String>,
    pub(super) tags: L<Vec<String>>,
    pub(super) after: L<String>,
    pub(super) move_to: L<String>,
    pub(super) poll_interval: L<String>,
    pub(super) idle: L<bool>,
    pub(super) batch_size: L<u32>,
    pub(super) ca_file: L<PathBuf>,
    pub(super) timeout: L<String>,
    pub(super) initial: L<String>,
}

#[derive(Deserialize)]
pub(super) struct RawAgent {
    pub(super) id: L<String>,
    pub(super) email: L<String>,
    pub(super) name: L<String>,
    pub(super) token_file: L<PathBuf>,
}

#[derive(Deserialize)]
pub(super) struct RawRule {
    pub(super) subject: L<String>,
    pub(super) body: L<String>,
    pub(super) priority: L<String>,
    pub(super) category: L<String>,
    pub(super) tags: L<Vec<String>>,
}

/// serde_ignored writes `agents.0.shoe`; our own paths say `agents[0].shoe`.
pub(super) fn bracket_indices(path: &str) -> String {
    let mut out = String::new();
    // `?` marks an Option layer, meaningless to a reader.
    for part in path.split('.').filter(|p| *p != "?") {
        if !out.is_empty() && part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}
