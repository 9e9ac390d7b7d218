//! Commands that run the release `edge-agent` binary: `demo` and `bench`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::{Repo, cmd, setup};

/// Replay start for the demo: the wall-clock time of the clip's first frame, matching the
/// times in `configs/vtest-tags.jsonl`.
const DEMO_START: &str = "2026-11-22T08:00:00+08:00";

/// `cargo xtask demo`: the whole agent on the sample clip — ffmpeg decoding, detection, tracking,
/// the example config's zone, line, loitering and crowd rules, recorded e-bike tag reads with
/// the watchlist and theft rules — replayed as fast as the machine allows, every alert stored in
/// an outbox and delivered by the uplink to a real mosquitto, where `edge-agent tail` (standing
/// in for the hub) receives them. Prints one line per alert, checks the broker side got every
/// one, and leaves the alerts (JSON lines), their snapshots and the tail's log in `.cache/demo/`.
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

    // The broker and the hub's stand-in: alerts go agent → outbox → uplink → mosquitto → tail.
    let broker = Broker::start(&out_dir)?;
    let tail_out = out_dir.join("tail.txt");
    let tail_err = out_dir.join("tail.log");
    let mut tail = Command::new(&agent)
        .args(["tail", "--idle-exit-ms", "3000", "--broker"])
        .arg(format!("127.0.0.1:{}", broker.port))
        .stdout(fs::File::create(&tail_out).context("create tail.txt")?)
        .stderr(fs::File::create(&tail_err).context("create tail.log")?)
        .spawn()
        .context("start edge-agent tail")?;
    wait_for(&tail_err, "subscribed", Duration::from_secs(10))
        .context("edge-agent tail did not subscribe")?;

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
        .arg("--deliver")
        .arg(format!("127.0.0.1:{}", broker.port))
        .env("ORT_DYLIB_PATH", &assets.ort_lib)
        .env("RUST_LOG", "warn")
        .current_dir(repo.root());
    cmd::run(&mut replay).context("edge-agent replay failed")?;

    let text = fs::read_to_string(&alerts).with_context(|| format!("read {}", alerts.display()))?;
    println!();
    for line in text.lines() {
        println!("{}", summarize_alert(line, &repo.rel(&snapshots))?);
    }
    let status = tail.wait().context("wait for edge-agent tail")?;
    drop(broker);
    let received = fs::read_to_string(&tail_out)
        .context("read tail.txt")?
        .lines()
        .filter(|l| l.contains(" alert "))
        .count();
    let raised = text.lines().count();
    println!();
    println!(
        "delivered: {received} of {raised} alerts received through mosquitto by `edge-agent tail`"
    );
    if !status.success() || received != raised {
        bail!(
            "the broker side received {received} of {raised} alerts; see {}",
            repo.rel(&tail_err)
        );
    }
    println!(
        "alerts (JSON lines): {}\nsnapshots:          {}/\nbroker side:        {}",
        repo.rel(&alerts),
        repo.rel(&snapshots),
        repo.rel(&tail_out)
    );
    Ok(())
}

/// A mosquitto on a free loopback port for the demo, stopped when dropped.
struct Broker {
    port: u16,
    child: std::process::Child,
}

impl Broker {
    fn start(dir: &std::path::Path) -> Result<Self> {
        let exe =
            setup::mosquitto().context("mosquitto not found; `cargo xtask setup` installs it")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("find a free port")?
            .port();
        let conf = dir.join("mosquitto.conf");
        fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 message_size_limit 0\nlog_dest file {}\n",
                dir.join("mosquitto.log").display()
            ),
        )
        .context("write mosquitto.conf")?;
        let child = Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .spawn()
            .context("start mosquitto")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("mosquitto did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { port, child })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `file` contains `text`.
fn wait_for(file: &std::path::Path, text: &str, limit: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if fs::read_to_string(file).is_ok_and(|t| t.contains(text)) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("{} never said {text:?}", file.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
pub(crate) fn build_release(repo: &Repo) -> Result<PathBuf> {
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
