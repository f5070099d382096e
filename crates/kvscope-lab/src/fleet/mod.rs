//! `kvscope lab --fleet N`: the fleet experiment. The CLI starts N
//! `kvscope serve` replicas behind the SGLang Model Gateway once per
//! routing policy (a fresh fleet each time, so no policy finds another's
//! cache) and runs `shared_prefix_chats` through the gateway with the
//! target path (`target/`, `--replica-metrics` on the replicas); this
//! module only reads what the runs measured:
//!
//! - policy.rs: one policy's figures, per replica and for the fleet;
//! - chain.rs: the fleet-level causal chain, each link checked;
//! - fault.rs: a replica killed mid-run — failed and retried requests,
//!   the survivors' KV state;
//! - figure.rs: KV usage per replica over time, a panel per policy;
//! - results.rs: everything found; report_model.rs: report.md's figures
//!   (templates fleet.{zh,en}.md.j2); files.rs: fleet.json, report.md,
//!   the figure and the per-replica CSVs.

pub mod chain;
pub mod fault;
pub mod figure;
pub mod files;
pub mod policy;
pub mod report_model;
pub mod results;
