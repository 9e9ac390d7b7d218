//! The detector pool on real ONNX Runtime: several cameras at different rates, two sessions.
//! A camera flooding frames must not starve a slower one; frames it floods are replaced in its
//! slot and counted, never queued; the pool ends when every camera has ended.

// Test helpers panic on a failed set-up step, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edge_agent::detect::{
    DetectorOptions, DetectorPool, Model, ModelManifest, PoolCamera, manifest,
};
use edge_agent::frame::{Frame, FrameDecoder, LatestFrame, RgbFrame};

fn sample(name: &str) -> RgbFrame {
    let path = testkit::shared("samples/frames").join(name);
    let mut f = RgbFrame::default();
    FrameDecoder::default()
        .decode(&std::fs::read(path).unwrap(), &mut f)
        .unwrap();
    f
}

fn frame(camera: &str, seq: u64, image: &RgbFrame) -> Frame {
    Frame {
        camera: camera.into(),
        seq,
        pts_ms: seq as i64 * 10,
        wall_ms: 0,
        image: image.clone(),
    }
}

/// Puts a frame every `every` until `until`, then closes the slot.
fn produce(
    slot: LatestFrame,
    camera: &'static str,
    image: RgbFrame,
    every: Duration,
    until: Instant,
) {
    std::thread::spawn(move || {
        let mut seq = 0;
        while Instant::now() < until {
            slot.put(frame(camera, seq, &image));
            seq += 1;
            std::thread::sleep(every);
        }
        slot.close();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_flooding_camera_does_not_starve_the_others_and_its_excess_is_counted_not_queued() {
    let model =
        Model::load(ModelManifest::load(&manifest::default_manifest_path()).unwrap()).unwrap();
    let people = sample("000000001000.jpg");
    let street = sample("000000008762.jpg");

    let (flood, steady, once) = (LatestFrame::new(), LatestFrame::new(), LatestFrame::new());
    let cameras = vec![
        PoolCamera::new("flood", flood.clone()),
        PoolCamera::new("steady", steady.clone()),
        PoolCamera::new("once", once.clone()),
    ];
    let counters: Vec<_> = cameras.iter().map(|c| c.counters.clone()).collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let opts = DetectorOptions {
        intra_threads: 1,
        ..DetectorOptions::default()
    };
    let pool = DetectorPool::start(&model, &opts, 2, cameras, tx).unwrap();

    let until = Instant::now() + Duration::from_millis(2500);
    // Far faster than two sessions can infer (~14 ms a frame each here).
    produce(
        flood.clone(),
        "flood",
        people.clone(),
        Duration::from_millis(1),
        until,
    );
    // Slower than the pool: every one of its frames should be served.
    produce(
        steady.clone(),
        "steady",
        street.clone(),
        Duration::from_millis(100),
        until,
    );
    once.put(frame("once", 0, &people));
    once.close();

    let mut seen = std::collections::HashMap::<String, Vec<u64>>::new();
    let collect = async {
        while let Some(d) = rx.recv().await {
            if &*d.frame.camera == "flood" || &*d.frame.camera == "once" {
                assert!(
                    d.detections.iter().filter(|x| x.label == "person").count() >= 8,
                    "the crowd frame has at least 8 people"
                );
            }
            seen.entry(d.frame.camera.to_string())
                .or_default()
                .push(d.frame.seq);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .expect("the pool ends once every camera has ended");
    pool.join();

    let (flood_stats, steady_stats) = (flood.stats(), steady.stats());
    let served = |c: &str| seen.get(c).map_or(0, Vec::len) as u64;
    assert_eq!(served("once"), 1);
    assert_eq!(
        served("steady"),
        steady_stats.put,
        "every steady frame was served: {steady_stats:?}"
    );
    assert_eq!(steady_stats.skipped, 0);
    // The flood's excess is replaced in its slot and counted; what was served plus what was
    // skipped is everything it put (the slot holds at most one, taken or not at the end).
    assert!(flood_stats.skipped > flood_stats.put / 2, "{flood_stats:?}");
    assert_eq!(
        flood_stats.taken + flood_stats.skipped,
        flood_stats.put,
        "{flood_stats:?}"
    );
    assert_eq!(served("flood"), flood_stats.taken);
    assert_eq!(
        counters[0].detected.load(Ordering::Relaxed),
        flood_stats.taken
    );
    // A camera's frames come out in order (two workers may finish neighbouring frames the
    // other way round, so allow that much).
    let flood_seqs = &seen["flood"];
    let backwards = flood_seqs.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(backwards <= flood_seqs.len() / 4, "{flood_seqs:?}");
}
