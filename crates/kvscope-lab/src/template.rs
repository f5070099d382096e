//! The report templates, one per language (and the generated analysis's,
//! rendered on its own), embedded so the binary needs no files beside it,
//! and the environment that renders them.

use crate::lang::Lang;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

const REPORT_ZH: &str = "report.zh.md.j2";
const REPORT_EN: &str = "report.en.md.j2";
const ANALYSIS_ZH: &str = "analysis.zh.md.j2";
const ANALYSIS_EN: &str = "analysis.en.md.j2";
const TARGET_ZH: &str = "target_report.zh.md.j2";
const TARGET_EN: &str = "target_report.en.md.j2";
const FLEET_ZH: &str = "fleet.zh.md.j2";
const FLEET_EN: &str = "fleet.en.md.j2";

/// `shared.{zh,en}.md.j2` hold the macros both reports import (the
/// capacity table, the notes and the evidence rule they share).
const TEMPLATES: [(&str, &str); 10] = [
    (REPORT_ZH, include_str!("../templates/report.zh.md.j2")),
    (REPORT_EN, include_str!("../templates/report.en.md.j2")),
    (ANALYSIS_ZH, include_str!("../templates/analysis.zh.md.j2")),
    (ANALYSIS_EN, include_str!("../templates/analysis.en.md.j2")),
    ("shared.zh.md.j2", include_str!("../templates/shared.zh.md.j2")),
    ("shared.en.md.j2", include_str!("../templates/shared.en.md.j2")),
    (TARGET_ZH, include_str!("../templates/target_report.zh.md.j2")),
    (TARGET_EN, include_str!("../templates/target_report.en.md.j2")),
    (FLEET_ZH, include_str!("../templates/fleet.zh.md.j2")),
    (FLEET_EN, include_str!("../templates/fleet.en.md.j2")),
];

pub(crate) fn report_template(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => REPORT_ZH,
        Lang::En => REPORT_EN,
    }
}

/// Strict about undefined variables: a field the model lacks (or a typo in
/// a template) is an error in the tests, not a blank in a student's report.
/// Markdown is not escaped; a line holding only a tag leaves nothing behind.
pub(crate) fn environment() -> Environment<'static> {
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

/// The report in `lang`, over its model (`report::ReportModel`).
pub(crate) fn render_report(model: &impl Serialize, lang: Lang) -> String {
    render_template(report_template(lang), model)
}

/// A target's report (`kvscope lab --target`) in `lang`, over its model
/// (`target::report_model::TargetReportModel`).
pub(crate) fn render_target_report(model: &impl Serialize, lang: Lang) -> String {
    render_template(if lang == Lang::Zh { TARGET_ZH } else { TARGET_EN }, model)
}

/// The generated analysis paragraph (one line, no newline), over its
/// figures (`analysis::Analysis`).
pub(crate) fn render_analysis(figures: &impl Serialize, zh: bool) -> String {
    render_template(if zh { ANALYSIS_ZH } else { ANALYSIS_EN }, figures).trim_end().to_string()
}

/// The fleet report (`kvscope lab --fleet`) in `lang`, over its model
/// (`fleet::report_model::FleetModel`).
pub(crate) fn render_fleet(model: &impl Serialize, lang: Lang) -> String {
    render_template(if lang == Lang::Zh { FLEET_ZH } else { FLEET_EN }, model)
}

/// A failure here is a bug in a template or its model, never in the run:
/// the tests render every branch of each.
fn render_template(name: &str, model: &impl Serialize) -> String {
    let env = environment();
    let template = env.get_template(name).expect("registered in TEMPLATES");
    template.render(model).unwrap_or_else(|e| panic!("{name} does not render; fix the template or its model: {e:#}"))
}
