//! kvscope-sim: the engine's scheduler and block manager driven by a cost
//! model instead of a model, for capacity questions at GPU scale.
//!
//! - [`model_preset`] and [`hardware`]: published shapes and datasheet
//!   numbers (every figure says where it comes from).
//! - [`kv_pool`]: memory × utilisation − weights − activation reserve.
//! - [`cost`]: the price of one step from its batch's shape
//!   ([`batch_shape`]; [`coefficients`]: the calibrated linear model's).
//! - [`executor`]: `SimExecutor`, the `Executor` that advances a `SimClock`.
//! - [`setup`]: presets → a ready `Engine<SimExecutor, SimClock>`.
//! - [`calibrate`]: measure a real executor, fit the `cpu` coefficients.
//! - [`max_rate`]: the rate search.
//! - [`router`] and [`fleet`]: N replicas behind a router modelled on the
//!   SGLang Model Gateway's policies (`kvscope sim --replicas N --router R`).
//!
//! Workloads and the arrival-driven runner are `kvscope-experiment`'s,
//! shared with the lab: a simulated run is the lab's run on this executor.

#![forbid(unsafe_code)]

pub mod batch_shape;
pub mod calibrate;
pub mod coefficients;
pub mod cost;
pub mod error;
pub mod executor;
pub mod fleet;
pub mod hardware;
pub mod kv_pool;
pub mod load_monitor;
pub mod max_rate;
pub mod model_preset;
pub mod router;
pub mod setup;
pub mod step_timer;

pub use batch_shape::BatchShape;
pub use calibrate::{
    calibrate, cpu_profile, default_calibration_path, fit, CalibrationFile, CalibrationFit, CalibrationPlan,
    HeldOutCheck, StepSample,
};
pub use coefficients::LinearCoefficients;
pub use cost::{Bound, CostModel, StepCost};
pub use error::SimError;
pub use executor::{SimExecutor, SimTotals};
pub use fleet::{run_fleet, FleetRun, ReplicaRun};
pub use hardware::{hardware_preset, HardwareProfile, HARDWARE_NAMES};
pub use kv_pool::{activation_reserve_estimate, kv_pool, KvPoolPlan};
pub use max_rate::find_max_rate;
pub use model_preset::{model_preset, ModelPreset, MODEL_NAMES};
pub use router::{CacheAwareConfig, Router, RouterKind, WorkerLoad};
pub use setup::{SimConfig, SimEngine, SimRunError};
pub use step_timer::StepTimer;
