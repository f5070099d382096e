//! The KV event stream. Every state transition of a request or a block is
//! announced here, stamped with the engine step, the clock time and the code
//! site that performed it. The lab, the metrics and the web view are all
//! observers of this one stream.

use crate::ids::{BlockId, RequestId, Seconds};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Write;

/// Why the head of the waiting queue could not be admitted this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StallReason {
    NoFreeBlocks,
    MaxRunning,
    TokenBudget,
    /// Its prefill would not finish this step, and the most requests allowed
    /// part-way through a prefill (`max_num_partial_prefills`) already are.
    MaxPartialPrefills,
}

impl StallReason {
    pub const ALL: [StallReason; 4] =
        [StallReason::NoFreeBlocks, StallReason::MaxRunning, StallReason::TokenBudget, StallReason::MaxPartialPrefills];

    pub fn as_str(self) -> &'static str {
        match self {
            StallReason::NoFreeBlocks => "no_free_blocks",
            StallReason::MaxRunning => "max_running",
            StallReason::TokenBudget => "token_budget",
            StallReason::MaxPartialPrefills => "max_partial_prefills",
        }
    }
}

/// Why a request gave its blocks back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    Finished,
    Preempted,
    Aborted,
}

/// Why a request stopped generating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token was produced.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The client or the operator aborted it.
    Abort,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

/// One KV state transition. Field names are the `events.jsonl` schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum KvEvent {
    Arrived {
        request_id: RequestId,
        prompt_tokens: usize,
    },
    Admitted {
        request_id: RequestId,
        /// The whole block table after admission.
        blocks: Vec<BlockId>,
        /// How many leading blocks of it were prefix-cache hits.
        cached_blocks: usize,
        /// True when the request had been preempted and is recomputing.
        readmission: bool,
    },
    Stalled {
        request_id: RequestId,
        reason: StallReason,
        free_blocks: usize,
        needed_blocks: usize,
    },
    Prefill {
        request_id: RequestId,
        tokens: usize,
        computed: usize,
    },
    FirstToken {
        request_id: RequestId,
    },
    Decode {
        request_id: RequestId,
        context_tokens: usize,
    },
    BlockAppended {
        request_id: RequestId,
        block: BlockId,
    },
    Released {
        request_id: RequestId,
        blocks: Vec<BlockId>,
        reason: ReleaseReason,
        /// How many of the released blocks stay cached for reuse (indexed,
        /// or kept for a random prompt's own request).
        cached: usize,
    },
    Preempted {
        request_id: RequestId,
    },
    Finished {
        request_id: RequestId,
        reason: FinishReason,
        prompt_tokens: usize,
        output_tokens: usize,
    },
    Evicted {
        block: BlockId,
    },
}

impl KvEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            KvEvent::Arrived { .. } => "arrived",
            KvEvent::Admitted { .. } => "admitted",
            KvEvent::Stalled { .. } => "stalled",
            KvEvent::Prefill { .. } => "prefill",
            KvEvent::FirstToken { .. } => "first_token",
            KvEvent::Decode { .. } => "decode",
            KvEvent::BlockAppended { .. } => "block_appended",
            KvEvent::Released { .. } => "released",
            KvEvent::Preempted { .. } => "preempted",
            KvEvent::Finished { .. } => "finished",
            KvEvent::Evicted { .. } => "evicted",
        }
    }

    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            KvEvent::Arrived { request_id, .. }
            | KvEvent::Admitted { request_id, .. }
            | KvEvent::Stalled { request_id, .. }
            | KvEvent::Prefill { request_id, .. }
            | KvEvent::FirstToken { request_id }
            | KvEvent::Decode { request_id, .. }
            | KvEvent::BlockAppended { request_id, .. }
            | KvEvent::Released { request_id, .. }
            | KvEvent::Preempted { request_id }
            | KvEvent::Finished { request_id, .. } => Some(*request_id),
            KvEvent::Evicted { .. } => None,
        }
    }
}

/// An event with its stamp: when, at which step, and which code did it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    #[serde(flatten)]
    pub event: KvEvent,
    pub t: Seconds,
    pub step: u64,
    /// `module::function` that performed the transition (static in the
    /// engine, so emitting an event allocates nothing for it).
    pub site: Cow<'static, str>,
}

/// Collects events during one engine step; the engine stamps the step and
/// the time, the component that changes state names its own site.
#[derive(Debug, Default)]
pub struct EventLog {
    step: u64,
    now: Seconds,
    pending: Vec<EventRecord>,
}

impl EventLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_stamp(&mut self, step: u64, now: Seconds) {
        self.step = step;
        self.now = now;
    }

    pub fn emit(&mut self, site: &'static str, event: KvEvent) {
        self.pending.push(EventRecord { event, t: self.now, step: self.step, site: Cow::Borrowed(site) });
    }

    pub fn now(&self) -> Seconds {
        self.now
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, EventRecord> {
        self.pending.drain(..)
    }

    /// The events emitted since the last `clear`, in order.
    pub fn pending(&self) -> &[EventRecord] {
        &self.pending
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

/// A read-only view of the pool and the queues after a step, published by
/// the engine so observers never need to peek at internals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepSnapshot {
    pub step: u64,
    /// When the step ended: the state below is the state after it.
    pub t: Seconds,
    /// When the step began (its admissions and stalls carry this time);
    /// `t` for a snapshot taken between steps.
    pub t_start: Seconds,
    pub waiting: usize,
    /// Requests holding KV after the step.
    pub running: usize,
    /// Requests holding KV while the step ran: the state it computed with,
    /// so the requests it admitted and those it finished count, those it
    /// preempted do not. A request is live from the start of the step
    /// that admits it to the end of the step that releases it; counting
    /// `running` instead misses the requests a long prefill step admits.
    /// `running` for a snapshot taken between steps.
    pub live: usize,
    pub total_blocks: usize,
    pub used_blocks: usize,
    pub free_blocks: usize,
    /// Free blocks that still hold indexed prefix KV (evictable).
    pub cached_free_blocks: usize,
    pub block_size: usize,
    /// Tokens whose KV is stored in used blocks.
    pub kv_tokens: usize,
    /// Bytes of KV the used blocks hold, at the executor's real size per
    /// block (0 when the size is unknown).
    pub used_kv_bytes: u64,
    /// Tokens scheduled in this step (prefill + decode).
    pub batch_tokens: usize,
    pub prefill_tokens: usize,
    pub decode_seqs: usize,
}

impl StepSnapshot {
    /// Share of the pool's blocks that requests hold.
    pub fn block_occupancy(&self) -> f64 {
        ratio(self.used_blocks, self.total_blocks)
    }
    /// Share of the pool's token slots that hold KV (lower than the block
    /// occupancy by the unused tail slots of partly filled blocks).
    pub fn token_occupancy(&self) -> f64 {
        ratio(self.kv_tokens, self.total_blocks * self.block_size)
    }
    /// Share of held slots left empty: internal fragmentation.
    pub fn fragmentation(&self) -> f64 {
        let held = self.used_blocks * self.block_size;
        if held == 0 {
            0.0
        } else {
            1.0 - self.kv_tokens as f64 / held as f64
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Something that watches the engine: the lab, metrics, a web view.
pub trait Observer {
    fn on_event(&mut self, record: &EventRecord);
    /// One step's events in emission order. An observer behind a lock takes
    /// it once per step, not once per event (a simulated step can evict
    /// thousands of blocks).
    fn on_events(&mut self, records: &[EventRecord]) {
        for record in records {
            self.on_event(record);
        }
    }
    fn on_step(&mut self, _snapshot: &StepSnapshot) {}
    /// A run of decode-only steps advanced in one go (the simulator's fast
    /// path): one call instead of a snapshot per step. By default the
    /// observer sees the run's last snapshot as one step.
    fn on_decode_run(&mut self, run: &DecodeRunReport) {
        self.on_step(&run.end);
    }
}

/// A run of identical decode-only steps the engine advanced at once. Its
/// steps emitted no `decode` or `stalled` events; their block appends (and
/// any evictions) were emitted with their own step numbers and the run's
/// start time.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeRunReport {
    /// Engine step of the run's first step.
    pub first_step: u64,
    /// Steps in the run.
    pub steps: u64,
    /// Engine-clock time when the run started.
    pub t_start: Seconds,
    /// Why the waiting queue's head stalled at every step of the run, if it
    /// was not empty.
    pub stall: Option<StallReason>,
    /// The pool and queues after the run's last step; its `t_start` and
    /// `live` are the whole run's (every step of it decoded the same
    /// requests).
    pub end: StepSnapshot,
}

/// Lets a caller keep a handle on an observer it gives to the engine.
impl<T: Observer> Observer for std::sync::Arc<std::sync::Mutex<T>> {
    fn on_event(&mut self, record: &EventRecord) {
        self.lock().unwrap_or_else(|e| e.into_inner()).on_event(record);
    }
    fn on_events(&mut self, records: &[EventRecord]) {
        self.lock().unwrap_or_else(|e| e.into_inner()).on_events(records);
    }
    fn on_step(&mut self, snapshot: &StepSnapshot) {
        self.lock().unwrap_or_else(|e| e.into_inner()).on_step(snapshot);
    }
    fn on_decode_run(&mut self, run: &DecodeRunReport) {
        self.lock().unwrap_or_else(|e| e.into_inner()).on_decode_run(run);
    }
}

/// Writes `events.jsonl`: one JSON object per event, in emission order.
pub struct JsonlObserver<W: Write> {
    out: W,
    error: Option<std::io::Error>,
}

impl<W: Write> JsonlObserver<W> {
    pub fn new(out: W) -> Self {
        JsonlObserver { out, error: None }
    }

    /// Flushes and hands back the writer, or the first write error.
    pub fn finish(mut self) -> std::io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Observer for JsonlObserver<W> {
    fn on_event(&mut self, record: &EventRecord) {
        if self.error.is_some() {
            return;
        }
        let line = serde_json::to_string(record).expect("events always serialise");
        if let Err(e) = writeln!(self.out, "{line}") {
            self.error = Some(e);
        }
    }
}

/// Keeps every event in memory (tests, the lab).
#[derive(Default)]
pub struct EventRecorder {
    pub events: Vec<EventRecord>,
    pub snapshots: Vec<StepSnapshot>,
}

impl Observer for EventRecorder {
    fn on_event(&mut self, record: &EventRecord) {
        self.events.push(record.clone());
    }
    fn on_step(&mut self, snapshot: &StepSnapshot) {
        self.snapshots.push(snapshot.clone());
    }
}
