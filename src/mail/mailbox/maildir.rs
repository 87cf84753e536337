//! Maildir folders (and Maildir++ subfolders), their files in delivery
//! order, so a reply comes after the mail it answers.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{Body, HEADER_CAP, ReadError, header_of, open_regular, read_err, real_dir};

/// One message file of a Maildir.
#[derive(Debug, Clone)]
pub struct MailFile {
    pub path: PathBuf,
    pub size: u64,
}

/// A directory with a real `cur/` or `new/` in it.
pub fn is_maildir(dir: &Path) -> bool {
    real_dir(&dir.join("cur")) || real_dir(&dir.join("new"))
}

/// Delivery time first (the seconds that start a Maildir name), then name.
fn delivery_order(f: &MailFile) -> (u64, String) {
    let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let secs = name.split('.').next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    (secs, name)
}

/// Every message file of a Maildir and its Maildir++ subfolders, in
/// delivery order. Symlinks and special files are passed over (with a
/// warning): they are not mail, and a symlink leads out of the Maildir.
pub fn maildir_files(root: &Path) -> Result<Vec<MailFile>, ReadError> {
    let mut folders = vec![root.to_owned()];
    for e in std::fs::read_dir(root).map_err(read_err(root))? {
        let e = e.map_err(read_err(root))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && name.starts_with('.') && name.len() > 1 && name != ".." && is_maildir(&e.path()) {
            folders.push(e.path());
        }
    }
    let mut files = Vec::new();
    for folder in &folders {
        for sub in ["cur", "new"] {
            let dir = folder.join(sub);
            if !real_dir(&dir) {
                continue;
            }
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ReadError { path: dir, source: e }),
            };
            for e in entries {
                let e = e.map_err(read_err(&dir))?;
                if e.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let kind = e.file_type().map_err(read_err(&e.path()))?;
                if kind.is_file() {
                    let meta = e.metadata().map_err(read_err(&e.path()))?;
                    files.push(MailFile { path: e.path(), size: meta.len() });
                } else if !kind.is_dir() {
                    tracing::warn!(path = %e.path().display(), "passed over: a symlink or special file, not a message");
                }
            }
        }
    }
    files.sort_by_cached_key(delivery_order);
    Ok(files)
}

/// A Maildir message, whole, or only its header when over `max` bytes.
pub fn read_message(path: &Path, max: usize) -> io::Result<Body> {
    let (file, _) = open_regular(path, false)?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() <= max {
        return Ok(Body::Whole(bytes));
    }
    let size = std::fs::metadata(path)?.len();
    Ok(Body::TooLarge { size, header: header_of(&bytes[..bytes.len().min(HEADER_CAP)]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_files_come_in_delivery_order_across_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (sub, name) in [
            ("new", "1700000300.M1.host"),
            ("cur", "1700000100.M1.host:2,S"),
            (".Archive/cur", "1700000200.M1.host:2,S"),
            ("tmp", "1700000000.M1.host"),
            (".NotAFolder", "1700000000.M2.host"),
        ] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            std::fs::write(root.join(sub).join(name), b"Subject: x\n\nx\n").unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", root.join("cur/1700000150.M9.host")).unwrap();
        let names: Vec<String> =
            maildir_files(root).unwrap().iter().map(|f| f.path.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(
            names,
            ["1700000100.M1.host:2,S", "1700000200.M1.host:2,S", "1700000300.M1.host"],
            "tmp/, a folder that is no Maildir and a symlink are passed over"
        );
    }

    #[test]
    fn a_message_over_the_limit_keeps_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        let mut big = b"Subject: big\n\n".to_vec();
        big.extend(vec![b'x'; 1000]);
        std::fs::write(&p, &big).unwrap();
        assert_eq!(read_message(&p, 2000).unwrap(), Body::Whole(big.clone()));
        assert_eq!(read_message(&p, 100).unwrap(), Body::TooLarge { size: 1014, header: b"Subject: big\n\n".to_vec() });
    }
}
