//! The report's generated analysis (handout: a 500–800 字 analysis; in
//! English 250–400 words), assembled from this run's own figures: the
//! capacity cases, the repeats, the chain, the failure conditions, the knob
//! sweeps and the probe. It is labelled as generated where it is printed;
//! the student is expected to rewrite it in their own words.

use crate::causal::agreement;
use crate::failure::{Condition, Source};
use crate::knob_sweep::{fragmentation, Knob};
use crate::lab::LabResults;
use crate::repeat::{Agreement, Spread};
use kvscope_experiment::capacity::CapacityRow;

/// Length of a text as word processors count 字数: every CJK ideograph is
/// one, and so is every run of Latin letters and digits (a word or a
/// number, with any `.`, `%`, `_`, `-` inside it); punctuation is not.
pub fn zi_count(text: &str) -> usize {
    let mut count = 0;
    let mut in_word = false;
    for c in text.chars() {
        if is_cjk(c) {
            count += 1;
            in_word = false;
        } else if c.is_alphanumeric() {
            if !in_word {
                count += 1;
            }
            in_word = true;
        } else if !(in_word && matches!(c, '.' | '%' | '_' | '-')) {
            in_word = false;
        }
    }
    count
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// English words: whitespace-separated tokens with a letter or digit.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).count()
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

/// The analysis paragraph of the report.
pub fn paragraph(res: &LabResults, zh: bool) -> String {
    let find = |name: &str| res.capacity.iter().position(|r| r.case == name);
    let (Some(si), Some(li)) = (find("short_ctx"), find("long_ctx")) else {
        return String::new();
    };
    let (s, l) = (&res.capacity[si], &res.capacity[li]);
    let mut parts = vec![base(res, s, l, zh), repeats(res, si, li, zh)];
    parts.extend(chain(res, zh));
    parts.extend(failure(res, zh));
    parts.extend(knobs(res, zh));
    parts.push(closing(res, zh));
    parts.join(if zh { "" } else { " " })
}

fn base(res: &LabResults, s: &CapacityRow, l: &CapacityRow, zh: bool) -> String {
    let cfg = &res.engine;
    let pool_tok = cfg.pool.num_blocks * cfg.pool.block_size;
    let binding = |r: &CapacityRow| r.binding_constraint().map_or("none", |b| b.as_str());
    // The short requests of the mixed case, on their own: do they wait
    // behind the long ones?
    let mixed_short_wait = res
        .cases
        .iter()
        .find(|c| c.spec.name == "mixed_ctx")
        .map(|c| {
            let cut = c.requests.iter().map(|r| r.prompt_tokens).max().unwrap_or(0) / 2;
            kvscope_experiment::dist::Dist::of(
                c.requests.iter().filter(|r| r.prompt_tokens < cut).map(|r| r.queue_wait),
            )
            .p50
        })
        .unwrap_or(0.0);
    if zh {
        format!(
            "KV 不是一次 attention 计算的中间量, 而是从 prefill 开始、在每个 decode 步被读取并追加、直到请求结束才释放的长期状态。本次运行中 KV 池共有 {pool_tok} 个 token 槽位 ({} 块)。短上下文 (平均 prompt {:.0} token) 每个请求峰值约占 {}, 最多 {} 个请求同时持有 KV, 主要准入约束为 {}; 长上下文 (平均 {:.0} token) 每个请求约占 {}, 同一个池最多只能让 {} 个请求同时存活, 其余请求只能在队列中等待: 排队等待 p50 从 {:.3} s 升到 {:.3} s, TTFT p50 从 {:.3} s 升到 {:.3} s, 主要约束变为 {}。混合负载中, 长请求占住大部分块, 其中的短请求也被挡在队列中 (短请求自身的 queue wait p50 为 {:.3} s, 而短上下文 case 中为 {:.3} s), 说明状态驻留的代价不只由长请求自己承担。",
            cfg.pool.num_blocks, s.prompt_len, kib(s.estimated_kv_block_rounded), s.live_requests_max, binding(s),
            l.prompt_len, kib(l.estimated_kv_block_rounded), l.live_requests_max,
            s.queue_wait.p50, l.queue_wait.p50, s.ttft.p50, l.ttft.p50, binding(l), mixed_short_wait, s.queue_wait.p50
        )
    } else {
        format!(
            "KV is not an intermediate of one attention call but long-lived state: created by prefill, read and extended at every decode step, released only when the request ends. In this run the pool had {pool_tok} token slots ({} blocks). A short-context request (mean prompt {:.0} tokens) held about {} at its peak and up to {} requests held KV at once (binding: {}); a long-context request (mean {:.0} tokens) held about {}, so the same pool let at most {} live at once while the rest waited: queue wait p50 rose from {:.3} s to {:.3} s and TTFT p50 from {:.3} s to {:.3} s (binding: {}). In the mixed case the short requests queued behind the long ones too (their queue wait p50 {:.3} s, vs {:.3} s alone): residency is not paid for by long requests alone.",
            cfg.pool.num_blocks, s.prompt_len, kib(s.estimated_kv_block_rounded), s.live_requests_max, binding(s),
            l.prompt_len, kib(l.estimated_kv_block_rounded), l.live_requests_max,
            s.queue_wait.p50, l.queue_wait.p50, s.ttft.p50, l.ttft.p50, binding(l), mixed_short_wait, s.queue_wait.p50
        )
    }
}

/// What the repeats say about noise (or that there were none).
fn repeats(res: &LabResults, si: usize, li: usize, zh: bool) -> String {
    let n = res.repeat;
    let ttft = |i: usize| Spread::of(res.capacity_repeats[i].iter().map(|r| r.ttft.p50));
    let (s, l) = (ttft(si), ttft(li));
    if n <= 1 {
        return if zh {
            "本次每个 case 只运行了一次, 没有重复实验: 上面的数字是单次观测, 两个数字之差有多少来自机器噪声无法判断; 用 `--repeat 3` 或更多次可以得到每个数字的中位数与范围。".into()
        } else {
            "Every case ran once, with no repeats: the figures are single observations, and how much of a difference is machine noise cannot be told; `--repeat 3` or more gives each figure's median and range.".into()
        };
    }
    let apart = l.min > s.max;
    match (zh, apart) {
        (true, true) => format!("每个 case 重复运行了 {n} 次 (每次都用新引擎), 表中给出中位数与最小–最大范围: 短上下文 TTFT p50 在 {:.3}–{:.3} s 之间, 长上下文在 {:.3}–{:.3} s 之间, 两个范围不重叠, 因此长短之差远大于重复之间的波动。", s.min, s.max, l.min, l.max),
        (true, false) => format!("每个 case 重复运行了 {n} 次 (每次都用新引擎), 表中给出中位数与最小–最大范围: 短上下文 TTFT p50 在 {:.3}–{:.3} s 之间, 长上下文在 {:.3}–{:.3} s 之间, 两个范围有重叠, 因此这一差异不能与重复之间的波动区分。", s.min, s.max, l.min, l.max),
        (false, true) => format!("Each case ran {n} times on fresh engines (tables: medians, min–max ranges). TTFT p50 spanned {:.3}–{:.3} s for short contexts and {:.3}–{:.3} s for long: the ranges do not overlap, so the difference exceeds the noise between repeats.", s.min, s.max, l.min, l.max),
        (false, false) => format!("Each case ran {n} times on fresh engines (tables: medians, min–max ranges). TTFT p50 spanned {:.3}–{:.3} s for short contexts and {:.3}–{:.3} s for long: the ranges overlap, so this difference cannot be told from the noise between repeats.", s.min, s.max, l.min, l.max),
    }
}

fn chain(res: &LabResults, zh: bool) -> Option<String> {
    let a = agreement(&res.sweep_repeats)?;
    let (first, last) = (res.sweep.first()?, res.sweep.last()?);
    let links = [
        (a.kv_grows, "KV/请求", "KV per request"),
        (a.live_shrinks, "存活请求数", "live requests"),
        (a.queue_wait_grows, "排队等待", "queue wait"),
        (a.ttft_grows, "TTFT", "TTFT"),
    ];
    let held = links.iter().filter(|l| l.0.established()).count();
    let open: Vec<&str> = links.iter().filter(|l| !l.0.established()).map(|l| if zh { l.1 } else { l.2 }).collect();
    let every = if res.repeat > 1 {
        if zh {
            format!("在全部 {} 次重复中", res.repeat)
        } else {
            format!("in all {} repeats", res.repeat)
        }
    } else if zh {
        "在这一次运行中".into()
    } else {
        "in this single run".into()
    };
    let mixed = links.iter().any(|l| matches!(l.0, Agreement::Some { .. }));
    Some(if zh {
        let tail = if open.is_empty() {
            "整条链成立。".to_string()
        } else if mixed {
            format!("{} 只在部分重复中成立, 因此尚未确立。", open.join("、"))
        } else {
            format!("{} 这一环没有得到数据支持。", open.join("、"))
        };
        format!("因果链扫描在固定的池与负载下只改变 prompt 长度 ({}→{} token): 链上 4 环中有 {held} 环{every}都按预期方向成立, 最大存活请求从 {} 降到 {}, 排队等待 p50 从 {:.3} s 升到 {:.3} s; {tail}", first.prompt_len, last.prompt_len, first.live_max, last.live_max, first.queue_wait_p50, last.queue_wait_p50)
    } else {
        let tail = if open.is_empty() {
            "the whole chain holds.".to_string()
        } else if mixed {
            format!("{} held only in some repeats, so it is not established.", open.join(", "))
        } else {
            format!("the data do not support {}.", open.join(", "))
        };
        format!("The chain sweep changed only the prompt length ({}→{} tokens): {held} of its 4 links held {every}, max live requests fell from {} to {} and queue wait p50 rose from {:.3} s to {:.3} s; {tail}", first.prompt_len, last.prompt_len, first.live_max, last.live_max, first.queue_wait_p50, last.queue_wait_p50)
    })
}

fn failure(res: &LabResults, zh: bool) -> Option<String> {
    let f = res.failure.as_ref()?;
    let (first, last) = (f.points.first()?, f.points.last()?);
    let show = |p: &crate::failure::FailurePoint, c: Condition| match p.threshold(c).load {
        // An upper bound says so.
        Some(x) => {
            let bound = if p.threshold(c).source == Source::RealUpperBound { "≤" } else { "" };
            if x.fract() == 0.0 {
                format!("{bound}{x:.0}")
            } else {
                format!("{bound}{x:.2}")
            }
        }
        // Not reached on the ladder: beyond its top.
        None => format!(">{}", f.plan.ladder.last().copied().unwrap_or(0.0)),
    };
    let thresholds = || f.points.iter().flat_map(|p| [p.admission_stall, p.preemption, p.slo_ttft]);
    let total = thresholds().count();
    let real = thresholds().filter(|t| t.source == Source::Real).count();
    let unit = match (f.plan.load, zh) {
        (crate::failure::LoadKind::Concurrency, true) => "并发",
        (crate::failure::LoadKind::Concurrency, false) => "concurrency",
        (_, true) => "到达率",
        (_, false) => "arrival rate",
    };
    let source = match (f.primary.as_str(), zh) {
        ("sim", true) => format!("全部 {total} 个阈值都是模拟值"),
        ("sim", false) => format!("all {total} thresholds are simulated"),
        (_, true) => format!("{total} 个阈值中 {real} 个由真实引擎确认, 其余来自模拟器或只是上界"),
        (_, false) => {
            format!("{real} of {total} thresholds were settled on the real engine, the rest are simulated or bounds")
        }
    };
    Some(if zh {
        format!("失败条件把这条链推到终点: prompt 为 {} token 时, {unit}达到 {} 才首次出现准入阻塞, 抢占出现在 {}, TTFT p90 超过 {} s 的 SLO 在 {}; prompt 为 {} token 时, 这三个{unit}分别为 {}、{}、{}。上下文越长, 系统在越低的负载下失败 ({source})。", first.prompt_len, show(first, Condition::AdmissionStall), show(first, Condition::Preemption), f.plan.slo_ttft, show(first, Condition::SloTtft), last.prompt_len, show(last, Condition::AdmissionStall), show(last, Condition::Preemption), show(last, Condition::SloTtft))
    } else {
        format!("The failure conditions end the chain: with {}-token prompts the first admission stall came at {unit} {}, the first preemption at {} and TTFT p90 above the {} s SLO at {}; with {}-token prompts at {}, {} and {}. Longer contexts fail at lower load ({source}).", first.prompt_len, show(first, Condition::AdmissionStall), show(first, Condition::Preemption), f.plan.slo_ttft, show(first, Condition::SloTtft), last.prompt_len, show(last, Condition::AdmissionStall), show(last, Condition::Preemption), show(last, Condition::SloTtft))
    })
}

/// One sentence per knob sweep (the first two: the length stays in the
/// handout's range), on the long-context case.
fn knobs(res: &LabResults, zh: bool) -> Vec<String> {
    res.knob_sweeps
        .iter()
        .take(2)
        .filter_map(|k| {
            let (a, b) = (k.points.first()?, k.points.last()?);
            let long = |p: &crate::knob_sweep::KnobPoint| p.rows.iter().find(|r| r.case == "long_ctx").cloned();
            let (ra, rb) = (long(a)?, long(b)?);
            let name = k.knob.name();
            Some(match (k.knob, zh) {
                (Knob::BlockSize, true) => format!("块大小从 {} 调到 {} 时, 长上下文的内部碎片从 {:.1}% 变为 {:.1}%, 最大存活请求从 {} 变为 {}。", a.label, b.label, 100.0 * fragmentation(&ra), 100.0 * fragmentation(&rb), ra.live_requests_max, rb.live_requests_max),
                (Knob::BlockSize, false) => format!("Raising the block size from {} to {} moved long-context internal fragmentation from {:.1}% to {:.1}% and max live requests from {} to {}.", a.label, b.label, 100.0 * fragmentation(&ra), 100.0 * fragmentation(&rb), ra.live_requests_max, rb.live_requests_max),
                (_, true) => format!("{name} 从 {} 调到 {} 时, 长上下文最大存活请求从 {} 变为 {}, 排队等待 p50 从 {:.3} s 变为 {:.3} s。", a.label, b.label, ra.live_requests_max, rb.live_requests_max, ra.queue_wait.p50, rb.queue_wait.p50),
                (_, false) => format!("Moving {name} from {} to {} changed long-context max live requests from {} to {} and queue wait p50 from {:.3} s to {:.3} s.", a.label, b.label, ra.live_requests_max, rb.live_requests_max, ra.queue_wait.p50, rb.queue_wait.p50),
            })
        })
        .collect()
}

fn closing(res: &LabResults, zh: bool) -> String {
    let p = &res.probe;
    let all = p.realized.hit_blocks >= p.potential.potential_hit_blocks;
    if zh {
        let got = if all { "这次全部兑现了" } else { "真实缓存只兑现了" };
        format!("前缀缓存方面, 探针看到 {} 个可复用块, {got} {} 个, 省下 {} 个 prefill token: 潜在信号本身不等于实际收益。由此, 很多看似“调度慢”或“延迟高”的现象, 根源在于 KV 状态的驻留规模: 上下文越长, 每个请求驻留的状态越大, 能同时服务的请求越少, 排队越久, 首 token 越慢。近似边界: 估计只计入 KV 本身 (不含权重、激活和分配器开销), 按块取整的占用高于按 token 计算的值; TTFT 的一部分来自长 prompt 自身的计算, 只有排队部分归因于容量。", p.potential.potential_hit_blocks, p.realized.hit_blocks, p.realized.prefill_tokens_saved)
    } else {
        let got = if all { "this time all were realized" } else { "the real cache realized only" };
        format!("The probe saw {} reusable blocks; {got} {} and saved {} prefill tokens: potential alone is not realized benefit. Much that looks like slow scheduling is KV residency: longer contexts, more state per request, fewer concurrent requests, longer queues, later first tokens. Limits: only KV is counted; block rounding exceeds the token-exact figure; part of TTFT is the prompt's own compute.", p.potential.potential_hit_blocks, p.realized.hit_blocks, p.realized.prefill_tokens_saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_a_word_processor() {
        assert_eq!(zi_count("KV 不是中间量"), 6, "one Latin word, five ideographs");
        assert_eq!(zi_count("p50 从 0.123 s 升到 45.0%, max_running 与 TTFT。"), 10);
        assert_eq!(zi_count("，。、（）"), 0, "punctuation is not counted");
        assert_eq!(word_count("Queue wait p50 rose from 0.1 s to 0.4 s — a lot."), 12);
    }
}
