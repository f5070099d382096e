//! The rate search's early stop: a run that has already missed its TTFT
//! objective for enough requests ends there, and its verdict agrees with
//! the full run's p99.

use kvscope_experiment::workload::{Arrival, CaseSpec, PromptSource};
use kvscope_experiment::{CaseRun, Dist, RunOptions, Stop};
use kvscope_sim::SimConfig;

fn run(rate: f64, stop: Stop) -> CaseRun {
    let mut config = SimConfig::from_names("qwen3-0.6b", "l4").unwrap();
    config.kv_blocks = Some(600);
    let spec = CaseSpec::uniform("overload", 400, (200, 800), (50, 200), Arrival::Poisson { rate }, 5);
    let requests = spec.requests(&PromptSource::Synthetic { vocab: 151_936 });
    let options = RunOptions { stop, ..RunOptions::SUMMARY };
    config.run(&spec, requests, options).unwrap()
}

#[test]
fn an_overloaded_run_stops_once_its_p99_is_decided() {
    let slo = 1.0;
    // p99 interpolates at rank 0.99 · 399 = 395.01: five TTFTs above the
    // objective put it above, whatever the other 395 are.
    let misses = 400 - (0.99_f64 * 399.0).floor() as usize;
    assert_eq!(misses, 5);
    for rate in [2.0, 50.0] {
        let full = run(rate, Stop::AtTheEnd);
        let early = run(rate, Stop::WhenTtftAbove { seconds: slo, count: misses });
        let p99 = Dist::of(full.requests.iter().map(|r| r.ttft)).p99;
        assert!(!full.stopped_early && full.requests.len() == 400);
        // Stopping early is a verdict the full run confirms; not stopping
        // leaves the verdict to the full run's own p99.
        if early.stopped_early {
            assert!(p99 > slo, "rate {rate}: stopped, but the full run's p99 is {p99}");
            assert!(early.requests.len() < full.requests.len());
        } else {
            assert_eq!(early.requests.len(), 400);
        }
    }
    assert!(
        run(50.0, Stop::WhenTtftAbove { seconds: slo, count: misses }).stopped_early,
        "50 req/s overloads the pool"
    );
    assert!(!run(2.0, Stop::WhenTtftAbove { seconds: slo, count: misses }).stopped_early, "2 req/s does not");
}
