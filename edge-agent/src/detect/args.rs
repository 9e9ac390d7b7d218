//! The model flags shared by the commands that load a model outside a config: `edge-agent
//! detect` here and `edge-tools bench`.

use std::path::PathBuf;
use std::sync::Arc;

use super::{DetectorOptions, Model, ModelManifest, manifest};

/// Which model, which ONNX Runtime, how many threads.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Model manifest (TOML). Default: models/yolox_nano.toml of this build's workspace.
    #[arg(long, value_name = "MANIFEST")]
    pub model: Option<PathBuf>,
    /// ONNX Runtime library. Default: $ORT_DYLIB_PATH, then the set-up cache.
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per session. Default: all cores divided among sessions.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Let ONNX Runtime threads spin while idle (lower latency, more CPU).
    #[arg(long)]
    pub spin: bool,
}

impl ModelArgs {
    /// The manifest (`--model`, else the workspace's) and its model.
    pub fn load_model(&self) -> anyhow::Result<Arc<Model>> {
        let path = self
            .model
            .clone()
            .unwrap_or_else(manifest::default_manifest_path);
        Ok(Model::load(ModelManifest::load(&path)?)?)
    }

    /// Detector options for `sessions` sessions sharing the cores.
    pub fn detector_options(&self, sessions: usize) -> DetectorOptions {
        let defaults = DetectorOptions::default();
        DetectorOptions {
            ort_library: self.ort_lib.clone(),
            intra_threads: self
                .threads
                .unwrap_or((defaults.intra_threads / sessions.max(1)).max(1)),
            spinning: self.spin,
            ..defaults
        }
    }
}
