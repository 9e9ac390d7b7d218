//! `edge-agent` command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge_agent::bench::{self, BenchConfig};
use edge_agent::detect::{
    Detector, DetectorOptions, FrameDetections, Model, ModelManifest, manifest,
};
use protocol::Detection;
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(name = "edge-agent", version, about = "Sharp Eyes edge alerting agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by the commands that load a model.
#[derive(Debug, clap::Args)]
struct ModelArgs {
    /// Model manifest (TOML). Default: models/yolox_nano.toml of this build's workspace.
    #[arg(long, value_name = "MANIFEST")]
    model: Option<PathBuf>,
    /// ONNX Runtime library. Default: $ORT_DYLIB_PATH, then the set-up cache.
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per session. Default: all cores divided among sessions.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Let ONNX Runtime threads spin while idle (lower latency, more CPU).
    #[arg(long)]
    spin: bool,
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
        Command::Bench {
            model,
            frames,
            seconds,
            sessions,
        } => run_bench(&model, frames, seconds, sessions),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_model(args: &ModelArgs) -> anyhow::Result<std::sync::Arc<Model>> {
    let path = args
        .model
        .clone()
        .unwrap_or_else(manifest::default_manifest_path);
    let manifest = ModelManifest::load(&path)?;
    Ok(Model::load(manifest)?)
}

fn detector_options(args: &ModelArgs, sessions: usize) -> DetectorOptions {
    let defaults = DetectorOptions::default();
    DetectorOptions {
        ort_library: args.ort_lib.clone(),
        intra_threads: args
            .threads
            .unwrap_or((defaults.intra_threads / sessions.max(1)).max(1)),
        spinning: args.spin,
        ..defaults
    }
}

fn detect(
    args: &ModelArgs,
    score: Option<f32>,
    iou: Option<f32>,
    images: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let model = load_model(args)?;
    let opts = DetectorOptions {
        score_threshold: score,
        nms_iou: iou,
        ..detector_options(args, 1)
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
    let model = load_model(args)?;
    let cfg = BenchConfig {
        frames,
        duration: Duration::from_secs_f64(seconds.max(0.5)),
        sessions: sessions.max(1),
        detector: detector_options(args, sessions),
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
