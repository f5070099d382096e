//! `report.md`: the lab's submission template (handout §12), filled from
//! the run. Chinese by default, English on request. Every number here was
//! measured in this run or computed from measured numbers; estimates say
//! what they leave out, and the probe is never presented as a benefit.
//!
//! The run fills a typed [`ReportModel`] once ([`model`]); a template per
//! language (`templates/report.{zh,en}.md.j2`, [`template`]) writes the
//! words around its figures.

mod environment;
mod model;
mod nano_vllm;
mod stall_quote;
mod template;

use crate::lab::LabResults;
use crate::lifecycle::LifecycleGraph;
pub use environment::{Environment, Load};
use kvscope_core::EngineConfig;
use kvscope_experiment::capacity::CapacityRow;
pub use model::ReportModel;
use serde::Serialize;
pub(crate) use template::render_analysis;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

/// Extra context the binary knows: date, version, machine.
#[derive(Clone, Debug, Default)]
pub struct ReportContext {
    pub date: String,
    pub kvscope_version: String,
    pub machine: String,
    pub command: String,
    /// Real-vs-simulated validation table (markdown), when it was run.
    pub sim_validation: Option<String>,
    /// Set when a student's block manager ran the lab instead of kvscope's.
    pub block_manager: Option<StudentBlockManager>,
    /// Memory, CPU features, build, seed and load (section 12.1).
    pub environment: Environment,
}

/// A student's block manager that ran the lab (`--block-manager FILE.py`):
/// its file and the code sites of its methods (`file.py:LINE::method`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StudentBlockManager {
    pub file: String,
    pub allocate: String,
    pub may_append: String,
    pub deallocate: String,
}

/// The lab's `report.md` of `res`; `graph` is the lifecycle of its cases.
pub fn render(res: &LabResults, graph: &LifecycleGraph, ctx: &ReportContext, lang: Lang) -> String {
    template::render(&ReportModel::lab(res, graph, ctx), lang)
}

/// `report.md` of `kvscope sim --out`: the lab's template with the lab's
/// capacity section alone, for the simulated cases, every time labelled
/// simulated.
pub fn render_simulated(
    rows: &[CapacityRow],
    cfg: &EngineConfig,
    backend: &str,
    ctx: &ReportContext,
    lang: Lang,
) -> String {
    template::render(&ReportModel::simulated(rows, cfg, backend, ctx), lang)
}
