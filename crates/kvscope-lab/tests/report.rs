//! report.md in both languages, from the templates: the Chinese and the
//! English report are twins (the same sections, tables and figures), and
//! each branch of the template says what it should.

mod common;

use common::{config, lab};
use kvscope_core::KvDtype;
use kvscope_experiment::workload::Scale;
use kvscope_lab::causal::ChainAgreement;
use kvscope_lab::failure::Source;
use kvscope_lab::kv_precision::{KvAccuracy, KvDtypeRow, KvPrecision};
use kvscope_lab::lab::LabResults;
use kvscope_lab::lifecycle::LifecycleGraph;
use kvscope_lab::repeat::Agreement;
use kvscope_lab::report::{render, render_simulated, Lang, ReportContext, StudentBlockManager};
use std::collections::BTreeSet;

fn both(res: &LabResults, ctx: &ReportContext) -> (String, String) {
    let events: Vec<_> = res.cases.iter().flat_map(|c| c.events.iter().cloned()).collect();
    let graph = LifecycleGraph::from_events(&events);
    (render(res, &graph, ctx, Lang::Zh), render(res, &graph, ctx, Lang::En))
}

fn numbers(text: &str) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let tail = &rest[start..];
        let len = tail.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(tail.len());
        out.insert(tail[..len].trim_end_matches('.'));
        rest = &tail[len..];
    }
    out
}

/// Headings by level, and every table line by its number of cells: the
/// shape both languages share.
fn shape(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            if l.starts_with('#') {
                Some(l.split(' ').next().unwrap().to_string())
            } else if l.starts_with('|') {
                Some(format!("table row of {} cells", l.matches(" | ").count() + 1))
            } else {
                None
            }
        })
        .collect()
}

fn assert_twins(zh: &str, en: &str, what: &str) {
    assert_eq!(shape(zh), shape(en), "{what}: the two languages' sections and tables differ");
    let (zh, en) = (numbers(zh), numbers(en));
    let only_zh: Vec<_> = zh.difference(&en).collect();
    let only_en: Vec<_> = en.difference(&zh).collect();
    assert!(only_zh.is_empty() && only_en.is_empty(), "{what}: figures only in zh {only_zh:?}, only in en {only_en:?}");
}

fn student() -> StudentBlockManager {
    StudentBlockManager {
        file: "my_bm.py".into(),
        allocate: "my_bm.py:12::allocate".into(),
        may_append: "my_bm.py:40::may_append".into(),
        deallocate: "my_bm.py:55::deallocate".into(),
    }
}

/// Three formats in one pool: f32 cannot hold a request, f16 and int8 run
/// the case, int8's predictions were scored.
fn kv_precision(res: &LabResults) -> KvPrecision {
    let long = res.capacity.iter().find(|r| r.case == "long_ctx").unwrap().clone();
    let row = |kv_dtype, bytes_per_token, blocks, capacity: Option<_>, accuracy| KvDtypeRow {
        kv_dtype,
        bytes_per_token,
        blocks,
        token_slots: blocks * 16,
        capacity,
        accuracy,
    };
    let scored = KvAccuracy {
        positions: 300,
        top1_agreement: 0.973,
        decisive_positions: 250,
        decisive_top1_agreement: 0.996,
        mean_abs_logprob_diff: 0.0123,
        max_abs_logprob_diff: 0.456,
    };
    KvPrecision {
        pool_bytes: 24 << 20,
        case: "long_ctx".into(),
        num_requests: long.concurrency,
        main_dtype: KvDtype::F16,
        rows: vec![
            row(KvDtype::F32, 46_080, 10, None, None),
            row(KvDtype::F16, 23_040, 20, Some(long.clone()), None),
            row(KvDtype::Int8, 12_288, 40, Some(long), Some(scored)),
        ],
        accuracy_prompts: 6,
        accuracy_positions: 300,
    }
}

#[test]
fn both_languages_show_the_same_figures_in_the_same_sections() {
    let mut res = lab(&config(Scale::Quick, 2, &["block-size=8,16,32"]));
    res.kv_precision = Some(kv_precision(&res));
    // A real lab whose failure search a simulator narrowed: every source.
    res.backend.executor = "real".into();
    let f = res.failure.as_mut().unwrap();
    f.primary = "real".into();
    f.narrowed_by = Some("sim (cpu preset)".into());
    f.points[0].admission_stall.source = Source::Unknown;
    f.points[1].preemption = kvscope_lab::failure::Threshold { load: Some(3.0), source: Source::RealUpperBound };
    f.points[2].slo_ttft.source = Source::Real;
    let ctx = ReportContext {
        date: "2026-11-30".into(),
        sim_validation: Some("| metric | real | sim |\n|---|---|---|\n| TTFT p50 | 1.234 | 1.301 |".into()),
        block_manager: Some(student()),
        ..ReportContext::default()
    };
    let (zh, en) = both(&res, &ctx);
    assert_twins(&zh, &en, "lab report");
    for section in ["12.1", "12.2", "12.3", "12.4", "12.5", "12.6"] {
        assert!(zh.contains(&format!("## {section} ")) && en.contains(&format!("## {section} ")), "{section}");
    }
    // Every optional part this run has is there, in both.
    for (text, parts) in [
        (
            &zh,
            [
                "失败条件",
                "(预算内未确定)",
                "≤ 3 (实测上界; KV 块)",
                "旋钮扫描",
                "2 次重复",
                "my_bm.py:12::allocate",
                "1.301",
            ],
        ),
        (
            &en,
            [
                "Failure conditions",
                "(not settled within the budget)",
                "≤ 3 (real, upper bound; KV blocks)",
                "Knob sweep",
                "2 repeats",
                "my_bm.py:12::allocate",
                "1.301",
            ],
        ),
    ] {
        for part in parts {
            assert!(text.contains(part), "{part} missing");
        }
    }
    assert!(
        en.contains("The simulator (sim (cpu preset)) bisected first") && zh.contains("先由模拟器 (sim (cpu preset))")
    );
    assert!(en.contains(
        "| `f32` | 46080 | 10 | 160 | cannot hold one request | | | | | | reference | reference | reference |"
    ));
    assert!(en.contains("`int8` picks the f32 KV path's top-1 at 97.30 % of them (99.60 % of the 250 positions"));
    assert!(zh.contains("| `f32` | 46080 | 10 | 160 | 放不下一个请求 | | | | | | 参考 | 参考 | 参考 |"));
    // Each format that ran names the resource that bound it.
    let long = res.capacity.iter().find(|r| r.case == "long_ctx").unwrap();
    assert_eq!(long.binding_constraint(), Some(kvscope_core::StallReason::NoFreeBlocks));
    let kv_wait = format!("KV blocks ({:.2})", long.stalled_seconds * long.stall_time_share_no_free_blocks);
    assert_eq!(
        en.lines().filter(|l| l.starts_with("| `") && l.contains(&kv_wait)).count(),
        2,
        "f16 and int8: {kv_wait}"
    );
    assert!(en.contains("Every format's run was bound by KV blocks") && zh.contains("每种格式的运行都受 KV 块约束"));

    simulated_reports_are_twins_too(&mut res, &ctx);
}

/// The same run labelled simulated, and `sim --out`'s capacity section.
fn simulated_reports_are_twins_too(res: &mut LabResults, ctx: &ReportContext) {
    res.backend.executor = "sim".into();
    let (zh, en) = both(res, ctx);
    assert_twins(&zh, &en, "simulated lab report");
    assert!(en.contains("**Simulated**") && zh.contains("**模拟结果**"));
    assert!(en.contains("TTFT p50 / p90 / p99 (simulated s)") && zh.contains("TTFT p50 / p90 / p99 (模拟秒)"));
    assert!(en.contains("queue_wait p50 (simulated s)"), "the knob sweep's times are simulated too");

    let row = res.capacity[1].clone();
    let sim = |lang| render_simulated(std::slice::from_ref(&row), &res.engine, "smol on cpu", ctx, lang);
    let (zh, en) = (sim(Lang::Zh), sim(Lang::En));
    assert_twins(&zh, &en, "sim --out report");
    assert!(en.starts_with("# KV capacity — simulated\n\n> **Simulated**") && en.contains("| long_ctx |"));
    assert!(!en.contains("12.4") && !zh.contains("12.4"), "sim --out writes the capacity section alone");
}

#[test]
fn the_template_follows_the_run_not_a_fixed_text() {
    let mut res = lab(&config(Scale::Quick, 1, &[]));
    res.failure = None;
    res.backend.executor = "real".into();
    let (zh, en) = both(&res, &ReportContext::default());
    assert_twins(&zh, &en, "single real run");
    assert!(!en.contains("**Simulated**") && !en.contains("simulated s"), "a real run's times are measured");
    assert!(!en.contains("Failure conditions") && !en.contains("Block manager"));
    assert!(en.contains("a single run, with no repeats") && zh.contains("单次运行"));
    assert!(en.contains("Every link holds in the expected direction in this single run (⇒)."));

    // A chain whose links held only sometimes, or never, says which.
    res.repeat = 3;
    res.chain = Some(ChainAgreement {
        kv_grows: Agreement::All,
        live_shrinks: Agreement::Some { held: 2, of: 3 },
        queue_wait_grows: Agreement::None,
        ttft_grows: Agreement::All,
    });
    let (zh, en) = both(&res, &ReportContext::default());
    assert_twins(&zh, &en, "unsettled chain");
    assert!(en.contains(
        "Links that did not hold in all 3 repeats: live requests shrink (if not: the pool held everyone, \
         capacity was not binding): not established (held in 2 of 3 repeats, ⇢?); queue wait grows: ⇏\n\n"
    ));
    assert!(zh.contains("未能在全部 3 次重复中都成立的环节: 存活请求数减少"));
    assert!(zh.contains("(仅在 2/3 次重复中成立, ⇢?); 排队等待增加: ⇏\n\n"));
    assert!(en.contains("3 repeats give medians and min–max ranges"));
}

/// The Chinese report's prose outside code: code spans and fenced blocks
/// quote `events.jsonl` and code verbatim, so they may keep English names.
fn zh_prose(zh: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in zh.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.extend(line.split('`').step_by(2));
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_lifecycle_maps_to_nano_vllm_and_the_chain_quotes_a_stall() {
    let res = lab(&config(Scale::Quick, 1, &[]));
    let (zh, en) = both(&res, &ReportContext::default());
    assert_twins(&zh, &en, "quick lab");
    // 12.2: every row has its nano-vLLM counterpart, and the commits read.
    for text in [&zh, &en] {
        for counterpart in [
            "`BlockManager.can_allocate` → `allocate`",
            "`may_append`",
            "`BlockManager.deallocate`",
            "`hash_blocks`",
            "`Scheduler.preempt`",
            "`Sequence.seq_id`",
            "`assert scheduled_seqs`",
            "`82f5ca2`",
            "`bb823b3`",
        ] {
            assert!(text.contains(counterpart), "{counterpart} missing");
        }
    }
    let lifecycle_rows = |t: &str| t.lines().filter(|l| l.starts_with("| ") && l.contains("`Sequence.seq_id`")).count();
    assert_eq!((lifecycle_rows(&zh), lifecycle_rows(&en)), (1, 1));
    // 12.4: the quick lab's long_ctx stalls for blocks; its first such
    // event is quoted with the line a reader can find in events.jsonl.
    let first = res
        .cases
        .iter()
        .find(|c| c.spec.name == "long_ctx")
        .unwrap()
        .events
        .iter()
        .find(|e| {
            matches!(e.event, kvscope_core::KvEvent::Stalled { reason: kvscope_core::StallReason::NoFreeBlocks, .. })
        })
        .expect("the quick lab's long_ctx waits for blocks");
    let step = format!("`long_ctx` at step {} (t = {:.3} s)", first.step, first.t);
    assert!(en.contains(&step), "{step} not in the English chain");
    assert!(zh.contains(&format!("`long_ctx` 第 {} 步 (t = {:.3} s)", first.step, first.t)));
    let line = kvscope_lab::artifacts::events_jsonl(&res)
        .lines()
        .find(|l| l.contains("\"stalled\"") && l.contains("no_free_blocks") && l.contains("long_ctx"))
        .unwrap()
        .to_string();
    assert!(zh.contains(&line) && en.contains(&line), "the quote is the events.jsonl line");
    // No enum names inside the Chinese prose.
    let prose = zh_prose(&zh);
    for name in ["no_free_blocks", "token_budget", "max_partial_prefills", "为 none", " long + ", " short = "] {
        assert!(!prose.contains(name), "{name} in the Chinese prose");
    }
}
