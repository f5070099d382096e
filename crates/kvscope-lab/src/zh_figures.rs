//! A test over every figure at once: a zh figure draws no English words.
//! (Beside the figures, not in `figure_text.rs`, which they all use.)

use crate::lang::Lang;
use crate::lifecycle::tests::small_run;
use crate::lifecycle::LifecycleGraph;
use crate::plots::stats_svg;
use crate::timeline::timeline_svg;

/// The words of an SVG's `<text>` elements, code sites (`@ …`) left out.
fn drawn_words(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in svg.split("<text").skip(1) {
        let body = &chunk[chunk.find('>').expect("tag closes") + 1..chunk.find("</text>").expect("closed")];
        if body.starts_with("@ ") {
            continue;
        }
        out.extend(body.split(|c: char| !c.is_ascii_alphabetic() && c != '_').map(str::to_string));
    }
    out
}

#[test]
fn zh_figures_draw_no_english_words() {
    let run = small_run(40);
    let graph = LifecycleGraph::from_run(&run);
    let figures =
        [stats_svg(&run.stats, &run.spec.name, Lang::Zh), timeline_svg(&run, 12, Lang::Zh), graph.to_svg(Lang::Zh)];
    // The case's name and the one identifier the legend quotes.
    let allowed = ["test_case", "kvscope", "request_id"];
    for svg in &figures {
        for word in drawn_words(svg) {
            let english = word.len() > 3 && word.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            assert!(!english || allowed.contains(&word.as_str()), "English word {word:?} in a zh figure");
        }
    }
    // The same check finds the English figure's words.
    let en = stats_svg(&run.stats, &run.spec.name, Lang::En);
    assert!(drawn_words(&en).iter().any(|w| w == "waiting"));
}
