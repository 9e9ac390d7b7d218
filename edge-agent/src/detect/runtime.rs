//! Locating and loading the ONNX Runtime shared library.
//!
//! `ort` is built with `load-dynamic`: nothing links against ONNX Runtime at build time, and the
//! library is opened here, once per process, from the first of:
//! 1. the path given in config (`--ort-lib` on the command line),
//! 2. the `ORT_DYLIB_PATH` environment variable (the name `ort` itself documents),
//! 3. where `cargo xtask setup` puts it: `<workspace>/.cache/onnxruntime/libonnxruntime.so`,
//! 4. the system-wide install of a packaged agent: `/usr/lib/edge-agent/libonnxruntime.so`.
//!
//! ONNX Runtime allows one environment per process, so the environment is a process-wide
//! singleton: the first caller's library wins, and later callers asking for another file get an
//! error rather than silently running on a different build.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Environment variable naming the ONNX Runtime library, as `ort` documents it.
pub const ORT_LIB_ENV: &str = "ORT_DYLIB_PATH";

/// Where `cargo xtask setup` places the library, relative to the workspace root.
pub const SETUP_LIB_RELATIVE: &str = ".cache/onnxruntime/libonnxruntime.so";

/// Where a packaged agent installs the library.
pub const SYSTEM_LIB: &str = "/usr/lib/edge-agent/libonnxruntime.so";

/// How to obtain the library; appended to every "not found / cannot load" error.
const HOW_TO_GET: &str = "run `cargo xtask setup` in the repository (it fetches the pinned \
    onnxruntime wheel with pip and extracts libonnxruntime.so), or point ORT_DYLIB_PATH or \
    --ort-lib at a libonnxruntime.so of version 1.20 or newer";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found; looked at: {}. To fix: {HOW_TO_GET}", .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound { searched: Vec<PathBuf> },
    #[error("ONNX Runtime library {path} could not be loaded: {reason}. To fix: {HOW_TO_GET}")]
    Load { path: PathBuf, reason: String },
    #[error(
        "ONNX Runtime is already loaded from {loaded} in this process; cannot switch to {requested}"
    )]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    #[error("ONNX Runtime environment could not be created from {path}: {reason}")]
    Environment { path: PathBuf, reason: String },
}

/// The workspace root this binary was built in; the set-up cache lives below it.
fn workspace_root() -> PathBuf {
    // CARGO_MANIFEST_DIR is edge-agent/; its parent is the workspace.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Path to `rel` inside the workspace this binary was built in (where the set-up cache lives).
pub fn workspace_path(rel: &str) -> PathBuf {
    workspace_root().join(rel)
}

/// Resolves which library file to load, without loading it.
///
/// An explicitly configured path (argument or environment) is used as given even when it does
/// not exist, so the error names the file the operator asked for rather than a fallback.
pub fn locate_library(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(p) = configured {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(ORT_LIB_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let candidates = [
        workspace_path(SETUP_LIB_RELATIVE),
        PathBuf::from(SYSTEM_LIB),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| RuntimeError::NotFound {
            searched: candidates.to_vec(),
        })
}

struct Loaded {
    path: PathBuf,
    env: ort::environment::Environment,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();
// Serialises first loads so two threads cannot race to create two environments.
static LOAD_LOCK: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime (once per process) and returns the shared environment.
pub fn environment(
    configured: Option<&Path>,
) -> Result<ort::environment::Environment, RuntimeError> {
    let path = locate_library(configured)?;
    let _guard = LOAD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = LOADED.get() {
        if same_file(&l.path, &path) {
            return Ok(l.env.clone());
        }
        return Err(RuntimeError::AlreadyLoaded {
            loaded: l.path.clone(),
            requested: path,
        });
    }
    if !path.is_file() {
        return Err(RuntimeError::Load {
            path,
            reason: "no such file".into(),
        });
    }
    let builder = ort::init_from(&path).map_err(|e| RuntimeError::Load {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let env = builder
        .with_name("edge-agent")
        .with_telemetry(false)
        .build()
        .map_err(|e| RuntimeError::Environment {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    tracing::info!(message = "ONNX Runtime loaded.", path = %path.display());
    let loaded = LOADED.get_or_init(|| Loaded { path, env });
    Ok(loaded.env.clone())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_path_wins_even_when_missing_so_the_error_names_it() {
        let p = Path::new("/nonexistent/libonnxruntime.so");
        assert_eq!(locate_library(Some(p)).unwrap(), p);
    }

    #[test]
    fn loading_a_file_that_is_not_a_library_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("libonnxruntime.so");
        std::fs::write(&bogus, b"not a shared object").unwrap();
        let err = environment(Some(&bogus)).unwrap_err().to_string();
        assert!(err.contains(&bogus.display().to_string()), "{err}");
        assert!(err.contains("cargo xtask setup"), "{err}");
    }
}
