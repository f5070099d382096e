//! `report.md`: the lab's submission template (handout §12), filled from
//! the run. Chinese by default, English on request. Every number here was
//! measured in this run or computed from measured numbers; estimates say
//! what they leave out, and the probe is never presented as a benefit.
//!
//! The run fills a typed [`ReportModel`] once ([`model`]); a template per
//! language (`templates/report.{zh,en}.md.j2`, `crate::template`) writes the
//! words around its figures.

mod environment;
mod model;
mod nano_vllm;
mod stall_quote;

pub use crate::lang::Lang;
use crate::lifecycle::LifecycleGraph;
use crate::results::LabResults;
pub use environment::{Environment, Load};
use kvscope_core::EngineConfig;
use kvscope_experiment::capacity::CapacityRow;
pub use model::{CapacityTable, ReportModel, Texts};
use serde::Serialize;

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
    crate::template::render_report(&ReportModel::lab(res, graph, ctx), lang)
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
    crate::template::render_report(&ReportModel::simulated(rows, cfg, backend, ctx), lang)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::tests::small_run;
    use crate::template::{environment, render_report, report_template};

    fn sim_model() -> ReportModel {
        let run = small_run(40);
        let row = CapacityRow::from_run(&run, false);
        ReportModel::simulated(&[row], &run.config, "test on cpu", &ReportContext::default())
    }

    #[test]
    fn a_field_missing_from_the_model_is_an_error_not_a_blank() {
        let env = environment();
        for lang in [Lang::Zh, Lang::En] {
            let template = env.get_template(report_template(lang)).unwrap();
            let mut model = serde_json::to_value(sim_model()).unwrap();
            assert!(template.render(&model).is_ok());
            model["pool"].as_object_mut().unwrap().remove("total");
            let err = template.render(&model).expect_err("pool.total is gone");
            assert_eq!(err.kind(), minijinja::ErrorKind::UndefinedError, "{err:#}");
        }
        assert!(env.render_str("{{ typo }}", ()).is_err(), "strict in every template");
    }

    #[test]
    fn sim_out_times_are_labelled_simulated_in_both_languages() {
        let model = sim_model();
        let en = render_report(&model, Lang::En);
        let zh = render_report(&model, Lang::Zh);
        assert!(en.contains("TTFT p50 / p90 / p99 (simulated s)") && en.contains("| test_case |"), "{en}");
        assert!(zh.contains("TTFT p50 / p90 / p99 (模拟秒)") && zh.contains("| test_case |"), "{zh}");
        assert!(
            en.ends_with("the table shows \"max (n = …)\" instead.\n") && zh.ends_with("改为给出 \"最大 (n = …)\"。\n")
        );
    }
}
