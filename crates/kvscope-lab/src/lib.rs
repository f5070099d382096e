//! kvscope-lab: the KV state and capacity experiment (course Lab 4).
//!
//! Workloads ([`workload`], [`textgen`], [`dataset`]) run on an engine
//! ([`runner`]); the capacity table ([`capacity`]), the causal-chain sweep
//! ([`causal`]), the lifecycle diagram ([`lifecycle`]), timelines and plots
//! ([`timeline`], [`plots`]) and the report are all built from what the run
//! emitted: the KV event stream and the per-step statistics.

pub mod artifacts;
pub mod backend;
pub mod capacity;
pub mod causal;
pub mod dataset;
pub mod lab;
pub mod lifecycle;
pub mod plots;
pub mod probe_compare;
pub mod report;
pub mod runner;
pub mod summary;
pub mod svg;
pub mod textgen;
pub mod timeline;
pub mod validation;
pub mod workload;
