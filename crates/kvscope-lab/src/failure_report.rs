//! The failure conditions as the report, failure.csv and failure.svg show
//! them; every threshold names its source (real, simulated, a bound).

use crate::failure::{Condition, FailureResults, LoadKind, Source, Threshold};
use crate::plots::panel_row_svg;
use crate::svg::{Chart, Series};
use std::fmt::Write;

const CONDITIONS: [Condition; 3] = [Condition::AdmissionStall, Condition::Preemption, Condition::SloTtft];

fn name(c: Condition, zh: bool) -> &'static str {
    match (c, zh) {
        (Condition::AdmissionStall, true) => "首次准入阻塞",
        (Condition::AdmissionStall, false) => "first admission stall",
        (Condition::Preemption, true) => "首次抢占",
        (Condition::Preemption, false) => "first preemption",
        (Condition::SloTtft, true) => "TTFT p90 超过 SLO",
        (Condition::SloTtft, false) => "TTFT p90 above the SLO",
    }
}

fn key(c: Condition) -> &'static str {
    match c {
        Condition::AdmissionStall => "admission_stall",
        Condition::Preemption => "preemption",
        Condition::SloTtft => "slo_ttft",
    }
}

fn source_name(s: Source, zh: bool) -> &'static str {
    match (s, zh) {
        (Source::Real, true) => "实测",
        (Source::Real, false) => "real",
        (Source::Simulated, true) => "模拟",
        (Source::Simulated, false) => "simulated",
        (Source::RealUpperBound, true) => "实测上界",
        (Source::RealUpperBound, false) => "real, upper bound",
        (Source::Unknown, true) => "预算内未确定",
        (Source::Unknown, false) => "not settled within the budget",
    }
}

fn load_label(f: &FailureResults, zh: bool) -> String {
    match (f.plan.load, zh) {
        (LoadKind::Concurrency, true) => "并发请求数 (同时到达)".into(),
        (LoadKind::Concurrency, false) => "concurrent requests (all at once)".into(),
        (LoadKind::PoissonRate { requests }, true) => format!("到达率 (请求/秒, Poisson, 每次 {requests} 个请求)"),
        (LoadKind::PoissonRate { requests }, false) => {
            format!("arrival rate (requests/s, Poisson, {requests} requests per run)")
        }
    }
}

/// A threshold as a table cell: `≥ top` when not reached.
pub fn cell(t: &Threshold, f: &FailureResults, zh: bool) -> String {
    let top = f.plan.ladder.last().copied().unwrap_or(0.0);
    let fmt = |x: f64| if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.2}") };
    match (t.load, t.source) {
        (_, Source::Unknown) => format!("? ({})", source_name(t.source, zh)),
        (None, s) => format!("> {} ({})", fmt(top), source_name(s, zh)),
        (Some(x), Source::RealUpperBound) => format!("≤ {} ({})", fmt(x), source_name(Source::RealUpperBound, zh)),
        (Some(x), s) => format!("{} ({})", fmt(x), source_name(s, zh)),
    }
}

pub fn markdown(f: &FailureResults, zh: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "### {}\n", if zh { "失败条件" } else { "Failure conditions" });
    let who = match (&f.narrowed_by, f.primary.as_str(), zh) {
        (_, "sim", true) => "本次实验在模拟器上运行: 下表所有阈值都是模拟值。".to_string(),
        (_, "sim", false) => "This lab ran on the simulator: every threshold below is simulated.".to_string(),
        (Some(sim), _, true) => format!("先由模拟器 ({sim}) 二分搜索, 缩小范围 ({} 次模拟运行); 再在真实引擎上验证阈值及其下一级 (每个上下文长度最多 {} 次, 共 {} 次真实运行)。", f.simulated_runs, f.plan.budget, f.primary_runs),
        (Some(sim), _, false) => format!("The simulator ({sim}) bisected first to narrow the range ({} simulated runs); the real engine then checked each threshold and the rung below it (at most {} runs per context length, {} real runs in all).", f.simulated_runs, f.plan.budget, f.primary_runs),
        (None, _, true) => format!("在真实引擎上二分搜索 (每个上下文长度最多 {} 次, 共 {} 次运行)。", f.plan.budget, f.primary_runs),
        (None, _, false) => format!("Bisection on the real engine (at most {} runs per context length, {} runs in all).", f.plan.budget, f.primary_runs),
    };
    let definition = if zh {
        format!("每个上下文长度 (prompt token 数, 每个请求生成 {} token), 负载 = {}; 在负载阶梯 {} 上找出以下条件首次出现的最小负载: (a) 因 KV 块不足或 max_running 而准入阻塞 (token 预算阻塞只是把 prefill 推迟到下一步, 不算失败), (b) 抢占, (c) TTFT p90 > {} s。", f.plan.output_tokens, load_label(f, true), ladder_text(f), f.plan.slo_ttft)
    } else {
        format!("For each context length (prompt tokens; {} output tokens per request), load = {}; the smallest load of the ladder {} at which (a) an admission stalls for KV blocks or for max_running (a token-budget stall only defers a prefill to the next step and is not a failure), (b) a request is preempted, (c) TTFT p90 > {} s.", f.plan.output_tokens, load_label(f, false), ladder_text(f), f.plan.slo_ttft)
    };
    let caveat = if zh {
        "提示词是固定长度的随机 token (只有长度起作用, 互不共享前缀), 真实引擎与模拟器运行的是同一批请求。二分搜索假设条件一旦出现, 负载更高时也会出现; 抢占并不总是如此 (它取决于 decode 时块边界的对齐), 所以 (b) 是搜索到的阈值, 不保证更低负载下从不出现。搜索只运行一次, 不随 `--repeat` 重复。"
    } else {
        "Prompts are random tokens of a fixed length (only the length matters; no shared prefixes), the same requests on the real engine and the simulator. Bisection assumes that a condition, once reached, stays reached at higher loads; preemption does not always (it depends on where decode crosses block boundaries), so (b) is the threshold the search found, not a guarantee that no lower load preempts. The search runs once, not per `--repeat`."
    };
    let _ = writeln!(o, "{definition} {who} {caveat}\n");
    let _ = writeln!(
        o,
        "| prompt_len | (a) {} | (b) {} | (c) {} |",
        name(Condition::AdmissionStall, zh),
        name(Condition::Preemption, zh),
        name(Condition::SloTtft, zh)
    );
    let _ = writeln!(o, "|---|---|---|---|");
    for p in &f.points {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            p.prompt_len,
            cell(&p.admission_stall, f, zh),
            cell(&p.preemption, f, zh),
            cell(&p.slo_ttft, f, zh)
        );
    }
    let _ = writeln!(
        o,
        "\n{}\n\n![failure conditions](failure.svg)\n",
        if zh {
            "“实测”: 真实引擎在该负载出现此条件, 在下一级负载没有 (或“>”: 在阶梯顶端仍未出现); “模拟”: 模拟器给出, 真实运行未与之矛盾但未完全确认; “实测上界”: 真实引擎在该负载已出现, 更低负载未在预算内确定。每次运行的数据见 `failure.json`。"
        } else {
            "“real”: the real engine showed the condition at this load and not at the rung below (or “>”: not even at the ladder's top); “simulated”: the simulator's answer, which the real runs did not contradict but did not settle; “upper bound”: the real engine showed it at this load, lower loads unsettled within the budget. Every run is in `failure.json`."
        }
    );
    o
}

fn ladder_text(f: &FailureResults) -> String {
    let (Some(a), Some(b)) = (f.plan.ladder.first(), f.plan.ladder.last()) else { return "[]".into() };
    match f.plan.load {
        LoadKind::Concurrency => format!("{a:.0}..={b:.0}"),
        LoadKind::PoissonRate { .. } => format!("{a:.3}..{b:.3} (×√2)"),
    }
}

/// failure.csv: one line per context length and condition.
pub fn csv(f: &FailureResults) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["prompt_len_tokens", "condition", "load_kind", "load", "reached", "source", "slo_ttft_s"])
        .expect("writing CSV to memory");
    let kind = match f.plan.load {
        LoadKind::Concurrency => "concurrency",
        LoadKind::PoissonRate { .. } => "poisson_rate_per_s",
    };
    for p in &f.points {
        for c in CONDITIONS {
            let t = p.threshold(c);
            let source = serde_json::to_value(t.source).expect("json");
            w.write_record([
                p.prompt_len.to_string(),
                key(c).into(),
                kind.into(),
                t.load.map_or(String::new(), |x| x.to_string()),
                t.load.is_some().to_string(),
                source.as_str().unwrap_or_default().into(),
                f.plan.slo_ttft.to_string(),
            ])
            .expect("writing CSV to memory");
        }
    }
    String::from_utf8(w.into_inner().expect("flushing to memory")).expect("UTF-8")
}

/// failure.svg: the load at which each condition first appears, against
/// the context length. Real thresholds are solid, simulated ones dashed;
/// conditions not reached are left out (the table says "> top").
pub fn svg(f: &FailureResults) -> String {
    let colors = ["#2f6fbf", "#7d4fc0", "#c0392b"];
    // Shrinking dots: where two conditions appear at the same load, the
    // later one's dot sits inside the earlier one's ring.
    let radii = [7.0, 5.0, 3.0];
    let mut series = Vec::new();
    for ((c, color), r) in CONDITIONS.into_iter().zip(colors).zip(radii) {
        let pts = |real: bool| -> Vec<(f64, f64)> {
            f.points
                .iter()
                .filter_map(|p| {
                    let t = p.threshold(c);
                    let is_real = t.source == Source::Real || t.source == Source::RealUpperBound;
                    t.load.filter(|_| is_real == real).map(|x| (p.prompt_len as f64, x))
                })
                .collect()
        };
        let (real, sim) = (pts(true), pts(false));
        if !real.is_empty() {
            series.push(Series::new(&format!("{} (real)", name(c, false)), color, real).dotted().dot_radius(r));
        }
        if !sim.is_empty() {
            series.push(
                Series::new(&format!("{} (simulated)", name(c, false)), color, sim).dotted().dashed().dot_radius(r),
            );
        }
    }
    let y_label = match f.plan.load {
        LoadKind::Concurrency => "concurrent requests",
        LoadKind::PoissonRate { .. } => "arrival rate (req/s)",
    };
    panel_row_svg(
        "Failure conditions: the load at which each first appears",
        &format!(
            "x = prompt length (tokens); SLO: TTFT p90 > {} s; not reached up to {} = not drawn",
            f.plan.slo_ttft,
            f.plan.ladder.last().copied().unwrap_or(0.0)
        ),
        &[(
            Chart {
                title: "First stall / preemption / SLO miss".into(),
                x_label: "prompt length (tokens)".into(),
                y_label: y_label.into(),
                y_min: Some(0.0),
                ..Default::default()
            },
            series,
        )],
    )
}
