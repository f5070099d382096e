//! A target's artifacts: report.md (the lab's template system, a template
//! per language over [`TargetReportModel`]), capacity.csv (the experiment
//! layer's columns, blank where the engine exposed nothing), metrics.csv
//! (every scrape, time-stamped), kv_lifecycle.mmd, the failure conditions'
//! failure.csv / failure.json / failure.svg when searched, replicas.csv
//! with `--replica-metrics`, and target.json (every figure).

use super::poller::POLLED;
use super::report_model::TargetReportModel;
use super::TargetResults;
use crate::lang::Lang;
use kvscope_experiment::capacity::to_csv_known;
use std::fmt::Write;
use std::path::Path;

pub fn write(res: &TargetResults, out: &Path, lang: Lang) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.md"), markdown(res, lang))?;
    std::fs::write(out.join("capacity.csv"), to_csv_known(&res.capacity, &res.capacity_known))?;
    std::fs::write(out.join("metrics.csv"), metrics_csv(res))?;
    if let Some(mmd) = super::block_lifecycle::mermaid(res) {
        std::fs::write(out.join("kv_lifecycle.mmd"), mmd)?;
    }
    if let Some(f) = &res.failure {
        std::fs::write(out.join("failure.csv"), crate::failure_report::csv(f))?;
        std::fs::write(out.join("failure.svg"), crate::failure_report::svg(f, lang))?;
        let json = serde_json::to_string_pretty(f).map_err(std::io::Error::other)?;
        std::fs::write(out.join("failure.json"), json)?;
    }
    if let Some(replicas) = &res.replicas {
        std::fs::write(out.join("replicas.csv"), super::replica_report::csv(replicas))?;
    }
    let json = serde_json::to_string_pretty(res).map_err(std::io::Error::other)?;
    std::fs::write(out.join("target.json"), json)
}

/// report.md in `lang`.
pub fn markdown(res: &TargetResults, lang: Lang) -> String {
    crate::template::render_target_report(&TargetReportModel::new(res), lang)
}

/// `metrics.csv`: one line per kept scrape, seconds since the start and
/// each polled quantity under the metric name a scrape held it as (empty:
/// not on that page; `(not exposed)`: on no page).
pub fn metrics_csv(res: &TargetResults) -> String {
    let mut out = String::from("t_s");
    for q in POLLED {
        match res.exposed.metric(q) {
            Some(name) => write!(out, ",{name}"),
            None => write!(out, ",{q:?} (not exposed)"),
        }
        .expect("writing to a String");
    }
    out.push('\n');
    for sample in &res.samples {
        let _ = write!(out, "{:.3}", sample.t);
        for v in &sample.values {
            let _ = write!(out, ",{}", v.map_or(String::new(), |v| v.to_string()));
        }
        out.push('\n');
    }
    out
}

/// What a target that could not be reached at all leaves: the error, and
/// the list of everything the report would have had.
pub fn unreachable(url: &str, error: &str, out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    let md = format!(
        "# kvscope lab — target {url}\n\n**Partial report: the target could not be reached.**\n\n{error}\n\nMissing: every case, the capacity table, the engine's metrics and KV events.\n"
    );
    std::fs::write(out.join("report.md"), md)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that reached the target but learned nothing of it.
    fn nothing_known() -> TargetResults {
        TargetResults {
            url: "http://127.0.0.1:9".into(),
            engine: None,
            token_exact: false,
            kv_estimate: None,
            cases: Vec::new(),
            case_blocks: Vec::new(),
            capacity: Vec::new(),
            capacity_known: Vec::new(),
            solo_ttft: Vec::new(),
            exposed: Default::default(),
            load_sweeps: Vec::new(),
            failure: None,
            metrics_samples: 0,
            samples: Vec::new(),
            metrics_failed: 2,
            metrics_last_error: Some("HTTP 500".into()),
            kv_events: None,
            replicas: None,
            problems: vec!["every case failed".into()],
            wall_seconds: 0.5,
        }
    }

    /// A llama-server that reached the lab: `page` is all its scrapes held.
    fn llama_server_showing(page: &str) -> TargetResults {
        use kvscope_wire::{EngineFamily, MetricsPage};
        let page = MetricsPage::parse(page);
        let engine = super::super::engine_id::EngineIdentity {
            family: EngineFamily::LlamaCpp.name(),
            family_source: "detected from /metrics".into(),
            name: "llama-server".into(),
            version: Some("b6000".into()),
            model: None,
            vocab_size: None,
            max_model_len: None,
            pool: Default::default(),
        };
        let exposed = super::super::exposed::Exposed::of(EngineFamily::LlamaCpp, &page);
        TargetResults { engine: Some(engine), exposed, problems: Vec::new(), ..nothing_known() }
    }

    /// Every quantity the lab reads has its words and its fill-in in both
    /// templates (they are strict: a missing key fails the render).
    #[test]
    fn an_engine_exposing_nothing_lists_every_quantity_in_words() {
        let res = llama_server_showing("");
        for (lang, words) in
            [(Lang::En, "- evictions (`Evictions`): evictions left blank"), (Lang::Zh, "- 驱逐 (`Evictions`): ")]
        {
            let md = markdown(&res, lang);
            assert!(md.contains(words), "{md}");
            for q in kvscope_wire::Quantity::ALL {
                let listed =
                    !matches!(q, kvscope_wire::Quantity::PromptTokens | kvscope_wire::Quantity::GenerationTokens);
                assert_eq!(md.contains(&format!(" (`{q:?}`): ")), listed, "{q:?}:\n{md}");
            }
        }
    }

    #[test]
    fn what_is_not_exposed_follows_the_scrapes_not_the_family_table() {
        let without = markdown(&llama_server_showing("llamacpp:requests_processing 1\n"), Lang::En);
        let kv_usage = "- KV usage (`KvUsage`): peak KV usage left blank (the family exports it as `llamacpp:kv_cache_usage_ratio`";
        assert!(without.contains(kv_usage), "{without}");
        assert!(without.contains("- Engine: llama-server b6000 (metric family `llamacpp`"), "{without}");
        assert!(!without.contains("(`RunningRequests`)"), "a scrape held it:\n{without}");
        assert!(
            without.contains("- queue time (`QueueTime`): queue wait = TTFT − the case's TTFT at concurrency 1"),
            "{without}"
        );
        let with = markdown(
            &llama_server_showing("llamacpp:requests_processing 1\nllamacpp:kv_cache_usage_ratio 0.5\n"),
            Lang::En,
        );
        assert!(!with.contains("(`KvUsage`)"), "a scrape held it:\n{with}");
        let zh = markdown(&llama_server_showing("llamacpp:requests_processing 1\n"), Lang::Zh);
        assert!(
            zh.contains("- KV 使用率 (`KvUsage`): KV 使用率峰值留空") && !zh.contains("(`RunningRequests`)"),
            "{zh}"
        );
    }

    #[test]
    fn the_template_renders_a_partial_report_in_both_languages() {
        let res = nothing_known();
        let en = markdown(&res, Lang::En);
        let zh = markdown(&res, Lang::Zh);
        for needle in ["| case | prompt_len (tokens) [engine usage.prompt_tokens]", "the family is unknown", "HTTP 500"]
        {
            assert!(en.contains(needle), "{needle:?}:\n{en}");
        }
        assert!(en.contains("## Missing and failed (partial report)\n\n- every case failed\n"), "{en}");
        assert!(zh.contains("## 缺失与错误（部分报告）") && zh.contains("指标族未知"), "{zh}");
        assert!(en.contains("on its own it proves no speed-up") && zh.contains("它不能单独证明任何加速"));
    }
}
