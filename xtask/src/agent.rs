//! Commands that run release binaries: `demo` (`edge-agent` and `hub`), `bench` and `soak`
//! (`edge-tools`).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::{Repo, cmd, setup};

/// Replay start for the demo: the wall-clock time of the clip's first frame, matching the
/// times in `configs/vtest-tags.jsonl`.
const DEMO_START: &str = "2026-11-22T08:00:00+08:00";

/// `cargo xtask demo`: the whole chain on the sample clip. The agent — ffmpeg decoding,
/// detection, tracking, the example config's zone, line, loitering and crowd rules, recorded
/// e-bike tag reads with the watchlist and theft rules — replays as fast as the machine allows;
/// every alert goes into its outbox and through its uplink to the hub (`configs/hub/hub.toml`:
/// embedded broker behind the gateway, the Wuding example grid and roster), which stores it,
/// finds its cell (the demo site sits in micro-grid 532329101001-G01-M01), opens or joins a case
/// and notifies the people on duty. `hub tail` prints each notification as a grid member's
/// phone receives it. Checks the hub stored every alert, and leaves the alerts (JSON lines),
/// snapshots and logs in `.cache/demo/`.
///
/// The dashboard is up from the start (its URL and demo logins are printed before the replay,
/// so the live feed can be watched), the stolen e-bike is registered on the hub's watchlist
/// through the API, and the hub keeps running after the replay until Ctrl-C (`--no-wait`:
/// stop after the checks).
pub fn demo(repo: &Repo, args: &[String]) -> Result<()> {
    let no_wait = match args {
        [] => false,
        [a] if a == "--no-wait" => true,
        other => bail!("demo: unexpected arguments {other:?} (only --no-wait)"),
    };
    let assets = setup::run(repo)?;
    let agent = build_release(repo)?;
    let hub = build_release_hub(repo)?;
    let config = repo.root().join("configs/vtest.toml");
    let hub_config = repo.root().join("configs/hub/hub.toml");
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
    let mut validate = Command::new(&hub);
    validate
        .args(["validate", "--config"])
        .arg(repo.rel(&hub_config))
        .current_dir(repo.root());
    cmd::run(&mut validate).context("the example hub config does not validate")?;

    // Cleared first so nothing from an older run mixes with this one's.
    let out_dir = repo.cache().join("demo");
    for dir in [&out_dir, &repo.cache().join("hub-data")] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("clear {}", dir.display()))?;
        }
    }
    let snapshots = out_dir.join("snapshots");
    fs::create_dir_all(&snapshots).with_context(|| format!("create {}", snapshots.display()))?;
    let alerts = out_dir.join("alerts.jsonl");

    // The hub on free loopback ports (so a broker already on 1883 does not get in the way).
    let port = free_port()?;
    let metrics_port = free_port()?;
    // The dashboard on the config's 8080 when it is free (the notifications' links point there).
    let http_port = if std::net::TcpListener::bind(("127.0.0.1", DASHBOARD_PORT)).is_ok() {
        DASHBOARD_PORT
    } else {
        free_port()?
    };
    let hub_log = out_dir.join("hub.log");
    let hub_proc = Child::new(
        Command::new(&hub)
            // The demo config holds the published demo secrets, refused without --demo.
            .args(["run", "--demo", "--config"])
            .arg(repo.rel(&hub_config))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--metrics")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{http_port}"))
            .stdout(fs::File::create(out_dir.join("hub.out")).context("create hub.out")?)
            .stderr(fs::File::create(&hub_log).context("create hub.log")?)
            .current_dir(repo.root())
            .spawn()
            .context("start hub")?,
    );
    wait_for(&hub_log, "hub running", Duration::from_secs(20))
        .context("the hub did not start; see .cache/demo/hub.log")?;
    println!(
        "hub: 127.0.0.1:{port} (embedded broker), metrics http://127.0.0.1:{metrics_port}/metrics"
    );
    let dashboard = dashboard_banner(http_port);
    println!("{dashboard}");
    // The stolen e-bike of the tag reads, reported to the hub as an operator would: the hub
    // keeps it on its watchlist and sends the signed command to the site.
    let token = demo_token(http_port).context("log in to the dashboard API")?;
    let (status, body) = http_json(
        http_port,
        "POST",
        "/api/v1/watchlist",
        Some(&token),
        &serde_json::json!({
            "tag": DEMO_STOLEN_TAG,
            "case_ref": "WD-2026-1187",
            "note": "红色雅迪电动车，11月20日于狮山镇被盗",
        }),
    )?;
    if status != 201 {
        bail!("watchlisting the demo bike failed: HTTP {status}: {body}");
    }
    println!("watchlist: e-bike tag {DEMO_STOLEN_TAG} reported stolen (case WD-2026-1187)");

    // What the grid members' phones receive, printed as it happens.
    let tail_out = out_dir.join("notifications.txt");
    let tail_err = out_dir.join("tail.log");
    let mut tail = Command::new(&hub)
        .args(["tail", "--config"])
        .arg(repo.rel(&hub_config))
        .arg("--broker")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--username", "tail", "--password", "demo-token-tail"])
        .stdout(fs::File::create(&tail_out).context("create notifications.txt")?)
        .stderr(fs::File::create(&tail_err).context("create tail.log")?)
        .current_dir(repo.root())
        .spawn()
        .context("start hub tail")?;
    wait_for(&tail_err, "subscribed", Duration::from_secs(10))
        .context("hub tail did not subscribe")?;

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
        .arg(format!("127.0.0.1:{port}"))
        .env("ORT_DYLIB_PATH", &assets.ort_lib)
        .env("RUST_LOG", "warn")
        .current_dir(repo.root());
    cmd::run(&mut replay).context("edge-agent replay failed")?;

    let text = fs::read_to_string(&alerts).with_context(|| format!("read {}", alerts.display()))?;
    println!();
    println!("alerts raised by the agent:");
    for line in text.lines() {
        println!("{}", summarize_alert(line, &repo.rel(&snapshots))?);
    }
    // The last notifications follow the last alert by milliseconds; give them a moment.
    std::thread::sleep(Duration::from_secs(2));
    let _ = tail.kill();
    let _ = tail.wait();
    let notifications = fs::read_to_string(&tail_out).context("read notifications.txt")?;
    println!();
    println!("dispatched by the hub (case, cell path → person on duty):");
    for line in notifications.lines() {
        println!("  {line}");
    }
    let metrics = http_get(metrics_port, "/metrics")?;
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stored = counter("hub_alerts_stored_total ");
    let cases = counter("hub_cases_opened_total ");
    let raised = text.lines().count() as u64;
    println!();
    println!(
        "delivered: {stored} of {raised} alerts stored by the hub; {cases} case(s) opened, {} notification(s)",
        notifications.lines().count()
    );
    if stored != raised || notifications.lines().count() == 0 {
        bail!(
            "the hub stored {stored} of {raised} alerts; see {} and {}",
            repo.rel(&hub_log),
            repo.rel(&tail_err)
        );
    }
    transfer_a_case(http_port, &token)?;
    println!(
        "alerts (JSON lines): {}\nsnapshots:          {}/\nnotifications:      {}\nhub log:            {}",
        repo.rel(&alerts),
        repo.rel(&snapshots),
        repo.rel(&tail_out),
        repo.rel(&hub_log)
    );
    println!();
    println!("{dashboard}");
    if no_wait {
        return Ok(());
    }
    println!("the hub keeps running for the dashboard; Ctrl-C stops it");
    let mut hub_proc = hub_proc;
    let status = hub_proc.0.wait().context("wait for the hub")?;
    if !status.success() {
        bail!("the hub stopped: {status}; see {}", repo.rel(&hub_log));
    }
    Ok(())
}

/// The operator hands the first major case to the traffic police (分类交办), as the county's
/// governance centre does with a person inside the road cordon; the department's duty officer
/// (`jj-liu`) then finds it on the phone page.
fn transfer_a_case(port: u16, token: &str) -> Result<()> {
    let (status, body) = http_json(
        port,
        "GET",
        "/api/v1/cases?severity=major&state=dispatched&limit=1",
        Some(token),
        &serde_json::Value::Null,
    )?;
    if status != 200 {
        bail!("listing the demo's cases failed: HTTP {status}: {body}");
    }
    let list: serde_json::Value = serde_json::from_str(&body).context("case list")?;
    let Some(case) = list["cases"][0]["id"].as_str() else {
        println!("transfer: no major case still waiting; nothing handed to 交警");
        return Ok(());
    };
    let (status, body) = http_json(
        port,
        "POST",
        &format!("/api/v1/cases/{case}/actions"),
        Some(token),
        &serde_json::json!({
            "action": "transfer",
            "unit": "D-JJ",
            "within_minutes": 60,
            "note": "行人进入施工围挡区域，请交警到场处置",
        }),
    )?;
    if status != 200 {
        bail!("transferring {case} to 交警 failed: HTTP {status}: {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("transfer response")?;
    println!();
    println!(
        "transfer (交办): case {case} handed to {} by op-county, to resolve by {}; its duty officer is notified (login jj-liu / demo-member)",
        v["case"]["department"]["name"].as_str().unwrap_or("?"),
        v["case"]["deadline"]["at"].as_str().unwrap_or("?"),
    );
    Ok(())
}

const DASHBOARD_PORT: u16 = 8080;
/// The watchlisted bike of `configs/vtest-tags.jsonl` (also in the agent's own watchlist).
const DEMO_STOLEN_TAG: &str = "E2801160600002084A5B3C1D";

fn dashboard_banner(port: u16) -> String {
    format!(
        "dashboard: http://127.0.0.1:{port}/   (grid member's phone page: http://127.0.0.1:{port}/m)\n\
         demo logins (DEMO ONLY, configs/hub/users.toml):\n\
         \x20 operator, county:       op-county / demo-county\n\
         \x20 operator, 狮山镇:        op-shishan / demo-shishan\n\
         \x20 grid member, M01:       m-zhou / demo-member\n\
         \x20 交警 duty officer:      jj-liu / demo-member\n\
         \x20 admin:                  admin / demo-admin"
    )
}

/// An app token for the demo operator.
fn demo_token(port: u16) -> Result<String> {
    let (status, body) = http_json(
        port,
        "POST",
        "/api/v1/auth/tokens",
        None,
        &serde_json::json!({"username": "op-county", "password": "demo-county", "label": "xtask demo"}),
    )?;
    if status != 201 {
        bail!("HTTP {status}: {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("token response")?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token in the response")
}

/// A plain HTTP/1.1 request with a JSON body on loopback; the status and body.
fn http_json(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &serde_json::Value,
) -> Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .context("connect to the hub's dashboard")?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status in the response")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Child {
    fn new(c: std::process::Child) -> Self {
        Self(c)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("find a free port")?
        .port())
}

/// A plain HTTP/1.1 GET on loopback; the body.
fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .context("connect to the hub's metrics")?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(text))
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

/// `cargo xtask bench [-- ARGS...]`: `edge-tools bench` (detection throughput), arguments
/// passed through.
pub fn bench(repo: &Repo, args: &[String]) -> Result<()> {
    tools_command(repo, "bench", args)
}

/// `cargo xtask soak [-- ARGS...]`: `edge-tools soak` (cameras sustained, CPU, memory over
/// minutes), arguments passed through.
pub fn soak(repo: &Repo, args: &[String]) -> Result<()> {
    tools_command(repo, "soak", args)
}

fn tools_command(repo: &Repo, command: &str, args: &[String]) -> Result<()> {
    // `cargo xtask bench -- --sessions 2` reaches us with the `--`; the tool should not see it.
    let args = match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    };
    let assets = setup::run(repo)?;
    let tools = build_release_tools(repo)?;
    let mut run = Command::new(&tools);
    run.arg(command)
        .args(args)
        .env("ORT_DYLIB_PATH", &assets.ort_lib)
        .current_dir(repo.root());
    cmd::run(&mut run).with_context(|| format!("edge-tools {command} failed"))
}

/// Builds the release `edge-tools` binary and returns its path.
pub(crate) fn build_release_tools(repo: &Repo) -> Result<PathBuf> {
    build_release_binary(repo, "edge-tools")
}

/// Builds the release `hub` binary and returns its path.
pub(crate) fn build_release_hub(repo: &Repo) -> Result<PathBuf> {
    build_release_binary(repo, "hub")
}

/// Builds the release `edge-agent` binary and returns its path.
pub(crate) fn build_release(repo: &Repo) -> Result<PathBuf> {
    build_release_binary(repo, "edge-agent")
}

/// Builds package `name` (whose binary has the same name) in release mode; the binary's path.
fn build_release_binary(repo: &Repo, name: &str) -> Result<PathBuf> {
    cmd::run(repo.cargo().args(["build", "--release", "-p", name]))
        .with_context(|| format!("build {name}"))?;
    let binary = repo.target_dir().join("release").join(name);
    if !cmd::is_executable(&binary) {
        bail!("cargo built {name} but {} is not there", binary.display());
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
