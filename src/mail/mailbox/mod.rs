//! Mailbox files: the mbox and Maildir exports other mail systems write,
//! read one message at a time in bounded memory, and the mboxrd entry
//! ticketd writes when it hands a ticket's mail back.
//!
//! mbox (mboxo and mboxrd, [`mbox`]): a message starts at a `From ` line
//! that follows an empty line (or starts the file) and carries a time
//! (`From sender Thu Oct 24 19:13:43 2024`); the empty line before it
//! belongs to the format, and `>From `, `>>From `… lose one `>`. Maildir
//! ([`maildir`]): the files of `cur/` and `new/` (never `tmp/`), of the
//! folder and of every Maildir++ subfolder (`.Name/`), in delivery order.
//!
//! A message over the size limit given keeps only its header
//! ([`Body::TooLarge`]); the reader of a file never follows a symlink out
//! of the paths it was given and never blocks on a FIFO.

pub mod maildir;
pub mod mbox;

use std::io;
use std::path::{Path, PathBuf};

pub use maildir::{MailFile, is_maildir, maildir_files, read_message};
pub use mbox::{MboxReader, is_from_line, mboxrd_entry};

/// What is kept of a message over the size limit.
pub const HEADER_CAP: usize = 256 << 10;

/// A file or directory that could not be read, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// Wraps an `io::Error` with the path it happened on.
pub fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ReadError + '_ {
    move |source| ReadError { path: path.to_owned(), source }
}

/// One message as found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Whole(Vec<u8>),
    /// Over the size limit: its header only (and how big it was).
    TooLarge {
        size: u64,
        header: Vec<u8>,
    },
}

/// One message of an mbox and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Byte offset of its `From ` line in the file.
    pub offset: u64,
    pub body: Body,
}

/// The header block of `bytes`: up to and including the first empty line,
/// at most [`HEADER_CAP`].
pub fn header_of(bytes: &[u8]) -> Vec<u8> {
    let end = memchr::memmem::find(bytes, b"\n\n")
        .map(|i| i + 2)
        .into_iter()
        .chain(memchr::memmem::find(bytes, b"\n\r\n").map(|i| i + 3))
        .min()
        .unwrap_or(bytes.len());
    bytes[..end.min(HEADER_CAP)].to_vec()
}

/// A real directory, not a symlink to one: a reader stays inside the paths
/// it was given.
pub fn real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Opens a message file without following a symlink (unless `follow`: a
/// path the operator named) and without blocking (a FIFO would hang the
/// reader), and only when it is a regular file.
pub fn open_regular(path: &Path, follow: bool) -> io::Result<(std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = libc::O_NONBLOCK | if follow { 0 } else { libc::O_NOFOLLOW };
    let f = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file (a FIFO, device or socket)"));
    }
    Ok((f, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_ends_at_the_first_empty_line_in_either_line_ending() {
        assert_eq!(header_of(b"A: b\n\nbody\n\nmore"), b"A: b\n\n");
        assert_eq!(header_of(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
        assert_eq!(header_of(b"A: b\nno end"), b"A: b\nno end");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let err = open_regular(&fifo, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let link = dir.path().join("link");
        std::fs::write(dir.path().join("real"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), &link).unwrap();
        assert!(open_regular(&link, false).is_err(), "a symlink inside a Maildir is not followed");
        assert!(open_regular(&link, true).is_ok(), "a path the operator named may be a symlink");
    }
}
