//! What can go wrong setting up or calibrating a simulation.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown model preset {0:?}: use one of {list}", list = crate::MODEL_NAMES.join(", "))]
    UnknownModel(String),
    #[error("unknown hardware preset {0:?}: use one of {list}", list = crate::HARDWARE_NAMES.join(", "))]
    UnknownHardware(String),
    #[error("memory utilization must be in (0, 1], got {0}")]
    BadUtilization(f64),
    #[error("block size must be at least 1 token")]
    BadBlockSize,
    #[error(
        "{model} does not fit on {hardware}: {usable_bytes} usable bytes, {weight_bytes} of weights and {activation_reserve_bytes} of activation reserve leave no room for one KV block; pick bigger hardware or raise the memory utilization"
    )]
    NoRoomForKv { model: String, hardware: String, usable_bytes: u64, weight_bytes: u64, activation_reserve_bytes: u64 },
    #[error("calibration needs at least {needed} measured steps, got {got}")]
    TooFewSamples { needed: usize, got: usize },
    #[error("calibration measurement failed: {0}")]
    Executor(#[from] kvscope_core::ExecutorError),
    #[error("calibration file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("calibration file {path} is not valid calibration JSON ({source}); run `kvscope sim --calibrate` again")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error(transparent)]
    Config(#[from] kvscope_core::ConfigError),
    #[error("no home directory (HOME unset): give the calibration file path explicitly")]
    NoHome,
}
