//! Who is writing: our own generated Message-IDs, the agent-only ids that
//! carry an HMAC, and the DKIM verdict of a trusted Authentication-Results.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::{Agent, Config};
use crate::mail::{InboundMail, normalise_id};

const PREFIX: &str = "ticketd.";

/// A deterministic tag for the mail we generate in answer to one inbound
/// mail, so a re-run of the same ingest produces the same Message-IDs.
pub fn tag(seed: &str, kind: &str, n: usize) -> String {
    let d = Sha256::digest(format!("{seed}\n{kind}\n{n}").as_bytes());
    hex::encode(&d[..6])
}

pub fn message_id(number: u64, kind: &str, tag: &str, domain: &str) -> String {
    format!("{PREFIX}{number}.{kind}.{tag}@{domain}")
}

fn mac(secret: &[u8], number: u64, agent_id: &str, tag: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(format!("{number}:{}:{tag}", agent_id.to_ascii_lowercase()).as_bytes());
    hex::encode(&m.finalize().into_bytes()[..12])
}

/// The agent-only Message-ID of a notification: only someone who received
/// it can reference it, which is the proof an agent's reply carries.
pub fn agent_message_id(secret: &[u8], number: u64, agent_id: &str, tag: &str, domain: &str) -> String {
    let agent = agent_id.to_ascii_lowercase();
    format!("{PREFIX}{number}.n.{agent}.{tag}.{}@{domain}", mac(secret, number, &agent, tag))
}

/// Does `id` prove that `agent_id` received a notification for ticket `number`?
pub fn verify_agent_id(secret: &[u8], id: &str, number: u64, agent_id: &str) -> bool {
    let id = normalise_id(id);
    let Some(local) = id.strip_prefix(PREFIX).and_then(|s| s.split('@').next()) else { return false };
    let parts: Vec<&str> = local.split('.').collect();
    let [n, "n", agent, tag, given] = parts.as_slice() else { return false };
    if n.parse::<u64>().ok() != Some(number) || !agent.eq_ignore_ascii_case(agent_id) {
        return false;
    }
    let want = mac(secret, number, agent, tag);
    // Constant-time: the MAC is a credential.
    want.len() == given.len() && want.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A Message-ID that ticketd generated (under our domain).
pub fn is_our_id(id: &str, domain: &str) -> bool {
    let id = normalise_id(id);
    id.starts_with(PREFIX) && id.ends_with(&format!("@{}", domain.to_ascii_lowercase()))
}

/// The configured agent this mail is provably from, if any.
pub fn proven_agent<'c>(mail: &InboundMail, ticket: Option<u64>, cfg: &'c Config, secret: &[u8]) -> Option<&'c Agent> {
    let from = mail.from.as_ref()?;
    let agent = cfg.agent_by_email(&from.address)?;
    if cfg.desk.trust_from_header {
        return Some(agent);
    }
    if let Some(n) = ticket
        && mail.parent_ids().any(|id| verify_agent_id(secret, id, n, &agent.id))
    {
        return Some(agent);
    }
    if let Some(authserv) = &cfg.desk.trusted_authserv_id
        && dkim_pass(&mail.auth_results, authserv, &from.address)
    {
        return Some(agent);
    }
    None
}

/// RFC 8601: only the topmost Authentication-Results from our own
/// authserv-id counts (the border MTA strips forged ones below it).
pub fn dkim_pass(headers: &[String], authserv_id: &str, from: &str) -> bool {
    let Some(domain) = from.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()) else { return false };
    let Some(ours) = headers.iter().find(|h| {
        h.split(';')
            .next()
            .and_then(|s| s.split_whitespace().next())
            .is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
    }) else {
        return false;
    };
    ours.split(';').skip(1).any(|clause| {
        let clause = clause.trim().to_ascii_lowercase();
        let mut words = clause.split_whitespace();
        words.next() == Some("dkim=pass")
            && words.any(|w| {
                w.strip_prefix("header.d=").is_some_and(|d| d == domain)
                    || w.strip_prefix("header.i=").is_some_and(|i| i.rsplit('@').next() == Some(&domain))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_verify_only_for_their_ticket_and_agent() {
        let s = b"0123456789abcdef0123";
        let id = agent_message_id(s, 42, "agent_Alice", "abc123", "example.test");
        assert!(verify_agent_id(s, &format!("<{id}>"), 42, "agent_alice"));
        assert!(!verify_agent_id(s, &id, 43, "agent_alice"));
        assert!(!verify_agent_id(s, &id, 42, "agent_bob"));
        assert!(!verify_agent_id(b"another-secret-entirely", &id, 42, "agent_alice"));
        let forged = id.replace(".n.agent_alice.abc123.", ".n.agent_alice.abc124.");
        assert!(!verify_agent_id(s, &forged, 42, "agent_alice"));
        assert!(is_our_id(&id, "EXAMPLE.test"));
        assert!(!is_our_id("ticketd.1.ack.x@evil.test", "example.test"));
    }

    #[test]
    fn dkim_needs_our_authserv_and_the_from_domain() {
        let h = vec!["mx.example.test; dkim=pass header.d=corp.test header.s=sel; spf=pass".to_owned()];
        assert!(dkim_pass(&h, "mx.example.test", "alice@corp.test"));
        assert!(!dkim_pass(&h, "mx.example.test", "alice@other.test"));
        assert!(!dkim_pass(&h, "mx.evil.test", "alice@corp.test"));
        let fail = vec!["mx.example.test; dkim=fail header.d=corp.test".to_owned()];
        assert!(!dkim_pass(&fail, "mx.example.test", "alice@corp.test"));
    }
}
