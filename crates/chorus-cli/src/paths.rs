//! Where the voices and run-time libraries are: flags, then environment, then the directories `scripts/setup`
//! fills (`models/`, `runtime/`) in the working directory or beside the executable's checkout.

use std::path::{Path, PathBuf};

use chorus_engine::EngineConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct PathArgs {
    /// Directory of voices (`<voice>/<voice>.onnx.json` and graph).
    #[arg(long, global = true, env = "CHORUS_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Directory of run-time libraries (`onnxruntime/`, `espeak-ng/`).
    #[arg(long, global = true, env = "CHORUS_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
}

impl PathArgs {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(|| find_dir("models"))
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.runtime_dir.clone().unwrap_or_else(|| find_dir("runtime"))
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig::new(self.models_dir(), self.runtime_dir())
    }
}

/// `./name` if it exists, else the first `name` found walking up from the executable (target/release/chorus
/// sits two levels below the checkout), else `./name` (the error then names it).
fn find_dir(name: &str) -> PathBuf {
    let local = PathBuf::from(name);
    if local.is_dir() {
        return local;
    }
    let exe = std::env::current_exe().ok();
    exe.as_deref()
        .and_then(Path::parent)
        .into_iter()
        .flat_map(Path::ancestors)
        .map(|dir| dir.join(name))
        .find(|p| p.is_dir())
        .unwrap_or(local)
}
