//! The report templates, one per language (and the generated analysis's,
//! rendered on its own), embedded so the binary needs no files beside it,
//! and the environment that renders them.

use super::model::ReportModel;
use super::Lang;
use crate::analysis::Analysis;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

const REPORT_ZH: &str = "report.zh.md.j2";
const REPORT_EN: &str = "report.en.md.j2";
const ANALYSIS_ZH: &str = "analysis.zh.md.j2";
const ANALYSIS_EN: &str = "analysis.en.md.j2";

const TEMPLATES: [(&str, &str); 4] = [
    (REPORT_ZH, include_str!("../../templates/report.zh.md.j2")),
    (REPORT_EN, include_str!("../../templates/report.en.md.j2")),
    (ANALYSIS_ZH, include_str!("../../templates/analysis.zh.md.j2")),
    (ANALYSIS_EN, include_str!("../../templates/analysis.en.md.j2")),
];

fn name(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => REPORT_ZH,
        Lang::En => REPORT_EN,
    }
}

/// Strict about undefined variables: a field the model lacks (or a typo in
/// a template) is an error in the tests, not a blank in a student's report.
/// Markdown is not escaped; a line holding only a tag leaves nothing behind.
pub(super) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    for (name, source) in TEMPLATES {
        env.add_template(name, source).unwrap_or_else(|e| panic!("{name} does not parse: {e:#}"));
    }
    env
}

/// The report in `lang`.
pub(super) fn render(model: &ReportModel, lang: Lang) -> String {
    render_template(name(lang), model)
}

/// The generated analysis paragraph (one line, no newline).
pub(crate) fn render_analysis(figures: &Analysis, zh: bool) -> String {
    render_template(if zh { ANALYSIS_ZH } else { ANALYSIS_EN }, figures).trim_end().to_string()
}

/// A failure here is a bug in a template or its model, never in the run:
/// the tests render every branch of each.
fn render_template(name: &str, model: &impl Serialize) -> String {
    let env = environment();
    let template = env.get_template(name).expect("registered in TEMPLATES");
    template.render(model).unwrap_or_else(|e| panic!("{name} does not render; fix the template or its model: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::tests::small_run;
    use crate::report::ReportContext;
    use kvscope_experiment::capacity::CapacityRow;

    fn sim_model() -> ReportModel {
        let run = small_run(40);
        let row = CapacityRow::from_run(&run, false);
        ReportModel::simulated(&[row], &run.config, "test on cpu", &ReportContext::default())
    }

    #[test]
    fn a_field_missing_from_the_model_is_an_error_not_a_blank() {
        let env = environment();
        for lang in [Lang::Zh, Lang::En] {
            let template = env.get_template(name(lang)).unwrap();
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
        let en = render(&model, Lang::En);
        let zh = render(&model, Lang::Zh);
        assert!(en.contains("TTFT p50 / p90 / p99 (simulated s)") && en.contains("| test_case |"), "{en}");
        assert!(zh.contains("TTFT p50 / p90 / p99 (模拟秒)") && zh.contains("| test_case |"), "{zh}");
        assert!(
            en.ends_with("the table shows \"max (n = …)\" instead.\n") && zh.ends_with("改为给出 \"最大 (n = …)\"。\n")
        );
    }
}
