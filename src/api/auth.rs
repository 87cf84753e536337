//! Bearer tokens. The admin token (`api.token_file`) acts as the admin, or
//! as any agent named in `X-Ticketd-Act-As` (that is how `ticketd tickets
//! reply --as agent_alice` works through the API); an agent's own token
//! (`[[agents]] token_file`) acts as that agent only. Tokens are compared
//! as SHA-256 digests in constant time, against every known token, so
//! neither timing nor length says how close a guess was. They are never
//! logged: [`Token`]'s `Debug` is redacted.

use std::fmt;
use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{ApiConfig, Config};
use crate::desk::{ActorRef, DeskError};

/// The header with which the admin token acts as an agent.
pub const ACT_AS: &str = "x-ticketd-act-as";

/// Shorter tokens are refused: they can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// A bearer token's value.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn new(value: impl Into<String>) -> Token {
        Token(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "the token file {} must hold one token of at least {MIN_TOKEN_LEN} visible ASCII characters (no spaces), e.g. 64 hex digits",
        path.display()
    )]
    Malformed { path: PathBuf },
    #[error("the token files {} and {} hold the same token: every token needs its own value", a.display(), b.display())]
    Duplicate { a: PathBuf, b: PathBuf },
}

/// Reads a token file: one line, the trailing newline trimmed.
pub fn read_token(path: &Path) -> Result<Token, TokenError> {
    let bytes =
        crate::config::read_secret_file(path).map_err(|source| TokenError::Read { path: path.to_owned(), source })?;
    let text = String::from_utf8(bytes).map_err(|_| TokenError::Malformed { path: path.to_owned() })?;
    let t = text.trim_end_matches(['\r', '\n']);
    if t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::Malformed { path: path.to_owned() });
    }
    Ok(Token(t.to_owned()))
}

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Agent(String),
}

/// An authenticated request: who holds the token, and as whom it acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub actor: ActorRef,
}

pub struct Tokens {
    /// Swapped whole when the files are read again (SIGHUP).
    known: std::sync::RwLock<Vec<([u8; 32], Principal)>>,
}

/// The header carrying the CLI's challenge to a daemon over TCP.
pub const CHALLENGE: &str = "x-ticketd-challenge";

/// What proves a daemon over TCP before the CLI sends it the admin token
/// (anything may answer on a loopback port while the daemon is down): an
/// HMAC, keyed with the SHA-256 of the admin token, of the CLI's fresh
/// challenge and the address the connection reached. Bound to that
/// address, an answer obtained through another listener of the daemon (a
/// squatter relaying the challenge) does not fit.
pub fn proof(token_digest: &[u8; 32], challenge: &str, local: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(token_digest).expect("HMAC takes any key length");
    mac.update(b"ticketd api proof\n");
    mac.update(challenge.as_bytes());
    mac.update(b"\n");
    mac.update(local.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The CLI's side of [`proof`].
pub fn expected_proof(admin: &Token, challenge: &str, local: &str) -> String {
    proof(&digest(admin.expose()), challenge, local)
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} known)", self.known.read().unwrap_or_else(|e| e.into_inner()).len())
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Tokens {
    /// Reads the admin token and every agent's.
    pub fn load(api: &ApiConfig) -> Result<Tokens, TokenError> {
        Ok(Tokens { known: std::sync::RwLock::new(Self::read_all(api)?) })
    }

    /// Reads the token files again; on any error the old tokens stay.
    pub fn reload(&self, api: &ApiConfig) -> Result<(), TokenError> {
        let fresh = Self::read_all(api)?;
        *self.known.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    fn read_all(api: &ApiConfig) -> Result<Vec<([u8; 32], Principal)>, TokenError> {
        let mut files = vec![(api.token_file.clone(), Principal::Admin)];
        files.extend(api.agent_tokens.iter().map(|(id, p)| (p.clone(), Principal::Agent(id.clone()))));
        let mut known: Vec<([u8; 32], Principal)> = Vec::new();
        let mut paths: Vec<PathBuf> = Vec::new();
        for (path, who) in files {
            let d = digest(read_token(&path)?.expose());
            if let Some(i) = known.iter().position(|(k, _)| *k == d) {
                return Err(TokenError::Duplicate { a: paths[i].clone(), b: path });
            }
            known.push((d, who));
            paths.push(path);
        }
        Ok(known)
    }

    /// For tests and the benchmark: tokens given directly.
    pub fn from_values(values: Vec<(Token, Principal)>) -> Tokens {
        Tokens { known: std::sync::RwLock::new(values.into_iter().map(|(t, p)| (digest(t.expose()), p)).collect()) }
    }

    /// The daemon's answer to a challenge (see [`proof`]); none without an admin token.
    pub fn prove(&self, challenge: &str, local: &str) -> Option<String> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        let (key, _) = known.iter().find(|(_, p)| *p == Principal::Admin)?;
        Some(proof(key, challenge, local))
    }

    /// The SHA-256 of `who`'s token (a console session remembers which
    /// token it came from, and ends when that token is replaced).
    pub fn digest_of(&self, who: &Principal) -> Option<[u8; 32]> {
        self.known.read().unwrap_or_else(|e| e.into_inner()).iter().find(|(_, p)| p == who).map(|(d, _)| *d)
    }

    /// The principal of `presented`, looked at every known token.
    pub fn check(&self, presented: &str) -> Option<Principal> {
        let d = digest(presented);
        let mut found = None;
        for (k, who) in self.known.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if bool::from(k.ct_eq(&d)) {
                found = Some(who.clone());
            }
        }
        found
    }

    /// Authenticates a request: a bearer token, and the agent it acts as.
    pub fn caller(&self, headers: &HeaderMap, cfg: &Config) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else { return Err(ApiError::unauthorized(false)) };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| ApiError::unauthorized(false))?;
        let principal = self.check(presented).ok_or_else(|| ApiError::unauthorized(true))?;
        let act_as = match headers.get(ACT_AS) {
            None => None,
            Some(v) => {
                let id =
                    v.to_str().ok().map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| {
                        ApiError::invalid("X-Ticketd-Act-As", "X-Ticketd-Act-As must name an agent id")
                    })?;
                if !cfg.agents.iter().any(|a| a.id == id) {
                    // The desk's own words, so the CLI says the same either way.
                    let shown = crate::text::truncate_chars(&crate::text::clean_line(id), 64);
                    return Err(DeskError::invalid("actor", format!("unknown agent {shown:?}")).into());
                }
                Some(id.to_owned())
            }
        };
        let actor = match (&principal, act_as) {
            (Principal::Admin, None) => ActorRef::Admin,
            (Principal::Admin, Some(id)) => ActorRef::Agent(id),
            (Principal::Agent(me), None) => ActorRef::Agent(me.clone()),
            (Principal::Agent(me), Some(id)) if *me == id => ActorRef::Agent(id),
            (Principal::Agent(_), Some(_)) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "an agent token acts as its own agent only; X-Ticketd-Act-As needs the admin token",
                )
                .field("X-Ticketd-Act-As"));
            }
        };
        Ok(Caller { principal, actor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::from_values(vec![
            (Token("admin-token-0123456789".into()), Principal::Admin),
            (Token("alice-token-0123456789".into()), Principal::Agent("agent_alice".into())),
        ])
    }

    #[test]
    fn tokens_name_their_holder_and_nothing_else() {
        let t = tokens();
        assert_eq!(t.check("admin-token-0123456789"), Some(Principal::Admin));
        assert_eq!(t.check("alice-token-0123456789"), Some(Principal::Agent("agent_alice".into())));
        assert_eq!(t.check("admin-token-012345678"), None);
        assert_eq!(t.check(""), None);
        assert_eq!(format!("{:?}", Token("s3cr3t-value-xxxxxx".into())), "Token(<redacted>)");
    }

    #[test]
    fn token_files_are_trimmed_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t");
        std::fs::write(&p, "abcdefabcdefabcdef0123\n").unwrap();
        assert_eq!(read_token(&p).unwrap().expose(), "abcdefabcdefabcdef0123");
        std::fs::write(&p, "short\n").unwrap();
        assert!(matches!(read_token(&p), Err(TokenError::Malformed { .. })));
        std::fs::write(&p, "has a space in the middle of it\n").unwrap();
        let e = read_token(&p).unwrap_err().to_string();
        assert!(!e.contains("space in the middle"), "the error never shows the token: {e}");
    }
}
