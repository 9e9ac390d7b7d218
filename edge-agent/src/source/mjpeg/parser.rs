//! [`MultipartParser`]: a `multipart/x-mixed-replace` body parsed incrementally as it
//! arrives, pure (no I/O), public for the fuzz target (`fuzz/`).

use super::MjpegError;

/// Longest header block of one part.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// How far into the body the first boundary line must appear.
const MAX_PREAMBLE_BYTES: usize = 64 * 1024;

/// One complete part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1 for the first part of the connection.
    pub index: u64,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Part(Part),
    /// A part over the limit, being skipped: `declared` is its `Content-Length`, or `None`
    /// when no boundary came within the limit.
    Oversized {
        index: u64,
        declared: Option<u64>,
    },
}

#[derive(Debug)]
enum State {
    /// Looking for the next delimiter line; `scanned` bytes from `pos` are known not to hold
    /// its start.
    Seek {
        scanned: usize,
    },
    /// Just past `--boundary`: the rest of that line, or `--` for the end of the stream.
    DelimiterLine,
    Headers,
    Body {
        len: Option<usize>,
        content_type: Option<String>,
        scanned: usize,
    },
    /// Discarding an oversized part.
    Skip {
        remaining: Option<usize>,
    },
    /// The final boundary was seen.
    Closed,
}

/// An incremental `multipart/x-mixed-replace` parser: [`push`](Self::push) bytes as they come,
/// then take parts with [`next`](Self::next) until it returns `Ok(None)`.
#[derive(Debug)]
pub struct MultipartParser {
    /// `--boundary`; `None` until learned from the body when the header had none.
    delimiter: Option<Vec<u8>>,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    state: State,
    max_part: usize,
    parts: u64,
}

impl MultipartParser {
    /// `boundary` as given in the `Content-Type` (with or without leading `--`).
    pub fn new(boundary: Option<&str>, max_part: usize) -> Self {
        Self {
            delimiter: boundary
                .map(|b| format!("--{}", b.trim_start_matches("--")).into_bytes())
                .filter(|d| d.len() > 2),
            buf: Vec::new(),
            pos: 0,
            state: State::Seek { scanned: 0 },
            max_part,
            parts: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            // Offsets in `state` are relative to `pos`, so compaction needs no fix-up.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The next part, `Ok(None)` when more bytes are needed (or the stream is closed), or a
    /// fatal error after which the stream cannot be followed.
    // Not an `Iterator`: "no part yet" is not the end, and errors are fatal.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Parsed>, MjpegError> {
        loop {
            match &mut self.state {
                State::Closed => return Ok(None),
                State::Seek { scanned } => {
                    let Some(delim) = self.delimiter.clone() else {
                        if !self.learn_delimiter()? {
                            return Ok(None);
                        }
                        continue;
                    };
                    let from = *scanned;
                    let avail = &self.buf[self.pos..];
                    match find(&avail[from.min(avail.len())..], &delim) {
                        Some(i) => {
                            self.pos += from + i + delim.len();
                            self.state = State::DelimiterLine;
                        }
                        None => {
                            if self.parts == 0 && avail.len() > MAX_PREAMBLE_BYTES {
                                return Err(MjpegError::NoBoundary {
                                    searched: avail.len(),
                                });
                            }
                            // Junk between parts is dropped; keep only a possible start of
                            // the delimiter.
                            let keep = delim.len() - 1;
                            if self.parts > 0 && avail.len() > keep {
                                self.pos += avail.len() - keep;
                                *scanned = 0;
                            } else {
                                *scanned = avail.len().saturating_sub(keep);
                            }
                            return Ok(None);
                        }
                    }
                }
                State::DelimiterLine => {
                    let avail = self.avail();
                    match find(avail, b"\n") {
                        Some(nl) => {
                            let closing = avail.starts_with(b"--");
                            self.pos += nl + 1;
                            self.state = if closing {
                                State::Closed
                            } else {
                                State::Headers
                            };
                        }
                        None if avail.starts_with(b"--") => self.state = State::Closed,
                        None if avail.len() > MAX_HEADER_BYTES => {
                            return Err(MjpegError::HeadersTooLong {
                                index: self.parts + 1,
                                limit: MAX_HEADER_BYTES,
                            });
                        }
                        None => return Ok(None),
                    }
                }
                State::Headers => {
                    let Some((len, content_type, used)) = self.headers()? else {
                        return Ok(None);
                    };
                    self.pos += used;
                    self.parts += 1;
                    let index = self.parts;
                    if let Some(n) = len
                        && n > self.max_part as u64
                    {
                        self.state = State::Skip {
                            remaining: Some(usize::try_from(n).unwrap_or(usize::MAX)),
                        };
                        return Ok(Some(Parsed::Oversized {
                            index,
                            declared: Some(n),
                        }));
                    }
                    self.state = State::Body {
                        len: len.map(|n| n as usize),
                        content_type,
                        scanned: 0,
                    };
                }
                State::Body {
                    len: Some(n),
                    content_type,
                    ..
                } => {
                    let n = *n;
                    if self.buf.len() - self.pos < n {
                        return Ok(None);
                    }
                    let part = Part {
                        index: self.parts,
                        content_type: content_type.take(),
                        body: self.buf[self.pos..self.pos + n].to_vec(),
                    };
                    self.pos += n;
                    self.state = State::Seek { scanned: 0 };
                    return Ok(Some(Parsed::Part(part)));
                }
                State::Body {
                    len: None,
                    content_type,
                    scanned,
                } => {
                    let Some(delim) = &self.delimiter else {
                        return Ok(None);
                    };
                    let mut needle = Vec::with_capacity(delim.len() + 1);
                    needle.push(b'\n');
                    needle.extend_from_slice(delim);
                    let avail = &self.buf[self.pos..];
                    let from = (*scanned).min(avail.len());
                    match find(&avail[from..], &needle) {
                        Some(i) => {
                            let nl = from + i;
                            let end = if nl > 0 && avail[nl - 1] == b'\r' {
                                nl - 1
                            } else {
                                nl
                            };
                            if end > self.max_part {
                                // The rest of an oversized part and its boundary came in one
                                // read: refused as it is when the boundary comes later, so the
                                // limit does not depend on how the network split the stream.
                                let index = self.parts;
                                self.pos += nl + 1;
                                self.state = State::Seek { scanned: 0 };
                                return Ok(Some(Parsed::Oversized {
                                    index,
                                    declared: None,
                                }));
                            }
                            let part = Part {
                                index: self.parts,
                                content_type: content_type.take(),
                                body: avail[..end].to_vec(),
                            };
                            // Leave the delimiter for Seek.
                            self.pos += nl + 1;
                            self.state = State::Seek { scanned: 0 };
                            return Ok(Some(Parsed::Part(part)));
                        }
                        None if avail.len() > self.max_part + needle.len() => {
                            let index = self.parts;
                            self.state = State::Skip { remaining: None };
                            return Ok(Some(Parsed::Oversized {
                                index,
                                declared: None,
                            }));
                        }
                        None => {
                            *scanned = avail.len().saturating_sub(needle.len() - 1);
                            return Ok(None);
                        }
                    }
                }
                State::Skip {
                    remaining: Some(remaining),
                } => {
                    let take = (*remaining).min(self.buf.len() - self.pos);
                    self.pos += take;
                    *remaining -= take;
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Seek { scanned: 0 };
                }
                State::Skip { remaining: None } => {
                    // Until the next delimiter line; Seek drops what precedes it.
                    self.state = State::Seek { scanned: 0 };
                }
            }
        }
    }

    /// Finds the first `--…` line to use as the delimiter when the header named none.
    /// `Ok(false)` when more bytes are needed.
    fn learn_delimiter(&mut self) -> Result<bool, MjpegError> {
        let avail = self.avail();
        let mut start = 0;
        while let Some(nl) = find(&avail[start..], b"\n") {
            let line = trim_cr(&avail[start..start + nl]);
            if line.len() > 2 && line.starts_with(b"--") {
                self.delimiter = Some(line.to_vec());
                self.pos += start;
                return Ok(true);
            }
            start += nl + 1;
        }
        if avail.len() > MAX_PREAMBLE_BYTES {
            return Err(MjpegError::NoBoundary {
                searched: avail.len(),
            });
        }
        Ok(false)
    }

    /// Parses a complete header block at `pos`: `(Content-Length, Content-Type, bytes used)`,
    /// or `None` when it is not complete yet.
    #[allow(clippy::type_complexity)]
    fn headers(&self) -> Result<Option<(Option<u64>, Option<String>, usize)>, MjpegError> {
        let avail = self.avail();
        let mut len = None;
        let mut content_type = None;
        let mut start = 0;
        while let Some(nl) = find(&avail[start..], b"\n") {
            let line = trim_cr(&avail[start..start + nl]);
            start += nl + 1;
            if line.is_empty() {
                return Ok(Some((len, content_type, start)));
            }
            let line = String::from_utf8_lossy(line);
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.trim().eq_ignore_ascii_case("content-length") {
                    // An unparsable length is ignored: the boundary still ends the part.
                    len = value.parse::<u64>().ok();
                } else if name.trim().eq_ignore_ascii_case("content-type") {
                    content_type = Some(value.to_string());
                }
            }
        }
        if avail.len() > MAX_HEADER_BYTES {
            return Err(MjpegError::HeadersTooLong {
                index: self.parts + 1,
                limit: MAX_HEADER_BYTES,
            });
        }
        Ok(None)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    // The first byte is rare in JPEG data (`\n` or `-`), so a memchr-style skip is enough.
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(j) => {
                i += j;
                if &haystack[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// The `boundary` parameter of a multipart `Content-Type`, unquoted; `None` when absent.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of `bodies` as parts, with a `Content-Length` on every other one.
    fn stream(boundary: &str, bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"preamble to ignore\r\n".to_vec();
        for (i, body) in bodies.iter().enumerate() {
            out.extend(format!("--{boundary}\r\nContent-Type: image/jpeg\r\n").bytes());
            if i % 2 == 0 {
                out.extend(format!("Content-Length: {}\r\n", body.len()).bytes());
            }
            out.extend(b"\r\n");
            out.extend(body);
            out.extend(b"\r\n");
        }
        out.extend(format!("--{boundary}--\r\n").bytes());
        out
    }

    fn bodies() -> Vec<Vec<u8>> {
        vec![
            // Bytes that look like line ends and half delimiters inside the data.
            b"\xff\xd8one\r\n--fra\r\n-\n\xff\xd9".to_vec(),
            b"\xff\xd8two\xff\xd9".to_vec(),
            Vec::new(),
            (0..=255u8).collect(),
        ]
    }

    fn parse_all(p: &mut MultipartParser, out: &mut Vec<Parsed>) {
        while let Some(parsed) = p.next().unwrap() {
            out.push(parsed);
        }
    }

    fn bodies_of(parsed: &[Parsed]) -> Vec<Vec<u8>> {
        parsed
            .iter()
            .map(|p| match p {
                Parsed::Part(part) => part.body.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn parts_are_the_same_however_the_stream_is_split_into_two_chunks() {
        let bytes = stream("frame", &bodies());
        for cut in 0..=bytes.len() {
            let mut p = MultipartParser::new(Some("frame"), 1 << 20);
            let mut out = Vec::new();
            p.push(&bytes[..cut]);
            parse_all(&mut p, &mut out);
            p.push(&bytes[cut..]);
            parse_all(&mut p, &mut out);
            assert_eq!(bodies_of(&out), bodies(), "cut at {cut}");
            assert!(p.is_closed(), "cut at {cut}");
        }
    }

    #[test]
    fn parts_are_the_same_when_fed_byte_by_byte_or_in_odd_chunks() {
        let bytes = stream("frame", &bodies());
        for size in [1, 2, 3, 7, 13, 64] {
            let mut p = MultipartParser::new(Some("--frame"), 1 << 20);
            let mut out = Vec::new();
            for chunk in bytes.chunks(size) {
                p.push(chunk);
                parse_all(&mut p, &mut out);
            }
            assert_eq!(bodies_of(&out), bodies(), "chunks of {size}");
            let Parsed::Part(first) = &out[0] else {
                unreachable!()
            };
            assert_eq!(
                (first.index, first.content_type.as_deref()),
                (1, Some("image/jpeg"))
            );
        }
    }

    #[test]
    fn a_missing_boundary_parameter_is_learned_and_bare_newlines_work() {
        let bytes =
            b"--myboundary\nContent-Type: image/jpeg\n\nAAA\n--myboundary\n\nBBB\n--myboundary\n";
        let mut p = MultipartParser::new(None, 1024);
        let mut out = Vec::new();
        for chunk in bytes.chunks(5) {
            p.push(chunk);
            parse_all(&mut p, &mut out);
        }
        assert_eq!(bodies_of(&out), vec![b"AAA".to_vec(), b"BBB".to_vec()]);
        assert!(!p.is_closed());
    }

    #[test]
    fn oversized_parts_are_named_and_skipped_and_the_next_part_still_parses() {
        let big = vec![7u8; 5000];
        // Content-Length on parts 1, 3 and 5 only: part 1 is refused by its declared size,
        // part 4 for having no boundary within the limit.
        let bytes = stream(
            "b",
            &[
                big.clone(),
                b"ok".to_vec(),
                b"x".to_vec(),
                big,
                b"ok2".to_vec(),
            ],
        );
        let mut p = MultipartParser::new(Some("b"), 1024);
        let mut out = Vec::new();
        for chunk in bytes.chunks(100) {
            p.push(chunk);
            parse_all(&mut p, &mut out);
            assert!(p.buf.len() < 1024 + 300, "buffered {}", p.buf.len());
        }
        assert_eq!(
            out,
            vec![
                Parsed::Oversized {
                    index: 1,
                    declared: Some(5000)
                },
                Parsed::Part(Part {
                    index: 2,
                    content_type: Some("image/jpeg".into()),
                    body: b"ok".to_vec()
                }),
                Parsed::Part(Part {
                    index: 3,
                    content_type: Some("image/jpeg".into()),
                    body: b"x".to_vec()
                }),
                Parsed::Oversized {
                    index: 4,
                    declared: None
                },
                Parsed::Part(Part {
                    index: 5,
                    content_type: Some("image/jpeg".into()),
                    body: b"ok2".to_vec()
                }),
            ]
        );
    }

    #[test]
    fn a_part_over_the_limit_is_refused_even_when_its_boundary_arrives_in_the_same_read() {
        // Found by the `mjpeg` fuzz target: fed in one piece, a part without Content-Length
        // whose boundary was already buffered came out at any size. (`stream` gives part 2 no
        // Content-Length.)
        let bytes = stream("b", &[b"ok".to_vec(), b"0123456789abcdef".to_vec()]);
        for size in [bytes.len(), 7, 1] {
            let mut p = MultipartParser::new(Some("b"), 9);
            let mut out = Vec::new();
            for chunk in bytes.chunks(size) {
                p.push(chunk);
                parse_all(&mut p, &mut out);
            }
            assert_eq!(
                out,
                vec![
                    Parsed::Part(Part {
                        index: 1,
                        content_type: Some("image/jpeg".into()),
                        body: b"ok".to_vec()
                    }),
                    Parsed::Oversized {
                        index: 2,
                        declared: None
                    },
                ],
                "chunks of {size}"
            );
            assert!(p.is_closed(), "chunks of {size}");
        }
    }

    #[test]
    fn a_body_without_boundary_or_with_endless_headers_is_refused() {
        let mut p = MultipartParser::new(Some("b"), 1024);
        p.push(&vec![b'x'; MAX_PREAMBLE_BYTES + 1]);
        assert!(matches!(p.next(), Err(MjpegError::NoBoundary { .. })));
        let mut p = MultipartParser::new(Some("b"), 1024);
        p.push(b"--b\r\nX-Junk: ");
        p.push(&vec![b'x'; MAX_HEADER_BYTES + 1]);
        assert!(matches!(
            p.next(),
            Err(MjpegError::HeadersTooLong { index: 1, .. })
        ));
    }

    #[test]
    fn boundary_is_read_from_the_content_type() {
        assert_eq!(
            boundary("multipart/x-mixed-replace; boundary=myboundary").as_deref(),
            Some("myboundary")
        );
        assert_eq!(
            boundary("multipart/x-mixed-replace;boundary=\"--a b\"").as_deref(),
            Some("--a b")
        );
        assert_eq!(boundary("multipart/x-mixed-replace"), None);
    }
}
