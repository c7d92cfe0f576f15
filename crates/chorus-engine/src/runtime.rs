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

/// Where a voice's forward passes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider on GPU `id` (needs the `cuda` cargo feature and the
    /// `onnxruntime-gpu` library; see docs/operations.md).
    Cuda { id: i32, conv_search: ConvSearch },
}

/// How cuDNN picks a convolution algorithm for each new input shape (ONNX Runtime's `cudnn_conv_algo_search`).
/// Every chunk has its own length, so this runs for nearly every forward pass. Measured on an H100
/// (docs/benchmarks.md section 4): `Fixed` halved the time to first audio of one stream against `Heuristic`
/// and doubled the throughput without batching; with batching both gave the same throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvSearch {
    /// cuDNN's heuristics, asked again for each new shape.
    Heuristic,
    /// No search: the implicit-precomputed-GEMM algorithm.
    #[default]
    Fixed,
    /// Time every algorithm (ONNX Runtime's default; slow for a new shape).
    Exhaustive,
}

impl std::str::FromStr for ConvSearch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "heuristic" => Ok(Self::Heuristic),
            "fixed" | "default" => Ok(Self::Fixed),
            "exhaustive" => Ok(Self::Exhaustive),
            _ => Err(format!("unknown convolution search {s:?}: expected heuristic, fixed or exhaustive")),
        }
    }
}

impl Device {
    /// Whether this build can use CUDA (the `cuda` cargo feature).
    pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

    /// Chunks batched into one forward pass by default: none on a CPU (batching a VITS graph does not pay there:
    /// 0.6-0.95x the throughput of single calls), 16 on a GPU.
    pub fn default_max_batch(self) -> usize {
        match self {
            Self::Cpu => 1,
            Self::Cuda { .. } => 16,
        }
    }

    pub fn is_gpu(self) -> bool {
        matches!(self, Self::Cuda { .. })
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda { id, .. } => write!(f, "cuda:{id}"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = String;

    /// `cpu`, `cuda` (GPU 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda { id: 0, conv_search: ConvSearch::default() }),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<i32>().ok())
                .filter(|n| *n >= 0)
                .map(|id| Self::Cuda { id, conv_search: ConvSearch::default() })
                .ok_or_else(|| format!("unknown device {s:?}: expected cpu, cuda or cuda:N")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ConvSearch, Device};

    #[test]
    fn devices_parse_and_print() {
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        let cuda = |id| Device::Cuda { id, conv_search: ConvSearch::Fixed };
        assert_eq!("CUDA".parse(), Ok(cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(cuda(3)));
        assert_eq!("fixed".parse(), Ok(ConvSearch::Fixed));
        assert!("fastest".parse::<ConvSearch>().is_err());
        assert!("cuda:-1".parse::<Device>().is_err());
        assert!("tpu".parse::<Device>().is_err());
        assert_eq!(cuda(1).to_string(), "cuda:1");
        assert_eq!(Device::Cpu.default_max_batch(), 1);
        assert!(cuda(0).default_max_batch() > 1);
    }
}
