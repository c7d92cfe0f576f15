//! The process-wide ONNX Runtime environment, loaded at run time from a shared library (`ort` load-dynamic).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::EngineError;

/// The oldest ONNX Runtime minor version the `ort` bindings accept (1.x).
const MIN_ORT_MINOR: u32 = 17;

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Where to find `libonnxruntime.so`: `ORT_DYLIB_PATH` if set, else `runtime_dir/onnxruntime/libonnxruntime.so`.
pub fn discover_library(runtime_dir: &Path) -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => runtime_dir.join("onnxruntime").join("libonnxruntime.so"),
    }
}

/// Loads the library (once per process) and returns the environment sessions are built in.
pub fn environment(library: &Path) -> Result<Environment, EngineError> {
    ENVIRONMENT
        .get_or_init(|| {
            if !library.exists() {
                return Err(format!(
                    "{} not found (run scripts/setup, or set ORT_DYLIB_PATH)",
                    library.display()
                ));
            }
            match ort::util::probe(library) {
                Some(minor) if minor >= MIN_ORT_MINOR => {
                    tracing::info!(library = %library.display(), version = %format!("1.{minor}"), "Loading ONNX Runtime.");
                }
                Some(minor) => {
                    return Err(format!("{} is ONNX Runtime 1.{minor}; 1.{MIN_ORT_MINOR} or newer is needed", library.display()));
                }
                None => return Err(format!("{} is not a usable ONNX Runtime library", library.display())),
            }
            ort::init_from(library)
                .map_err(|e| e.to_string())?
                .with_name("chorus")
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(EngineError::Runtime)
}
