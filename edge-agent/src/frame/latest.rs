//! [`LatestFrame`]: a one-frame slot per camera where the newest frame wins.
//!
//! Video is only worth analysing while it is fresh: when inference is busy, a queued frame
//! would be stale by the time it is read and the queue would grow without bound. So the slot
//! holds at most one frame; a frame put while the previous one is still untaken replaces it,
//! and the replaced frame is counted in [`LatestFrameStats::skipped`] (reported per camera in
//! the agent's health status).

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::Frame;

/// Counters of one slot since it was made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LatestFrameStats {
    /// Frames put into the slot.
    pub put: u64,
    /// Frames taken out of the slot.
    pub taken: u64,
    /// Frames replaced by a newer one before anyone took them.
    pub skipped: u64,
}

#[derive(Debug, Default)]
struct Slot {
    frame: Option<Frame>,
    closed: bool,
    stats: LatestFrameStats,
}

/// A cloneable handle to one camera's latest-frame slot. The producer calls [`put`](Self::put)
/// (or, for replays, [`put_lossless`](Self::put_lossless)) and finally [`close`](Self::close);
/// the consumer calls [`next`](Self::next) or [`take`](Self::take).
#[derive(Debug, Clone, Default)]
pub struct LatestFrame {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    slot: Mutex<Slot>,
    /// A frame was put (or the slot closed).
    filled: Notify,
    /// The frame was taken: wakes a [`LatestFrame::put_lossless`] waiting for room.
    emptied: Notify,
}

impl LatestFrame {
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // A panic while holding this lock cannot leave the slot inconsistent (every update is
        // a single assignment), so a poisoned lock is safe to keep using.
        self.inner.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `frame` in the slot, replacing (and counting as skipped) any frame not yet taken.
    pub fn put(&self, frame: Frame) {
        {
            let mut slot = self.slot();
            slot.stats.put += 1;
            if slot.frame.replace(frame).is_some() {
                slot.stats.skipped += 1;
            }
        }
        self.inner.filled.notify_one();
    }

    /// The replay policy: waits until the slot is empty, then puts `frame`. Nothing is ever
    /// replaced, so every frame of a recording is analysed; the producer is slowed to the
    /// detector's pace instead.
    pub async fn put_lossless(&self, frame: Frame) {
        loop {
            let emptied = self.inner.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check, so a take between the check and the await wakes us.
            emptied.as_mut().enable();
            {
                let mut slot = self.slot();
                if slot.frame.is_none() {
                    slot.stats.put += 1;
                    slot.frame = Some(frame);
                    drop(slot);
                    self.inner.filled.notify_one();
                    return;
                }
            }
            emptied.await;
        }
    }

    /// Takes the frame in the slot, if there is one, without waiting.
    pub fn take(&self) -> Option<Frame> {
        let mut slot = self.slot();
        let frame = slot.frame.take();
        if frame.is_some() {
            slot.stats.taken += 1;
            self.inner.emptied.notify_waiters();
        }
        frame
    }

    /// Waits for a frame and takes it; `None` once the slot is closed and empty.
    pub async fn next(&self) -> Option<Frame> {
        loop {
            {
                let mut slot = self.slot();
                if let Some(frame) = slot.frame.take() {
                    slot.stats.taken += 1;
                    self.inner.emptied.notify_waiters();
                    return Some(frame);
                }
                if slot.closed {
                    return None;
                }
            }
            // `notify_one` stores a permit when nobody is waiting, so a put between the check
            // above and this await is not missed.
            self.inner.filled.notified().await;
        }
    }

    /// Marks the end of the stream: [`next`](Self::next) returns the last frame, then `None`.
    pub fn close(&self) {
        self.slot().closed = true;
        self.inner.filled.notify_one();
    }

    /// Whether the producer has closed the slot and its last frame has been taken.
    pub fn is_finished(&self) -> bool {
        let slot = self.slot();
        slot.closed && slot.frame.is_none()
    }

    pub fn stats(&self) -> LatestFrameStats {
        self.slot().stats
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::frame::RgbFrame;

    fn frame(seq: u64) -> Frame {
        Frame {
            camera: Arc::from("cam"),
            seq,
            pts_ms: seq as i64 * 200,
            wall_ms: 0,
            image: RgbFrame {
                width: 2,
                height: 2,
                data: vec![0; 12],
            },
        }
    }

    #[test]
    fn a_frame_not_taken_is_replaced_and_counted_as_skipped() {
        let slot = LatestFrame::new();
        for seq in 0..5 {
            slot.put(frame(seq));
        }
        assert_eq!(slot.take().map(|f| f.seq), Some(4));
        assert!(slot.take().is_none());
        assert_eq!(
            slot.stats(),
            LatestFrameStats {
                put: 5,
                taken: 1,
                skipped: 4
            }
        );
    }

    #[tokio::test]
    async fn a_slow_consumer_sees_only_the_newest_frames_and_the_rest_are_counted() {
        let slot = LatestFrame::new();
        let producer = {
            let slot = slot.clone();
            tokio::spawn(async move {
                for seq in 0..50 {
                    slot.put(frame(seq));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                slot.close();
            })
        };
        let mut seen = Vec::new();
        while let Some(f) = slot.next().await {
            seen.push(f.seq);
            // Much slower than the producer, like a busy detector.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        producer.await.unwrap();
        let stats = slot.stats();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&49), "the final frame is never lost");
        assert!(seen.len() < 20, "slow consumer saw {} frames", seen.len());
        assert_eq!(stats.put, 50);
        assert_eq!(stats.taken, seen.len() as u64);
        assert_eq!(stats.skipped, 50 - seen.len() as u64);
    }

    #[tokio::test]
    async fn lossless_put_waits_for_the_consumer_and_skips_nothing() {
        let slot = LatestFrame::new();
        let producer = {
            let slot = slot.clone();
            tokio::spawn(async move {
                for seq in 0..30 {
                    slot.put_lossless(frame(seq)).await;
                }
                slot.close();
            })
        };
        let mut seen = Vec::new();
        while let Some(f) = slot.next().await {
            seen.push(f.seq);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        producer.await.unwrap();
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
        assert_eq!(slot.stats().skipped, 0);
    }

    #[tokio::test]
    async fn next_returns_none_once_closed_and_drained() {
        let slot = LatestFrame::new();
        slot.put(frame(0));
        slot.close();
        assert_eq!(slot.next().await.map(|f| f.seq), Some(0));
        assert!(slot.next().await.is_none());
    }
}
