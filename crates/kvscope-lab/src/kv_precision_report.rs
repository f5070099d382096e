//! The KV-precision extension in the report (zh/en) and as `kv_dtype.svg`.
//! Every figure comes from [`KvPrecision`]; the text states the trade-off
//! in both directions and what the measurement does not show.

use crate::kv_precision::{KvDtypeRow, KvPrecision};
use crate::svg::{Anchor, Svg};
use kvscope_core::KvDtype;
use std::fmt::Write;

fn describe(dtype: KvDtype, zh: bool) -> &'static str {
    match (dtype, zh) {
        (KvDtype::F32, true) => "单精度, 精确 (参考)",
        (KvDtype::F32, false) => "single precision, exact (the reference)",
        (KvDtype::F16, true) => "半精度, 就近舍入",
        (KvDtype::F16, false) => "half precision, round to nearest",
        (KvDtype::Bf16, true) => "bfloat16",
        (KvDtype::Bf16, false) => "bfloat16",
        (KvDtype::Int8, true) => "对称 int8, 每个 token 每个 KV 头一个 f32 缩放",
        (KvDtype::Int8, false) => "symmetric int8, one f32 scale per token and KV head",
        (KvDtype::Fp8, true) => "fp8, 每张量缩放 (vLLM)",
        (KvDtype::Fp8, false) => "fp8, per-tensor scale (vLLM)",
    }
}

/// The report's subsection (a level-3 heading under 12.5, the extensions).
pub fn section(kp: &KvPrecision, simulated: bool, zh: bool) -> String {
    let t = |a: &'static str, b: &'static str| if zh { a } else { b };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "### {}\n",
        t("扩展: KV 精度 — 容量的杠杆及其代价", "Extension: KV precision — a capacity lever and its price")
    );
    let _ = writeln!(
        o,
        "{}\n",
        if zh {
            format!(
                "同样的池字节数 ({:.1} MiB), 同样的负载 (`{}`, {} 个请求, 与上文同一批请求), 只改变 K/V 的存储格式; 每种格式在新引擎上运行。主实验使用 `{}`, 其行复用主实验的运行。",
                kp.pool_bytes as f64 / (1u64 << 20) as f64,
                kp.case,
                kp.num_requests,
                kp.main_dtype
            )
        } else {
            format!(
                "The same pool bytes ({:.1} MiB) and the same workload (`{}`, {} requests, the very requests above); only the storage format of K and V changes, each format on a fresh engine. The main run used `{}`; its row reuses that run.",
                kp.pool_bytes as f64 / (1u64 << 20) as f64,
                kp.case,
                kp.num_requests,
                kp.main_dtype
            )
        }
    );
    for r in &kp.rows {
        let _ = writeln!(o, "- `{}`: {} — {} B/token", r.kv_dtype, describe(r.kv_dtype, zh), r.bytes_per_token);
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| {} | B/token | {} | {} | {} | {} | {} p50 / p90 (s) | TTFT p50 / p90 (s) | {} | {} | {} | {} |",
        t("格式", "format"),
        t("块数", "blocks"),
        t("token 槽位", "token slots"),
        t("最大活跃请求", "max live"),
        t("平均活跃请求", "mean live"),
        t("排队等待", "queue wait"),
        t("抢占", "preemptions"),
        t("top-1 一致率", "top-1 agreement"),
        t("top-1 一致率 (领先 ≥ 0.5 的位置)", "top-1 agreement (lead ≥ 0.5)"),
        t("平均 |Δ log p|", "mean |Δ log p|"),
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &kp.rows {
        let _ = writeln!(o, "{}", table_row(r, zh));
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "![KV precision](kv_dtype.svg)\n");
    let _ = writeln!(o, "{}\n", tradeoff(kp, simulated, zh));
    let _ = writeln!(o, "{}\n", limits(kp, simulated, zh));
    o
}

fn table_row(r: &KvDtypeRow, zh: bool) -> String {
    let cap = r.capacity.as_ref();
    let acc = r.accuracy.as_ref();
    let reference = if zh { "参考" } else { "reference" };
    let (agree, decisive, diff) = match (acc, r.kv_dtype) {
        (Some(a), _) => (
            format!("{:.2} %", 100.0 * a.top1_agreement),
            format!("{:.2} % / {}", 100.0 * a.decisive_top1_agreement, a.decisive_positions),
            format!("{:.4}", a.mean_abs_logprob_diff),
        ),
        (None, KvDtype::F32) => (reference.to_string(), reference.to_string(), reference.to_string()),
        (None, _) => ("—".into(), "—".into(), "—".into()),
    };
    match cap {
        Some(c) => format!(
            "| `{}` | {} | {} | {} | {} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} | {agree} | {decisive} | {diff} |",
            r.kv_dtype,
            r.bytes_per_token,
            r.blocks,
            r.token_slots,
            c.live_requests_max,
            c.live_requests,
            c.queue_wait.p50,
            c.queue_wait.p90,
            c.ttft.p50,
            c.ttft.p90,
            c.preemptions
        ),
        None => format!(
            "| `{}` | {} | {} | {} | {} | | | | | {agree} | {decisive} | {diff} |",
            r.kv_dtype,
            r.bytes_per_token,
            r.blocks,
            r.token_slots,
            if zh { "放不下一个请求" } else { "cannot hold one request" }
        ),
    }
}

/// Both directions of the trade-off, from the run's own figures: the most
/// compact format against the widest one.
fn tradeoff(kp: &KvPrecision, simulated: bool, zh: bool) -> String {
    let (Some(wide), Some(narrow)) = (kp.rows.first(), kp.rows.iter().min_by_key(|r| r.bytes_per_token)) else {
        return String::new();
    };
    let ratio = narrow.token_slots as f64 / wide.token_slots.max(1) as f64;
    let capacity_side = match (&wide.capacity, &narrow.capacity) {
        (Some(w), Some(n)) => {
            if zh {
                format!(
                    "容量一侧: `{}` 在同样字节里放下 {ratio:.2} 倍于 `{}` 的 token; 平均活跃请求 {:.2} → {:.2}, 排队等待 p90 {:.2} s → {:.2} s, TTFT p90 {:.2} s → {:.2} s。",
                    narrow.kv_dtype, wide.kv_dtype, w.live_requests, n.live_requests, w.queue_wait.p90, n.queue_wait.p90, w.ttft.p90, n.ttft.p90
                )
            } else {
                format!(
                    "Capacity side: `{}` holds {ratio:.2}× the tokens of `{}` in the same bytes; mean live requests {:.2} → {:.2}, queue wait p90 {:.2} s → {:.2} s, TTFT p90 {:.2} s → {:.2} s.",
                    narrow.kv_dtype, wide.kv_dtype, w.live_requests, n.live_requests, w.queue_wait.p90, n.queue_wait.p90, w.ttft.p90, n.ttft.p90
                )
            }
        }
        (None, Some(_)) => {
            if zh {
                format!(
                    "容量一侧: `{}` 的池放不下这个负载的一个请求, `{}` ({ratio:.2} 倍 token) 可以运行它。",
                    wide.kv_dtype, narrow.kv_dtype
                )
            } else {
                format!("Capacity side: the `{}` pool cannot hold one request of this workload; `{}` ({ratio:.2}× the tokens) runs it.", wide.kv_dtype, narrow.kv_dtype)
            }
        }
        _ => String::new(),
    };
    let price_side = match (&narrow.accuracy, simulated) {
        (Some(a), _) => {
            if zh {
                format!(
                    "代价一侧: 在 {} 个位置上, `{}` 的 top-1 与 f32 KV 一致 {:.2} % (f32 领先 ≥ 0.5 的 {} 个位置上 {:.2} %; 其余的翻转是近似平局), 下一 token 的对数概率平均相差 {:.4} (最大 {:.3})。",
                    a.positions, narrow.kv_dtype, 100.0 * a.top1_agreement, a.decisive_positions, 100.0 * a.decisive_top1_agreement, a.mean_abs_logprob_diff, a.max_abs_logprob_diff
                )
            } else {
                format!(
                    "Price side: over {} positions, `{}` picks the f32 KV path's top-1 at {:.2} % of them ({:.2} % of the {} positions where f32 leads by ≥ 0.5; the other flips are near-ties), and the next token's log-probability differs by {:.4} on average (at most {:.3}).",
                    a.positions, narrow.kv_dtype, 100.0 * a.top1_agreement, 100.0 * a.decisive_top1_agreement, a.decisive_positions, a.mean_abs_logprob_diff, a.max_abs_logprob_diff
                )
            }
        }
        (None, true) => {
            if zh {
                "代价一侧: 模拟器不计算 logits, 精度代价未测量 (须在真实模型上运行本实验)。".into()
            } else {
                "Price side: the simulator computes no logits, so the accuracy cost is not measured here (run the lab on the real model).".into()
            }
        }
        (None, false) => String::new(),
    };
    format!("{capacity_side} {price_side}")
}

fn limits(kp: &KvPrecision, simulated: bool, zh: bool) -> String {
    let mut o = String::new();
    let _ = write!(o, "{}", if zh { "**这项测量不说明的事:** " } else { "**What this measurement does not show:** " });
    if zh {
        let _ = write!(
            o,
            "精度是对同一组内核上的 f32 KV 路径的比较 (不是对 HF transformers), 只在本实验的 {} 条提示上做教师强制 ({} 个位置): 它不测长文本生成中误差的累积, 也不测任务质量; 使用 int8 内核时, 激活的 int8 舍入会放大 KV 的微小扰动 (用 `--kernels f32` 运行可单独看 KV 格式的代价); 单次运行的时间数字含墙钟噪声; 在 CPU 上 f16/int8 在读取时展开为 f32, 其注意力速度差异也进入 TTFT。",
            kp.accuracy_prompts, kp.accuracy_positions
        );
    } else {
        let _ = write!(
            o,
            "accuracy is compared with the f32 KV path on the same kernels (not with HF transformers), teacher-forced on this lab's {} prompts only ({} positions): it does not measure how errors compound over long generations, nor task quality; with the int8 kernels, activation rounding amplifies any small KV perturbation (run with `--kernels f32` to see the format's cost alone); single-run timings carry wall-clock noise; on the CPU, f16/int8 are widened to f32 as attention reads them, so their attention speed also enters TTFT.",
            kp.accuracy_prompts, kp.accuracy_positions
        );
    }
    if simulated {
        let _ = write!(
            o,
            "{}",
            if zh {
                " 本节的容量数字是模拟的 (同一成本模型, 仅池大小随格式变化)。"
            } else {
                " This section's capacity figures are simulated (one cost model; only the pool size follows the format)."
            }
        );
    }
    o
}

/// `kv_dtype.svg`: one panel per figure, one bar per format.
pub fn svg(kp: &KvPrecision) -> String {
    type Metric = (&'static str, fn(&KvDtypeRow) -> Option<f64>);
    let metrics: [Metric; 4] = [
        ("token slots in the pool", |r| Some(r.token_slots as f64)),
        ("mean live requests", |r| r.capacity.as_ref().map(|c| c.live_requests)),
        ("TTFT p90 (s)", |r| r.capacity.as_ref().map(|c| c.ttft.p90)),
        ("top-1 agreement with f32 KV (%)", |r| match (&r.accuracy, r.kv_dtype) {
            (Some(a), _) => Some(100.0 * a.top1_agreement),
            (None, KvDtype::F32) => Some(100.0),
            _ => None,
        }),
    ];
    let (panel_w, panel_h, top) = (230.0, 220.0, 60.0);
    let mut s = Svg::new(panel_w * metrics.len() as f64 + 20.0, panel_h + top + 50.0);
    s.text(
        s.width / 2.0,
        26.0,
        &format!(
            "KV precision: the same {:.1} MiB pool and workload ({}) per format",
            kp.pool_bytes as f64 / (1u64 << 20) as f64,
            kp.case
        ),
        15.0,
        Anchor::Middle,
        "#222",
        true,
    );
    let colors = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756"];
    for (i, (title, get)) in metrics.iter().enumerate() {
        let x0 = 10.0 + i as f64 * panel_w;
        s.text(x0 + panel_w / 2.0, top - 8.0, title, 12.0, Anchor::Middle, "#333", true);
        let values: Vec<Option<f64>> = kp.rows.iter().map(get).collect();
        let max = values.iter().flatten().cloned().fold(0.0, f64::max).max(1e-9);
        let n = kp.rows.len().max(1) as f64;
        let bar_w = (panel_w - 40.0) / n;
        let base = top + panel_h;
        s.line(x0 + 15.0, base, x0 + panel_w - 15.0, base, "#999", 1.0, None);
        for (j, (r, v)) in kp.rows.iter().zip(&values).enumerate() {
            let x = x0 + 20.0 + j as f64 * bar_w;
            let color = colors[j % colors.len()];
            match v {
                Some(v) => {
                    let h = (panel_h - 30.0) * v / max;
                    s.rect(x + 4.0, base - h, bar_w - 8.0, h, color, None, 2.0);
                    let shown = if *v >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") };
                    s.label(x + bar_w / 2.0, base - h - 5.0, &shown, 11.0, Anchor::Middle, "#222");
                }
                None => s.label(x + bar_w / 2.0, base - 8.0, "n/a", 11.0, Anchor::Middle, "#777"),
            }
            s.text(x + bar_w / 2.0, base + 16.0, r.kv_dtype.as_str(), 12.0, Anchor::Middle, "#222", false);
        }
    }
    s.finish()
}
