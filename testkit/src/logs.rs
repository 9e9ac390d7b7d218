//! Every log line of the test process, at DEBUG, kept in memory while a [`Capture`] is alive:
//! for tests that check what never reaches a log (a camera password).
//!
//! The subscriber is process-wide because the code under test logs from every thread (tokio
//! workers, blocking tasks, ffmpeg's stderr reader); a thread-local one would miss exactly the
//! lines that leak. It is installed once, but filters everything out while no capture is
//! running, so the other tests of the same binary neither pay for DEBUG formatting nor fill
//! the buffer. Captures are serialised: each sees only what was logged during its own life
//! (by any test of the binary, which only makes the check stricter).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a capture is running; read by the filter on every event.
static CAPTURING: AtomicBool = AtomicBool::new(false);

fn buffer() -> &'static Buffer {
    static BUFFER: OnceLock<Buffer> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        // `filter_fn` is asked on every event (its answer is never cached per call site), so
        // turning CAPTURING on and off takes effect at once.
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                CAPTURING.load(Ordering::Acquire) && *meta.level() <= tracing::Level::DEBUG
            }));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other global subscriber in this test binary");
        buffer
    })
}

/// A running capture: everything logged at DEBUG or above, by any thread, from [`capture`]
/// until this is dropped.
#[derive(Debug)]
pub struct Capture {
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// Starts capturing; waits for another test's capture to end first.
pub fn capture() -> Capture {
    static ONE: Mutex<()> = Mutex::new(());
    let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
    buffer().lock().clear();
    CAPTURING.store(true, Ordering::Release);
    Capture {
        _one_at_a_time: guard,
    }
}

impl Capture {
    /// Everything logged since [`capture`].
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&buffer().lock()).into_owned()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURING.store(false, Ordering::Release);
        buffer().lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_sees_every_thread_during_its_life_and_nothing_after() {
        tracing::info!("before any capture");
        let first = capture();
        std::thread::spawn(|| tracing::debug!(secret = "from another thread"))
            .join()
            .unwrap();
        tracing::trace!("below DEBUG");
        let text = first.text();
        assert!(text.contains("from another thread"), "{text}");
        assert!(!text.contains("before any capture") && !text.contains("below DEBUG"));
        drop(first);
        tracing::info!("between captures");
        let second = capture();
        tracing::warn!("during the second");
        let text = second.text();
        assert!(
            text.contains("during the second")
                && !text.contains("between captures")
                && !text.contains("from another thread"),
            "{text}"
        );
    }
}
