//! Every log line of the test process, at DEBUG, kept in memory: for tests that check what
//! never reaches a log (a camera password). `capture()` before the code under test runs;
//! `text()` is everything logged so far by any test of the binary.

use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn buffer() -> &'static Buffer {
    static BUFFER: OnceLock<Buffer> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        buffer
    })
}

/// Starts capturing (process-wide, once).
pub fn capture() {
    buffer();
}

/// Everything logged since [`capture`].
pub fn text() -> String {
    String::from_utf8_lossy(&buffer().0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}
