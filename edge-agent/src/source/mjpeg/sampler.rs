//! [`Sampler`]: which MJPEG parts are kept for the detector, decided before decoding.

use std::time::Duration;

use tokio::time::Instant;

/// quarter period before the next slot. The tolerance keeps a camera sending exactly at (or at
/// twice) the detection rate from losing half its kept parts to jitter; the grid keeps the
/// long-run rate at `fps`.
#[derive(Debug)]
pub(crate) struct Sampler {
    period: Duration,
    due: Option<Instant>,
}

impl Sampler {
    pub(crate) fn new(fps: f64) -> Self {
        Self {
            period: Duration::from_secs_f64(1.0 / fps),
            due: None,
        }
    }

    /// Whether a part arriving at `now` is kept.
    pub(crate) fn accept(&mut self, now: Instant) -> bool {
        let due = match self.due {
            None => now,
            Some(due) => due,
        };
        if now + self.period / 4 < due {
            return false;
        }
        // After a gap (a reconnect, a slow camera), restart the grid instead of letting a
        // burst through to catch up.
        let next = if now > due + self.period {
            now + self.period
        } else {
            due + self.period
        };
        self.due = Some(next);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_keeps_the_detection_rate_from_a_faster_jittery_camera() {
        let start = Instant::now();
        let mut s = Sampler::new(5.0);
        // 25 fps for 10 s, each part up to ±8 ms late or early.
        let kept = (0..250u64)
            .filter(|i| {
                let jitter = (i * 7919 % 17) as i64 - 8;
                let at = start + Duration::from_millis(i * 40 + 8);
                let at = if jitter >= 0 {
                    at + Duration::from_millis(jitter as u64)
                } else {
                    at - Duration::from_millis(jitter.unsigned_abs())
                };
                s.accept(at)
            })
            .count();
        assert!((49..=51).contains(&kept), "kept {kept} of 250");
        // A camera at exactly the detection rate keeps every part despite jitter.
        let mut s = Sampler::new(5.0);
        let kept = (0..50u64)
            .filter(|i| s.accept(start + Duration::from_millis(i * 200 + (i % 3) * 15)))
            .count();
        assert_eq!(kept, 50);
    }
}
