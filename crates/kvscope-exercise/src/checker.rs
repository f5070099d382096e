//! The grader's shadow of the pool: what every block table is, what every
//! physical slot really holds, and the student's own view of its pool —
//! compared after every call into the student's code and around every
//! executed step. The first broken promise is kept as a [`Finding`].
//!
//! A slot's content is tracked as a fingerprint of the whole prefix that
//! produced it (every token up to and including its position): KV depends
//! on all earlier tokens, so two slots hold the same KV exactly when their
//! fingerprints match.

use crate::finding::{ids, Finding, Property};
use kvscope_core::{BlockId, RequestId, ScheduledBatch, TokenId};
use rustc_hash::FxHashMap;
use serde_json::Value;

/// Who wrote a slot, and what prefix its KV encodes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Written {
    by: RequestId,
    pos: usize,
    fingerprint: u64,
}

#[derive(Debug)]
pub struct Checker {
    num_blocks: usize,
    block_size: usize,
    pub workload: String,
    pub step: u64,
    /// The engine's block tables (what the student's calls produced).
    tables: FxHashMap<RequestId, Vec<BlockId>>,
    /// Ground truth tokens of each request: prompt, then sampled outputs.
    tokens: FxHashMap<RequestId, Vec<TokenId>>,
    fingerprints: FxHashMap<RequestId, Vec<u64>>,
    slots: Vec<Option<Written>>,
    /// Prefix-hit tokens claimed at a request's latest allocate, verified
    /// once the step that admitted it has written its KV.
    claims: FxHashMap<RequestId, usize>,
    /// The student's pool as the last call left it.
    last_state: Value,
    first: Option<Finding>,
}

impl Checker {
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        Checker {
            num_blocks,
            block_size,
            workload: String::new(),
            step: 0,
            tables: FxHashMap::default(),
            tokens: FxHashMap::default(),
            fingerprints: FxHashMap::default(),
            slots: vec![None; num_blocks * block_size],
            claims: FxHashMap::default(),
            last_state: Value::Null,
            first: None,
        }
    }

    pub fn finding(&self) -> Option<&Finding> {
        self.first.as_ref()
    }

    /// Keeps the first finding; later ones are consequences.
    pub fn fail(&mut self, mut finding: Finding) {
        if self.first.is_none() {
            finding.workload = self.workload.clone();
            finding.step = self.step;
            self.first = Some(finding);
        }
    }

    pub fn submitted(&mut self, id: RequestId, prompt: &[TokenId]) {
        self.tokens.insert(id, prompt.to_vec());
    }

    pub fn sampled(&mut self, id: RequestId, token: TokenId) {
        self.tokens.entry(id).or_default().push(token);
    }

    fn fingerprint(&mut self, id: RequestId, pos: usize) -> u64 {
        let tokens = &self.tokens[&id];
        let fps = self.fingerprints.entry(id).or_default();
        while fps.len() <= pos {
            let p = fps.len();
            let prev = fps.last().copied().unwrap_or(0x6b76_7363_6f70_6521);
            fps.push(mix(prev ^ u64::from(tokens[p]) ^ ((p as u64) << 32)));
        }
        fps[pos]
    }

    fn holders(&self) -> Vec<Vec<RequestId>> {
        let mut holders = vec![Vec::new(); self.num_blocks];
        let mut ids: Vec<_> = self.tables.keys().copied().collect();
        ids.sort();
        for id in ids {
            for b in &self.tables[&id] {
                if let Some(h) = holders.get_mut(b.index()) {
                    h.push(id);
                }
            }
        }
        holders
    }

    /// After `call` changed (or released) `id`'s table: the student's ref
    /// counts and free list must match the tables — properties (a) and (d).
    pub fn after_call(&mut self, call: &str, id: RequestId, table: Option<&[BlockId]>, state: &Value) {
        match table {
            Some(t) => self.tables.insert(id, t.to_vec()),
            None => self.tables.remove(&id),
        };
        if self.first.is_some() || state.is_null() {
            return;
        }
        self.last_state = state.clone();
        if let Some(why) = state["unreadable"].as_str() {
            let f = Finding::new(Some(Property::RefCounts), call)
                .request(id)
                .actual("kvscope cannot read your pool's state")
                .hint(why);
            return self.fail(f);
        }
        let refs: Vec<i64> =
            state["ref_counts"].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
        let free: Vec<i64> =
            state["free"].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
        let holders = self.holders();
        if refs.len() != self.num_blocks {
            let f = Finding::new(Some(Property::RefCounts), call)
                .request(id)
                .expected(format!("self.blocks has {} blocks", self.num_blocks))
                .actual(format!("it has {}", refs.len()))
                .hint("BlockManager(num_blocks, block_size) must create exactly num_blocks blocks");
            return self.fail(f);
        }
        let mut on_free = vec![0usize; self.num_blocks];
        for &b in &free {
            match on_free.get_mut(b as usize).filter(|_| b >= 0) {
                Some(n) => *n += 1,
                None => {
                    let f = Finding::new(Some(Property::Release), call)
                        .request(id)
                        .expected(format!("free_block_ids holds ids in 0..{}", self.num_blocks))
                        .actual(format!("it holds {b}"));
                    return self.fail(f);
                }
            }
        }
        for (b, held_by) in holders.iter().enumerate() {
            if refs[b] != held_by.len() as i64 {
                let hint = if refs[b] > held_by.len() as i64 && call.starts_with("deallocate") {
                    "deallocate must decrement ref_count of every block in seq.block_table"
                } else if refs[b] < held_by.len() as i64 {
                    "a block taken for a table (fresh, or shared by a prefix hit) must get ref_count += 1"
                } else {
                    "a block's ref_count must go up exactly when a table takes it and down when a table lets it go"
                };
                let f = Finding::new(Some(Property::RefCounts), call)
                    .request(id)
                    .expected(format!("block {b}: ref_count {} (held by {})", held_by.len(), names(held_by)))
                    .actual(format!("block {b}: ref_count {}", refs[b]))
                    .hint(hint);
                return self.fail(f);
            }
            if !held_by.is_empty() && on_free[b] > 0 {
                let f = Finding::new(Some(Property::RefCounts), call)
                    .request(id)
                    .expected(format!("block {b} (held by {}) is not in free_block_ids", names(held_by)))
                    .actual(format!("block {b} is in free_block_ids"))
                    .hint("a block taken from the free list must be removed from free_block_ids");
                return self.fail(f);
            }
        }
        for (b, held_by) in holders.iter().enumerate() {
            if on_free[b] > 1 {
                let f = Finding::new(Some(Property::Release), call)
                    .request(id)
                    .expected(format!("block {b} appears once in free_block_ids"))
                    .actual(format!("it appears {} times", on_free[b]))
                    .hint("a block goes back to the free list once, when its ref_count drops to 0");
                return self.fail(f);
            }
            if held_by.is_empty() && on_free[b] == 0 {
                let f = Finding::new(Some(Property::Release), call)
                    .request(id)
                    .expected(format!("block {b} (ref_count 0, in no table) is back in free_block_ids"))
                    .actual(format!("block {b} is not in free_block_ids: it leaked"))
                    .hint("deallocate must append a block whose ref_count drops to 0 to free_block_ids");
                return self.fail(f);
            }
        }
    }

    /// After `deallocate(seq)`: the sequence must hold nothing any more.
    pub fn after_deallocate(&mut self, id: RequestId, table_after: &[i64], cached_after: i64) {
        if !table_after.is_empty() || cached_after != 0 {
            let f = Finding::new(Some(Property::Release), "deallocate(seq)")
                .request(id)
                .expected("seq.block_table == [] and seq.num_cached_tokens == 0")
                .actual(format!("seq.block_table == {table_after:?}, seq.num_cached_tokens == {cached_after}"))
                .hint("deallocate must clear the sequence's table and cached-token count");
            self.fail(f);
        }
    }

    /// `allocate(seq)` claimed `claimed` leading tokens as prefix hits.
    pub fn claimed(&mut self, id: RequestId, claimed: usize, len: usize, table: &[BlockId]) {
        let bs = self.block_size;
        if !claimed.is_multiple_of(bs) || claimed > len || claimed > table.len() * bs {
            let f = Finding::new(Some(Property::PrefixHits), "allocate(seq)")
                .request(id)
                .expected(format!(
                    "seq.num_cached_tokens a multiple of block_size {bs}, at most len(seq) = {len} and the table's {} slots",
                    table.len() * bs
                ))
                .actual(format!("seq.num_cached_tokens == {claimed}"))
                .hint("count block_size tokens per prefix-hit block, and only whole blocks");
            return self.fail(f);
        }
        if claimed > 0 {
            self.claims.insert(id, claimed);
        }
    }

    /// Before the model runs a batch: every token must have a slot (f);
    /// record the writes, which may not clobber another holder's KV (b);
    /// then everything each sequence reads must be its own prefix's KV —
    /// a claimed hit included (c). `false` stops the run.
    pub fn check_batch(&mut self, batch: &ScheduledBatch) -> bool {
        if self.first.is_some() {
            return false;
        }
        let bs = self.block_size;
        for seq in &batch.seqs {
            let need = seq.context_tokens();
            if seq.block_table.len() * bs < need {
                let f = Finding::new(Some(Property::Slots), "allocate / may_append")
                    .request(seq.request_id)
                    .expected(format!("a table of at least {} blocks for {need} tokens", need.div_ceil(bs)))
                    .actual(format!("the table is {}", ids(&seq.block_table)));
                self.fail(f);
                return false;
            }
        }
        let holders = self.holders();
        for seq in &batch.seqs {
            for (i, _) in seq.tokens.iter().enumerate() {
                let pos = seq.start_pos + i;
                let block = seq.block_table[pos / bs];
                let slot = block.index() * bs + pos % bs;
                let fingerprint = self.fingerprint(seq.request_id, pos);
                if let Some(w) = self.slots[slot] {
                    let other_holds = w.by != seq.request_id && holders[block.index()].contains(&w.by);
                    if other_holds && w.fingerprint != fingerprint {
                        let f = Finding::new(Some(Property::ExclusiveWrites), "allocate / may_append")
                            .request(seq.request_id)
                            .expected(format!(
                                "block {block} belongs to request {} alone (its position {}), or both share an identical prefix",
                                w.by, w.pos
                            ))
                            .actual(format!(
                                "request {} writes its position {pos} into block {block} slot {} while request {} still holds it; tables: {}",
                                seq.request_id,
                                pos % bs,
                                w.by,
                                names(&holders[block.index()])
                            ))
                            .hint("a block handed out must come off the free list, and a block still held (ref_count > 0) is never handed out again");
                        self.fail(f);
                        return false;
                    }
                }
                self.slots[slot] = Some(Written { by: seq.request_id, pos, fingerprint });
            }
        }
        for seq in &batch.seqs {
            let claim = self.claims.remove(&seq.request_id).unwrap_or(0);
            for pos in 0..seq.start_pos {
                let block = seq.block_table[pos / bs];
                let slot = block.index() * bs + pos % bs;
                let want = self.fingerprint(seq.request_id, pos);
                let got = self.slots[slot];
                if got.map(|w| w.fingerprint) == Some(want) {
                    continue;
                }
                let holds = match got {
                    Some(w) => format!("the KV of request {}'s position {} (a different prefix)", w.by, w.pos),
                    None => "no KV at all (never computed)".into(),
                };
                let (property, call, hint) = if pos < claim {
                    (
                        Property::PrefixHits,
                        "allocate(seq)",
                        "a hit must compare the block's tokens (and its whole prefix, through the chained hash) with the sequence's, and only reuse a block whose KV is computed",
                    )
                } else {
                    (
                        Property::ExclusiveWrites,
                        "allocate / may_append",
                        "another request was given a block this request still holds",
                    )
                };
                let f = Finding::new(Some(property), call)
                    .request(seq.request_id)
                    .expected(format!("block {block} slot {} holds this request's position {pos}", pos % bs))
                    .actual(format!("it holds {holds}"))
                    .hint(hint);
                self.fail(f);
                return false;
            }
        }
        true
    }

    /// Nothing runs, yet the head of the queue is refused: either blocks
    /// leaked (d), or can_allocate is wrong about a whole pool.
    pub fn deadlock(&mut self, head: RequestId) -> Finding {
        let free = self.last_state["free"].as_array().map_or(0, Vec::len);
        let f = if self.last_state.is_null() {
            // Not inspecting (the lab): say what is certain.
            Finding::new(None, "can_allocate(seq)")
                .expected(format!("request {head} is admitted: no request holds any of the {} blocks", self.num_blocks))
                .actual("can_allocate(seq) answers no, so it would wait forever")
                .hint("either deallocate does not give blocks back to free_block_ids, or can_allocate miscounts")
        } else if free < self.num_blocks {
            Finding::new(Some(Property::Release), "can_allocate(seq)")
                .expected(format!("with no request running, all {} blocks are in free_block_ids", self.num_blocks))
                .actual(format!("{free} are: the others never came back, so request {head} waits forever"))
                .hint("deallocate must return every block whose ref_count drops to 0 to free_block_ids")
        } else {
            Finding::new(None, "can_allocate(seq)")
                .expected(format!("request {head} is admitted: every block is free"))
                .actual("can_allocate(seq) keeps answering no, so it waits forever")
                .hint("can_allocate must say yes when free_block_ids has at least seq.num_blocks blocks")
        };
        f.request(head)
    }

    /// The end of a workload: every request is gone, so the student's pool
    /// must be whole.
    pub fn at_end(&mut self) {
        self.tables.clear();
        let state = std::mem::take(&mut self.last_state);
        self.after_call("(end of workload)", RequestId(0), None, &state);
        if let Some(f) = self.first.as_mut().filter(|f| f.call == "(end of workload)") {
            f.request = None;
        }
    }
}

fn names(ids: &[RequestId]) -> String {
    if ids.is_empty() {
        return "no table".into();
    }
    let list: Vec<String> = ids.iter().map(|r| format!("request {r}")).collect();
    list.join(", ")
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvscope_core::{SamplingParams, ScheduledSeq};
    use std::sync::Arc;

    fn chunk(id: u64, tokens: Vec<TokenId>, start_pos: usize, table: Vec<u32>) -> ScheduledSeq {
        ScheduledSeq {
            request_id: RequestId(id),
            num_tokens: tokens.len(),
            tokens,
            start_pos,
            block_table: table.into_iter().map(BlockId).collect(),
            sample: true,
            output_index: 0,
            sampling: Arc::new(SamplingParams::greedy(1)),
            is_prefill: true,
            next_prompt_token: None,
        }
    }

    /// Property (b) on its own: two requests with different prompts whose
    /// tables both name block 0 (a manager whose own counts agree with that).
    #[test]
    fn two_requests_writing_one_block_break_exclusive_writes() {
        let mut c = Checker::new(4, 2);
        c.submitted(RequestId(1), &[1, 2]);
        c.submitted(RequestId(2), &[3, 4]);
        c.after_call("allocate(seq)", RequestId(1), Some(&[BlockId(0)]), &Value::Null);
        c.after_call("allocate(seq)", RequestId(2), Some(&[BlockId(0)]), &Value::Null);
        let batch = ScheduledBatch { seqs: vec![chunk(1, vec![1, 2], 0, vec![0]), chunk(2, vec![3, 4], 0, vec![0])] };
        assert!(!c.check_batch(&batch));
        let f = c.finding().unwrap();
        assert_eq!(f.property, Some(Property::ExclusiveWrites));
        assert_eq!(f.request, Some(RequestId(2)));
        assert!(f.actual.contains("while request 1 still holds it"), "{f}");
    }

    /// Identical prefixes may share (and even rewrite) a block.
    #[test]
    fn identical_prefixes_may_write_the_same_block() {
        let mut c = Checker::new(4, 2);
        c.submitted(RequestId(1), &[1, 2, 5]);
        c.submitted(RequestId(2), &[1, 2, 6]);
        c.after_call("allocate(seq)", RequestId(1), Some(&[BlockId(0), BlockId(1)]), &Value::Null);
        c.after_call("allocate(seq)", RequestId(2), Some(&[BlockId(0), BlockId(2)]), &Value::Null);
        let batch = ScheduledBatch {
            seqs: vec![chunk(1, vec![1, 2, 5], 0, vec![0, 1]), chunk(2, vec![1, 2, 6], 0, vec![0, 2])],
        };
        assert!(c.check_batch(&batch), "{:?}", c.finding());
    }
}
