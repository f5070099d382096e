//! The simulator's random prompts keep their own blocks out of the prefix
//! index (`Prompt::private_from`); the same tokens given outright are
//! indexed block by block, as every prompt was before. On the lab's cases,
//! in a pool small enough to evict and preempt, the two must decide the
//! same: the event stream (every hit, eviction, `released.cached`), the
//! prefix-cache counters and the capacity table.

use kvscope_core::events::KvEvent;
use kvscope_core::Prompt;
use kvscope_experiment::workload::{shared_prefix_case, standard_cases, PromptSource, Scale};
use kvscope_experiment::{CapacityRow, CaseRun, CaseSpec, Detail, RunOptions, Stop};
use kvscope_sim::SimConfig;

fn run(config: &SimConfig, spec: &CaseSpec, given: bool, detail: Detail) -> CaseRun {
    let mut requests = spec.generate(&PromptSource::Synthetic { vocab: config.model.vocab as u32 });
    if given {
        for r in &mut requests {
            r.prompt = Prompt::from(r.prompt.to_vec());
        }
    }
    config.run(spec, requests, RunOptions { detail, stop: Stop::AtTheEnd }).unwrap()
}

fn text(run: &CaseRun) -> Vec<String> {
    run.events.iter().map(|e| serde_json::to_string(e).unwrap()).collect()
}

fn row(run: &CaseRun) -> String {
    serde_json::to_string(&CapacityRow::from_run(run, false)).unwrap()
}

#[test]
fn random_prompts_decide_like_their_tokens_indexed() {
    let mut config = SimConfig::from_names("qwen3-0.6b", "h100").unwrap();
    // 4,800 tokens: the lab's long prompts (≈ 1,536) fit three at a time.
    config.kv_blocks = Some(300);
    let mut cases = standard_cases(Scale::Lab, 300 * 16, 0);
    cases.push(shared_prefix_case(Scale::Lab, 0));
    let (mut evictions, mut preemptions, mut hits, mut taken_back) = (0, 0, 0, 0);
    for spec in &cases {
        let name = &spec.name;
        let (drawn, given) =
            (run(&config, spec, false, Detail::EveryStep), run(&config, spec, true, Detail::EveryStep));
        assert_eq!(drawn.prefix, given.prefix, "{name}: prefix-cache counters");
        assert_eq!(drawn.stats.preemptions, given.stats.preemptions, "{name}: preemptions");
        assert!(text(&drawn) == text(&given), "{name}: the event streams differ");
        assert_eq!(row(&drawn), row(&given), "{name}: capacity row");
        // The simulator's own path (decode runs) agrees as well.
        let (fast_drawn, fast_given) =
            (run(&config, spec, false, Detail::Summary), run(&config, spec, true, Detail::Summary));
        assert_eq!(fast_drawn.prefix, fast_given.prefix, "{name}: prefix-cache counters, decode runs");
        assert_eq!(row(&fast_drawn), row(&fast_given), "{name}: capacity row, decode runs");
        evictions += drawn.prefix.evictions;
        preemptions += drawn.stats.preemptions;
        hits += drawn.prefix.hit_tokens;
        // Readmissions that took cached blocks back: where this workload
        // preempts, nothing is shared, so they were the request's own.
        taken_back += drawn
            .events
            .iter()
            .filter(
                |e| matches!(e.event, KvEvent::Admitted { readmission: true, cached_blocks, .. } if cached_blocks > 0),
            )
            .count();
    }
    assert!(
        evictions > 0 && preemptions > 0 && hits > 0 && taken_back > 0,
        "evictions {evictions}, preemptions {preemptions}, hit tokens {hits}, readmissions with hits {taken_back}"
    );
}
