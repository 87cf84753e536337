//! Blobs (raw mail, attachments) in append-only segment files next to the
//! database: `<dir>/seg-00000001.dat`, … The commit that stores a blob
//! appends it, syncs the segment once, and records where the blob lives in
//! the same atomic batch as the records that name it. So a batch of mail
//! costs one fsync of its bytes whatever its size, and a crash or a failed
//! commit leaves at worst unreferenced bytes at a segment's end.
//!
//! Blobs are content-addressed and immutable: a blob already stored is
//! not written again, and readers never race a writer on the same bytes.
//! Only the store's committer appends.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;

/// A segment is closed (and a new one begun) past this size.
const SEGMENT_BYTES: u64 = 256 << 20;

/// How a blob's bytes are stored.
pub const PLAIN: u8 = 0;
/// LZ4 block with the original size in front (`lz4_flex`'s prepend form).
pub const LZ4: u8 = 1;

/// Where one blob lives, and how it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub segment: u32,
    pub offset: u64,
    /// Bytes in the segment.
    pub len: u64,
    pub codec: u8,
}

impl Loc {
    pub fn encode(self) -> [u8; 21] {
        let mut b = [0u8; 21];
        b[..4].copy_from_slice(&self.segment.to_be_bytes());
        b[4..12].copy_from_slice(&self.offset.to_be_bytes());
        b[12..20].copy_from_slice(&self.len.to_be_bytes());
        b[20] = self.codec;
        b
    }

    pub fn decode(b: &[u8]) -> Option<Loc> {
        if b.len() != 21 {
            return None;
        }
        Some(Loc {
            segment: u32::from_be_bytes(b[..4].try_into().ok()?),
            offset: u64::from_be_bytes(b[4..12].try_into().ok()?),
            len: u64::from_be_bytes(b[12..20].try_into().ok()?),
            codec: b[20],
        })
    }
}

struct Current {
    id: u32,
    file: File,
    len: u64,
    /// Written since the last sync.
    dirty: bool,
}

pub struct Segments {
    dir: PathBuf,
    current: Mutex<Option<Current>>,
    /// Segments closed since the last sync, to sync before the commit.
    closed: Mutex<Vec<File>>,
}

fn err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { what: format!("blob store {}", path.display()), source }
}

fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("seg-{id:08}.dat"))
}

impl Segments {
    pub fn open(dir: &Path) -> Result<Segments, StoreError> {
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        Ok(Segments { dir: dir.to_owned(), current: Mutex::new(None), closed: Mutex::new(Vec::new()) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest segment number on disk (0 when there is none).
    fn last_id(&self) -> Result<u32, StoreError> {
        let mut last = 0;
        for e in std::fs::read_dir(&self.dir).map_err(err(&self.dir))? {
            let e = e.map_err(err(&self.dir))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_prefix("seg-").and_then(|n| n.strip_suffix(".dat")).and_then(|n| n.parse().ok())
            {
                last = last.max(n);
            }
        }
        Ok(last)
    }

    /// Appends `bytes`; returns where they are. Not durable until
    /// [`Segments::sync`], and not findable until the caller records it.
    pub fn append(&self, bytes: &[u8], codec: u8) -> Result<Loc, StoreError> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.as_ref().is_none_or(|c| c.len >= SEGMENT_BYTES) {
            let id = match cur.take() {
                Some(old) => {
                    let id = old.id + 1;
                    if old.dirty {
                        self.closed.lock().unwrap_or_else(|e| e.into_inner()).push(old.file);
                    }
                    id
                }
                // Never append to a segment of an earlier run: its tail may
                // hold bytes a crash left unreferenced, harmless but dead.
                None => self.last_id()? + 1,
            };
            let path = segment_path(&self.dir, id);
            let file = std::fs::OpenOptions::new().create_new(true).append(true).open(&path).map_err(err(&path))?;
            // The new file's name must be durable too.
            File::open(&self.dir).and_then(|d| d.sync_all()).map_err(err(&self.dir))?;
            *cur = Some(Current { id, file, len: 0, dirty: false });
        }
        let c = cur.as_mut().expect("a segment is open");
        let loc = Loc { segment: c.id, offset: c.len, len: bytes.len() as u64, codec };
        let path = segment_path(&self.dir, c.id);
        if let Err(e) = c.file.write_all(bytes) {
            // Part of the bytes may have landed (a full disk): the file must
            // end where `c.len` says, or every later blob of this segment
            // would be recorded short of where it really is. If it cannot be
            // cut back, the segment is retired and the next put starts one.
            if c.file.set_len(c.len).is_err() {
                if let Some(old) = cur.take() {
                    self.closed.lock().unwrap_or_else(|e| e.into_inner()).push(old.file);
                }
            } else {
                c.dirty = true;
            }
            return Err(err(&path)(e));
        }
        c.len += bytes.len() as u64;
        c.dirty = true;
        Ok(loc)
    }

    /// Makes every appended byte durable. After a failed fsync the kernel
    /// may have dropped the dirty pages while the file keeps its length:
    /// the segment is retired, and the commit (which fails) records nothing
    /// of it; its blobs are appended again when their jobs are retried.
    pub fn sync(&self) -> Result<(), StoreError> {
        let r = self.sync_files();
        if r.is_err() {
            drop(self.current.lock().unwrap_or_else(|e| e.into_inner()).take());
            self.closed.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        r
    }

    fn sync_files(&self) -> Result<(), StoreError> {
        let closed = std::mem::take(&mut *self.closed.lock().unwrap_or_else(|e| e.into_inner()));
        for f in closed {
            f.sync_data().map_err(err(&self.dir))?;
        }
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cur.as_mut()
            && c.dirty
        {
            let path = segment_path(&self.dir, c.id);
            c.file.sync_data().map_err(err(&path))?;
            c.dirty = false;
        }
        Ok(())
    }

    pub fn read(&self, loc: Loc) -> Result<Vec<u8>, StoreError> {
        let path = segment_path(&self.dir, loc.segment);
        let file = File::open(&path).map_err(err(&path))?;
        let len = usize::try_from(loc.len)
            .map_err(|_| StoreError::Corrupt { table: "blobs", detail: format!("blob of {} bytes", loc.len) })?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, loc.offset).map_err(err(&path))?;
        match loc.codec {
            PLAIN => Ok(buf),
            LZ4 => lz4_flex::decompress_size_prepended(&buf)
                .map_err(|e| StoreError::Corrupt { table: "blobs", detail: format!("lz4 in {}: {e}", path.display()) }),
            c => {
                Err(StoreError::Corrupt { table: "blobs", detail: format!("unknown codec {c} in {}", path.display()) })
            }
        }
    }

    /// Up to `max` bytes of a plain blob from `offset` within it.
    pub fn read_range(&self, loc: Loc, offset: u64, max: usize) -> Result<Vec<u8>, StoreError> {
        let path = segment_path(&self.dir, loc.segment);
        let file = File::open(&path).map_err(err(&path))?;
        let len = loc.len.saturating_sub(offset).min(max as u64) as usize;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, loc.offset + offset.min(loc.len)).map_err(err(&path))?;
        Ok(buf)
    }

    /// Bytes of every segment file.
    pub fn size_on_disk(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|rd| rd.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }
}
