//! A target's report: the capacity table with every figure tagged by its
//! source (client-measured / engine metric NAME / KV events / estimated),
//! the engine's name and version, the KV-event block statistics, what the
//! engine does not expose and how each gap was filled or left blank, and
//! what went wrong (a partial report says what is missing).
//!
//! Written as report.md (zh or en), capacity.csv (the experiment layer's
//! columns), metrics.csv (every scrape, time-stamped) and target.json
//! (every figure).

use super::capacity::{pool_capacity, prompt_tokens};
use super::poller::POLLED;
use super::TargetResults;
use crate::lang::Lang;
use kvscope_experiment::capacity::to_csv;
use kvscope_wire::metric_family::source;
use kvscope_wire::{EngineFamily, MetricSource, Quantity};
use std::fmt::Write;
use std::path::Path;

pub const CLIENT: &str = "client-measured";
pub const KV_EVENTS: &str = "KV events";
pub const ESTIMATED: &str = "estimated";

fn pick(lang: Lang, zh: &'static str, en: &'static str) -> &'static str {
    if lang == Lang::Zh {
        zh
    } else {
        en
    }
}

fn family(res: &TargetResults) -> Option<EngineFamily> {
    let name = res.engine.as_ref()?.family;
    EngineFamily::ALL.into_iter().find(|f| f.name() == name)
}

/// `engine metric NAME`, or `not exposed`.
pub fn metric_tag(res: &TargetResults, q: Quantity) -> String {
    match family(res).and_then(|f| source(f, q)) {
        Some(s) => format!("engine metric {}", s.metric_name()),
        None => "not exposed".into(),
    }
}

pub fn write(res: &TargetResults, out: &Path, lang: Lang) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.md"), markdown(res, lang))?;
    std::fs::write(out.join("capacity.csv"), to_csv(&res.capacity))?;
    std::fs::write(out.join("metrics.csv"), metrics_csv(res))?;
    if let Some(mmd) = super::block_lifecycle::mermaid(res) {
        std::fs::write(out.join("kv_lifecycle.mmd"), mmd)?;
    }
    if let Some(replicas) = &res.replicas {
        std::fs::write(out.join("replicas.csv"), super::replica_report::csv(replicas))?;
    }
    let json = serde_json::to_string_pretty(res).map_err(std::io::Error::other)?;
    std::fs::write(out.join("target.json"), json)
}

/// `metrics.csv`: one line per kept scrape, seconds since the start and
/// each polled quantity under the metric name it was read from (empty:
/// not on the page).
pub fn metrics_csv(res: &TargetResults) -> String {
    let mut out = String::from("t_s");
    for q in POLLED {
        match family(res).and_then(|f| source(f, q)) {
            Some(s) => write!(out, ",{}", s.metric_name()),
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

pub fn markdown(res: &TargetResults, lang: Lang) -> String {
    let mut md = String::new();
    header(&mut md, res, lang);
    capacity_table(&mut md, res, lang);
    md.extend(res.replicas.as_ref().map(|r| super::replica_report::markdown(r, lang)));
    kv_events(&mut md, res, lang);
    not_exposed(&mut md, res, lang);
    evidence(&mut md, lang);
    problems(&mut md, res, lang);
    md
}

fn header(md: &mut String, res: &TargetResults, lang: Lang) {
    let _ = writeln!(md, "# kvscope lab — target {}\n", res.url);
    let unknown = pick(lang, "未知", "unknown");
    match &res.engine {
        Some(e) => {
            let _ = writeln!(
                md,
                "- {}: {} {} ({} `{}`, {})\n- {}: {}",
                pick(lang, "引擎", "Engine"),
                e.name,
                e.version.as_deref().unwrap_or(pick(lang, "(版本未公开)", "(version not exposed)")),
                pick(lang, "指标族", "metric family"),
                e.family,
                if e.family_source.starts_with("forced") {
                    pick(lang, "由 --engine 指定", "forced by --engine")
                } else {
                    pick(lang, "由 /metrics 中的名字识别", "detected from the names on /metrics")
                },
                pick(lang, "模型", "Model"),
                e.model.as_deref().unwrap_or(unknown),
            );
        }
        None => {
            let _ = writeln!(md, "- {}: {unknown}", pick(lang, "引擎", "Engine"));
        }
    }
    let prompts = if res.token_exact {
        pick(lang, "按 token id 发送（token 精确）", "sent as token ids (token-exact)")
    } else {
        pick(
            lang,
            "按文本发送；长度取自引擎的 usage.prompt_tokens",
            "sent as text; lengths are the engine's usage.prompt_tokens",
        )
    };
    let _ = writeln!(md, "- {}: {prompts}", pick(lang, "提示词", "Prompts"));
    let _ = writeln!(
        md,
        "- {}: {} ({:.1} s)\n",
        pick(lang, "/metrics 采样", "/metrics samples"),
        res.metrics_samples,
        res.wall_seconds
    );
}

fn capacity_table(md: &mut String, res: &TargetResults, lang: Lang) {
    let _ = writeln!(md, "## {}\n", pick(lang, "状态容量表", "State capacity table"));
    let kv_tag = res.kv_estimate.as_ref().map_or("—".to_string(), |k| format!("{ESTIMATED}: {}", k.from));
    let _ = writeln!(
        md,
        "| case | requests | prompt tokens [{}] | output tokens [{CLIENT}: usage] | live requests mean / max [{}] | peak KV usage [{}] | TTFT p50 / p90 s [{CLIENT}] | ITL p50 ms [{CLIENT}] | E2E p50 s [{CLIENT}] | queue wait mean / p90 s [{}] | preemptions [{}] | prefix hits / queries tokens [{}] | KV per request MiB [{ESTIMATED}] | pool holds requests [{}] |",
        if res.token_exact { "engine usage.prompt_tokens; token-exact: the client sent these ids" } else { "engine usage.prompt_tokens" },
        metric_tag(res, Quantity::RunningRequests),
        metric_tag(res, Quantity::KvUsage),
        queue_tag(res),
        metric_tag(res, Quantity::Preemptions),
        metric_tag(res, Quantity::PrefixHits),
        pool_tag(res),
    );
    let _ = writeln!(md, "|{}", "---|".repeat(14));
    for (case, row) in res.cases.iter().zip(&res.capacity) {
        let opt = |v: Option<f64>, digits: usize| v.map_or("—".to_string(), |v| format!("{v:.digits$}"));
        let hits = opt(case.delta(Quantity::PrefixHits), 0);
        let queries = opt(case.delta(Quantity::PrefixQueries), 0);
        let pool = res.engine.as_ref().and_then(|e| pool_capacity(case, e));
        let _ = writeln!(
            md,
            "| {} | {} ({} failed) | {} | {} | {} | {} | {:.3} / {:.3} | {:.1} | {:.3} | {} | {} | {hits} / {queries} | {} | {} |",
            case.case,
            case.requests,
            case.failed,
            prompt_tokens(case).iter().sum::<usize>(),
            case.output_tokens.iter().sum::<usize>(),
            case.running.map_or("—".into(), |s| format!("{:.1} / {:.0}", s.mean, s.max)),
            case.kv_usage.map_or("—".into(), |s| format!("{:.1} %", s.max * 100.0)),
            row.ttft.p50,
            row.ttft.p90,
            case.itl.p50 * 1000.0,
            case.e2e.p50,
            if row.queue_wait.n == 0 { "—".into() } else { format!("{:.3} / {:.3}", row.queue_wait.mean, row.queue_wait.p90) },
            case.delta(Quantity::Preemptions).map_or("—".into(), |p| format!("{p:.0}")),
            if row.estimated_kv > 0.0 { format!("{:.2}", row.estimated_kv_block_rounded / (1 << 20) as f64) } else { "—".into() },
            opt(pool, 1),
        );
    }
    let _ = writeln!(md, "\n{}: {kv_tag}\n", pick(lang, "每请求 KV 大小来源", "KV per request from"));
    let _ = writeln!(
        md,
        "{}\n",
        pick(
            lang,
            "前缀命中按引擎计数器在每个用例前后的差计算, 包括此前运行留在缓存中的前缀 (同一引擎上的第二次运行命中更多)。",
            "Prefix hits are the engine counter's difference across each case, and count prefixes earlier runs left in its cache (a second run against the same engine hits more)."
        )
    );
}

fn queue_tag(res: &TargetResults) -> String {
    if family(res).and_then(|f| source(f, Quantity::QueueTime)).is_some() {
        metric_tag(res, Quantity::QueueTime)
    } else {
        format!("{ESTIMATED}: TTFT − the case's TTFT at concurrency 1")
    }
}

fn pool_tag(res: &TargetResults) -> String {
    let cite = |q| match family(res).and_then(|f| source(f, q)) {
        Some(MetricSource::Label { metric, label }) => Some(format!("{metric}{{{label}}}")),
        Some(s) => Some(s.metric_name().to_string()),
        None => None,
    };
    match cite(Quantity::TotalBlocks).zip(cite(Quantity::BlockSize)) {
        Some((blocks, bs)) => format!("engine metric {blocks} × {bs} / {ESTIMATED} tokens per request"),
        None => match cite(Quantity::PoolTokens) {
            Some(tokens) => format!("engine metric {tokens} / {ESTIMATED} tokens per request"),
            None => "not exposed".into(),
        },
    }
}

fn kv_events(md: &mut String, res: &TargetResults, lang: Lang) {
    let _ = writeln!(md, "## {}\n", pick(lang, "KV 事件中的块统计", "Block statistics from KV events"));
    let Some(k) = &res.kv_events else {
        let _ = writeln!(
            md,
            "{}\n",
            pick(lang, "未订阅 KV 事件（--kv-events）。", "No KV events subscribed (--kv-events).")
        );
        return;
    };
    let _ = writeln!(
        md,
        "[{KV_EVENTS}] {}: {} batches, {} BlockStored blocks, {} BlockRemoved blocks, {} AllBlocksCleared, block size {}, {} missed, {} malformed.\n",
        k.endpoint,
        k.batches,
        k.stored,
        k.removed,
        k.cleared,
        k.block_size.map_or("?".into(), |b| b.to_string()),
        k.missed,
        k.malformed
    );
    let _ = writeln!(
        md,
        "{}\n",
        pick(lang, "块与请求的对应是推断的：KV 事件只带块哈希与 token id，不带请求 id；按客户端发送的 token 链匹配。", "The binding of blocks to requests is inferred: the events carry block hashes and token ids, not request ids; blocks are matched to the token chains the client sent.")
    );
    let _ = writeln!(md, "| case | blocks stored [{KV_EVENTS}] | removed | peak cached | requests bound (inferred) | blocks bound | blocks shared by ≥2 requests (inferred) | cache lifetime p50 s |\n|---|---|---|---|---|---|---|---|");
    for (case, blocks) in res.cases.iter().zip(&res.case_blocks) {
        if let Some(b) = blocks {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} / {} | {} | {} | {} |",
                case.case,
                b.stored,
                b.removed,
                b.peak_cached,
                b.requests_bound,
                case.requests,
                b.blocks_bound,
                b.shared_blocks,
                if b.lifetime_s.n == 0 { "—".into() } else { format!("{:.3}", b.lifetime_s.p50) }
            );
        }
    }
    if let Some(mmd) = super::block_lifecycle::mermaid(res) {
        let _ = writeln!(
            md,
            "\n{} (kv_lifecycle.mmd):\n\n```mermaid\n{mmd}```",
            pick(lang, "块的生命周期 [KV events]", "The blocks' lifecycle [KV events]")
        );
    }
    md.push('\n');
}

/// How the report fills in (or leaves blank) a quantity the engine does
/// not export, in `lang`.
fn fill(q: Quantity, lang: Lang) -> &'static str {
    match q {
        Quantity::QueueTime => pick(
            lang,
            "排队 = TTFT − 该用例在并发 1 时的 TTFT (其第一个请求单独发送), 标为 estimated",
            "queue wait = TTFT − the case's TTFT at concurrency 1 (its first request sent alone), labelled estimated",
        ),
        Quantity::TotalBlocks | Quantity::BlockSize => {
            pick(lang, "池能容纳的请求数留空", "pool capacity in requests left blank")
        }
        Quantity::KvUsage => pick(lang, "KV 使用率峰值留空", "peak KV usage left blank"),
        Quantity::PrefixQueries | Quantity::PrefixHits => pick(
            lang,
            "实际前缀复用留空 (若订阅了 KV 事件, 见其中的共享块)",
            "realized prefix reuse left blank (see the KV events' shared blocks, if subscribed)",
        ),
        Quantity::Preemptions => pick(lang, "抢占数留空", "preemptions left blank"),
        Quantity::RunningRequests | Quantity::WaitingRequests => {
            pick(lang, "活跃请求数留空", "live requests left blank")
        }
        Quantity::PoolTokens => pick(
            lang,
            "池的 token 数改由块数 × 块大小得出 (若公开)",
            "the pool in tokens is read from blocks × block size instead, where exported",
        ),
        Quantity::Evictions => pick(lang, "驱逐数留空", "evictions left blank"),
        Quantity::PromptTokens | Quantity::GenerationTokens => {
            pick(lang, "使用客户端收到的 usage 计数", "the client's usage counts are used")
        }
    }
}

/// Every quantity the engine's family does not export, and how the report
/// filled it in or left it blank.
pub fn not_exposed_lines(res: &TargetResults, lang: Lang) -> Vec<String> {
    let Some(f) = family(res) else {
        return vec![pick(
            lang,
            "全部引擎指标: 指标族未知 (未读到指标页); 只给出客户端测得的数字",
            "every engine metric: the family is unknown (no metrics page read); only client-measured figures are given",
        )
        .into()];
    };
    let all = [
        Quantity::RunningRequests,
        Quantity::WaitingRequests,
        Quantity::KvUsage,
        Quantity::TotalBlocks,
        Quantity::BlockSize,
        Quantity::PoolTokens,
        Quantity::PrefixQueries,
        Quantity::PrefixHits,
        Quantity::Preemptions,
        Quantity::QueueTime,
    ];
    let mut lines: Vec<String> =
        all.into_iter().filter(|q| source(f, *q).is_none()).map(|q| format!("{q:?}: {}", fill(q, lang))).collect();
    lines.push(pick(lang,
        "准入阻塞及其原因 (无空闲块 / 运行数上限 / token 预算): 没有引擎公开它们; 不给出约束瓶颈, capacity.csv 中的阻塞占比为 0",
        "admission stalls and their reasons (no free blocks / max running / token budget): no engine exports them; the binding constraint is not named and stall shares are 0 in capacity.csv").into());
    if res.kv_events.is_none() {
        lines.push(
            pick(
                lang,
                "KV 事件: 未订阅 (--kv-events); 块统计留空",
                "KV events: not subscribed (--kv-events); block statistics left blank",
            )
            .into(),
        );
    }
    lines
}

fn not_exposed(md: &mut String, res: &TargetResults, lang: Lang) {
    let _ = writeln!(md, "## {}\n", pick(lang, "该引擎未公开的量", "What this engine does not expose"));
    for line in not_exposed_lines(res, lang) {
        let _ = writeln!(md, "- {line}");
    }
    md.push('\n');
}

fn evidence(md: &mut String, lang: Lang) {
    let _ = writeln!(
        md,
        "## {}\n\n{}\n",
        pick(lang, "证据规则", "Evidence rules"),
        pick(lang,
            "容量结论只来自引擎报告的池（块数 × 块大小）与每请求 KV 估计；KV 事件中的共享块与前缀命中只是观测，不作为容量结论。",
            "Capacity figures come only from the pool the engine reports (blocks × block size) and the estimated KV per request; the KV events' shared blocks and the prefix hits are observations, and no capacity claim is made from them.")
    );
}

fn problems(md: &mut String, res: &TargetResults, lang: Lang) {
    if res.problems.is_empty() && res.metrics_failed == 0 {
        return;
    }
    let _ = writeln!(md, "## {}\n", pick(lang, "缺失与错误（部分报告）", "Missing and failed (partial report)"));
    for p in &res.problems {
        let _ = writeln!(md, "- {p}");
    }
    if let Some(e) = &res.metrics_last_error {
        let _ = writeln!(md, "- /metrics: {} failed scrapes (last: {e})", res.metrics_failed);
    }
}
