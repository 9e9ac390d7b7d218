//! Commands that run the release `edge-agent` binary: `demo` and `bench`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{Repo, cmd, setup};

/// Replay start for the demo: the wall-clock time of the clip's first frame, matching the
/// times in `configs/vtest-tags.jsonl`.
const DEMO_START: &str = "2026-11-22T08:00:00+08:00";

/// `cargo xtask demo`: the whole agent on the sample clip — ffmpeg decoding, detection, tracking,
/// the example config's zone, line, loitering and crowd rules, recorded e-bike tag reads with
/// the watchlist and theft rules — replayed as fast as the machine allows. Prints one line per
/// alert, and leaves the alerts (JSON lines) and their snapshots in `.cache/demo/`.
pub fn demo(repo: &Repo, args: &[String]) -> Result<()> {
    crate::no_args("demo", args)?;
    let assets = setup::run(repo)?;
    let agent = build_release(repo)?;
    let config = repo.root().join("configs/vtest.toml");
    println!(
        "clip: {} (the example config's camera)",
        repo.rel(&assets.clip)
    );

    let mut validate = Command::new(&agent);
    validate
        .args(["validate", "--config"])
        .arg(repo.rel(&config))
        .env("ORT_DYLIB_PATH", &assets.ort_lib)
        .current_dir(repo.root());
    cmd::run(&mut validate).context("the example config does not validate")?;

    // Cleared first so snapshots from an older run never mix with this one's.
    let out_dir = repo.cache().join("demo");
    if out_dir.exists() {
        fs::remove_dir_all(&out_dir).with_context(|| format!("clear {}", out_dir.display()))?;
    }
    let snapshots = out_dir.join("snapshots");
    fs::create_dir_all(&snapshots).with_context(|| format!("create {}", snapshots.display()))?;
    let alerts = out_dir.join("alerts.jsonl");
    let mut replay = Command::new(&agent);
    replay
        .args(["replay", "--config"])
        .arg(repo.rel(&config))
        .arg("--tags")
        .arg(repo.rel(&repo.root().join("configs/vtest-tags.jsonl")))
        .args(["--start", DEMO_START, "--alerts-out"])
        .arg(repo.rel(&alerts))
        .arg("--snapshots-dir")
        .arg(repo.rel(&snapshots))
        .env("ORT_DYLIB_PATH", &assets.ort_lib)
        .env("RUST_LOG", "warn")
        .current_dir(repo.root());
    cmd::run(&mut replay).context("edge-agent replay failed")?;

    let text = fs::read_to_string(&alerts).with_context(|| format!("read {}", alerts.display()))?;
    println!();
    for line in text.lines() {
        println!("{}", summarize_alert(line, &repo.rel(&snapshots))?);
    }
    println!();
    println!(
        "alerts (JSON lines): {}\nsnapshots:          {}/",
        repo.rel(&alerts),
        repo.rel(&snapshots)
    );
    Ok(())
}

/// One human line for an alert: time of day, phase, kind, rule, what, and the snapshot file.
fn summarize_alert(line: &str, snapshots: &str) -> Result<String> {
    let a: serde_json::Value = serde_json::from_str(line).context("parse an alert line")?;
    let field = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let time = field("time");
    let clock = time.get(11..23).unwrap_or(time);
    let what = if let Some(tag) = a.get("tag") {
        format!(
            "tag {} at {}",
            tag.get("id").and_then(|v| v.as_str()).unwrap_or("?"),
            tag.get("reader").and_then(|v| v.as_str()).unwrap_or("?")
        )
    } else {
        let mut parts = Vec::new();
        if let Some(l) = a.get("label").and_then(|v| v.as_str()) {
            parts.push(l.to_string());
        }
        if let Some(t) = a.get("track").and_then(|v| v.as_u64()) {
            parts.push(format!("track {t}"));
        }
        if let Some(d) = a.get("direction").and_then(|v| v.as_str()) {
            parts.push(d.to_string());
        }
        if let Some(c) = a.get("count").and_then(|v| v.as_u64()) {
            parts.push(format!("{c} objects"));
        }
        parts.join(" ")
    };
    let snapshot = if a.get("snapshot").is_some() {
        format!("  {snapshots}/{}.jpg", field("id"))
    } else {
        String::new()
    };
    Ok(format!(
        "{clock}  {:<5} {:<14} {:<12} {:<9} {what}{snapshot}",
        field("phase"),
        field("kind"),
        field("rule"),
        field("severity"),
    ))
}

/// `cargo xtask bench [-- ARGS...]`: the agent's own benchmark, arguments passed through.
pub fn bench(repo: &Repo, args: &[String]) -> Result<()> {
    agent_command(repo, "bench", args)
}

/// `cargo xtask soak [-- ARGS...]`: `edge-agent soak` (cameras sustained, CPU, memory over
/// minutes), arguments passed through.
pub fn soak(repo: &Repo, args: &[String]) -> Result<()> {
    agent_command(repo, "soak", args)
}

fn agent_command(repo: &Repo, command: &str, args: &[String]) -> Result<()> {
    // `cargo xtask bench -- --sessions 2` reaches us with the `--`; the agent should not see it.
    let args = match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    };
    let assets = setup::run(repo)?;
    let agent = build_release(repo)?;
    let mut run = Command::new(&agent);
    run.arg(command)
        .args(args)
        .env("ORT_DYLIB_PATH", &assets.ort_lib)
        .current_dir(repo.root());
    cmd::run(&mut run).with_context(|| format!("edge-agent {command} failed"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_becomes_one_readable_line() {
        let line = r#"{"id":"01J","phase":"start","kind":"line","rule":"path-west","severity":"info","time":"2026-11-22T00:00:08.800Z","track":27,"label":"person","direction":"b_to_a","snapshot":{"jpeg":""}}"#;
        let s = summarize_alert(line, "snaps").unwrap();
        assert!(s.starts_with("00:00:08.800  start line"), "{s}");
        assert!(s.contains("person track 27 b_to_a"), "{s}");
        assert!(s.ends_with("snaps/01J.jpg"), "{s}");
        let tag = r#"{"id":"02","phase":"start","kind":"watchlist","rule":"watchlist","severity":"major","time":"2026-11-22T00:00:12.300Z","tag":{"id":"E28","reader":"gate"}}"#;
        assert!(
            summarize_alert(tag, "s")
                .unwrap()
                .contains("tag E28 at gate")
        );
        assert!(summarize_alert("not json", "s").is_err());
    }
}
