//! Commands that run the release `edge-agent` binary: `demo` and `bench`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{Repo, cmd, setup};

/// Frames taken from the clip for the demo: every 100th frame, 8 of them (the clip has 795).
const DEMO_FRAMES: &str = "8";
const DEMO_SELECT: &str = r"select=not(mod(n\,100))";

/// `cargo xtask demo`: detection on a few frames of the sample clip, printed as the agent's
/// JSON and as one human line per frame.
pub fn demo(repo: &Repo, args: &[String]) -> Result<()> {
    crate::no_args("demo", args)?;
    let assets = setup::run(repo)?;
    let agent = build_release(repo)?;

    // Cleared first so frames from an older run (or another clip) never join this one.
    let frames_dir = repo.cache().join("demo");
    if frames_dir.exists() {
        fs::remove_dir_all(&frames_dir)
            .with_context(|| format!("clear {}", frames_dir.display()))?;
    }
    fs::create_dir_all(&frames_dir).with_context(|| format!("create {}", frames_dir.display()))?;
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(["-v", "error", "-y", "-i"])
        .arg(repo.rel(&assets.clip))
        .args([
            "-vf",
            DEMO_SELECT,
            "-vsync",
            "vfr",
            "-frames:v",
            DEMO_FRAMES,
        ])
        .arg(repo.rel(&frames_dir.join("frame_%03d.jpg")))
        .current_dir(repo.root());
    cmd::run(&mut ffmpeg).context("extract demo frames from the sample clip")?;

    let mut frames: Vec<PathBuf> = fs::read_dir(&frames_dir)
        .with_context(|| format!("list {}", frames_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("frame_") && n.ends_with(".jpg"))
        })
        .collect();
    frames.sort();
    if frames.is_empty() {
        bail!("ffmpeg wrote no frames into {}", frames_dir.display());
    }

    let mut detect = Command::new(&agent);
    detect
        .arg("detect")
        .args(frames.iter().map(|f| repo.rel(f)))
        .env("ORT_DYLIB_PATH", &assets.ort_lib)
        .current_dir(repo.root());
    let out = cmd::output(&mut detect)?;
    let json = String::from_utf8_lossy(&out.stdout);
    print!("{json}");
    if !json.is_empty() && !json.ends_with('\n') {
        println!();
    }
    match summarize(&json) {
        Ok(lines) => {
            println!();
            for line in lines {
                println!("{line}");
            }
        }
        // A failed run may print partial or no JSON; its own error (below) is the news.
        Err(e) if out.status.success() => {
            return Err(e.context(format!(
                "`{}` printed output that is not the expected JSON",
                cmd::display(&detect)
            )));
        }
        Err(_) => {}
    }
    if !out.status.success() {
        bail!(
            "`{}` failed ({}); its errors are above",
            cmd::display(&detect),
            out.status
        );
    }
    Ok(())
}

/// `cargo xtask bench [-- ARGS...]`: the agent's own benchmark, arguments passed through.
pub fn bench(repo: &Repo, args: &[String]) -> Result<()> {
    // `cargo xtask bench -- --sessions 2` reaches us with the `--`; the agent should not see it.
    let args = match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    };
    let assets = setup::run(repo)?;
    let agent = build_release(repo)?;
    let mut bench = Command::new(&agent);
    bench
        .arg("bench")
        .args(args)
        .env("ORT_DYLIB_PATH", &assets.ort_lib)
        .current_dir(repo.root());
    cmd::run(&mut bench).context("edge-agent bench failed")
}

/// Builds `edge-agent` in release mode and returns the binary's path.
fn build_release(repo: &Repo) -> Result<PathBuf> {
    cmd::run(
        repo.cargo()
            .args(["build", "--release", "-p", "edge-agent"]),
    )
    .context("build edge-agent")?;
    let binary = repo.target_dir().join("release").join("edge-agent");
    if !cmd::is_executable(&binary) {
        bail!(
            "cargo built edge-agent but {} is not there",
            binary.display()
        );
    }
    Ok(binary)
}

/// One line per frame, `frame_001.jpg: 5 person, 1 car`, from the agent's JSON:
/// `{"<file>": {"width": .., "height": .., "detections": [{"label": .., ..}, ..]}, ..}`.
fn summarize(json: &str) -> Result<Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(json).context("parse JSON")?;
    let frames = value
        .as_object()
        .context("expected a JSON object keyed by file name")?;
    let mut lines = Vec::with_capacity(frames.len());
    for (file, frame) in frames {
        let detections = frame
            .get("detections")
            .and_then(|d| d.as_array())
            .with_context(|| format!("{file}: no `detections` array"))?;
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for detection in detections {
            let label = detection
                .get("label")
                .and_then(|l| l.as_str())
                .with_context(|| format!("{file}: a detection without a `label` string"))?;
            *counts.entry(label).or_default() += 1;
        }
        // Most frequent first; ties alphabetical (BTreeMap order, kept by the stable sort).
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let summary = if counts.is_empty() {
            "nothing detected".to_owned()
        } else {
            counts
                .iter()
                .map(|(label, n)| format!("{n} {label}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        lines.push(format!("{file}: {summary}"));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_labels_most_frequent_first() {
        let json = r#"{
            "frame_002.jpg": {"width": 768, "height": 576, "detections": []},
            "frame_001.jpg": {"width": 768, "height": 576, "detections": [
                {"label": "car", "score": 0.5, "box_xyxy": [0, 0, 1, 1]},
                {"label": "person", "score": 0.9, "box_xyxy": [0, 0, 1, 1]},
                {"label": "person", "score": 0.8, "box_xyxy": [0, 0, 1, 1]}
            ]}
        }"#;
        let mut lines = summarize(json).unwrap();
        lines.sort();
        assert_eq!(
            lines,
            [
                "frame_001.jpg: 2 person, 1 car",
                "frame_002.jpg: nothing detected"
            ]
        );
    }

    #[test]
    fn summary_rejects_other_shapes() {
        assert!(summarize("[]").is_err());
        assert!(summarize(r#"{"a.jpg": {"width": 1}}"#).is_err());
    }
}
