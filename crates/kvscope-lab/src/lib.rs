//! kvscope-lab: the KV state and capacity experiment (course Lab 4).
//!
//! Workloads, the arrival-driven runner and the capacity table live in
//! `kvscope-experiment` (shared with `kvscope sim` and `kvscope bench`);
//! this crate runs the lab's cases on a [`backend`] ([`lab`]) and draws
//! what the run emitted: the causal-chain sweep ([`causal`]), the lifecycle diagram ([`lifecycle`]), timelines and plots
//! ([`timeline`], [`plots`]) and the report are all built from what the run
//! emitted: the KV event stream and the per-step statistics. The
//! KV-precision extension ([`kv_precision`]) reruns one case per KV storage
//! format in the same pool bytes and scores each format's predictions.

#![forbid(unsafe_code)]

pub mod analysis;
pub mod artifacts;
pub mod backend;
pub mod causal;
pub mod compare;
pub mod config;
pub mod failure;
pub mod failure_report;
pub mod figure_text;
pub mod fleet;
pub mod html;
pub mod knob;
pub mod knob_sweep;
pub mod kv_precision;
pub mod kv_precision_report;
pub mod lab;
pub mod lang;
pub mod lifecycle;
pub mod plots;
pub mod png;
pub mod probe_compare;
pub mod repeat;
pub mod report;
pub mod results;
pub mod run;
pub mod svg;
pub mod target;
pub mod template;
pub mod timeline;
pub mod validation;
pub mod workloads;
#[cfg(test)]
mod zh_figures;
