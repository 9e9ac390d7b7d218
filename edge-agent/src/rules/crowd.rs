//! Crowds: more than N objects inside a zone for at least a duration.

use super::lifecycle::{Observation, RuleMeta, Signal, Subject};
use super::zone::ZoneArea;
use super::{FrameContext, RuleFilter};
use crate::track::{Timestamp, Track, TrackId};

/// Counts confirmed tracks of matching labels, with a median score at the threshold, that count
/// as inside. **Stationary tracks are counted**: a crowd is about how many are there, not
/// whether they move, so people standing together and cars parked in a no-parking zone both
/// count. A parked van cannot make a crowd re-alert, because the incident is keyed by the zone,
/// not the van, and stays open while the count stays above the limit.
///
/// Tracks coasting through a missed detection still count where they were last seen, so one
/// missed person does not end the incident.
#[derive(Debug, Clone)]
pub struct CrowdRule {
    /// The rule's identity for the lifecycle.
    pub meta: RuleMeta,
    pub(super) filter: RuleFilter,
    pub(super) area: ZoneArea,
    pub(super) more_than: u32,
    pub(super) min_duration_ms: Timestamp,
    /// Since when the count has been above the limit, without a break.
    pub(super) above_since: Option<Timestamp>,
}

impl CrowdRule {
    pub(super) fn evaluate(&mut self, ctx: &FrameContext<'_>) -> Vec<Signal> {
        let now = ctx.frame.timestamp;
        self.area.observe(ctx.tracks, now);
        let counted: Vec<&Track> = ctx
            .tracks
            .iter()
            .filter(|t| {
                t.is_confirmed()
                    && self.filter.matches_label(t)
                    && self.filter.passes_score(t)
                    && self.area.is_inside(t.id())
            })
            .collect();
        let count = u32::try_from(counted.len()).unwrap_or(u32::MAX);
        if count <= self.more_than {
            self.above_since = None;
            return Vec::new();
        }
        // Measured even outside active hours, so a crowd already there when the window opens
        // alerts at once.
        let since = *self.above_since.get_or_insert(now);
        if !ctx.active || now - since < self.min_duration_ms {
            return Vec::new();
        }
        vec![Signal {
            subject: Subject::Zone,
            observation: summarise(&counted, count),
            may_start: true,
            instant: false,
        }]
    }

    pub(super) fn forget(&mut self, id: TrackId) {
        self.area.forget(id);
    }
}

/// The crowd as one observation: mean score, most common label, box around everyone.
fn summarise(counted: &[&Track], count: u32) -> Observation {
    let score = counted.iter().map(|t| t.score()).sum::<f32>() / counted.len().max(1) as f32;
    let mut labels: Vec<(&str, usize)> = Vec::new();
    for t in counted {
        match labels.iter_mut().find(|(l, _)| *l == t.label()) {
            Some((_, n)) => *n += 1,
            None => labels.push((t.label(), 1)),
        }
    }
    // Ties go to the label seen first (lowest track id), for determinism.
    let label = labels
        .iter()
        .fold(None::<(&str, usize)>, |best, &(l, n)| match best {
            Some((_, bn)) if bn >= n => best,
            _ => Some((l, n)),
        })
        .map(|(l, _)| l.to_string());
    let box_xyxy = counted.iter().map(|t| t.box_xyxy()).reduce(|a, b| {
        [
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ]
    });
    Observation {
        track_id: None,
        label,
        box_xyxy,
        score,
        direction: None,
        count: Some(count),
        fresh: true,
    }
}
