//! Rebuilds the pool from an event stream alone and checks it is
//! consistent: the promise of DESIGN.md that a reader of `events.jsonl` can
//! reconstruct every block's reference count, queue wait and TTFT.
//!
//! It is also the one per-request state tracker of the workspace: the lab's
//! timelines and lifecycle diagram and the server's metrics feed it event by
//! event ([`Replay::apply`]) and read each request's [`Phase`], blocks and
//! times from it instead of following the requests themselves.

use crate::events::{EventRecord, KvEvent, ReleaseReason};
use crate::ids::{BlockId, RequestId, Seconds};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Where a request is in its life, as its events say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Arrived, waiting for its first admission: no KV.
    Queued,
    /// Admitted, its prompt's KV being written, no token yet.
    Prefill,
    /// Generating tokens (from its first token, or from its first decode
    /// step after a recompute).
    Decode,
    /// Preempted: its blocks were taken back (from the `released` event),
    /// waiting to be readmitted.
    Preempted,
    /// Readmitted after a preemption, recomputing its KV.
    Recompute,
    /// Its `finished` event came (its blocks were released just before).
    Finished,
}

#[derive(Debug, Default, Clone)]
pub struct Replay {
    /// Reference count of each block after the last event.
    pub ref_counts: BTreeMap<BlockId, usize>,
    /// Blocks each live request holds.
    pub held: HashMap<RequestId, Vec<BlockId>>,
    pub arrived: HashMap<RequestId, Seconds>,
    pub first_admitted: HashMap<RequestId, Seconds>,
    pub first_token: HashMap<RequestId, Seconds>,
    pub finished: HashSet<RequestId>,
    /// Each request's phase and since when.
    pub phase: HashMap<RequestId, (Phase, Seconds)>,
    pub prompt_tokens: HashMap<RequestId, usize>,
    pub max_ref_count: usize,
    pub prefix_hit_blocks: usize,
    pub preemptions: usize,
}

impl Replay {
    /// Replays `events`, failing at the first inconsistency.
    pub fn run<'a>(events: impl IntoIterator<Item = &'a EventRecord>) -> Result<Replay, String> {
        let mut r = Replay::default();
        for (i, rec) in events.into_iter().enumerate() {
            r.apply(rec).map_err(|e| format!("event {i} ({}): {e}", rec.event.kind()))?;
        }
        Ok(r)
    }

    /// Takes one event in, failing if it contradicts the events before it
    /// (the request's phase and times are taken in either way).
    pub fn apply(&mut self, rec: &EventRecord) -> Result<(), String> {
        if let Some(id) = rec.event.request_id() {
            self.follow_phase(id, rec);
        }
        match &rec.event {
            KvEvent::Arrived { request_id, prompt_tokens } => {
                self.arrived.insert(*request_id, rec.t);
                self.prompt_tokens.insert(*request_id, *prompt_tokens);
            }
            KvEvent::Admitted { request_id, blocks, cached_blocks, .. } => {
                if self.held.contains_key(request_id) {
                    return Err(format!("request {request_id} admitted while holding blocks"));
                }
                for b in blocks {
                    let rc = self.ref_counts.entry(*b).or_default();
                    *rc += 1;
                    self.max_ref_count = self.max_ref_count.max(*rc);
                }
                let fresh = &blocks[*cached_blocks..];
                if let Some(b) = fresh.iter().find(|b| self.ref_counts[b] != 1) {
                    return Err(format!("fresh block {b} given to {request_id} is also held by another request"));
                }
                self.prefix_hit_blocks += cached_blocks;
                self.held.insert(*request_id, blocks.clone());
                self.first_admitted.entry(*request_id).or_insert(rec.t);
            }
            KvEvent::BlockAppended { request_id, block } => {
                let table =
                    self.held.get_mut(request_id).ok_or(format!("append to {request_id} which holds nothing"))?;
                let rc = self.ref_counts.entry(*block).or_default();
                if *rc != 0 {
                    return Err(format!("appended block {block} is already held"));
                }
                *rc = 1;
                self.max_ref_count = self.max_ref_count.max(1);
                table.push(*block);
            }
            KvEvent::Released { request_id, blocks, reason, .. } => {
                let table = self.held.remove(request_id).unwrap_or_default();
                if &table != blocks {
                    return Err(format!("{request_id} released {blocks:?} but held {table:?}"));
                }
                for b in blocks {
                    let rc = self
                        .ref_counts
                        .get_mut(b)
                        .filter(|rc| **rc > 0)
                        .ok_or(format!("block {b} released below zero"))?;
                    *rc -= 1;
                }
                if *reason == ReleaseReason::Preempted {
                    self.preemptions += 1;
                }
            }
            KvEvent::FirstToken { request_id } => {
                self.first_token.insert(*request_id, rec.t);
            }
            KvEvent::Finished { request_id, .. } => {
                if self.held.contains_key(request_id) {
                    return Err(format!("{request_id} finished while still holding blocks"));
                }
                self.finished.insert(*request_id);
            }
            KvEvent::Evicted { block } => {
                if self.ref_counts.get(block).copied().unwrap_or(0) != 0 {
                    return Err(format!("evicted block {block} is still held"));
                }
            }
            KvEvent::Stalled { .. } | KvEvent::Prefill { .. } | KvEvent::Decode { .. } | KvEvent::Preempted { .. } => {}
        }
        Ok(())
    }

    /// The one definition of a request's phase changes.
    fn follow_phase(&mut self, id: RequestId, rec: &EventRecord) {
        let current = self.phase.get(&id).map(|p| p.0);
        let next = match &rec.event {
            KvEvent::Arrived { .. } => Phase::Queued,
            KvEvent::Admitted { readmission: true, .. } => Phase::Recompute,
            KvEvent::Admitted { .. } => Phase::Prefill,
            KvEvent::FirstToken { .. } => Phase::Decode,
            // A readmitted request that had produced tokens goes back to
            // decoding without a new first token.
            KvEvent::Decode { .. } if matches!(current, Some(Phase::Prefill | Phase::Recompute)) => Phase::Decode,
            KvEvent::Released { reason: ReleaseReason::Preempted, .. } => Phase::Preempted,
            KvEvent::Finished { .. } => Phase::Finished,
            _ => return,
        };
        self.phase.insert(id, (next, rec.t));
    }

    /// The phase of `id` now (`None` before its arrival, or once forgotten).
    pub fn phase_of(&self, id: RequestId) -> Option<Phase> {
        self.phase.get(&id).map(|p| p.0)
    }

    /// Blocks `id` holds now.
    pub fn blocks_of(&self, id: RequestId) -> &[BlockId] {
        self.held.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Drops everything kept about a request that has ended (a long-running
    /// reader, the server, calls it after reading the request's figures);
    /// the pool's reference counts stay.
    pub fn forget(&mut self, id: RequestId) {
        self.held.remove(&id);
        self.arrived.remove(&id);
        self.first_admitted.remove(&id);
        self.first_token.remove(&id);
        self.finished.remove(&id);
        self.phase.remove(&id);
        self.prompt_tokens.remove(&id);
    }

    /// Blocks still referenced by someone.
    pub fn held_blocks(&self) -> usize {
        self.ref_counts.values().filter(|rc| **rc > 0).count()
    }

    pub fn queue_wait(&self, id: RequestId) -> Option<Seconds> {
        Some(self.first_admitted.get(&id)? - self.arrived.get(&id)?)
    }

    pub fn ttft(&self, id: RequestId) -> Option<Seconds> {
        Some(self.first_token.get(&id)? - self.arrived.get(&id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::FinishReason;

    fn at(t: f64, event: KvEvent) -> EventRecord {
        EventRecord { event, t, step: 0, site: "test".into() }
    }

    /// One request preempted after its first token: the phases the lab's
    /// timelines and lifecycle diagram and the server's metrics read.
    #[test]
    fn a_preempted_request_walks_through_every_phase_and_is_forgotten() {
        let id = RequestId(7);
        let (b0, b1) = (BlockId(0), BlockId(1));
        let released =
            |t, blocks: Vec<BlockId>, reason| at(t, KvEvent::Released { request_id: id, blocks, reason, cached: 0 });
        let admitted = |t, readmission| {
            at(t, KvEvent::Admitted { request_id: id, blocks: vec![b0], cached_blocks: 0, readmission })
        };
        let steps = [
            (at(0.0, KvEvent::Arrived { request_id: id, prompt_tokens: 10 }), Phase::Queued, 0),
            (admitted(1.0, false), Phase::Prefill, 1),
            (at(2.0, KvEvent::FirstToken { request_id: id }), Phase::Decode, 1),
            (at(3.0, KvEvent::BlockAppended { request_id: id, block: b1 }), Phase::Decode, 2),
            // The preemption is the request's from the moment its blocks go.
            (at(4.0, KvEvent::Preempted { request_id: id }), Phase::Decode, 2),
            (released(4.0, vec![b0, b1], ReleaseReason::Preempted), Phase::Preempted, 0),
            (admitted(5.0, true), Phase::Recompute, 1),
            (at(6.0, KvEvent::Decode { request_id: id, context_tokens: 11 }), Phase::Decode, 1),
            (released(7.0, vec![b0], ReleaseReason::Finished), Phase::Decode, 0),
            (
                at(
                    7.0,
                    KvEvent::Finished {
                        request_id: id,
                        reason: FinishReason::Stop,
                        prompt_tokens: 10,
                        output_tokens: 2,
                    },
                ),
                Phase::Finished,
                0,
            ),
        ];
        let mut r = Replay::default();
        for (rec, phase, blocks) in &steps {
            r.apply(rec).unwrap();
            assert_eq!((r.phase_of(id), r.blocks_of(id).len()), (Some(*phase), *blocks), "after {}", rec.event.kind());
        }
        assert_eq!((r.queue_wait(id), r.ttft(id), r.preemptions, r.max_ref_count), (Some(1.0), Some(2.0), 1, 1));
        r.forget(id);
        assert_eq!((r.phase_of(id), r.queue_wait(id), r.finished.len()), (None, None, 0));
    }
}
