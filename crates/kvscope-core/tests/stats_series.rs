//! The state time series starts at the start: a step-0 row with the queue
//! as it was before the first step, which the time-weighted mean skips.

mod common;

use kvscope_core::stats::StatsCollector;
use kvscope_core::{RequestId, SamplingParams};
use std::sync::{Arc, Mutex};

#[test]
fn series_starts_at_t0_with_the_queue_and_the_mean_ignores_that_row() {
    let mut rig = common::rig(64, 4, false, 2, 64);
    let stats = Arc::new(Mutex::new(StatsCollector::default()));
    rig.engine.add_observer(Box::new(stats.clone()));
    for i in 0..3u64 {
        let params = SamplingParams { max_tokens: 3, ignore_eos: true, ..Default::default() };
        rig.engine.submit(RequestId(i), vec![1, 2, 3, 4, 5], params).unwrap();
    }
    let clock = rig.engine.clock().clone();
    while rig.engine.has_work() {
        rig.engine.step().unwrap();
        clock.advance(0.5);
    }
    let s = stats.lock().unwrap().clone();
    let first = &s.rows[0];
    assert_eq!((first.step, first.t, first.waiting, first.running, first.used_blocks), (0, 0.0, 3, 0, 0));
    assert_eq!(s.rows.iter().filter(|r| r.step == 0).count(), 1, "one step-0 row, before the first step only");
    assert_eq!(s.step_rows().len(), s.rows.len() - 1);
    // The mean is the one over the steps' rows alone.
    let without = StatsCollector { rows: s.step_rows().to_vec(), ..Default::default() };
    assert!(s.time_weighted_mean_running() > 0.0);
    assert_eq!(s.time_weighted_mean_running(), without.time_weighted_mean_running());
    assert_eq!(s.max_running(), 2);
}
