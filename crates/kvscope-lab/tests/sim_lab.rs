//! The lab's new parts end to end on the simulator (no model, no
//! calibration: the uncalibrated `cpu` preset): repeats, the failure-
//! condition search, knob sweeps, the artifacts (PNGs, report.html),
//! `compare`, and the generated analysis's length in both languages.

mod common;

use common::{config, lab};
use kvscope_experiment::workload::Scale;
use kvscope_lab::analysis::{paragraph, word_count, zi_count};
use kvscope_lab::failure::Source;
use kvscope_lab::lab::LabResults;
use kvscope_lab::report::{Lang, ReportContext};
use std::path::Path;

fn write(res: &LabResults, dir: &Path, lang: Lang) {
    kvscope_lab::artifacts::write_all(res, dir, &ReportContext::default(), lang).unwrap();
}

#[test]
fn full_scale_lab_repeats_searches_sweeps_and_writes_everything() {
    let res = lab(&config(Scale::Lab, 2, &["block-size=8,16,32", "kv-memory=128MiB,256MiB", "max-running=8,32"]));
    assert_eq!(res.repeat, 2);
    assert!(res.capacity_repeats.iter().all(|r| r.len() == 2));
    assert!(res.sweep_repeats.iter().all(|r| r.len() == 2));
    assert_eq!(res.probe_repeats.len(), 2);
    let chain = res.chain.as_ref().unwrap();
    assert!(chain.kv_grows.established() && chain.live_shrinks.established());

    // Failure conditions: one point per context length, all simulated here,
    // and longer contexts stall at no higher a load than shorter ones.
    let f = res.failure.as_ref().unwrap();
    assert_eq!(f.points.len(), res.sweep_spec.prompt_lens.len());
    let stall: Vec<f64> = f.points.iter().map(|p| p.admission_stall.load.unwrap_or(f64::INFINITY)).collect();
    assert!(stall.windows(2).all(|w| w[1] <= w[0]), "{stall:?}");
    assert!(f.points.iter().all(|p| p.admission_stall.source == Source::Simulated));

    // Knob sweeps: block size trades fragmentation; a bigger pool holds more.
    let frag = |i: usize| kvscope_lab::knob_sweep::fragmentation(&res.knob_sweeps[0].points[i].rows[0]);
    assert!(frag(0) < frag(2), "short_ctx fragmentation grows with block size: {} vs {}", frag(0), frag(2));
    let long_live =
        |i: usize| res.knob_sweeps[1].points[i].rows.iter().find(|r| r.case == "long_ctx").unwrap().live_requests_max;
    assert!(long_live(0) < long_live(1), "twice the pool, more live long requests");

    // The generated analysis: 500–800 字 in Chinese, 250–400 words in English.
    let zh = zi_count(&paragraph(&res, true));
    let en = word_count(&paragraph(&res, false));
    eprintln!("full-scale sim analysis: {zh} 字, {en} words");
    assert!((500..=800).contains(&zh), "zh analysis: {zh} 字");
    assert!((250..=400).contains(&en), "en analysis: {en} words");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("full");
    write(&res, &dir, Lang::Zh);
    for f in ["report.html", "failure.csv", "failure.json", "failure.svg", "failure.png", "sweep_block-size.png"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "svg") {
            let png = std::fs::read(p.with_extension("png")).unwrap();
            assert!(png.starts_with(b"\x89PNG"), "{} has no PNG beside it", p.display());
        }
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<table>") && html.matches("<svg").count() >= 8, "SVGs inline");
    assert!(!html.contains("src=\"lifecycle.svg\""));
    let cap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("capacity.json")).unwrap()).unwrap();
    assert_eq!(cap["repeats"], 2);
    assert!(cap["rows_spread"][1]["ttft"]["p50"]["min"].is_number());
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("失败条件") && report.contains("旋钮扫描") && report.contains("2 次重复"));
    assert!(!report.contains("单次运行"), "the single-run caveat changes with --repeat");
    // Every case's state series starts at t = 0, with the queue.
    let stats = std::fs::read_to_string(dir.join("stats.csv")).unwrap();
    for case in ["short_ctx", "long_ctx", "mixed_ctx"] {
        let first = stats.lines().find(|l| l.starts_with(&format!("{case},"))).unwrap();
        assert!(first.starts_with(&format!("{case},0,0.000000,")), "{first}");
    }
}

#[test]
fn quick_single_run_analysis_is_in_range_and_says_it_is_one_run() {
    let res = lab(&config(Scale::Quick, 1, &[]));
    let zh = paragraph(&res, true);
    let en = paragraph(&res, false);
    eprintln!("quick sim analysis: {} 字, {} words", zi_count(&zh), word_count(&en));
    assert!((500..=800).contains(&zi_count(&zh)), "zh: {} 字", zi_count(&zh));
    assert!((250..=400).contains(&word_count(&en)), "en: {} words", word_count(&en));
    assert!(zh.contains("只运行了一次") && en.contains("no repeats"));
}

#[test]
fn compare_puts_two_runs_side_by_side_and_refuses_different_workloads() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, c_dir) = (tmp.path().join("cmp-a"), tmp.path().join("cmp-b"), tmp.path().join("cmp-c"));
    write(&lab(&config(Scale::Quick, 1, &[])), &a_dir, Lang::En);
    let mut bigger = config(Scale::Quick, 1, &[]);
    bigger.kv_memory_bytes = Some(96 << 20);
    write(&lab(&bigger), &b_dir, Lang::En);
    let mut other_seed = config(Scale::Quick, 1, &[]);
    other_seed.seed = 7;
    write(&lab(&other_seed), &c_dir, Lang::En);

    let c = kvscope_lab::compare::compare(&a_dir, &b_dir, false).unwrap();
    assert!(c.config_differences.iter().any(|d| d.setting == "engine.pool.num_blocks"), "{:?}", c.config_differences);
    let long_live = c.capacity.iter().find(|d| d.row == "long_ctx" && d.figure == "live_requests (max)").unwrap();
    assert!(long_live.delta > 0.0, "twice the pool: more live long requests");
    let md = kvscope_lab::compare::markdown(&c);
    assert!(md.contains("engine.pool.num_blocks") && md.contains("Δ (B − A)"));

    let err = kvscope_lab::compare::compare(&a_dir, &c_dir, false).unwrap_err().to_string();
    assert!(err.contains("workload.seed") && err.contains("--force"), "{err}");
    assert!(kvscope_lab::compare::compare(&a_dir, &c_dir, true).is_ok());
    let err = kvscope_lab::compare::compare(&a_dir, tmp.path(), false).unwrap_err().to_string();
    assert!(err.contains("no lab.json"), "{err}");
}
