//! The KV lifecycle diagram, drawn from a run's event stream.
//!
//! Only the state names are fixed here; every transition, its count and the
//! code sites that performed it come from the events. Each request's state
//! is followed through its own event sequence (arrived → admitted → prefill
//! … → first_token → decode … → released/finished), so a preemption during
//! decode is told apart from one during prefill, and a readmitted request's
//! recompute counts as prefill again.
//!
//! [`build`] turns the events into a [`LifecycleGraph`]; [`draw`] and
//! [`mermaid`] render it.

mod build;
mod draw;
mod mermaid;

use std::collections::{BTreeMap, BTreeSet};

/// A request's KV state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Before arrival (the diagram's `[*]`).
    Start,
    /// In the waiting queue: no KV.
    Waiting,
    /// Running, KV being written for the prompt (or recomputed).
    Prefill,
    /// Running, reading the whole context's KV, appending one slot a step.
    Decode,
    /// Done: blocks released.
    Finished,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Start => "[*]",
            State::Waiting => "Waiting",
            State::Prefill => "Prefill",
            State::Decode => "Decode",
            State::Finished => "Finished",
        }
    }
    /// What the state means for KV.
    pub fn kv_note(self) -> &'static str {
        match self {
            State::Start => "",
            State::Waiting => "no KV held",
            State::Prefill => "writing prompt KV",
            State::Decode => "read all KV, +1 slot/step",
            State::Finished => "KV released",
        }
    }
}

/// One observed transition of the request state machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// Display name: the event kind, qualified where one kind splits
    /// (`stalled (no_free_blocks)`, `resumed after recompute`).
    pub name: String,
    /// The event kind whose occurrences are counted.
    pub event: String,
    pub count: u64,
    /// Distinct code sites of every event that took part (the counted event
    /// and the block releases that go with it), sorted.
    pub sites: BTreeSet<String>,
    /// Quantities carried by the events (blocks, tokens), for the label.
    pub details: Vec<String>,
}

/// The request-level KV state machine of one run, with block-level side
/// counts (cached blocks kept at release, evictions).
#[derive(Clone, Debug, Default)]
pub struct LifecycleGraph {
    /// Run (case) name for the legend; empty when unknown.
    pub run_name: String,
    pub num_events: usize,
    pub num_requests: usize,
    pub transitions: Vec<Transition>,
    /// Per event kind: how many events.
    pub kind_counts: BTreeMap<String, u64>,
    /// Per event kind: the distinct sites that emitted it.
    pub kind_sites: BTreeMap<String, BTreeSet<String>>,
    /// Blocks that stayed indexed for prefix reuse when released.
    pub released_cached_blocks: u64,
    /// Cached free blocks reclaimed for someone else.
    pub evicted_blocks: u64,
    pub evicted_sites: BTreeSet<String>,
    /// Admissions of a preempted request: its prefill recomputes the KV.
    pub readmissions: u64,
}

impl LifecycleGraph {
    /// The graph of one case run, named after the case.
    pub fn from_run(run: &kvscope_experiment::driver::CaseRun) -> LifecycleGraph {
        let mut g = LifecycleGraph::from_events(&run.events);
        g.run_name = run.spec.name.clone();
        g
    }

    /// How many events of this kind the run emitted (`"admitted"`, …).
    pub fn count(&self, event_kind: &str) -> u64 {
        self.kind_counts.get(event_kind).copied().unwrap_or(0)
    }

    /// The distinct code sites that emitted this kind of event, sorted.
    pub fn sites(&self, event_kind: &str) -> Vec<String> {
        self.kind_sites.get(event_kind).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Transitions between two states.
    pub fn between(&self, from: State, to: State) -> Vec<&Transition> {
        self.transitions.iter().filter(|t| t.from == from && t.to == to).collect()
    }

    /// Total count of the transitions named `name` (e.g. `"preempted"`).
    pub fn transition_count(&self, from: State, to: State, name: &str) -> u64 {
        self.between(from, to).iter().filter(|t| t.name == name).map(|t| t.count).sum()
    }

    /// One sentence on where the diagram comes from, under either drawing.
    pub(super) fn legend(&self) -> String {
        let run = if self.run_name.is_empty() { String::new() } else { format!(" of run {}", self.run_name) };
        format!(
            "Drawn by kvscope from {} KV events{run} ({} requests); counts and code sites come from the event stream.",
            self.num_events, self.num_requests
        )
    }
}

/// A small run on the test executor, shared by the lifecycle, timeline,
/// plot and PNG tests.
#[cfg(test)]
pub(crate) mod tests {
    use kvscope_core::testing::PagedTokenExecutor;
    use kvscope_core::{BatchOutput, Executor, ExecutorError, ScheduledBatch, SimClock};
    use kvscope_core::{EngineConfig, PoolConfig, SchedulerConfig};
    use kvscope_experiment::driver::{run_case, CaseRun, RunOptions};
    use kvscope_experiment::workload::{Arrival, CaseSpec, Lengths, WorkloadRequest};

    /// The test executor, advancing a simulated clock per step so that
    /// timelines have a time axis.
    struct Timed {
        inner: PagedTokenExecutor,
        clock: SimClock,
    }
    impl Executor for Timed {
        fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
            self.clock.advance(0.002 + 0.0001 * batch.num_tokens() as f64);
            self.inner.execute(batch)
        }
    }

    /// A small run under memory pressure: 12 requests, 40 blocks of 4.
    pub(crate) fn small_run(num_blocks: usize) -> CaseRun {
        small_run_with(num_blocks, 64, 0, 0)
    }

    /// [`small_run`] with a step budget, a long-prefill cap and a
    /// partial-prefill limit.
    pub(crate) fn small_run_with(
        num_blocks: usize,
        budget: usize,
        cap: usize,
        max_num_partial_prefills: usize,
    ) -> CaseRun {
        let config = EngineConfig {
            scheduler: SchedulerConfig {
                max_running: 6,
                max_batched_tokens: budget,
                max_model_len: 256,
                long_prefill_token_threshold: cap,
                max_num_partial_prefills,
            },
            pool: PoolConfig { num_blocks, block_size: 4, enable_prefix_caching: true, bytes_per_block: 4096 },
            vocab_size: None,
        };
        let spec = CaseSpec {
            name: "test_case".into(),
            num_requests: 12,
            prompt_lengths: Lengths::Fixed { tokens: 30 },
            output_lengths: Lengths::Fixed { tokens: 24 },
            arrival: Arrival::AllAtOnce,
            shared_prefix_tokens: 0,
            seed: 1,
        };
        let requests: Vec<WorkloadRequest> = (0..12)
            .map(|i| WorkloadRequest {
                index: i,
                arrival: i as f64 * 0.01,
                prompt: (0..(20 + 3 * i as u32)).map(|t| (t * 7 + i as u32 % 3) % 97).collect(),
                max_tokens: 24,
            })
            .collect();
        let clock = SimClock::new();
        let exec = Timed { inner: PagedTokenExecutor::new(num_blocks, 4, 97), clock: clock.clone() };
        let (run, _) =
            run_case(exec, clock, &config, &spec, requests.iter().cloned(), RunOptions::EVERY_STEP, &mut |_, _| {})
                .expect("runs");
        assert_eq!(run.requests.len(), 12);
        run
    }
}
