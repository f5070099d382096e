//! The report's generated analysis (handout: a 500–800 字 analysis; in
//! English 250–400 words), assembled from this run's own figures: the
//! capacity cases, the repeats, the chain, the failure conditions, the knob
//! sweeps and the probe. It is labelled as generated where it is printed;
//! the student is expected to rewrite it in their own words. This file
//! gathers the figures ([`Analysis`]); the sentences are the templates'
//! (`templates/analysis.{zh,en}.md.j2`).

use crate::causal::agreement;
use crate::failure::{Condition, FailurePoint, FailureResults, LoadKind, Source};
use crate::knob_sweep::{fragmentation, Knob, KnobPoint, KnobSweepResult};
use crate::repeat::{Agreement, Spread};
use crate::results::LabResults;
use kvscope_experiment::capacity::CapacityRow;
use kvscope_experiment::dist::Dist;
use serde::Serialize;

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

/// Every figure the analysis cites, formatted; the sentences around them
/// are the templates' (`templates/analysis.{zh,en}.md.j2`).
#[derive(Serialize)]
pub struct Analysis {
    pub pool_tokens: usize,
    pub num_blocks: usize,
    pub short: CaseFigures,
    pub long: CaseFigures,
    /// Queue wait p50 of the mixed case's short requests alone: do they
    /// wait behind the long ones?
    pub mixed_short_wait: String,
    /// TTFT p50 over the repeats; `None`: a single run.
    pub repeats: Option<RepeatSpread>,
    pub chain: Option<ChainFigures>,
    pub failure: Option<FailureFigures>,
    /// The first two knob sweeps (the length stays in the handout's range).
    pub knobs: Vec<KnobFigures>,
    pub probe: ProbeFigures,
}

#[derive(Serialize)]
pub struct CaseFigures {
    pub prompt_len: String,
    /// Block-rounded KV per request at its peak.
    pub kv: String,
    pub live_max: usize,
    /// The binding admission constraint, `none` when nothing stalled.
    pub binding: &'static str,
    pub queue_wait_p50: String,
    pub ttft_p50: String,
}

#[derive(Serialize)]
pub struct RepeatSpread {
    pub n: usize,
    /// Min and max of the short and the long case's TTFT p50.
    pub short: [String; 2],
    pub long: [String; 2],
    /// The ranges do not overlap: the difference exceeds the noise.
    pub apart: bool,
}

#[derive(Serialize)]
pub struct ChainFigures {
    pub from_len: usize,
    pub to_len: usize,
    /// Links (of 4) that held in every repeat.
    pub held: usize,
    /// The links that did not: `kv`, `live`, `queue_wait`, `ttft`.
    pub open: Vec<&'static str>,
    /// Some link held in some repeats only (rather than in none).
    pub mixed: bool,
    pub live_max: [usize; 2],
    pub queue_wait_p50: [String; 2],
}

#[derive(Serialize)]
pub struct FailureFigures {
    pub from_len: usize,
    pub to_len: usize,
    /// Admission stall, preemption and SLO load at the shortest and the
    /// longest context (`≤` an upper bound, `>` beyond the ladder).
    pub first: [String; 3],
    pub last: [String; 3],
    pub slo_ttft: String,
    /// Load is a number of concurrent requests (else an arrival rate).
    pub concurrency: bool,
    pub all_simulated: bool,
    pub thresholds: usize,
    pub real_thresholds: usize,
}

#[derive(Serialize)]
pub struct KnobFigures {
    pub knob: Knob,
    /// The first and the last value, and the long case at each.
    pub values: [String; 2],
    pub live_max: [usize; 2],
    pub fragmentation: [String; 2],
    pub queue_wait_p50: [String; 2],
}

#[derive(Serialize)]
pub struct ProbeFigures {
    pub potential_blocks: u64,
    pub realized_blocks: u64,
    pub saved_tokens: u64,
    pub all_realized: bool,
}

/// The analysis paragraph of the report (empty without the short and the
/// long case).
pub fn paragraph(res: &LabResults, zh: bool) -> String {
    Analysis::of(res).map_or_else(String::new, |a| crate::template::render_analysis(&a, zh))
}

impl Analysis {
    pub fn of(res: &LabResults) -> Option<Analysis> {
        let find = |name: &str| res.capacity.iter().position(|r| r.case == name);
        let (si, li) = (find("short_ctx")?, find("long_ctx")?);
        let cfg = &res.engine;
        let mixed_short_wait = res
            .cases
            .iter()
            .find(|c| c.spec.name == "mixed_ctx")
            .map(|c| {
                let cut = c.requests.iter().map(|r| r.prompt_tokens).max().unwrap_or(0) / 2;
                Dist::of(c.requests.iter().filter(|r| r.prompt_tokens < cut).map(|r| r.queue_wait)).p50
            })
            .unwrap_or(0.0);
        Some(Analysis {
            pool_tokens: cfg.pool.num_blocks * cfg.pool.block_size,
            num_blocks: cfg.pool.num_blocks,
            short: CaseFigures::of(&res.capacity[si]),
            long: CaseFigures::of(&res.capacity[li]),
            mixed_short_wait: format!("{mixed_short_wait:.3}"),
            repeats: RepeatSpread::of(res, si, li),
            chain: ChainFigures::of(res),
            failure: res.failure.as_ref().and_then(FailureFigures::of),
            knobs: res.knob_sweeps.iter().take(2).filter_map(KnobFigures::of).collect(),
            probe: ProbeFigures {
                potential_blocks: res.probe.potential.potential_hit_blocks,
                realized_blocks: res.probe.realized.hit_blocks,
                saved_tokens: res.probe.realized.prefill_tokens_saved,
                all_realized: res.probe.realized.hit_blocks >= res.probe.potential.potential_hit_blocks,
            },
        })
    }
}

impl CaseFigures {
    fn of(r: &CapacityRow) -> CaseFigures {
        CaseFigures {
            prompt_len: format!("{:.0}", r.prompt_len),
            kv: kib(r.estimated_kv_block_rounded),
            live_max: r.live_requests_max,
            binding: r.binding_constraint().map_or("none", |b| b.as_str()),
            queue_wait_p50: format!("{:.3}", r.queue_wait.p50),
            ttft_p50: format!("{:.3}", r.ttft.p50),
        }
    }
}

impl RepeatSpread {
    fn of(res: &LabResults, si: usize, li: usize) -> Option<RepeatSpread> {
        if res.repeat <= 1 {
            return None;
        }
        let ttft = |i: usize| Spread::of(res.capacity_repeats[i].iter().map(|r| r.ttft.p50));
        let (s, l) = (ttft(si), ttft(li));
        let range = |x: Spread| [format!("{:.3}", x.min), format!("{:.3}", x.max)];
        Some(RepeatSpread { n: res.repeat, short: range(s), long: range(l), apart: l.min > s.max })
    }
}

impl ChainFigures {
    fn of(res: &LabResults) -> Option<ChainFigures> {
        let a = agreement(&res.sweep_repeats)?;
        let (first, last) = (res.sweep.first()?, res.sweep.last()?);
        let links =
            [("kv", a.kv_grows), ("live", a.live_shrinks), ("queue_wait", a.queue_wait_grows), ("ttft", a.ttft_grows)];
        Some(ChainFigures {
            from_len: first.prompt_len,
            to_len: last.prompt_len,
            held: links.iter().filter(|l| l.1.established()).count(),
            open: links.iter().filter(|l| !l.1.established()).map(|l| l.0).collect(),
            mixed: links.iter().any(|l| matches!(l.1, Agreement::Some { .. })),
            live_max: [first.live_max, last.live_max],
            queue_wait_p50: [format!("{:.3}", first.queue_wait_p50), format!("{:.3}", last.queue_wait_p50)],
        })
    }
}

impl FailureFigures {
    fn of(f: &FailureResults) -> Option<FailureFigures> {
        let (first, last) = (f.points.first()?, f.points.last()?);
        let show = |p: &FailurePoint, c: Condition| match p.threshold(c).load {
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
        let all = |p: &FailurePoint| Condition::ALL.map(|c| show(p, c));
        let thresholds = || f.points.iter().flat_map(|p| [p.admission_stall, p.preemption, p.slo_ttft]);
        Some(FailureFigures {
            from_len: first.prompt_len,
            to_len: last.prompt_len,
            first: all(first),
            last: all(last),
            slo_ttft: f.plan.slo_ttft.to_string(),
            concurrency: f.plan.load == LoadKind::Concurrency,
            all_simulated: f.primary == "sim",
            thresholds: thresholds().count(),
            real_thresholds: thresholds().filter(|t| t.source == Source::Real).count(),
        })
    }
}

impl KnobFigures {
    /// The long-context case at the sweep's first and last value.
    fn of(k: &KnobSweepResult) -> Option<KnobFigures> {
        let (a, b) = (k.points.first()?, k.points.last()?);
        let long = |p: &KnobPoint| p.rows.iter().find(|r| r.case == "long_ctx").cloned();
        let (ra, rb) = (long(a)?, long(b)?);
        Some(KnobFigures {
            knob: k.knob,
            values: [a.label.clone(), b.label.clone()],
            live_max: [ra.live_requests_max, rb.live_requests_max],
            fragmentation: [format!("{:.1}", 100.0 * fragmentation(&ra)), format!("{:.1}", 100.0 * fragmentation(&rb))],
            queue_wait_p50: [format!("{:.3}", ra.queue_wait.p50), format!("{:.3}", rb.queue_wait.p50)],
        })
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
