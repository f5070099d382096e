//! The pool's invariants, checkable at any time. Tests call this after
//! every step; it is cheap enough for debug runs too. Written against the
//! scheduler's public view (its sequences, queues and block manager), as
//! any observer could.

use crate::block_manager_api::KvBlockManager;
use crate::ids::BlockId;
use crate::scheduler::Scheduler;
use crate::sequence::SequenceStatus;
use std::collections::HashMap;

impl<B: KvBlockManager> Scheduler<B> {
    /// Checks that the block manager and the sequences agree.
    pub fn check_invariants(&self) -> Result<(), String> {
        let pool = self.block_manager();
        let mut holders: HashMap<BlockId, usize> = HashMap::new();
        for seq in self.sequences() {
            let table = &seq.kv.block_table;
            if seq.status == SequenceStatus::Waiting && !table.is_empty() {
                return Err(format!("waiting request {} holds blocks", seq.id));
            }
            if table.len() * pool.block_size() < seq.kv.num_computed {
                return Err(format!("request {} has more KV than slots", seq.id));
            }
            for &b in table {
                *holders.entry(b).or_default() += 1;
            }
            // Every indexed block a sequence holds must contain exactly the
            // tokens the sequence has at those positions.
            for (i, &b) in table.iter().enumerate() {
                if let Some(tokens) = pool.indexed_tokens(b) {
                    let bs = pool.block_size();
                    let mine: Vec<u32> = (i * bs..(i + 1) * bs).map(|p| seq.view().token_at(p)).collect();
                    if tokens != mine.as_slice() {
                        return Err(format!("request {} maps block {b} to different tokens", seq.id));
                    }
                }
                // A private block is held only by its owner, where it was filled.
                if let Some((owner, position)) = self.native_block_manager().and_then(|n| n.private_owner(b)) {
                    if (owner, position) != (seq.id, i) {
                        return Err(format!(
                            "request {} holds block {b} at {i}, private to request {owner} at {position}",
                            seq.id
                        ));
                    }
                }
            }
        }
        let mut used = 0;
        for view in pool.view() {
            let expected = holders.get(&view.block).copied().unwrap_or(0);
            if view.ref_count != expected {
                return Err(format!(
                    "block {} has ref count {} but {} tables hold it",
                    view.block, view.ref_count, expected
                ));
            }
            used += usize::from(view.ref_count > 0);
        }
        if used != pool.used_blocks() || used + pool.free_blocks() != pool.total_blocks() {
            return Err(format!(
                "used {} (counted {used}) + free {} != total {}",
                pool.used_blocks(),
                pool.free_blocks(),
                pool.total_blocks()
            ));
        }
        let limit = self.config().max_num_partial_prefills;
        let in_prefill = |id| self.sequence(id).expect("running ids are live").in_prefill();
        let partial = self.running_ids().filter(|&id| in_prefill(id)).count();
        if limit > 0 && partial > limit {
            return Err(format!("{partial} requests are part-way through a prefill; the limit is {limit}"));
        }
        if self.num_running() + self.num_waiting() != self.sequences().len() {
            return Err("queues and live sequences disagree".into());
        }
        Ok(())
    }
}
