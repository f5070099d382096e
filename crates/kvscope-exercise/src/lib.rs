//! kvscope-exercise: the course exercise. A student writes nano-vLLM's
//! `BlockManager` in Python; kvscope runs it inside the real engine and
//! grades it.
//!
//! - [`host`]: the `python3` process that hosts the student's class, and
//!   its JSON-lines protocol (a deadline on every call).
//! - [`external`]: `PyBlockManager`, the student's class behind
//!   kvscope-core's block-manager seam (`KvBlockManager`).
//! - [`checker`] and [`checking_executor`]: the grader's shadow of the pool
//!   and the gate in front of the model, checking every call and step.
//! - [`workloads`], [`grade`] and [`report`]: what `exercise check` runs and
//!   prints; [`finding`]: the properties and the first failure.
//! - [`skeleton`]: what `exercise init` writes for the student.

#![forbid(unsafe_code)]

pub mod checker;
pub mod checking_executor;
pub mod external;
pub mod finding;
pub mod grade;
pub mod host;
pub mod report;
pub mod skeleton;
pub mod workloads;

pub use external::PyBlockManager;
pub use finding::{Finding, Property};
pub use grade::{grade, Grade, GradeConfig, GradingBackend, Status};
pub use host::{HostConfig, HostError};
