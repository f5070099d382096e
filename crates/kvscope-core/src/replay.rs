//! Rebuilds the pool from an event stream alone and checks it is
//! consistent: the promise of DESIGN.md that a reader of `events.jsonl` can
//! reconstruct every block's reference count, queue wait and TTFT.

use crate::events::{EventRecord, KvEvent, ReleaseReason};
use crate::ids::{BlockId, RequestId, Seconds};
use std::collections::{BTreeMap, HashMap, HashSet};

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

    fn apply(&mut self, rec: &EventRecord) -> Result<(), String> {
        match &rec.event {
            KvEvent::Arrived { request_id, .. } => {
                self.arrived.insert(*request_id, rec.t);
            }
            KvEvent::Admitted { request_id, blocks, cached_blocks, .. } => {
                if self.held.contains_key(request_id) {
                    return Err(format!("request {request_id} admitted while holding blocks"));
                }
                for b in blocks {
                    *self.ref_counts.entry(*b).or_default() += 1;
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
        for rc in self.ref_counts.values() {
            self.max_ref_count = self.max_ref_count.max(*rc);
        }
        Ok(())
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
