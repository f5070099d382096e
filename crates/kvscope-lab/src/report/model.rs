//! The report's typed model: every figure the report shows, already
//! formatted, filled once from a run. The templates (one per language)
//! only choose words around these figures, so both languages show the same
//! numbers and a figure is formatted in one place.
//!
//! The subsections of the lab's extensions have their models beside their
//! plots ([`FailureSection`], [`KnobSweepSection`], [`KvPrecisionSection`]).
//! Two passages arrive as text, in both languages ([`Texts`]): the
//! generated analysis, rendered from its own templates
//! (`templates/analysis.{zh,en}.md.j2`, figures in `analysis.rs`) because
//! the tests hold it to a length on its own, and a capacity row's
//! explanation, which capacity.json carries too (`kvscope_experiment`).

use super::nano_vllm::{NanoVllmRef, NANO_VLLM};
use super::stall_quote::StallQuote;
use super::{Environment, ReportContext, StudentBlockManager};
use crate::failure_report::FailureSection;
use crate::knob_sweep::KnobSweepSection;
use crate::kv_precision_report::KvPrecisionSection;
use crate::lifecycle::LifecycleGraph;
use crate::repeat::{show, Agreement, Spread};
use crate::results::LabResults;
use kvscope_core::{EngineConfig, KvEvent};
use kvscope_experiment::capacity::{explain, CapacityRow, Known};
use kvscope_experiment::dist::Dist;
use kvscope_experiment::names;
use kvscope_experiment::workload::Arrival;
use serde::Serialize;

/// The whole report. `lab` is `None` for `kvscope sim --out`, whose
/// report is the capacity section alone.
#[derive(Serialize)]
pub struct ReportModel {
    /// Every time is in simulated seconds (the simulator ran).
    pub simulated: bool,
    pub run: RunInfo,
    pub pool: PoolInfo,
    pub capacity: CapacityTable,
    pub lab: Option<LabSections>,
}

/// A passage written in Rust, in both languages.
#[derive(Serialize)]
pub struct Texts {
    pub zh: String,
    pub en: String,
}

impl Texts {
    pub fn of(write: impl Fn(bool) -> String) -> Texts {
        Texts { zh: write(true), en: write(false) }
    }
}

#[derive(Serialize)]
pub struct RunInfo {
    pub date: String,
    pub kvscope_version: String,
    pub machine: String,
    pub command: String,
    /// The model (for `sim --out`: model and hardware preset).
    pub model: String,
    /// `real` or `sim`.
    pub executor: String,
    pub details: Vec<String>,
    pub block_manager: Option<StudentBlockManager>,
    /// Real-vs-simulated validation table (markdown), when it was run.
    pub sim_validation: Option<String>,
    pub env: Environment,
}

#[derive(Serialize)]
pub struct PoolInfo {
    pub num_blocks: usize,
    pub block_size: usize,
    pub kv_per_token: String,
    pub kv_dtype: String,
    pub total: String,
    pub max_running: usize,
    pub max_batched_tokens: usize,
}

/// Section 12.3: one line per case.
#[derive(Serialize)]
pub struct CapacityTable {
    /// Repeats behind each figure (1: a single run).
    pub repeats: usize,
    pub rows: Vec<CapacityLine>,
}

#[derive(Serialize)]
pub struct CapacityLine {
    pub case: String,
    pub prompt_len: String,
    pub prompt_len_min: usize,
    pub prompt_len_max: usize,
    pub concurrency: usize,
    /// How the requests arrived; `None`: all at once.
    pub arrival: Option<String>,
    pub live_mean: String,
    pub live_max: String,
    #[serde(flatten)]
    pub figures: RequestFigures,
    /// A two-peak mix's long and short requests, each on its own line
    /// under the case's.
    pub members: Vec<MemberLine>,
    pub explanation: Texts,
}

/// The tail of a distribution: the p99 when enough values stand behind it,
/// else the maximum and how many values there were (a p99 of 5 values is
/// the maximum under another name; `dist::P99_MIN_VALUES`).
#[derive(Serialize)]
pub struct Tail {
    pub p99: Option<String>,
    pub max: String,
    pub n: usize,
}

impl Tail {
    fn of(reps: &[CapacityRow], dist: impl Fn(&CapacityRow) -> Dist) -> Tail {
        let first = dist(&reps[0]);
        Tail {
            p99: first.p99_is_meaningful().then(|| show(reps, |x| dist(x).p99, 3)),
            max: show(reps, |x| dist(x).max, 3),
            n: first.n,
        }
    }
}

/// What the capacity table says of one group of requests (a case, or one
/// member of a mix): KV per request, then TTFT and queue wait as p50, p90
/// and the tail beside them.
#[derive(Serialize)]
pub struct RequestFigures {
    pub kv: String,
    pub kv_block_rounded: String,
    pub ttft: [String; 2],
    pub ttft_tail: Tail,
    pub queue_wait: [String; 2],
    pub queue_wait_tail: Tail,
}

impl RequestFigures {
    /// `kv`: estimated bytes per request, exact and rounded up to blocks;
    /// `ttft` and `queue_wait` pick the group's distribution from a repeat.
    fn of(
        (kv, kv_block_rounded): (f64, f64),
        reps: &[CapacityRow],
        ttft: impl Fn(&CapacityRow) -> Dist + Copy,
        queue_wait: impl Fn(&CapacityRow) -> Dist + Copy,
    ) -> RequestFigures {
        RequestFigures {
            kv: kib(kv),
            kv_block_rounded: kib(kv_block_rounded),
            ttft: [show(reps, |x| ttft(x).p50, 3), show(reps, |x| ttft(x).p90, 3)],
            ttft_tail: Tail::of(reps, ttft),
            queue_wait: [show(reps, |x| queue_wait(x).p50, 3), show(reps, |x| queue_wait(x).p90, 3)],
            queue_wait_tail: Tail::of(reps, queue_wait),
        }
    }
}

/// One member of a two-peak mix (see [`CapacityRow::members`]).
#[derive(Serialize)]
pub struct MemberLine {
    /// `long` or `short`.
    pub member: String,
    pub prompt_len: String,
    pub requests: usize,
    /// Of the requests live in the step with the most, this member's.
    pub live_at_max: usize,
    pub blocks_at_max: usize,
    #[serde(flatten)]
    pub figures: RequestFigures,
}

impl MemberLine {
    /// Member `i` of `reps` (one row per repeat).
    fn new(reps: &[CapacityRow], i: usize) -> MemberLine {
        let m = &reps[0].members[i];
        MemberLine {
            member: m.member.clone(),
            prompt_len: format!("{:.0}", m.prompt_len),
            requests: m.requests,
            live_at_max: m.live_at_max,
            blocks_at_max: m.blocks_at_max,
            figures: RequestFigures::of(
                (m.estimated_kv, m.estimated_kv_block_rounded),
                reps,
                |x| x.members[i].ttft,
                |x| x.members[i].queue_wait,
            ),
        }
    }
}

/// Everything of the lab's report beyond the capacity table.
#[derive(Serialize)]
pub struct LabSections {
    pub repeats: usize,
    /// The capacity cases, in order (their timelines and state plots).
    pub cases: Vec<String>,
    pub lifecycle: LifecycleRows,
    pub chain: ChainSection,
    pub failure: Option<FailureSection>,
    pub knob_sweeps: Vec<KnobSweepSection>,
    pub stats: Vec<StatsLine>,
    pub probe: ProbeTable,
    pub kv_precision: Option<KvPrecisionSection>,
    pub analysis: Texts,
}

/// Section 12.2: the code sites (markdown, comma-separated) and counts of
/// each lifecycle event.
#[derive(Serialize)]
pub struct LifecycleRows {
    pub admitted_sites: String,
    pub prefill_sites: String,
    pub decode_sites: String,
    pub block_appended_sites: String,
    pub released_sites: String,
    pub finished_sites: String,
    pub preempted_sites: String,
    /// The nano-vLLM commits its counterparts were read from.
    pub nano_vllm: NanoVllmRef,
    pub admitted: u64,
    /// Prefix-cache hit blocks over every admission (readmissions too).
    pub prefix_hit_blocks: usize,
    pub prefill: u64,
    pub decode: u64,
    pub block_appended: u64,
    pub released: u64,
    pub preempted: u64,
    pub evicted: u64,
}

/// Section 12.4: the prompt-length sweep.
#[derive(Serialize)]
pub struct ChainSection {
    pub num_requests: usize,
    pub output_tokens: usize,
    pub prompt_lens: String,
    /// First and last point, when the chain was judged.
    pub headline: Option<ChainHeadline>,
    pub rows: Vec<SweepLine>,
    /// One `stalled` event for want of blocks: the KV link seen directly.
    pub stall_quote: Option<StallQuote>,
}

#[derive(Serialize)]
pub struct ChainHeadline {
    pub from_len: usize,
    pub to_len: usize,
    pub kv_arrow: &'static str,
    pub kv_from: String,
    pub kv_to: String,
    pub live_arrow: &'static str,
    pub live_max_from: usize,
    pub live_max_to: usize,
    pub live_mean_from: String,
    pub live_mean_to: String,
    pub queue_wait_arrow: &'static str,
    pub queue_wait_from: String,
    pub queue_wait_to: String,
    pub ttft_arrow: &'static str,
    pub ttft_from: String,
    pub ttft_to: String,
    /// The links that did not hold in every repeat, in chain order.
    pub unsettled: Vec<UnsettledLink>,
}

/// A link of the chain that did not hold in every repeat.
#[derive(Serialize)]
pub struct UnsettledLink {
    /// `kv_grows`, `live_shrinks`, `queue_wait_grows` or `ttft_grows`.
    pub link: &'static str,
    /// Repeats it held in, of how many; `None`: it held in none.
    pub held: Option<(usize, usize)>,
}

#[derive(Serialize)]
pub struct SweepLine {
    pub prompt_len: usize,
    pub kv: String,
    pub live_mean: String,
    pub live_max: String,
    pub stalls_no_free_blocks: String,
    pub stalls_max_running: String,
    pub stalls_token_budget: String,
    pub preemptions: String,
    pub queue_wait_p50: String,
    pub queue_wait_p90: String,
    pub ttft_p50: String,
    pub ttft_p90: String,
    pub compute_p50: String,
}

/// Section 12.5: the state statistics of one case.
#[derive(Serialize)]
pub struct StatsLine {
    pub case: String,
    pub peak_block_occupancy: String,
    pub stalled_steps: u64,
    /// How long the stalled steps ran, and its shares by reason
    /// (`no_free_blocks 71% / max_running 0% / token_budget 29%`).
    pub stalled_seconds: String,
    pub stall_time_shares: Texts,
    pub stall_step_shares: Texts,
    pub preemptions: u64,
}

/// Section 12.5: the probe's potential beside the realized reuse.
#[derive(Serialize)]
pub struct ProbeTable {
    pub potential_blocks: u64,
    pub realized_blocks: u64,
    pub potential_tokens: u64,
    pub potential_rate: String,
    pub saved_tokens: u64,
    pub realized_rate: String,
    pub computed_off: u64,
    pub computed_on: u64,
    pub ttft_off: String,
    pub ttft_on: String,
    /// TTFT p50 with caching on minus off, over the repeats.
    pub ttft_change_spread: String,
    /// The same, first repeat, signed.
    pub ttft_change: String,
    pub evictions: u64,
    pub unrealized_blocks: i64,
}

/// `no_free_blocks 71% / max_running 0% / token_budget 29%`, the reasons
/// in Chinese words for the Chinese report.
fn shares(shares: [(kvscope_core::StallReason, f64); 3]) -> Texts {
    Texts::of(|zh| shares.map(|(r, x)| format!("{} {:.0}%", names::stall_reason(r, zh), 100.0 * x)).join(" / "))
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / (1u64 << 20) as f64)
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

/// The sites that emitted these kinds of events, as markdown code spans.
fn sites(graph: &LifecycleGraph, kinds: &[&str]) -> String {
    let mut all: Vec<String> = kinds.iter().flat_map(|k| graph.sites(k)).collect();
    all.dedup();
    if all.is_empty() {
        "—".into()
    } else {
        all.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
    }
}

impl ReportModel {
    /// The lab's report of `res`; `graph` is the lifecycle of its cases.
    pub fn lab(res: &LabResults, graph: &LifecycleGraph, ctx: &ReportContext) -> ReportModel {
        let info = &res.backend;
        let simulated = info.executor == "sim";
        ReportModel {
            simulated,
            run: RunInfo::new(ctx, &info.model, &info.executor, &info.details),
            pool: PoolInfo::new(&res.engine, &info.kv_dtype.to_string()),
            capacity: CapacityTable::new(&res.capacity, &res.capacity_repeats, &res.engine),
            lab: Some(LabSections::new(res, graph, simulated)),
        }
    }

    /// The report of `kvscope sim --out`: the capacity section of one or
    /// more simulated cases on `backend` (model and hardware).
    pub fn simulated(rows: &[CapacityRow], cfg: &EngineConfig, backend: &str, ctx: &ReportContext) -> ReportModel {
        ReportModel {
            simulated: true,
            run: RunInfo::new(ctx, backend, "sim", &[]),
            pool: PoolInfo::new(cfg, ""),
            capacity: CapacityTable::new(rows, &[], cfg),
            lab: None,
        }
    }
}

impl RunInfo {
    fn new(ctx: &ReportContext, model: &str, executor: &str, details: &[String]) -> RunInfo {
        RunInfo {
            date: ctx.date.clone(),
            kvscope_version: ctx.kvscope_version.clone(),
            machine: ctx.machine.clone(),
            command: ctx.command.clone(),
            model: model.into(),
            executor: executor.into(),
            details: details.to_vec(),
            block_manager: ctx.block_manager.clone(),
            sim_validation: ctx.sim_validation.clone(),
            env: ctx.environment.clone(),
        }
    }
}

impl PoolInfo {
    fn new(cfg: &EngineConfig, kv_dtype: &str) -> PoolInfo {
        PoolInfo {
            num_blocks: cfg.pool.num_blocks,
            block_size: cfg.pool.block_size,
            kv_per_token: kib(cfg.pool.bytes_per_token() as f64),
            kv_dtype: kv_dtype.into(),
            total: mib(cfg.pool.total_bytes() as f64),
            max_running: cfg.scheduler.max_running,
            max_batched_tokens: cfg.scheduler.max_batched_tokens,
        }
    }
}

impl CapacityTable {
    /// `repeats[case]` holds each case's row of every repeat (empty: one
    /// run, `rows` alone); figures are then medians with their range.
    fn new(rows: &[CapacityRow], repeats: &[Vec<CapacityRow>], cfg: &EngineConfig) -> CapacityTable {
        let lines = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let own = [r.clone()];
                let reps: &[CapacityRow] = repeats.get(i).map_or(&own, |v| v.as_slice());
                CapacityLine::new(r, reps, Texts::of(|zh| explain(r, cfg, zh)))
            })
            .collect();
        CapacityTable { repeats: repeats.first().map_or(1, Vec::len), rows: lines }
    }

    /// A table of rows measured from outside an engine (`kvscope lab
    /// --target`): what `known` marks unknown shows as "—", never as a
    /// zero; `explanation(i, zh)` is row `i`'s explanation.
    pub fn measured(
        rows: &[CapacityRow],
        known: &[Known],
        explanation: impl Fn(usize, bool) -> String,
    ) -> CapacityTable {
        let dash = || "—".to_string();
        let lines = rows
            .iter()
            .zip(known)
            .enumerate()
            .map(|(i, (r, k))| {
                let mut line = CapacityLine::new(r, std::slice::from_ref(r), Texts::of(|zh| explanation(i, zh)));
                if !k.live_requests {
                    (line.live_mean, line.live_max) = (dash(), dash());
                }
                if !k.estimated_kv {
                    line.figures.kv = dash();
                }
                if !k.kv_block_rounded {
                    line.figures.kv_block_rounded = dash();
                }
                if !k.queue_wait {
                    line.figures.queue_wait = [dash(), dash()];
                    line.figures.queue_wait_tail = Tail { p99: Some(dash()), max: dash(), n: 0 };
                }
                line
            })
            .collect();
        CapacityTable { repeats: 1, rows: lines }
    }
}

impl CapacityLine {
    /// Row `r`'s line, its figures over `reps` (the row in every repeat).
    fn new(r: &CapacityRow, reps: &[CapacityRow], explanation: Texts) -> CapacityLine {
        CapacityLine {
            case: r.case.clone(),
            prompt_len: format!("{:.0}", r.prompt_len),
            prompt_len_min: r.prompt_len_min,
            prompt_len_max: r.prompt_len_max,
            concurrency: r.concurrency,
            arrival: match r.arrival {
                Arrival::AllAtOnce => None,
                ref other => Some(other.label()),
            },
            live_mean: show(reps, |x| x.live_requests, 2),
            live_max: show(reps, |x| x.live_requests_max as f64, 0),
            figures: RequestFigures::of(
                (r.estimated_kv, r.estimated_kv_block_rounded),
                reps,
                |x| x.ttft,
                |x| x.queue_wait,
            ),
            members: (0..r.members.len())
                .filter(|&m| reps.iter().all(|x| x.members.len() > m))
                .map(|m| MemberLine::new(reps, m))
                .collect(),
            explanation,
        }
    }
}

impl LabSections {
    fn new(res: &LabResults, graph: &LifecycleGraph, simulated: bool) -> LabSections {
        let p = &res.probe;
        LabSections {
            repeats: res.repeat,
            cases: res.cases.iter().map(|c| c.spec.name.clone()).collect(),
            lifecycle: LifecycleRows::new(res, graph),
            chain: ChainSection::new(res),
            failure: res.failure.as_ref().map(FailureSection::new),
            knob_sweeps: res.knob_sweeps.iter().map(KnobSweepSection::new).collect(),
            stats: res
                .capacity
                .iter()
                .map(|r| StatsLine {
                    case: r.case.clone(),
                    peak_block_occupancy: format!("{:.0}", 100.0 * r.peak_block_occupancy),
                    stalled_steps: r.stalled_steps,
                    stalled_seconds: format!("{:.2}", r.stalled_seconds),
                    stall_time_shares: shares(r.stall_time_shares()),
                    stall_step_shares: shares(r.stall_step_shares()),
                    preemptions: r.preemptions,
                })
                .collect(),
            probe: ProbeTable {
                potential_blocks: p.potential.potential_hit_blocks,
                realized_blocks: p.realized.hit_blocks,
                potential_tokens: p.potential.potential_hit_tokens,
                potential_rate: format!("{:.1}", 100.0 * p.potential.potential_hit_rate()),
                saved_tokens: p.realized.prefill_tokens_saved,
                realized_rate: format!("{:.1}", 100.0 * p.realized.hit_rate),
                computed_off: p.prefill_tokens_computed_off,
                computed_on: p.realized.prefill_tokens_computed,
                ttft_off: show(&res.probe_repeats, |r| r.potential_ttft_with_caching_off.p50, 3),
                ttft_on: show(&res.probe_repeats, |r| r.realized.ttft.p50, 3),
                ttft_change_spread: Spread::of(res.probe_repeats.iter().map(|r| r.ttft_p50_change)).show(3),
                ttft_change: format!("{:+.3}", p.ttft_p50_change),
                evictions: p.realized.evictions,
                unrealized_blocks: p.unrealized_blocks,
            },
            kv_precision: res.kv_precision.as_ref().map(|kp| KvPrecisionSection::new(kp, simulated)),
            analysis: Texts::of(|zh| crate::analysis::paragraph(res, zh)),
        }
    }
}

impl LifecycleRows {
    fn new(res: &LabResults, graph: &LifecycleGraph) -> LifecycleRows {
        let prefix_hit_blocks = res
            .cases
            .iter()
            .flat_map(|c| &c.events)
            .filter_map(|e| match e.event {
                KvEvent::Admitted { cached_blocks, .. } => Some(cached_blocks),
                _ => None,
            })
            .sum();
        LifecycleRows {
            admitted_sites: sites(graph, &["admitted"]),
            prefill_sites: sites(graph, &["prefill"]),
            decode_sites: sites(graph, &["decode"]),
            block_appended_sites: sites(graph, &["block_appended"]),
            released_sites: sites(graph, &["released"]),
            finished_sites: sites(graph, &["finished"]),
            preempted_sites: sites(graph, &["preempted"]),
            nano_vllm: NANO_VLLM,
            admitted: graph.count("admitted"),
            prefix_hit_blocks,
            prefill: graph.count("prefill"),
            decode: graph.count("decode"),
            block_appended: graph.count("block_appended"),
            released: graph.count("released"),
            preempted: graph.count("preempted"),
            evicted: graph.count("evicted"),
        }
    }
}

impl ChainSection {
    fn new(res: &LabResults) -> ChainSection {
        let s = &res.sweep_spec;
        let headline = match (res.sweep.first(), res.sweep.last(), &res.chain) {
            (Some(a), Some(b), Some(v)) => {
                let links = [
                    ("kv_grows", v.kv_grows),
                    ("live_shrinks", v.live_shrinks),
                    ("queue_wait_grows", v.queue_wait_grows),
                    ("ttft_grows", v.ttft_grows),
                ];
                Some(ChainHeadline {
                    from_len: a.prompt_len,
                    to_len: b.prompt_len,
                    kv_arrow: v.kv_grows.arrow(),
                    kv_from: kib(a.kv_per_request),
                    kv_to: kib(b.kv_per_request),
                    live_arrow: v.live_shrinks.arrow(),
                    live_max_from: a.live_max,
                    live_max_to: b.live_max,
                    live_mean_from: format!("{:.2}", a.live_mean),
                    live_mean_to: format!("{:.2}", b.live_mean),
                    queue_wait_arrow: v.queue_wait_grows.arrow(),
                    queue_wait_from: format!("{:.3}", a.queue_wait_p50),
                    queue_wait_to: format!("{:.3}", b.queue_wait_p50),
                    ttft_arrow: v.ttft_grows.arrow(),
                    ttft_from: format!("{:.3}", a.ttft_p50),
                    ttft_to: format!("{:.3}", b.ttft_p50),
                    unsettled: links
                        .into_iter()
                        .filter(|(_, a)| !a.established())
                        .map(|(link, a)| UnsettledLink {
                            link,
                            held: match a {
                                Agreement::Some { held, of } => Some((held, of)),
                                _ => None,
                            },
                        })
                        .collect(),
                })
            }
            _ => None,
        };
        ChainSection {
            num_requests: s.num_requests,
            output_tokens: s.output_tokens,
            prompt_lens: format!("{:?}", s.prompt_lens),
            headline,
            stall_quote: StallQuote::find(res),
            rows: res
                .sweep
                .iter()
                .zip(&res.sweep_repeats)
                .map(|(p, reps)| SweepLine {
                    prompt_len: p.prompt_len,
                    kv: kib(p.kv_per_request),
                    live_mean: show(reps, |x| x.live_mean, 2),
                    live_max: show(reps, |x| x.live_max as f64, 0),
                    stalls_no_free_blocks: show(reps, |x| x.stalls_no_free_blocks as f64, 0),
                    stalls_max_running: show(reps, |x| x.stalls_max_running as f64, 0),
                    stalls_token_budget: show(reps, |x| x.stalls_token_budget as f64, 0),
                    preemptions: show(reps, |x| x.preemptions as f64, 0),
                    queue_wait_p50: show(reps, |x| x.queue_wait_p50, 3),
                    queue_wait_p90: show(reps, |x| x.queue_wait_p90, 3),
                    ttft_p50: show(reps, |x| x.ttft_p50, 3),
                    ttft_p90: show(reps, |x| x.ttft_p90, 3),
                    compute_p50: show(reps, |x| x.prefill_time_p50, 3),
                })
                .collect(),
        }
    }
}
