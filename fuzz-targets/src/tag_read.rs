//! Tag reader lines (`edge_agent::tags::parse_read`): the input is a stream as a TCP reader
//! sends it, one JSON record per line.
//!
//! Beyond "does not panic": an accepted read satisfies the documented bounds (tag upper-case
//! hex, reader id charset, RSSI range), written back as a line it parses to the same read,
//! and a syntax error's byte offset lies inside the line.

use edge_agent::tags::read::{MAX_READER_LEN, MAX_TAG_LEN, RSSI_RANGE};
use edge_agent::tags::{ReadError, TagKind, parse_read};
use protocol::time::format_rfc3339_ms;

const RECEIVED_MS: i64 = 1_795_000_000_000;

/// One input: panics if the code under test breaks a property above.
pub fn run(data: &[u8]) {
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let number = i as u64 + 1;
        match parse_read(line, number, RECEIVED_MS) {
            Ok(read) => check(&read, number),
            Err(ReadError::Syntax { offset, .. }) => {
                assert!(offset <= line.len(), "offset {offset} past {}", line.len());
            }
            Err(_) => {}
        }
    }
}

fn check(read: &edge_agent::tags::TagRead, number: u64) {
    assert!((1..=MAX_TAG_LEN).contains(&read.tag.len()));
    assert!(
        read.tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "tag {:?} is not upper-case hex",
        read.tag
    );
    assert!((1..=MAX_READER_LEN).contains(&read.reader.len()));
    assert!(RSSI_RANGE.contains(&read.rssi));
    assert_eq!(read.received_ms, RECEIVED_MS);
    let kind = match read.kind {
        TagKind::Bike => "bike",
        TagKind::Key => "key",
    };
    let mut line = serde_json::json!({
        "reader": read.reader,
        "tag": read.tag,
        "kind": kind,
        "rssi": read.rssi,
    });
    if let Some(ms) = read.reader_time_ms {
        line["time"] = format_rfc3339_ms(ms).into();
    }
    let bytes = serde_json::to_vec(&line).expect("a JSON value serialises");
    let again = parse_read(&bytes, number, RECEIVED_MS).unwrap_or_else(|e| {
        panic!(
            "an accepted read, written back, is refused: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(read, &again);
}
