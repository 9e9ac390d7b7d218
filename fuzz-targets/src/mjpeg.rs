//! The incremental MJPEG multipart parser (`edge_agent::source::MultipartParser`).
//!
//! Input: byte 0 picks the `boundary` parameter (none, so it is learned from the body; bare;
//! `--`-prefixed; another name), bytes 1–2 the part limit, byte 3 seeds the chunk sizes; the rest is the body.
//! The body is fed once whole and once in pseudo-random chunks of 1..=64 bytes, as a network
//! would split it.
//!
//! Beyond "does not panic" (a parser loop shows as a libFuzzer timeout): no part is larger
//! than the limit, indices count up, and when neither feeding hit an error or an oversized
//! part, both found exactly the same parts (the output must not depend on how the stream was
//! split).

use edge_agent::source::{MultipartParser, Parsed};

/// One input: panics if the code under test breaks a property above.
pub fn run(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let boundary = match data[0] % 4 {
        0 => None,
        1 => Some("frame"),
        2 => Some("--frame"),
        _ => Some("myboundary"),
    };
    let max_part = 1 + usize::from(u16::from_le_bytes([data[1], data[2]]) % 4096);
    let seed = data[3];
    let body = &data[4..];

    let whole = feed(boundary, max_part, std::iter::once(body));
    let chunked = feed(boundary, max_part, Chunks::new(body, seed));
    for run in [&whole, &chunked] {
        check(run, max_part);
    }
    if whole.clean() && chunked.clean() {
        assert_eq!(whole.parsed, chunked.parsed, "split changed the parts");
        assert_eq!(whole.closed, chunked.closed, "split changed the end");
    }
}

#[derive(Debug)]
struct Run {
    parsed: Vec<Parsed>,
    failed: bool,
    closed: bool,
}

impl Run {
    /// No error and no oversized part: limits depend on how much is buffered, so only clean
    /// runs must agree exactly.
    fn clean(&self) -> bool {
        !self.failed && self.parsed.iter().all(|p| matches!(p, Parsed::Part(_)))
    }
}

fn feed<'a>(
    boundary: Option<&str>,
    max_part: usize,
    chunks: impl Iterator<Item = &'a [u8]>,
) -> Run {
    let mut parser = MultipartParser::new(boundary, max_part);
    let mut run = Run {
        parsed: Vec::new(),
        failed: false,
        closed: false,
    };
    'feed: for chunk in chunks {
        parser.push(chunk);
        loop {
            match parser.next() {
                Ok(Some(parsed)) => run.parsed.push(parsed),
                Ok(None) => break,
                // Fatal: the agent drops the connection.
                Err(_) => {
                    run.failed = true;
                    break 'feed;
                }
            }
        }
    }
    run.closed = parser.is_closed();
    run
}

fn check(run: &Run, max_part: usize) {
    let mut last = 0;
    for parsed in &run.parsed {
        let index = match parsed {
            Parsed::Part(part) => {
                assert!(
                    part.body.len() <= max_part,
                    "part {} of {} bytes passed the {max_part}-byte limit",
                    part.index,
                    part.body.len()
                );
                part.index
            }
            Parsed::Oversized { index, .. } => *index,
        };
        assert!(index > last, "index {index} after {last}");
        last = index;
    }
}

/// Pseudo-random chunk sizes in 1..=64 from an 8-bit seed (xorshift), deterministic so a
/// crash reproduces.
struct Chunks<'a> {
    rest: &'a [u8],
    state: u32,
}

impl<'a> Chunks<'a> {
    fn new(rest: &'a [u8], seed: u8) -> Self {
        Self {
            rest,
            state: 0x9E37_79B9 ^ u32::from(seed),
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let size = (1 + self.state % 64) as usize;
        let (chunk, rest) = self.rest.split_at(size.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}
