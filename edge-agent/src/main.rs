//! `edge-agent` command line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge_agent::agent::{Agent, AgentConfig, Mode};
use edge_agent::detect::{
    Detector, DetectorOptions, FrameDetections, Model, ModelArgs, ModelManifest,
};
use edge_agent::pipeline::Output;
use edge_agent::tags::{TagRead, parse_read};
use protocol::Detection;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

#[derive(Debug, Parser)]
#[command(name = "edge-agent", version, about = "Sharp Eyes edge alerting agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Detect objects in images; prints JSON keyed by file name.
    Detect {
        #[command(flatten)]
        model: ModelArgs,
        /// Minimum score (default: the manifest's).
        #[arg(long)]
        score: Option<f32>,
        /// NMS IoU threshold (default: the manifest's).
        #[arg(long)]
        iou: Option<f32>,
        /// JPEG or PNG files.
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
    },
    /// Inspect an alert outbox (a sled directory) without changing it: schema version, count,
    /// bytes, per-severity counts, oldest and newest, corrupt records, and the quarantined
    /// alerts (refused by the hub for good) with their reason and time. Exits 1 if any record
    /// is corrupt or the store cannot be read.
    Check {
        /// The outbox directory.
        #[arg(long, value_name = "DIR")]
        outbox: PathBuf,
        /// First move every quarantined alert back into the sending queue (after an upgrade
        /// fixed why the hub refused them). Changes the store: only with the agent stopped
        /// (a running agent holds the store's lock, and this then fails).
        #[arg(long)]
        requeue_quarantined: bool,
    },
    /// Check a config file (and the model manifest it names); exits non-zero listing every
    /// problem. The systemd unit runs it before starting the agent.
    Validate {
        /// The agent config (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the agent: cameras and tag readers in, alerts out (logged; also appended to
    /// --alerts-out as JSON lines when given). Stops on SIGINT or SIGTERM.
    Run {
        /// The agent config (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Also append every alert to this file, one JSON object per line.
        #[arg(long, value_name = "FILE")]
        alerts_out: Option<PathBuf>,
        /// Accept the demo hub's published public key (configs/hub/demo-signing.key), which is
        /// refused otherwise: anyone can sign commands with it. Only for the demo and tests.
        #[arg(long)]
        demo: bool,
    },
    /// Run the same pipeline on recorded video (the cameras' file inputs) and tag reads, as
    /// fast as the machine allows and deterministically, writing one alert JSON per line.
    Replay {
        /// The agent config (TOML); its cameras' inputs should be video files.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Where to write the alerts (JSON lines); `-` for standard output.
        #[arg(long, value_name = "FILE")]
        alerts_out: PathBuf,
        /// Recorded tag reads: JSON lines in the reader format, each with its `time`.
        #[arg(long, value_name = "FILE")]
        tags: Option<PathBuf>,
        /// Wall-clock time of the first frame (RFC 3339); active hours and tag times are
        /// matched against it.
        #[arg(long, value_name = "TIME", default_value = "2026-01-01T00:00:00Z")]
        start: String,
        /// Also write each snapshot as a JPEG file here, named after its alert id.
        #[arg(long, value_name = "DIR")]
        snapshots_dir: Option<PathBuf>,
        /// Also deliver every alert and sighting batch to this broker (`host:port`) through
        /// an outbox and the uplink, as a live agent would; returns once all are acknowledged.
        #[arg(long, value_name = "HOST:PORT")]
        deliver: Option<String>,
        /// The outbox directory for --deliver (default: a fresh temporary one).
        #[arg(long, value_name = "DIR", requires = "deliver")]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,edge_agent=info,ort=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Detect {
            model,
            score,
            iou,
            images,
        } => detect(&model, score, iou, &images),
        Command::Validate { config } => validate(&config),
        Command::Check {
            outbox,
            requeue_quarantined,
        } => check_outbox(&outbox, requeue_quarantined),
        Command::Run {
            config,
            alerts_out,
            demo,
        } => run_agent(&config, alerts_out.as_deref(), demo),
        Command::Replay {
            config,
            alerts_out,
            tags,
            start,
            snapshots_dir,
            deliver,
            data_dir,
        } => replay(
            &config,
            &alerts_out,
            tags.as_deref(),
            &start,
            snapshots_dir.as_deref(),
            deliver.as_deref().map(|d| (d, data_dir)),
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match AgentConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let manifest_path = config.model.manifest_path();
    if let Err(e) = ModelManifest::load(&manifest_path) {
        eprintln!("error: config {}: model.manifest: {e}", path.display());
        return Ok(ExitCode::FAILURE);
    }
    let rules: usize = config
        .cameras
        .iter()
        .map(|c| {
            c.rules.zones.len() + c.rules.lines.len() + c.rules.loiters.len() + c.rules.crowds.len()
        })
        .sum();
    if check_demo_key(path, &config, false).is_err() {
        println!(
            "warning: uplink.commands.public_key is the demo hub's public key; `edge-agent run` refuses it without --demo"
        );
    }
    println!(
        "config {} is valid: site {}, {} camera(s), {} rule(s), {} tag reader(s), model {}",
        path.display(),
        config.site,
        config.cameras.len(),
        rules,
        config.tag_readers.len(),
        manifest_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn check_outbox(path: &Path, requeue_quarantined: bool) -> anyhow::Result<ExitCode> {
    if requeue_quarantined {
        use edge_agent::outbox::{Outbox, OutboxConfig, OutboxError};
        // Opening for writing would create a store; requeueing needs one.
        if !path.join("db").is_file() {
            return Err(OutboxError::NotFound {
                path: path.to_path_buf(),
            }
            .into());
        }
        // The bounds do not matter here: requeueing neither evicts nor expires.
        let mut outbox = Outbox::open(path, OutboxConfig::default()).with_context(|| {
            format!(
                "opening {} to requeue (is the agent still running? stop it first)",
                path.display()
            )
        })?;
        let moved = outbox.requeue_quarantined()?;
        drop(outbox);
        println!("requeued {moved} quarantined alerts into the sending queue");
    }
    let report = edge_agent::outbox::inspect(path)?;
    println!("{report}");
    Ok(if report.corrupt.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Loads the config and its model, or fails listing every config problem.
fn load_config_and_model(path: &Path) -> anyhow::Result<(AgentConfig, Arc<Model>)> {
    let config = AgentConfig::load(path)?;
    let manifest_path = config.model.manifest_path();
    let model = Model::load(ModelManifest::load(&manifest_path)?)?;
    Ok((config, model))
}

fn run_agent(path: &Path, alerts_out: Option<&Path>, demo: bool) -> anyhow::Result<ExitCode> {
    // Before the model: a refused config should fail at once, whatever else is missing.
    let config = AgentConfig::load(path)?;
    check_demo_key(path, &config, demo)?;
    let (config, model) = load_config_and_model(path)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(edge_agent::service::run(config, model, alerts_out))?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses the demo hub's public key unless `demo` (anyone can sign commands with the demo
/// key, which is in the repository); compared by value, whatever the config calls it.
fn check_demo_key(path: &Path, config: &AgentConfig, demo: bool) -> anyhow::Result<()> {
    let Some(c) = config.uplink.as_ref().and_then(|u| u.commands.as_ref()) else {
        return Ok(());
    };
    let Ok(key) = protocol::command::parse_verifying_key(&c.public_key) else {
        // The config's own validation reports a malformed key.
        return Ok(());
    };
    if !protocol::demo::is_demo_key(&key) {
        return Ok(());
    }
    if demo {
        tracing::warn!(
            message = "Running the demo: the demo hub's public key is trusted (--demo).",
            config = %path.display()
        );
        return Ok(());
    }
    anyhow::bail!(
        "refusing to start with a published demo secret (pass --demo to run the demo):\n  \
         {}: uplink.commands.public_key: the demo hub's public key (configs/hub/demo-signing.key \
         is in the repository, so anyone can sign commands this agent would obey); put your \
         hub's key here (`hub keygen` prints it)",
        path.display()
    )
}

/// Reads recorded tag reads: the reader format, one per line, each with its `time`, which
/// becomes the read's receive time. Every bad line is reported with its number.
fn load_tag_reads(path: &Path) -> anyhow::Result<Vec<TagRead>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut reads = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        match parse_read(line.as_bytes(), n, 0) {
            Ok(mut r) => match r.reader_time_ms {
                Some(t) => {
                    r.received_ms = t;
                    reads.push(r);
                }
                None => errors.push(format!("line {n}: field `time`: required in a recording")),
            },
            Err(e) => errors.push(e.to_string()),
        }
    }
    anyhow::ensure!(
        errors.is_empty(),
        "{}: {} bad line(s):\n  {}",
        path.display(),
        errors.len(),
        errors.join("\n  ")
    );
    Ok(reads)
}

fn replay(
    path: &Path,
    alerts_out: &Path,
    tags: Option<&Path>,
    start: &str,
    snapshots_dir: Option<&Path>,
    deliver: Option<(&str, Option<PathBuf>)>,
) -> anyhow::Result<ExitCode> {
    let start_ms = protocol::time::parse_rfc3339_ms(start)
        .with_context(|| format!("--start {start:?} is not an RFC 3339 time"))?;
    let tag_reads = match tags {
        Some(p) => load_tag_reads(p)?,
        None => Vec::new(),
    };
    let (config, model) = load_config_and_model(path)?;
    if let Some(dir) = snapshots_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut out: Box<dyn Write> = if alerts_out == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(alerts_out)
                .with_context(|| format!("creating {}", alerts_out.display()))?,
        ))
    };
    let began = std::time::Instant::now();
    let runtime = tokio::runtime::Runtime::new()?;
    let (alerts, stats) = runtime.block_on(async {
        let (_shutdown_tx, shutdown_rx) = watch::channel(false);
        let mode = Mode::Replay {
            start_ms,
            tag_reads,
        };
        let uplink = match deliver {
            Some((broker, data_dir)) => Some(replay_uplink(&config, broker, data_dir)?),
            None => None,
        };
        let (deliver_tx, uplink_task) = match uplink {
            Some((uplink, _keep_dir)) => {
                let (tx, rx) = mpsc::channel(64);
                (Some((tx, _keep_dir)), Some(tokio::spawn(uplink.run(rx))))
            }
            None => (None, None),
        };
        let agent = Agent::new(config, model, mode, shutdown_rx).await?;
        let (tx, mut rx) = mpsc::channel(64);
        let run = tokio::spawn(agent.run(tx));
        let mut alerts = 0u64;
        while let Some(o) = rx.recv().await {
            if let Some((d, _)) = &deliver_tx {
                let copy = match &o {
                    Output::Alert(a) => Output::Alert(a.clone()),
                    Output::Sightings(s) => Output::Sightings(s.clone()),
                };
                d.send(copy).await.context("uplink stopped")?;
            }
            if let Output::Alert(a) = o {
                alerts += 1;
                if let (Some(dir), Some(s)) = (snapshots_dir, &a.snapshot) {
                    let file = dir.join(format!("{}.jpg", a.id));
                    std::fs::write(&file, &s.jpeg)
                        .with_context(|| format!("writing {}", file.display()))?;
                }
                writeln!(out, "{}", serde_json::to_string(&a)?)?;
            }
        }
        let stats = run.await??;
        if let (Some((d, keep_dir)), Some(task)) = (deliver_tx, uplink_task) {
            drop(d);
            let left = task.await??;
            eprintln!(
                "replay: delivered {} alerts to the broker ({} left in the outbox)",
                alerts - left.depth as u64,
                left.depth
            );
            drop(keep_dir);
        }
        anyhow::Ok((alerts, stats))
    })?;
    out.flush()?;
    let secs = began.elapsed().as_secs_f64();
    for c in stats.cameras() {
        eprintln!(
            "camera {}: {} frames, {} processed, {:.1} ms detect/frame, {} alerts, {} failures",
            c.id, c.frames, c.processed, c.detect_ms, c.alerts, c.failures
        );
    }
    let frames: u64 = stats.cameras().iter().map(|c| c.processed).sum();
    eprintln!(
        "replay: {alerts} alerts, {frames} frames in {secs:.1} s ({:.1} fps)",
        frames as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// The uplink for `replay --deliver`: the config's site, an outbox in `data_dir` (or a
/// temporary directory, returned so it lives as long as the uplink), delivering until empty.
fn replay_uplink(
    config: &AgentConfig,
    broker: &str,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<(edge_agent::uplink::Uplink, Option<tempfile::TempDir>)> {
    use edge_agent::uplink::UplinkConfig;
    let (host, port) = broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .with_context(|| format!("--deliver {broker:?}: expected host:port"))?;
    let (dir, temp) = match data_dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::tempdir().context("temporary outbox directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut uplink_config = config
        .uplink
        .clone()
        .unwrap_or_else(|| UplinkConfig::new(host, port));
    uplink_config.host = host.to_string();
    uplink_config.port = port;
    uplink_config.client_id = Some(format!("edge-{}-replay", config.site));
    uplink_config.commands = None;
    let uplink = edge_agent::service::tool_uplink(config, uplink_config, &dir)?;
    Ok((uplink, temp))
}

fn detect(
    args: &ModelArgs,
    score: Option<f32>,
    iou: Option<f32>,
    images: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let model = args.load_model()?;
    let opts = DetectorOptions {
        score_threshold: score,
        nms_iou: iou,
        ..args.detector_options(1)
    };
    let mut detector = Detector::new(model, &opts)?;
    let mut out = BTreeMap::new();
    let mut failed = 0usize;
    for path in images {
        // One bad file is reported and skipped; the others are still processed.
        let result = std::fs::read(path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(detector.detect_bytes(&bytes)?));
        match result {
            Ok(found) => {
                let key = file_key(path, &out);
                out.insert(key, DetectOutput::from(found));
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", path.display());
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    if failed > 0 {
        eprintln!("{failed} of {} images failed", images.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One image in `detect`'s output, in the shape (and field order) of the model reference files,
/// with scores rounded to 4 places and coordinates to 0.1 px as they are.
#[derive(Debug, Serialize)]
struct DetectOutput {
    width: u32,
    height: u32,
    detections: Vec<Detection>,
}

impl From<FrameDetections> for DetectOutput {
    fn from(f: FrameDetections) -> Self {
        let round = |v: f32, m: f32| (v * m).round() / m;
        Self {
            width: f.width,
            height: f.height,
            detections: f
                .detections
                .into_iter()
                .map(|d| Detection {
                    score: round(d.score, 1e4),
                    box_xyxy: d.box_xyxy.map(|v| round(v, 10.0)),
                    ..d
                })
                .collect(),
        }
    }
}

/// The file name, or the whole path when two inputs share a file name.
fn file_key(path: &Path, seen: &BTreeMap<String, DetectOutput>) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    if seen.contains_key(&name) {
        path.display().to_string()
    } else {
        name
    }
}
