//! The report templates, one per language, embedded so the binary needs no
//! files beside it, and the environment that renders them.

use super::model::ReportModel;
use super::Lang;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

const TEMPLATES: [(&str, &str); 2] = [
    ("report.zh.md.j2", include_str!("../../templates/report.zh.md.j2")),
    ("report.en.md.j2", include_str!("../../templates/report.en.md.j2")),
];

fn name(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => TEMPLATES[0].0,
        Lang::En => TEMPLATES[1].0,
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

/// The report in `lang`. A failure here is a bug in a template or the
/// model, never in the run: the tests render every branch of both.
pub(super) fn render(model: &ReportModel, lang: Lang) -> String {
    let env = environment();
    let template = env.get_template(name(lang)).expect("every language has a template");
    template
        .render(model)
        .unwrap_or_else(|e| panic!("{} does not render; fix the template or the report model: {e:#}", name(lang)))
}
