//! `edge-tools` command line: the agent's test and measurement tools.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge_agent::agent::AgentConfig;
use edge_agent::detect::ModelArgs;
use edge_tools::bench::{self, BenchConfig};

#[derive(Debug, Parser)]
#[command(
    name = "edge-tools",
    version,
    about = "Sharp Eyes edge agent: test and measurement tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure bare inference and whole-pipeline throughput on real frames.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Directory of JPEG/PNG frames. Default: ../shared/samples/frames, else
        /// .cache/samples/frames (made by `cargo xtask setup`).
        #[arg(long, value_name = "DIR")]
        frames: Option<PathBuf>,
        /// Seconds for each of the two measurements.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Parallel sessions, each on its own worker thread.
        #[arg(long, default_value_t = 2)]
        sessions: usize,
    },
    /// Soak the live pipeline: N cameras playing the sample clip in real time; prints RSS and
    /// CPU every sample and a summary line; with --ramp, first finds how many cameras run with
    /// zero skipped frames.
    Soak {
        /// Config whose first camera's rules every soak camera runs (default: configs/vtest.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Cameras in the soak.
        #[arg(long, default_value_t = 4)]
        cameras: usize,
        /// Detection fps per camera.
        #[arg(long, default_value_t = 5.0)]
        fps: f64,
        /// Length of the soak, minutes.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 10.0)]
        sample_secs: f64,
        /// First run 1..=N cameras for --ramp-secs each (0: no ramp).
        #[arg(long, default_value_t = 0)]
        ramp: usize,
        /// Seconds per ramp step.
        #[arg(long, default_value_t = 60.0)]
        ramp_secs: f64,
    },
    /// Append N synthetic alerts (20 KB snapshots by default) to the config's outbox and
    /// deliver them through its [uplink], resuming where a killed run stopped; exits 0 once
    /// every alert is acknowledged by the broker. The agent under test of `chaos`.
    Emit {
        /// The agent config (TOML); only site, data_dir, [outbox] and [uplink] are used.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Alerts to emit in total (ids 0..N).
        #[arg(long)]
        count: u64,
        /// Snapshot size, bytes.
        #[arg(long, default_value_t = 20_000)]
        snapshot_bytes: usize,
        /// Time of alert 0, ms since the epoch (alert i is at base + i).
        #[arg(long, default_value_t = testkit::emitted::BASE_MS)]
        base_ms: i64,
        /// Alerts per second (0: as fast as the outbox takes them).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// Subscribe to a broker and print what agents publish (alerts, status changes,
    /// sightings), one line each, as the hub will see them.
    Tail(edge_tools::tail::TailArgs),
    /// Delivery chaos test: a real mosquitto, `edge-tools emit` publishing N alerts while the
    /// broker is restarted and the agent SIGKILLed; a subscriber counts every id. Last line:
    /// `sent=… received=… lost=… duplicated=…`; exits 1 unless lost is 0 and the agent finished.
    Chaos(edge_tools::chaos::ChaosArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,edge_agent=info,edge_tools=info,ort=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench {
            model,
            frames,
            seconds,
            sessions,
        } => run_bench(&model, frames, seconds, sessions),
        Command::Soak {
            config,
            cameras,
            fps,
            minutes,
            sample_secs,
            ramp,
            ramp_secs,
        } => run_soak(config, cameras, fps, minutes, sample_secs, ramp, ramp_secs),
        Command::Emit {
            config,
            count,
            snapshot_bytes,
            base_ms,
            rate,
        } => emit(&config, count, snapshot_bytes, base_ms, rate),
        Command::Tail(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|r| r.block_on(edge_tools::tail::run(args)))
            .map(|_| ExitCode::SUCCESS),
        Command::Chaos(args) => edge_tools::chaos::run(args).map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn emit(
    path: &Path,
    count: u64,
    snapshot_bytes: usize,
    base_ms: i64,
    rate: f64,
) -> anyhow::Result<ExitCode> {
    let config = AgentConfig::load(path)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(edge_tools::emit::run(
        &config,
        count,
        snapshot_bytes,
        base_ms,
        rate,
    ))?;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)] // one per command-line flag
fn run_soak(
    config: Option<PathBuf>,
    cameras: usize,
    fps: f64,
    minutes: f64,
    sample_secs: f64,
    ramp: usize,
    ramp_secs: f64,
) -> anyhow::Result<ExitCode> {
    let path = config
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/vtest.toml"));
    let config = AgentConfig::load(&path)?;
    let model = edge_agent::detect::Model::load(edge_agent::detect::ModelManifest::load(
        &config.model.manifest_path(),
    )?)?;
    let first = config
        .cameras
        .first()
        .with_context(|| format!("{} has no camera to take rules from", path.display()))?;
    let edge_agent::source::SourceConfig::Ffmpeg(f) = &first.source else {
        anyhow::bail!(
            "{}: the soak plays the first camera's video file; it is not an ffmpeg source",
            path.display()
        );
    };
    let video = PathBuf::from(f.input.expose());
    let cfg = edge_tools::soak::SoakConfig {
        video,
        rules: first.rules.clone(),
        fps,
        sessions: config.model.sessions,
        cameras: cameras.max(1),
        duration: Duration::from_secs_f64(minutes.max(0.05) * 60.0),
        sample: Duration::from_secs_f64(sample_secs.max(1.0)),
        ramp,
        ramp_step: Duration::from_secs_f64(ramp_secs.max(5.0)),
    };
    println!(
        "soak model={} video={} cameras={} fps={} minutes={} sessions={}",
        model.name(),
        cfg.video.display(),
        cfg.cameras,
        cfg.fps,
        minutes,
        cfg.sessions
    );
    tokio::runtime::Runtime::new()?.block_on(edge_tools::soak::run(&model, &cfg))?;
    Ok(ExitCode::SUCCESS)
}

fn default_frames_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("../shared/samples/frames");
    if shared.is_dir() {
        shared
    } else {
        root.join(".cache/samples/frames")
    }
}

fn run_bench(
    args: &ModelArgs,
    frames: Option<PathBuf>,
    seconds: f64,
    sessions: usize,
) -> anyhow::Result<ExitCode> {
    let dir = frames.unwrap_or_else(default_frames_dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading frames directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    files.sort();
    let frames = files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Ok((p.display().to_string(), bytes))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        !frames.is_empty(),
        "no JPEG or PNG frames in {}",
        dir.display()
    );
    let model = args.load_model()?;
    let cfg = BenchConfig {
        frames,
        duration: Duration::from_secs_f64(seconds.max(0.5)),
        sessions: sessions.max(1),
        detector: args.detector_options(sessions),
    };
    println!(
        "model={} sha256={} frames={} dir={} sessions={} threads_per_session={} spin={} seconds={}",
        model.name(),
        &model.sha256[..12],
        cfg.frames.len(),
        dir.display(),
        cfg.sessions,
        cfg.detector.intra_threads,
        cfg.detector.spinning,
        seconds
    );
    let r = bench::run(&model, &cfg)?;
    for f in &r.ort {
        println!(
            "bare ORT   {} session(s) x {} thread(s), spinning {:<3}: {:7.1} fps",
            f.sessions,
            f.threads,
            if f.spinning { "on" } else { "off" },
            f.fps
        );
    }
    println!(
        "pipeline   {} session(s) x {} thread(s), spinning {:<3}: {:7.1} fps",
        r.sessions,
        r.threads,
        if cfg.detector.spinning { "on" } else { "off" },
        r.pipeline_fps
    );
    println!(
        "pipeline stages (mean ms/frame): decode={:.2} preprocess={:.2} inference={:.2} postprocess={:.2}",
        r.decode_ms, r.preprocess_ms, r.inference_ms, r.postprocess_ms
    );
    println!("{}", r.summary_line());
    Ok(ExitCode::SUCCESS)
}
