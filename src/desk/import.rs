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
//! Reading the files is [`crate::mail::mailbox`]'s: an mbox is streamed
//! in bounded pieces (memory stays constant whatever its size), Maildir
//! files come in delivery order, and a message over
//! `desk.max_message_bytes` keeps only its header, quarantined as IMAP
//! ingest does. What the operator sees while it runs is the caller's
//! ([`Report`]).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::sync::mpsc;

use super::{Desk, Item, Mode};
use crate::mail::mailbox::{self, Body, MailFile, MboxReader, ReadError, header_of, open_regular, read_err};
use crate::store::{Records, keys};

/// Where imported mail is filed; no configured mailbox can have this name.
pub const IMPORT_MAILBOX: &str = "@import";
/// The pseudo-mailbox's UIDVALIDITY: its UIDs number the messages of a run.
const UID_VALIDITY: u32 = 1;
/// Messages per batch to the writer, and the bytes one batch may hold.
pub const BATCH: usize = 200;
const BATCH_BYTES: usize = 16 << 20;
/// Header of the stand-ins `tickets raw` writes for pruned mail: not mail.
const PRUNED_HEADER: &[u8] = b"X-Ticketd-Pruned:";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{}: not an mbox file (its first line is not a \"From \" line) and not a Maildir", path.display())]
    NotMbox { path: PathBuf },
    #[error("{}: a directory, but not a Maildir (no cur/ or new/ in it)", path.display())]
    NotMaildir { path: PathBuf },
    #[error("more than {} messages in one run: import the files in several runs", u32::MAX)]
    TooMany,
    #[error("the desk refused a batch (what came before it is stored; run the import again): {0}")]
    Desk(String),
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

/// Checks every path before anything is imported: a typo fails the run at
/// once, naming the path.
fn sources(paths: &[PathBuf], max: usize) -> Result<Vec<Source>, ImportError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(read_err(path))?;
        if meta.is_dir() {
            if !mailbox::is_maildir(path) {
                return Err(ImportError::NotMaildir { path: path.clone() });
            }
            out.push(Source::Maildir { root: path.clone(), files: mailbox::maildir_files(path)? });
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
                        self.done = base + reader.get_ref().get_ref().read;
                        self.push(entry.body, path, Some(entry.offset))?;
                    }
                    self.done = base + reader.get_ref().get_ref().read;
                }
                Source::Maildir { files, .. } => {
                    for f in files {
                        let body = mailbox::read_message(&f.path, self.max).map_err(read_err(&f.path))?;
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

impl From<ReadError> for ProduceError {
    fn from(e: ReadError) -> Self {
        ProduceError::Import(e.into())
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

/// What the operator sees of a run, drawn by the caller (the CLI draws a
/// bar); every method has a silent default.
pub trait Report: Send {
    /// The sources are checked: `total` bytes to read.
    fn start(&mut self, _total: u64) {}
    /// `done` bytes read and `messages` stored so far.
    fn advance(&mut self, _done: u64, _messages: u64) {}
    /// A line worth telling (a Maildir's count, a quarantined message).
    fn note(&mut self, _line: &str) {}
    fn finish(&mut self) {}
}

/// Reports nothing.
pub struct Silent;
impl Report for Silent {}

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
    for (mailbox, outcome, n) in desk.health().readings().messages {
        if mailbox == IMPORT_MAILBOX {
            *m.entry(outcome).or_default() += n;
        }
    }
    m
}

/// Imports every path (mbox files, Maildirs) into the desk.
pub async fn run(desk: &Desk, paths: &[PathBuf], progress: &mut dyn Report) -> Result<Summary, ImportError> {
    let started = Instant::now();
    let max = usize::try_from(desk.config().desk.max_message_bytes).unwrap_or(usize::MAX);
    let list_paths = paths.to_vec();
    let sources = tokio::task::spawn_blocking(move || sources(&list_paths, max))
        .await
        .map_err(|e| ImportError::Desk(format!("listing the sources: {e}")))??;
    let total: u64 = sources.iter().map(Source::size).sum();
    progress.start(total);
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
        report_quarantined(&store, first_q, &batch.origins, progress);
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
fn report_quarantined(store: &crate::store::Store, first: u64, origins: &[Origin], progress: &mut dyn Report) {
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
