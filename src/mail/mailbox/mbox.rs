//! mbox files, read (mboxo and mboxrd) and written (mboxrd).

use std::io::{self, BufRead};

use chrono::{DateTime, Utc};

use super::{Body, Entry, HEADER_CAP, header_of};

/// Longest piece of a line read at once; a From line is far shorter.
const LINE_CAP: usize = 8 << 10;

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

/// `From ` after any number of `>`.
fn unquoted(line: &[u8]) -> &[u8] {
    line.iter().position(|b| *b != b'>').map_or(&line[line.len()..], |i| &line[i..])
}

/// `>From `, `>>From `…: a body line the writer quoted (mboxrd; mboxo
/// quoted only the first level, which reads back the same).
fn is_quoted_from(line: &[u8]) -> bool {
    let bare = unquoted(line);
    bare.len() < line.len() && bare.starts_with(b"From ")
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
    /// any empty lines, it does not start with a `From ` line). A message
    /// over `max` bytes keeps only its header.
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

    /// The reader underneath (for counting what was read).
    pub fn get_ref(&self) -> &R {
        &self.r
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

/// `raw` as one mboxrd entry received `at`: the `From ` line, every
/// `From ` line of the mail (however many `>` before it) quoted once
/// more, and the empty line that ends an entry (after a line end of its
/// own where the mail lacks one, or the next entry would not split off).
pub fn mboxrd_entry(at: DateTime<Utc>, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    out.extend_from_slice(format!("From ticketd {}\n", at.format("%a %b %e %H:%M:%S %Y")).as_bytes());
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if unquoted(line).starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
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
    fn what_ticketd_writes_reads_back_byte_for_byte() {
        let at = DateTime::parse_from_rfc3339("2024-10-24T19:13:43Z").unwrap().with_timezone(&Utc);
        let mails: [&[u8]; 4] = [
            b"Subject: a\n\nFrom the start\n>From once\n>>From twice\n\nFrom x Thu Oct 24 19:13:43 2024\nend\n",
            b"Subject: b\r\n\r\ncrlf\r\n",
            b"Subject: c\n\nno newline at the end",
            b"Subject: d\n\nlast\n",
        ];
        let mut file = Vec::new();
        for m in mails {
            file.extend(mboxrd_entry(at, m));
        }
        let got = entries(&file, 1 << 20);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(whole(&got[0]), mails[0], "a From line inside the mail does not split it");
        assert_eq!(whole(&got[1]), mails[1]);
        assert_eq!(whole(&got[2]), b"Subject: c\n\nno newline at the end\n", "only a line end is added");
        assert_eq!(whole(&got[3]), mails[3], "the entry after a mail without a line end splits off");
        assert!(file.starts_with(b"From ticketd Thu Oct 24 19:13:43 2024\n"));
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
}
