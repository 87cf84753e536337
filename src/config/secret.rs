//! Credentials: where one comes from ([`Secret`]), and reading it when a
//! connection needs it, so rotated files and tokens are picked up without a
//! restart. The value is never logged.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a credential comes from. Resolved at each connection so rotated
/// files and tokens are picked up without a restart; never logged.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
    Command(String),
    /// XOAUTH2 bearer token printed by a command.
    OAuth2Command(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret::Inline(<redacted>)"),
            Secret::File(p) => write!(f, "Secret::File({})", p.display()),
            Secret::Command(_) => f.write_str("Secret::Command(<redacted>)"),
            Secret::OAuth2Command(_) => f.write_str("Secret::OAuth2Command(<redacted>)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read password file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("password command failed: {0}")]
    Command(String),
}

/// Largest credential file read (a token, a password, the desk secret).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Longest a `password_command` or `oauth2_token_command` may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads a credential file: a regular file (after symlinks) of at most
/// [`MAX_SECRET_FILE_BYTES`]. Opened without blocking, so a FIFO put
/// there fails at once instead of hanging the start; `/dev/zero` and other
/// devices are refused instead of read forever.
pub fn read_secret_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut buf = Vec::new();
    f.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("larger than {MAX_SECRET_FILE_BYTES} bytes: not a credential"),
        ));
    }
    Ok(buf)
}

impl Secret {
    pub fn is_oauth2(&self) -> bool {
        matches!(self, Secret::OAuth2Command(_))
    }

    /// The credential's current value, without a trailing newline.
    pub async fn resolve(&self) -> Result<String, SecretError> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(path) => {
                let p = path.clone();
                let read = tokio::task::spawn_blocking(move || read_secret_file(&p))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                read.and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
                    .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|source| SecretError::File { path: path.clone(), source })
            }
            Secret::Command(cmd) | Secret::OAuth2Command(cmd) => {
                let run = tokio::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output();
                let out = tokio::time::timeout(COMMAND_TIMEOUT, run)
                    .await
                    .map_err(|_| SecretError::Command(format!("timed out after {}s", COMMAND_TIMEOUT.as_secs())))?
                    .map_err(|e| SecretError::Command(e.to_string()))?;
                if !out.status.success() {
                    return Err(SecretError::Command(format!("exited with {}", out.status)));
                }
                let s =
                    String::from_utf8(out.stdout).map_err(|_| SecretError::Command("output is not UTF-8".into()))?;
                Ok(s.trim_end_matches(['\r', '\n']).to_owned())
            }
        }
    }
}
