//! Container logs in the CRI format (upstream `kuberuntime/logs`): one record a line,
//! `<RFC3339Nano time> <stdout|stderr> <P|F>[:tags] <content>`, where `P` marks a partial
//! record whose line goes on in the next one (the runtime splits long lines, and writes
//! output without a trailing newline as `P`).
//!
//! Reading is streamed with bounded memory: [`tail_start`] walks back from the end in blocks
//! to find where the last N lines begin, and [`LogReader`] turns records into output bytes,
//! passed through as written (no UTF-8 assumed).

use jiff::Timestamp;
use std::io::{self, Read, Seek, SeekFrom};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The `kubectl logs` options, resolved (upstream `LogOptions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadOptions {
    /// The last N lines only.
    pub tail: Option<u64>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
    /// Skip lines older than this.
    pub since: Option<Timestamp>,
    /// Prefix each line with its time.
    pub timestamps: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One record's header; the content follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub time: String,
    pub stream: Stream,
    pub partial: bool,
}

/// Splits a record (without its newline) into header and content.
pub fn parse_record(line: &[u8]) -> Option<(Header, &[u8])> {
    let mut f = line.splitn(4, |b| *b == b' ');
    let (time, stream, tags) = (f.next()?, f.next()?, f.next()?);
    let content = f.next()?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let time = std::str::from_utf8(time).ok()?;
    // Tags are ':'-separated; the first says whether the line is complete.
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    Some((
        Header {
            time: time.to_string(),
            stream,
            partial,
        },
        content,
    ))
}

/// Upstream's output format for times, RFC 3339 with exactly nine fractional digits.
pub fn fixed_nanos(time: &str) -> String {
    // "2006-01-02T15:04:05[.frac]<zone>": the fraction starts after the seconds.
    let Some(t) = time.find('T') else {
        return time.to_string();
    };
    let secs_end = t + 9; // "T15:04:05"
    if time.len() < secs_end || !time.is_char_boundary(secs_end) {
        return time.to_string();
    }
    let (head, rest) = time.split_at(secs_end);
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            (&r[..n], &r[n..])
        }
        None => ("", rest),
    };
    let mut frac = frac.to_string();
    frac.truncate(9);
    while frac.len() < 9 {
        frac.push('0');
    }
    format!("{head}.{frac}{zone}")
}

/// Turns records into output with the options applied (upstream `logWriter`), joining a
/// line's partial records: the time prefix and the `since` test go by a line's first record.
#[derive(Debug)]
pub struct LogWriter {
    opts: ReadOptions,
    remain: u64,
    /// Per stream: the next record starts a line, and whether that line is being skipped.
    line_start: [bool; 2],
    skipping: [bool; 2],
}

impl LogWriter {
    pub fn new(opts: ReadOptions) -> Self {
        LogWriter {
            remain: opts.limit_bytes.unwrap_or(u64::MAX),
            opts,
            line_start: [true; 2],
            skipping: [false; 2],
        }
    }

    /// `limitBytes` reached: nothing more will be written.
    pub fn full(&self) -> bool {
        self.remain == 0
    }

    /// Writes a piece of a record's content; `end` when the record's newline was reached.
    pub fn write(&mut self, h: &Header, content: &[u8], end: bool, out: &mut Vec<u8>) {
        let s = h.stream as usize;
        if self.line_start[s] {
            self.skipping[s] = self
                .opts
                .since
                .is_some_and(|since| h.time.parse::<Timestamp>().map_or(true, |t| t < since));
            if !self.skipping[s] && self.opts.timestamps {
                let prefix = fixed_nanos(&h.time);
                self.put(prefix.as_bytes(), out);
                self.put(b" ", out);
            }
        }
        self.line_start[s] = end && !h.partial;
        if self.skipping[s] {
            return;
        }
        self.put(content, out);
        if end && !h.partial {
            self.put(b"\n", out);
        }
    }

    fn put(&mut self, b: &[u8], out: &mut Vec<u8>) {
        let n = (b.len() as u64).min(self.remain) as usize;
        out.extend_from_slice(&b[..n]);
        self.remain -= n as u64;
    }
}

/// The runtime splits lines at 16 KiB by default but may be configured not to: a record
/// longer than this is passed on in pieces rather than held whole.
const MAX_HELD: usize = 256 * 1024;
/// Bytes read from the file at a time.
const READ_BLOCK: usize = 64 * 1024;
/// Enough of a record to hold its header.
const HEADER_BYTES: usize = 64;

/// Reads CRI log records from a file and renders them (upstream `ReadLogs`, less the
/// following, which the caller drives by calling [`LogReader::next`] again after EOF).
#[derive(Debug)]
pub struct LogReader<R> {
    inner: R,
    writer: LogWriter,
    /// Bytes of the record being read (no newline seen yet).
    held: Vec<u8>,
    /// Set when part of a long record was already written: its header.
    open: Option<Header>,
    /// While discarding a record that could not be parsed.
    skip_to_eol: bool,
    block: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LogReader<R> {
    /// `inner` is positioned where reading starts (see [`tail_start`]).
    pub fn new(inner: R, opts: ReadOptions) -> Self {
        LogReader {
            inner,
            writer: LogWriter::new(opts),
            held: Vec::new(),
            open: None,
            skip_to_eol: false,
            block: vec![0; READ_BLOCK],
        }
    }

    /// Goes on in another file (the runtime reopened the log after a rotation). A record the
    /// old file left unfinished is dropped.
    pub fn switch(&mut self, inner: R) {
        self.inner = inner;
        self.held.clear();
        self.open = None;
        self.skip_to_eol = false;
    }

    /// The file being read.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// `limitBytes` reached.
    pub fn done(&self) -> bool {
        self.writer.full()
    }

    /// The output of the next block of the file: `None` at its end (for now: a follower
    /// calls again once the file grew), or once `limitBytes` is reached.
    pub async fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if self.done() {
                return Ok(None);
            }
            let n = self.inner.read(&mut self.block).await?;
            if n == 0 {
                return Ok(None);
            }
            let mut out = Vec::new();
            let block = std::mem::take(&mut self.block);
            self.feed(&block[..n], &mut out);
            self.block = block;
            if !out.is_empty() {
                return Ok(Some(out));
            }
        }
    }

    /// Reads to the end of the file (as it is now) and returns all the output.
    pub async fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(out) = self.next().await? {
            all.extend_from_slice(&out);
        }
        Ok(all)
    }

    fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() && !self.done() {
            let eol = data.iter().position(|b| *b == b'\n');
            let (chunk, end) = match eol {
                Some(i) => (&data[..i], true),
                None => (data, false),
            };
            data = match eol {
                Some(i) => &data[i + 1..],
                None => &[],
            };
            if self.skip_to_eol {
                self.skip_to_eol = !end;
                continue;
            }
            if let Some(h) = &self.open {
                // The rest of a long record.
                let h = h.clone();
                self.writer.write(&h, chunk, end, out);
                if end {
                    self.open = None;
                }
                continue;
            }
            self.held.extend_from_slice(chunk);
            if end {
                let line = std::mem::take(&mut self.held);
                // Records that do not parse are skipped, as upstream does.
                if let Some((h, content)) = parse_record(&line) {
                    self.writer.write(&h, content, true, out);
                }
                self.held = line;
                self.held.clear();
            } else if self.held.len() > MAX_HELD {
                let line = std::mem::take(&mut self.held);
                match parse_record(&line) {
                    Some((h, content)) => {
                        self.writer.write(&h, content, false, out);
                        self.open = Some(h);
                    }
                    None => self.skip_to_eol = true,
                }
            }
        }
    }
}

/// Whether the record starting with `head` is partial (`P`).
fn head_is_partial(head: &[u8]) -> bool {
    let mut f = head.splitn(4, |b| *b == b' ');
    let _ = (f.next(), f.next());
    f.next()
        .is_some_and(|tags| tags.split(|b| *b == b':').next() == Some(b"P"))
}

/// Where the last `n` lines of the log begin (upstream `tail.FindTailLineStartIndex`, but
/// counting lines rather than records: a line's partial records count once, and so does an
/// unfinished line at the end). Reads back from the end in blocks; memory stays bounded.
pub fn tail_start<F: Read + Seek>(f: &mut F, n: u64) -> io::Result<u64> {
    const BLOCK: u64 = 16 * 1024;
    let size = f.seek(SeekFrom::End(0))?;
    // The newline ending the record whose start is being looked for.
    let mut rec_end: Option<u64> = None;
    // The first bytes after the current block, for a header that crosses blocks.
    let mut after: Vec<u8> = Vec::new();
    let mut seen_last = false;
    let mut want = 0u64;
    let mut complete = 0u64;
    // Called for each record, last first: `Some(start)` once enough lines are found.
    let mut on_record = |partial: bool, end: u64| -> Option<u64> {
        if !seen_last {
            seen_last = true;
            // An unfinished line at the end counts as one.
            want = if partial { n } else { n.saturating_add(1) };
        }
        if !partial {
            complete += 1;
            if complete == want {
                return Some(end + 1);
            }
        }
        None
    };
    let mut right = size;
    let mut buf = vec![0u8; BLOCK as usize];
    while right > 0 {
        let left = right.saturating_sub(BLOCK);
        let len = (right - left) as usize;
        f.seek(SeekFrom::Start(left))?;
        f.read_exact(&mut buf[..len])?;
        let block = &buf[..len];
        for i in (0..len).rev() {
            if block[i] != b'\n' {
                continue;
            }
            let p = left + i as u64;
            match rec_end {
                None if n == 0 => return Ok(p + 1),
                None => {}
                Some(end) => {
                    let mut head = block[i + 1..].to_vec();
                    head.truncate(HEADER_BYTES);
                    if head.len() < HEADER_BYTES {
                        head.extend_from_slice(
                            &after[..after.len().min(HEADER_BYTES - head.len())],
                        );
                    }
                    if let Some(start) = on_record(head_is_partial(&head), end) {
                        return Ok(start);
                    }
                }
            }
            rec_end = Some(p);
        }
        let mut head = block[..len.min(HEADER_BYTES)].to_vec();
        if head.len() < HEADER_BYTES {
            head.extend_from_slice(&after[..after.len().min(HEADER_BYTES - head.len())]);
        }
        after = head;
        right = left;
    }
    // The first record of the file.
    if let Some(end) = rec_end
        && let Some(start) = on_record(head_is_partial(&after), end)
    {
        return Ok(start);
    }
    Ok(if n == 0 { size } else { 0 })
}

/// Positions an open log at the start of its last `lines` lines ([`tail_start`], off the
/// runtime's threads).
pub async fn seek_to_tail(file: tokio::fs::File, lines: u64) -> io::Result<tokio::fs::File> {
    let mut f = file.into_std().await;
    tokio::task::spawn_blocking(move || {
        let start = tail_start(&mut f, lines)?;
        f.seek(SeekFrom::Start(start))?;
        Ok(tokio::fs::File::from_std(f))
    })
    .await
    .map_err(io::Error::other)?
}

/// The last `lines` lines of the log, at most its last `bytes` bytes (upstream's
/// FallbackToLogsOnError: a tail of 80 lines into a 2 KiB ring buffer).
pub async fn read_last(path: &std::path::Path, lines: u64, bytes: usize) -> io::Result<Vec<u8>> {
    let file = seek_to_tail(tokio::fs::File::open(path).await?, lines).await?;
    let mut r = LogReader::new(file, ReadOptions::default());
    let mut ring = Vec::new();
    while let Some(out) = r.next().await? {
        ring.extend_from_slice(&out);
        if ring.len() > 2 * bytes {
            ring.drain(..ring.len() - bytes);
        }
    }
    if ring.len() > bytes {
        ring.drain(..ring.len() - bytes);
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const LOG: &str = "2026-11-24T10:00:00.000000001Z stdout F one\n\
                       2026-11-24T10:00:01Z stderr P tw\n\
                       2026-11-24T10:00:01.5Z stderr F o\n\
                       2026-11-24T10:00:02.000000000Z stdout F three\n\
                       2026-11-24T10:00:03Z stdout P DONE\n";

    async fn render(log: &[u8], opts: ReadOptions) -> Vec<u8> {
        let mut c = Cursor::new(log.to_vec());
        let start = tail_start(&mut c, opts.tail.unwrap_or(u64::MAX)).unwrap_or(0);
        let start = if opts.tail.is_some() { start } else { 0 };
        let mut r = LogReader::new(Cursor::new(log[start as usize..].to_vec()), opts);
        r.read_to_end().await.unwrap()
    }

    #[tokio::test]
    async fn partial_records_join_and_keep_their_missing_newline() {
        assert_eq!(
            render(LOG.as_bytes(), ReadOptions::default()).await,
            b"one\ntwo\nthree\nDONE"
        );
        let fallback = "2026-11-24T10:00:03Z stdout P DONE\n";
        assert_eq!(
            render(fallback.as_bytes(), ReadOptions::default()).await,
            b"DONE"
        );
        let tail = |n| ReadOptions {
            tail: Some(n),
            ..Default::default()
        };
        // The unfinished line is the last line.
        assert_eq!(render(LOG.as_bytes(), tail(1)).await, b"DONE");
        assert_eq!(render(LOG.as_bytes(), tail(2)).await, b"three\nDONE");
        // A line split into two records counts once.
        assert_eq!(render(LOG.as_bytes(), tail(3)).await, b"two\nthree\nDONE");
        assert_eq!(render(LOG.as_bytes(), tail(0)).await, b"");
        let ts = ReadOptions {
            timestamps: true,
            tail: Some(3),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8_lossy(&render(LOG.as_bytes(), ts).await),
            "2026-11-24T10:00:01.000000000Z two\n\
             2026-11-24T10:00:02.000000000Z three\n\
             2026-11-24T10:00:03.000000000Z DONE"
        );
        let limit = ReadOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(render(LOG.as_bytes(), limit).await, b"one\ntw");
        let since = ReadOptions {
            since: Some("2026-11-24T10:00:00.5Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(render(LOG.as_bytes(), since).await, b"two\nthree\nDONE");
    }

    #[tokio::test]
    async fn bytes_pass_through_and_bad_records_are_skipped() {
        let mut log = b"2026-11-24T10:00:00Z stdout F \xff\xfe\x00ok\n".to_vec();
        log.extend_from_slice(b"garbage\n");
        log.extend_from_slice(b"2026-11-24T10:00:00Z stdout F \n");
        log.extend_from_slice(b"2026-11-24T10:00:00Z stdout F still being writ");
        assert_eq!(
            render(&log, ReadOptions::default()).await,
            b"\xff\xfe\x00ok\n\n"
        );
    }

    #[tokio::test]
    async fn long_records_stream_in_pieces() {
        let content = "x".repeat(3 * MAX_HELD);
        let log =
            format!("2026-11-24T10:00:00Z stdout F {content}\n2026-11-24T10:00:01Z stdout F y\n");
        let out = render(log.as_bytes(), ReadOptions::default()).await;
        assert_eq!(out.len(), content.len() + 3);
        assert!(out.ends_with(b"x\ny\n"));
    }

    #[test]
    fn tail_across_blocks() {
        // Many records, some partial, spanning several 16 KiB blocks.
        let mut log = String::new();
        let mut lines = Vec::new();
        for i in 0..3000 {
            if i % 7 == 0 {
                log.push_str(&format!("2026-11-24T10:00:00Z stdout P part{i}-\n"));
            }
            log.push_str(&format!("2026-11-24T10:00:00Z stderr F line{i}\n"));
            lines.push(i);
        }
        for n in [1u64, 2, 7, 100, 2999, 3000, 5000] {
            let start = tail_start(&mut Cursor::new(log.as_bytes()), n).unwrap() as usize;
            let count = log[start..].lines().filter(|l| l.contains(" F ")).count() as u64;
            assert_eq!(count, n.min(3000), "n={n}");
            // Starts at a line's first record.
            let first = log[start..].lines().next().unwrap_or_default();
            let prev_partial = start > 0
                && log[..start - 1]
                    .lines()
                    .last()
                    .is_some_and(|l| l.contains(" P "));
            assert!(!prev_partial, "n={n} starts mid-line at {first:?}");
        }
    }

    #[test]
    fn times_get_nine_digits() {
        assert_eq!(
            fixed_nanos("2026-11-24T10:00:01Z"),
            "2026-11-24T10:00:01.000000000Z"
        );
        assert_eq!(
            fixed_nanos("2026-11-24T10:00:01.5+01:00"),
            "2026-11-24T10:00:01.500000000+01:00"
        );
        assert_eq!(
            fixed_nanos("2026-11-24T10:00:01.123456789Z"),
            "2026-11-24T10:00:01.123456789Z"
        );
    }

    #[tokio::test]
    async fn read_last_keeps_the_tail_bytes() {
        let dir = std::env::temp_dir().join(format!("krs-crilog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        let mut log = String::new();
        for i in 0..200 {
            log.push_str(&format!("2026-11-24T10:00:00Z stdout F line {i}\n"));
        }
        log.push_str("2026-11-24T10:00:00Z stdout P DONE\n");
        std::fs::write(&path, &log).unwrap();
        let out = read_last(&path, 80, 2048).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("line 121\n"), "{text}");
        assert!(text.ends_with("line 199\nDONE"));
        let out = read_last(&path, 80, 10).await.unwrap();
        assert_eq!(out, b"e 199\nDONE");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
