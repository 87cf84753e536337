//! `ticketd import`: the mbox and Maildir exports of an old helpdesk become
//! tickets, quietly, exactly as `initial = "import"` treats a mailbox's
//! history: original dates, the tag `imported`, threads joined, nothing
//! sent. Every message goes through the desk's writer ([`Desk::ingest_with`]
//! in [`Mode::Quiet`]), so dedupe by Message-ID and content makes a second
//! run a no-op and mail already read over IMAP is not imported twice.
//!
//! Imported mail is filed under the pseudo-mailbox [`IMPORT_MAILBOX`],
//! which no configured mailbox can be named (`@` is not allowed there): its
//! UID cursor is written by ingest like any other and read by nobody, so an
//! import never moves a real mailbox's IMAP cursor. The mailbox defaults
//! (category, priority, tags, the address replies leave from) are the
//! first configured mailbox's.
//!
//! mbox (mboxo and mboxrd): a message starts at a `From ` line that follows
//! an empty line (or starts the file) and carries a time (`From sender
//! Thu Oct 24 19:13:43 2024`); the empty line before it belongs to the
//! format, and `>From `, `>>From `… lose one `>`. The file is streamed in
//! bounded pieces: memory stays constant whatever its size, and a message
//! over `desk.max_message_bytes` keeps only its header, quarantined as IMAP
//! ingest does. Maildir: the files of `cur/` and `new/` (never `tmp/`), of
//! the folder and of every Maildir++ subfolder (`.Name/`), in delivery
//! order (the timestamp that starts a Maildir file name), so a reply comes
//! after the mail it answers.

use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Desk, Item, Mode};
use crate::store::{Records, keys};

/// Where imported mail is filed; no configured mailbox can have this name.
pub const IMPORT_MAILBOX: &str = "@import";
/// The pseudo-mailbox's UIDVALIDITY: its UIDs number the messages of a run.
const UID_VALIDITY: u32 = 1;
/// Messages per batch to the writer, and the bytes one batch may hold.
pub const BATCH: usize = 200;
const BATCH_BYTES: usize = 16 << 20;
/// Longest piece of a line read at once; a From line is far shorter.
const LINE_CAP: usize = 8 << 10;
/// What is kept of a message over the size limit.
const HEADER_CAP: usize = 256 << 10;
/// Header of the stand-ins `tickets raw` writes for pruned mail: not mail.
const PRUNED_HEADER: &[u8] = b"X-Ticketd-Pruned:";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: not an mbox file (its first line is not a \"From \" line) and not a Maildir", path.display())]
    NotMbox { path: PathBuf },
    #[error("{}: a directory, but not a Maildir (no cur/ or new/ in it)", path.display())]
    NotMaildir { path: PathBuf },
    #[error("more than {} messages in one run: import the files in several runs", u32::MAX)]
    TooMany,
    #[error("the desk refused a batch (what came before it is stored; run the import again): {0}")]
    Desk(String),
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ImportError + '_ {
    move |source| ImportError::Read { path: path.to_owned(), source }
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Byte offset of its `From ` line in the file.
    pub offset: u64,
    pub body: Body,
}

/// Appends to `out` up to and including the next `\n`, at most `cap`
/// bytes. Returns the bytes read and whether they ended a line.
fn read_capped<R: BufRead>(r: &mut R, out: &mut Vec<u8>, cap: usize) -> io::Result<(usize, bool)> {
    let mut n = 0;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((n, false));
        }
        let take = &buf[..buf.len().min(cap - n)];
        if let Some(i) = memchr::memchr(b'\n', take) {
            out.extend_from_slice(&take[..=i]);
            r.consume(i + 1);
            return Ok((n + i + 1, true));
        }
        let len = take.len();
        out.extend_from_slice(take);
        r.consume(len);
        n += len;
        if n >= cap {
            return Ok((n, false));
        }
    }
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// A `From ` line that separates messages: a sender, then a date with a
/// time. Prose that happens to start with "From " rarely has both.
pub fn is_from_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"From ") else { return false };
    let mut words = rest.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
    words.next().is_some()
        && words.any(|w| {
            w.windows(4)
                .any(|x| x[0].is_ascii_digit() && x[1] == b':' && x[2].is_ascii_digit() && x[3].is_ascii_digit())
        })
}

/// `>From `, `>>From `…: a body line the writer quoted (mboxrd; mboxo
/// quoted only the first level, which reads back the same).
fn is_quoted_from(line: &[u8]) -> bool {
    let bare = line.iter().position(|b| *b != b'>').map_or(&line[line.len()..], |i| &line[i..]);
    bare.len() < line.len() && bare.starts_with(b"From ")
}

/// The header block of `bytes`: up to and including the first empty line,
/// at most [`HEADER_CAP`].
fn header_of(bytes: &[u8]) -> Vec<u8> {
    let end = memchr::memmem::find(bytes, b"\n\n")
        .map(|i| i + 2)
        .into_iter()
        .chain(memchr::memmem::find(bytes, b"\n\r\n").map(|i| i + 3))
        .min()
        .unwrap_or(bytes.len());
    bytes[..end.min(HEADER_CAP)].to_vec()
}

/// One message being collected: whole while it fits, else only its header.
struct Collect {
    max: usize,
    buf: Vec<u8>,
    size: u64,
    header: Option<Vec<u8>>,
    last: usize,
}

impl Collect {
    fn new(max: usize) -> Collect {
        Collect { max, buf: Vec::new(), size: 0, header: None, last: 0 }
    }

    fn push(&mut self, piece: &[u8]) {
        self.size += piece.len() as u64;
        self.last = piece.len();
        if self.header.is_none() && self.buf.len() + piece.len() > self.max {
            self.buf.extend_from_slice(&piece[..piece.len().min(HEADER_CAP.saturating_sub(self.buf.len()))]);
            self.header = Some(header_of(&self.buf));
            self.buf = Vec::new();
        } else if self.header.is_none() {
            self.buf.extend_from_slice(piece);
        }
    }

    /// Drops the empty line pushed last: it separated this message from
    /// the next.
    fn drop_last_blank(&mut self) {
        self.size -= self.last as u64;
        if self.header.is_none() {
            self.buf.truncate(self.buf.len() - self.last);
        }
        self.last = 0;
    }

    fn finish(self, offset: u64) -> Entry {
        let body = match self.header {
            None => Body::Whole(self.buf),
            Some(header) => Body::TooLarge { size: self.size, header },
        };
        Entry { offset, body }
    }
}

/// Messages of an mbox, one at a time, in bounded memory.
pub struct MboxReader<R> {
    r: R,
    pos: u64,
    /// Offset of the `From ` line already read that starts the next message.
    next: Option<u64>,
    max: usize,
    line: Vec<u8>,
}

impl<R: BufRead> MboxReader<R> {
    /// Reads up to the first message. `None`: this is not an mbox (after
    /// any empty lines, it does not start with a `From ` line).
    pub fn open(mut r: R, max: usize) -> io::Result<Option<MboxReader<R>>> {
        let mut line = Vec::new();
        let mut pos = 0u64;
        loop {
            line.clear();
            let (n, complete) = read_capped(&mut r, &mut line, LINE_CAP)?;
            if n == 0 {
                return Ok(None);
            }
            if complete && is_blank(&line) {
                pos += n as u64;
                continue;
            }
            if !line.starts_with(b"From ") || !complete {
                return Ok(None);
            }
            let start = pos;
            pos += n as u64;
            return Ok(Some(MboxReader { r, pos, next: Some(start), max, line }));
        }
    }

    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        let Some(offset) = self.next.take() else { return Ok(None) };
        let mut m = Collect::new(self.max);
        let mut line_start = true;
        let mut prev_blank = false;
        loop {
            self.line.clear();
            let (n, complete) = read_capped(&mut self.r, &mut self.line, LINE_CAP)?;
            if n == 0 {
                if prev_blank {
                    m.drop_last_blank();
                }
                return Ok(Some(m.finish(offset)));
            }
            let start = self.pos;
            self.pos += n as u64;
            let line = &self.line[..];
            if line_start && complete && prev_blank && is_from_line(line) {
                self.next = Some(start);
                m.drop_last_blank();
                return Ok(Some(m.finish(offset)));
            }
            let piece = if line_start && is_quoted_from(line) { &line[1..] } else { line };
            m.push(piece);
            prev_blank = line_start && complete && is_blank(piece);
            line_start = complete;
        }
    }
}

/// One file of a Maildir.
#[derive(Debug, Clone)]
struct MailFile {
    path: PathBuf,
    size: u64,
}

enum Source {
    Mbox { path: PathBuf, size: u64 },
    Maildir { root: PathBuf, files: Vec<MailFile> },
}

impl Source {
    fn size(&self) -> u64 {
        match self {
            Source::Mbox { size, .. } => *size,
            Source::Maildir { files, .. } => files.iter().map(|f| f.size).sum(),
        }
    }
}

/// A real directory, not a symlink to one: an import stays inside the
/// paths it was given.
fn real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

fn is_maildir(dir: &Path) -> bool {
    real_dir(&dir.join("cur")) || real_dir(&dir.join("new"))
}

/// Opens a message file without following a symlink and without blocking
/// (a FIFO would hang the import), and only when it is a regular file.
fn open_regular(path: &Path, follow: bool) -> io::Result<(std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = libc::O_NONBLOCK | if follow { 0 } else { libc::O_NOFOLLOW };
    let f = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file (a FIFO, device or socket)"));
    }
    Ok((f, m))
}

/// Delivery time first (the seconds that start a Maildir name), then name.
fn delivery_order(f: &MailFile) -> (u64, String) {
    let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let secs = name.split('.').next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    (secs, name)
}

/// Every message file of a Maildir and its Maildir++ subfolders.
fn maildir_files(root: &Path) -> Result<Vec<MailFile>, ImportError> {
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
                Err(e) => return Err(ImportError::Read { path: dir, source: e }),
            };
            for e in entries {
                let e = e.map_err(read_err(&dir))?;
                if e.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                // Symlinks (out of the Maildir) and special files are not mail.
                let kind = e.file_type().map_err(read_err(&e.path()))?;
                if kind.is_file() {
                    let meta = e.metadata().map_err(read_err(&e.path()))?;
                    files.push(MailFile { path: e.path(), size: meta.len() });
                } else if !kind.is_dir() {
                    tracing::warn!(path = %e.path().display(), "not imported: a symlink or special file, not a message");
                }
            }
        }
    }
    files.sort_by_cached_key(delivery_order);
    Ok(files)
}

/// Checks every path before anything is imported: a typo fails the run at
/// once, naming the path.
fn sources(paths: &[PathBuf], max: usize) -> Result<Vec<Source>, ImportError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(read_err(path))?;
        if meta.is_dir() {
            if !is_maildir(path) {
                return Err(ImportError::NotMaildir { path: path.clone() });
            }
            out.push(Source::Maildir { root: path.clone(), files: maildir_files(path)? });
            continue;
        }
        let (file, _) = open_regular(path, true).map_err(read_err(path))?;
        if MboxReader::open(io::BufReader::new(file), max).map_err(read_err(path))?.is_none() {
            return Err(ImportError::NotMbox { path: path.clone() });
        }
        out.push(Source::Mbox { path: path.clone(), size: meta.len() });
    }
    Ok(out)
}

/// A Maildir message, whole, or only its header when over `max`.
fn read_file(path: &Path, max: usize) -> io::Result<Body> {
    let (file, _) = open_regular(path, false)?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() <= max {
        return Ok(Body::Whole(bytes));
    }
    let size = std::fs::metadata(path)?.len();
    Ok(Body::TooLarge { size, header: header_of(&bytes[..bytes.len().min(HEADER_CAP)]) })
}

/// Where a message came from, for telling the admin what was quarantined.
#[derive(Debug, Clone)]
struct Origin {
    uid: u32,
    path: PathBuf,
    offset: Option<u64>,
}

#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    origins: Vec<Origin>,
    bytes: usize,
    /// Bytes of the input read once this batch is stored.
    done: u64,
    /// Empty entries and stand-ins of pruned mail, passed over.
    passed: u64,
}

type Feed = mpsc::Sender<Result<Batch, ImportError>>;

struct Producer {
    tx: Feed,
    max: usize,
    uid: u32,
    done: u64,
    batch: Batch,
}

/// The receiver is gone: the import stopped early.
struct Gone;

impl Producer {
    fn push(&mut self, body: Body, path: &Path, offset: Option<u64>) -> Result<(), ProduceError> {
        let raw_len = match &body {
            Body::Whole(b) => b.len(),
            Body::TooLarge { header, .. } => header.len(),
        };
        let placeholder = match &body {
            Body::Whole(b) => header_of(b).windows(PRUNED_HEADER.len()).any(|w| w.eq_ignore_ascii_case(PRUNED_HEADER)),
            Body::TooLarge { .. } => false,
        };
        if matches!(&body, Body::Whole(b) if b.iter().all(u8::is_ascii_whitespace)) || placeholder {
            self.batch.passed += 1;
            return Ok(());
        }
        self.uid = self.uid.checked_add(1).ok_or(ProduceError::Import(ImportError::TooMany))?;
        let uid = self.uid;
        self.batch.items.push(match body {
            Body::Whole(raw) => Item::Mail { uid, raw },
            Body::TooLarge { size, header } => Item::TooLarge { uid, size, header },
        });
        self.batch.origins.push(Origin { uid, path: path.to_owned(), offset });
        self.batch.bytes += raw_len;
        if self.batch.items.len() >= BATCH || self.batch.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ProduceError> {
        let mut b = std::mem::take(&mut self.batch);
        b.done = self.done;
        self.tx.blocking_send(Ok(b)).map_err(|_| ProduceError::Gone(Gone))
    }

    fn run(&mut self, sources: &[Source]) -> Result<(), ProduceError> {
        for source in sources {
            match source {
                Source::Mbox { path, .. } => {
                    let (file, _) = open_regular(path, true).map_err(read_err(path))?;
                    let counted = Counted { inner: file, read: 0 };
                    let mut reader = MboxReader::open(io::BufReader::with_capacity(256 << 10, counted), self.max)
                        .map_err(read_err(path))?
                        .ok_or_else(|| ImportError::NotMbox { path: path.clone() })?;
                    let base = self.done;
                    while let Some(entry) = reader.next_entry().map_err(read_err(path))? {
                        self.done = base + reader.r.get_ref().read;
                        self.push(entry.body, path, Some(entry.offset))?;
                    }
                    self.done = base + reader.r.get_ref().read;
                }
                Source::Maildir { files, .. } => {
                    for f in files {
                        let body = read_file(&f.path, self.max).map_err(read_err(&f.path))?;
                        self.done += f.size;
                        self.push(body, &f.path, None)?;
                    }
                }
            }
        }
        self.flush()
    }
}

enum ProduceError {
    Import(ImportError),
    Gone(Gone),
}

impl From<ImportError> for ProduceError {
    fn from(e: ImportError) -> Self {
        ProduceError::Import(e)
    }
}

/// Counts what was read, for the progress bar.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Whether to draw progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// A bar on a terminal; a plain line now and then otherwise.
    Stderr,
    Nothing,
}

struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    total: u64,
    last: Instant,
}

const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    fn new(show: Show, total: u64) -> Progress {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = (show == Show::Stderr && tty).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "importing [{bar:32}] {bytes}/{total_bytes} {msg} ({elapsed}, {eta} left)",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress { bar, plain: show == Show::Stderr && !tty, total, last: Instant::now() }
    }

    fn advance(&mut self, done: u64, messages: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!("{messages} messages"));
        } else if self.plain && self.last.elapsed() >= PLAIN_EVERY {
            self.last = Instant::now();
            let pct = (done * 100).checked_div(self.total).unwrap_or(100);
            eprintln!("import: {pct}% ({} of {} bytes), {messages} messages", done, self.total);
        }
    }

    fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if self.plain => eprintln!("{line}"),
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
    pub messages: u64,
    pub created: u64,
    pub replied: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    /// Own mail that came back, bounces and the like.
    pub other: u64,
    /// Empty mbox entries and stand-ins of pruned mail, not messages.
    pub passed: u64,
    pub seconds: f64,
}

impl Summary {
    pub fn render(&self) -> String {
        let rate = if self.seconds > 0.0 { self.messages as f64 / self.seconds } else { 0.0 };
        let mut s = format!(
            "imported {} message(s) from {} source(s) in {:.1} s ({rate:.0} messages/s)\n  tickets created     {}\n  replies added       {}\n  duplicates skipped  {}\n  quarantined         {}",
            self.messages, self.files, self.seconds, self.created, self.replied, self.duplicates, self.quarantined
        );
        if self.quarantined > 0 {
            s.push_str("  (see `ticketd quarantine list`)");
        }
        if self.other > 0 {
            s.push_str(&format!("\n  other               {} (our own mail, bounces)", self.other));
        }
        if self.passed > 0 {
            s.push_str(&format!("\n  passed over         {} (empty entries, stand-ins of pruned mail)", self.passed));
        }
        s
    }
}

fn outcome_counts(desk: &Desk) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for (mailbox, outcome, n) in desk.health().snapshot().messages {
        if mailbox == IMPORT_MAILBOX {
            *m.entry(outcome).or_default() += n;
        }
    }
    m
}

/// Imports every path (mbox files, Maildirs) into the desk.
pub async fn run(desk: &Desk, paths: &[PathBuf], show: Show) -> Result<Summary, ImportError> {
    let started = Instant::now();
    let max = usize::try_from(desk.config().desk.max_message_bytes).unwrap_or(usize::MAX);
    let list_paths = paths.to_vec();
    let sources = tokio::task::spawn_blocking(move || sources(&list_paths, max))
        .await
        .map_err(|e| ImportError::Desk(format!("listing the sources: {e}")))??;
    let total: u64 = sources.iter().map(Source::size).sum();
    let mut progress = Progress::new(show, total);
    for s in &sources {
        if let Source::Maildir { root, files } = s {
            progress.note(&format!("{}: {} message file(s)", root.display(), files.len()));
        }
    }
    let files = sources.len();
    let before = outcome_counts(desk);
    let (tx, mut rx) = mpsc::channel(2);
    let producer = std::thread::Builder::new()
        .name("import-reader".into())
        .spawn(move || {
            let err_tx = tx.clone();
            let mut p = Producer { tx, max, uid: 0, done: 0, batch: Batch::default() };
            if let Err(ProduceError::Import(e)) = p.run(&sources) {
                let _ = err_tx.blocking_send(Err(e));
            }
        })
        .map_err(|e| ImportError::Desk(format!("starting the reader: {e}")))?;
    let store = desk.store().clone();
    let mut messages = 0u64;
    let mut passed = 0u64;
    let mut result = Ok(());
    while let Some(batch) = rx.recv().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        passed += batch.passed;
        let count = batch.items.len() as u64;
        if count == 0 {
            progress.advance(batch.done, messages);
            continue;
        }
        let first_q = store.counter(keys::NEXT_QUARANTINE).unwrap_or(u64::MAX);
        let r = desk.ingest_with(IMPORT_MAILBOX, UID_VALIDITY, batch.items, Mode::Quiet).await;
        messages += r.done.len() as u64;
        report_quarantined(&store, first_q, &batch.origins, &progress);
        if let Some(e) = r.error {
            result = Err(ImportError::Desk(e));
            break;
        }
        progress.advance(batch.done, messages);
    }
    drop(rx);
    let _ = tokio::task::spawn_blocking(move || producer.join()).await;
    progress.finish();
    result?;
    let after = outcome_counts(desk);
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    let (created, replied, duplicates, quarantined) =
        (delta("created"), delta("replied"), delta("duplicate"), delta("quarantined"));
    Ok(Summary {
        files,
        bytes: total,
        messages,
        created,
        replied,
        duplicates,
        quarantined,
        other: messages.saturating_sub(created + replied + duplicates + quarantined),
        passed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One line per message of this batch that went to quarantine, naming the
/// file (and for an mbox, where in it) so the admin can look.
fn report_quarantined(store: &crate::store::Store, first: u64, origins: &[Origin], progress: &Progress) {
    let Ok(next) = store.counter(keys::NEXT_QUARANTINE) else { return };
    for id in first..next {
        let Ok(Some(q)) = store.quarantined(id) else { continue };
        if q.mailbox != IMPORT_MAILBOX {
            continue;
        }
        let Some(o) = origins.iter().find(|o| o.uid == q.uid) else { continue };
        let at = o.offset.map(|b| format!(" (message at byte {b})")).unwrap_or_default();
        progress.note(&crate::text::clean_line(&format!(
            "quarantined as entry {id}: {}{at}: {}",
            o.path.display(),
            q.reason
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(mbox: &[u8], max: usize) -> Vec<Entry> {
        let mut r = MboxReader::open(io::BufReader::with_capacity(7, mbox), max).unwrap().expect("an mbox");
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            out.push(e);
        }
        out
    }

    fn whole(e: &Entry) -> &[u8] {
        match &e.body {
            Body::Whole(b) => b,
            Body::TooLarge { .. } => panic!("too large: {e:?}"),
        }
    }

    #[test]
    fn messages_split_at_from_lines_after_an_empty_line() {
        let mbox = b"From a@x.test Thu Oct 24 19:13:43 2024\nSubject: one\n\nbody one\nFrom here on it is prose\n\nFrom the team 2024\n\nFrom - Fri Oct 25 08:00:00 2024\nSubject: two\n\nbody two\n";
        let got = entries(mbox, 1 << 20);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            whole(&got[0]),
            &b"Subject: one\n\nbody one\nFrom here on it is prose\n\nFrom the team 2024\n"[..],
            "prose starting with From stays (no empty line before it, or no time); the separator's empty line goes"
        );
        assert_eq!(got[0].offset, 0);
        assert_eq!(whole(&got[1]), &b"Subject: two\n\nbody two\n"[..]);
        assert_eq!(got[1].offset, mbox.windows(6).position(|w| w == b"From -").unwrap() as u64);
    }

    #[test]
    fn mboxrd_quoting_is_undone_and_crlf_kept() {
        let mbox = b"\r\nFrom a@x.test Thu Oct 24 19:13:43 2024\r\nSubject: q\r\n\r\n>From the start\r\n>>From deeper\r\n> From not quoted\r\n\r\nFrom b@x.test Thu Oct 24 19:14:00 2024\r\nSubject: r\r\n\r\nx\r\n\r\n";
        let got = entries(mbox, 1 << 20);
        assert_eq!(got.len(), 2);
        assert_eq!(whole(&got[0]), &b"Subject: q\r\n\r\nFrom the start\r\n>From deeper\r\n> From not quoted\r\n"[..]);
        assert_eq!(whole(&got[1]), &b"Subject: r\r\n\r\nx\r\n"[..], "the trailing empty line belongs to the format");
    }

    #[test]
    fn long_lines_and_large_messages_stay_bounded() {
        let long = vec![b'a'; 3 * LINE_CAP + 5];
        let mut mbox = b"From a@x.test Thu Oct 24 19:13:43 2024\nSubject: long\n\n".to_vec();
        mbox.extend_from_slice(&long);
        mbox.extend_from_slice(b"\n\nFrom b@x.test Thu Oct 24 19:14:00 2024\nSubject: big\nX: y\n\n");
        mbox.extend_from_slice(&vec![b'b'; 5000]);
        mbox.extend_from_slice(b"\n");
        let got = entries(&mbox, 4096);
        assert_eq!(got.len(), 2);
        match &got[0].body {
            Body::TooLarge { size, header } => {
                assert_eq!(*size as usize, 15 + long.len() + 1);
                assert_eq!(header, b"Subject: long\n\n");
            }
            b => panic!("{b:?}"),
        }
        match &got[1].body {
            Body::TooLarge { size, header } => {
                assert_eq!(*size, 19 + 5001);
                assert_eq!(header, b"Subject: big\nX: y\n\n");
            }
            b => panic!("{b:?}"),
        }
        let fits = entries(&mbox, 1 << 20);
        assert_eq!(whole(&fits[0]).len(), 15 + long.len() + 1, "a line longer than the read piece is one line");
    }

    #[test]
    fn a_file_that_does_not_start_with_a_from_line_is_not_an_mbox() {
        assert!(MboxReader::open(&b"Subject: hi\n\nbody\n"[..], 100).unwrap().is_none());
        assert!(MboxReader::open(&b""[..], 100).unwrap().is_none());
        assert!(MboxReader::open(&b"\n\nFrom x\n"[..], 100).unwrap().is_some(), "a loose first From line is enough");
    }

    #[test]
    fn from_lines_need_a_sender_and_a_time() {
        assert!(is_from_line(b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n"));
        assert!(is_from_line(b"From 1780129128323233312@xxx Thu Oct 24 19:13:43 +0000 2023\r\n"));
        assert!(!is_from_line(b"From 10 to 12 people\n"));
        assert!(!is_from_line(b"From:a@b 10:00\n"));
        assert!(is_quoted_from(b">From x"));
        assert!(!is_quoted_from(b"From x"));
        assert!(!is_quoted_from(b">> From x"));
    }

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
        let names: Vec<String> =
            maildir_files(root).unwrap().iter().map(|f| f.path.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, ["1700000100.M1.host:2,S", "1700000200.M1.host:2,S", "1700000300.M1.host"]);
    }
}
