//! The chain's direct evidence for its KV link: one `stalled` event in
//! which the head of the queue waited because the pool had fewer free
//! blocks than its prompt needed. The sweep's table only counts such
//! stalls; a quoted event (its step, its time, free vs needed blocks, and
//! the very line of `events.jsonl`) lets a reader check one by hand.

use crate::results::LabResults;
use kvscope_core::{KvEvent, StallReason};
use serde::Serialize;

/// One `stalled` event for want of free blocks, as `events.jsonl` has it.
#[derive(Serialize)]
pub struct StallQuote {
    pub case: String,
    pub step: u64,
    /// Seconds since the case started (the step's start).
    pub t: String,
    pub request_id: String,
    pub free_blocks: usize,
    pub needed_blocks: usize,
    /// The line of `events.jsonl`, verbatim, to search for.
    pub jsonl: String,
}

impl StallQuote {
    /// The first block-shortage stall of the case with the longest prompts
    /// that had one (the capacity cases are the runs `events.jsonl` holds);
    /// `None` when the pool never held a request back.
    pub fn find(res: &LabResults) -> Option<StallQuote> {
        let prompt_len = |name: &str| res.capacity.iter().find(|r| r.case == name).map_or(0.0, |r| r.prompt_len);
        let mut cases: Vec<_> = res.cases.iter().collect();
        cases.sort_by(|a, b| prompt_len(&b.spec.name).total_cmp(&prompt_len(&a.spec.name)));
        cases.into_iter().find_map(|run| {
            run.events.iter().find_map(|e| match e.event {
                KvEvent::Stalled { request_id, reason: StallReason::NoFreeBlocks, free_blocks, needed_blocks } => {
                    let mut line = serde_json::to_value(e).expect("events serialise");
                    line["case"] = serde_json::Value::String(run.spec.name.clone());
                    Some(StallQuote {
                        case: run.spec.name.clone(),
                        step: e.step,
                        t: format!("{:.3}", e.t),
                        request_id: request_id.to_string(),
                        free_blocks,
                        needed_blocks,
                        jsonl: line.to_string(),
                    })
                }
                _ => None,
            })
        })
    }
}
