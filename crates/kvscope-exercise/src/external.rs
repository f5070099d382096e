//! `PyBlockManager`: a student's Python BlockManager behind kvscope-core's
//! block-manager seam, so the real scheduler and model run on its tables.
//!
//! The seam hands over a sequence as the student's nano-vLLM `Sequence`
//! has it, split in two (the student still sees one object):
//!
//! | kvscope (the seam) | the student's `Sequence` (`python/sequence.py`) |
//! |---|---|
//! | `SeqView::id` | `seq_id` |
//! | `SeqView::prompt`, `output` (read) | `token_ids` (the prompt at the first call, then each new token through `append_token` with the next call about it) |
//! | `SeqKv::block_table` (written) | `block_table`, the student's, checked and copied back after each call |
//! | `SeqKv::num_computed` (written) | `num_cached_tokens` from `allocate` (prefix hits, trimmed to leave one token to compute); after a step, `hash_blocks` sees the growth as `num_scheduled_tokens`, then `num_cached_tokens` takes the new value |
//!
//! The engine's tokens stay the source of truth; the tables the student's
//! methods produce become the engine's tables (after checks that keep the
//! engine safe: valid block ids, a slot for every token). Anything that goes wrong is kept as a [`Finding`] and
//! reported through `failure()`, which stops the engine's step.

use crate::checker::Checker;
use crate::finding::{ids, Finding, Property};
use crate::host::{HostConfig, HostError, PythonHost, StudentApi};
use kvscope_core::block_manager::{AdmissionPlan, BlockState, BlockView, PrefixCacheCounters};
use kvscope_core::events::EventLog;
use kvscope_core::{BlockId, KvBlockManager, KvEvent, PoolConfig, ReleaseReason, RequestId, SeqKv, SeqView, TokenId};
use rustc_hash::FxHashMap;
use serde_json::{json, Value};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Code sites the events name: the student's file and method.
struct Sites {
    may_append: &'static str,
    deallocate: &'static str,
}

pub struct PyBlockManager {
    host: PythonHost,
    api: StudentApi,
    config: PoolConfig,
    /// How many of each request's tokens the Python Sequence already has.
    synced: FxHashMap<RequestId, usize>,
    /// `allocate(seq, n)`'s `n`, from the `can_allocate` just before.
    cached_blocks: Option<i64>,
    holders: Vec<Vec<RequestId>>,
    filled: Vec<usize>,
    used: usize,
    used_tokens: usize,
    counters: PrefixCacheCounters,
    checker: Arc<Mutex<Checker>>,
    /// The first failure in a form the engine can print.
    failed: Option<String>,
    sites: Sites,
}

impl fmt::Debug for PyBlockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyBlockManager").field("config", &self.config).field("used", &self.used).finish()
    }
}

impl PyBlockManager {
    /// Starts the student's manager for a pool of `config`'s shape.
    pub fn start(host: HostConfig, config: PoolConfig, checker: Arc<Mutex<Checker>>) -> Result<Self, HostError> {
        let file = host.file.file_name().map_or("block_manager.py".into(), |n| n.to_string_lossy().into_owned());
        let (host, api, init) = PythonHost::start(host, config.num_blocks, config.block_size)?;
        let line = |m: &str| api.lines.iter().find(|(n, _)| n == m).map_or(String::new(), |(_, l)| format!(":{l}"));
        // Sites are `&'static str` in events; a manager lives for a whole run,
        // so leaking two short strings per manager is the honest price.
        let sites = Sites {
            may_append: Box::leak(format!("{file}{}::may_append", line("may_append")).into_boxed_str()),
            deallocate: Box::leak(format!("{file}{}::deallocate", line("deallocate")).into_boxed_str()),
        };
        let n = config.num_blocks;
        let mut manager = PyBlockManager {
            host,
            api,
            synced: FxHashMap::default(),
            cached_blocks: None,
            holders: vec![Vec::new(); n],
            filled: vec![0; n],
            used: 0,
            used_tokens: 0,
            counters: PrefixCacheCounters::default(),
            checker,
            failed: None,
            sites,
            config,
        };
        let state = init["state"].clone();
        manager.checker().after_call("BlockManager(num_blocks, block_size)", RequestId(0), None, &state);
        manager.sync_failure();
        Ok(manager)
    }

    pub fn api(&self) -> &StudentApi {
        &self.api
    }

    fn checker(&self) -> MutexGuard<'_, Checker> {
        self.checker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sync_failure(&mut self) {
        if self.failed.is_none() {
            let found = self.checker().finding().map(|f| f.to_string());
            self.failed = found;
        }
    }

    fn host_failed(&mut self, id: RequestId, e: HostError) {
        let call = match &e {
            HostError::Exception { call, .. }
            | HostError::Contract { call, .. }
            | HostError::Timeout { call, .. }
            | HostError::Exited { call } => call.clone(),
            _ => "import".into(),
        };
        let mut f = Finding::new(None, call).actual(e.to_string());
        if id != RequestId(0) {
            f = f.request(id);
        }
        self.checker().fail(f);
        self.sync_failure();
    }

    /// The request's identity and the tokens its Python Sequence lacks.
    fn request(&mut self, op: &str, seq: SeqView<'_>) -> Value {
        let mut req = json!({"op": op, "rid": seq.id.0});
        match self.synced.get(&seq.id) {
            None => req["prompt"] = json!(seq.prompt),
            Some(&n) => {
                let new: Vec<TokenId> = seq.all_tokens().skip(n).collect();
                if !new.is_empty() {
                    req["append"] = json!(new);
                }
            }
        }
        req
    }

    fn call(&mut self, call: &str, op: &str, seq: SeqView<'_>, extra: &[(&str, Value)]) -> Option<Value> {
        if self.failed.is_some() {
            return None;
        }
        let mut req = self.request(op, seq);
        for (k, v) in extra {
            req[*k] = v.clone();
        }
        match self.host.call(call, &req) {
            Ok(reply) => {
                self.synced.insert(seq.id, seq.len());
                Some(reply)
            }
            Err(e) => {
                self.host_failed(seq.id, e);
                None
            }
        }
    }

    /// The student's table as engine block ids, or a finding.
    fn table(&mut self, call: &str, seq: SeqView<'_>, reply: &Value, key: &str) -> Option<Vec<BlockId>> {
        let raw: Vec<i64> = reply[key].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect())?;
        let n = self.config.num_blocks as i64;
        if let Some(bad) = raw.iter().find(|&&b| b < 0 || b >= n) {
            let f = Finding::new(Some(Property::Slots), call)
                .request(seq.id)
                .expected(format!("block ids in 0..{n}"))
                .actual(format!("seq.block_table == {raw:?} (block {bad})"));
            self.checker().fail(f);
            self.sync_failure();
            return None;
        }
        Some(raw.into_iter().map(|b| BlockId(b as u32)).collect())
    }

    fn set_table(&mut self, id: RequestId, kv: &mut SeqKv, table: Vec<BlockId>) {
        for &b in &kv.block_table {
            self.unhold(b, id);
        }
        for &b in &table {
            self.hold(b, id);
        }
        kv.block_table = table;
    }

    fn hold(&mut self, b: BlockId, id: RequestId) {
        let h = &mut self.holders[b.index()];
        if h.is_empty() {
            self.used += 1;
        }
        h.push(id);
    }

    fn unhold(&mut self, b: BlockId, id: RequestId) {
        let h = &mut self.holders[b.index()];
        if let Some(i) = h.iter().position(|x| *x == id) {
            h.swap_remove(i);
            if h.is_empty() {
                self.used -= 1;
                self.used_tokens -= self.filled[b.index()];
                self.filled[b.index()] = 0;
            }
        }
    }

    /// A slot for every token the engine is about to compute (f).
    fn covers(&mut self, call: &str, seq: SeqView<'_>, kv: &SeqKv, hint: &str) -> bool {
        let bs = self.config.block_size;
        if kv.block_table.len() * bs >= seq.len() {
            return true;
        }
        let f = Finding::new(Some(Property::Slots), call)
            .request(seq.id)
            .expected(format!("len(seq) == {} tokens need {} blocks of {bs}", seq.len(), seq.len().div_ceil(bs)))
            .actual(format!("seq.block_table == {} ({} blocks)", ids(&kv.block_table), kv.block_table.len()))
            .hint(hint);
        self.checker().fail(f);
        self.sync_failure();
        false
    }

    fn after(&mut self, call: &str, id: RequestId, kv: &SeqKv, reply: &Value) {
        let table = (!kv.block_table.is_empty()).then_some(kv.block_table.as_slice());
        self.checker().after_call(call, id, table, &reply["state"]);
        self.sync_failure();
    }
}

impl KvBlockManager for PyBlockManager {
    fn config(&self) -> &PoolConfig {
        &self.config
    }
    fn free_blocks(&self) -> usize {
        self.config.num_blocks - self.used
    }
    fn used_blocks(&self) -> usize {
        self.used
    }
    fn cached_free_blocks(&self) -> usize {
        0
    }
    fn used_tokens(&self) -> usize {
        self.used_tokens
    }
    fn counters(&self) -> PrefixCacheCounters {
        self.counters
    }
    fn view(&self) -> Vec<BlockView> {
        self.holders
            .iter()
            .enumerate()
            .map(|(i, h)| BlockView {
                block: BlockId(i as u32),
                state: if h.is_empty() { BlockState::Free } else { BlockState::Held },
                ref_count: h.len(),
                holders: h.clone(),
                filled: self.filled[i],
            })
            .collect()
    }
    fn indexed_tokens(&self, _block: BlockId) -> Option<&[TokenId]> {
        None
    }

    fn can_allocate(&mut self, seq: SeqView<'_>, _kv: &SeqKv) -> Result<AdmissionPlan, usize> {
        let needed = seq.len().div_ceil(self.config.block_size);
        let Some(reply) = self.call("can_allocate(seq)", "can_allocate", seq, &[]) else { return Err(needed) };
        self.cached_blocks = reply["cached_blocks"].as_i64();
        if reply["admit"].as_bool() == Some(true) {
            return Ok(AdmissionPlan::opaque(needed));
        }
        // With no block held by anyone, a request that passed validation
        // always fits: refusing it would make the engine wait forever.
        if self.used == 0 {
            let f = self.checker().deadlock(seq.id);
            self.checker().fail(f);
            self.sync_failure();
        }
        Err(needed)
    }

    fn allocate(&mut self, seq: SeqView<'_>, kv: &mut SeqKv, _plan: AdmissionPlan, _log: &mut EventLog) -> usize {
        let cached = self.cached_blocks.take().unwrap_or(0);
        let Some(reply) = self.call("allocate(seq)", "allocate", seq, &[("cached_blocks", json!(cached))]) else {
            return 0;
        };
        let Some(table) = self.table("allocate(seq)", seq, &reply, "table") else { return 0 };
        let claimed = reply["num_cached_tokens"].as_i64().unwrap_or(0).max(0) as usize;
        self.set_table(seq.id, kv, table);
        self.after("allocate(seq)", seq.id, kv, &reply);
        self.checker().claimed(seq.id, claimed, seq.len(), &kv.block_table);
        self.sync_failure();
        if !self.covers(
            "allocate(seq)",
            seq,
            kv,
            "allocate must give the sequence seq.num_blocks blocks: one per block_size tokens, the last one partial",
        ) {
            return 0;
        }
        // The engine computes at least the newest token (it needs its
        // logits), so a claim covering every token is trimmed by one.
        let bs = self.config.block_size;
        let usable = claimed.min(seq.len() - 1).min(kv.block_table.len() * bs);
        for (i, &b) in kv.block_table.iter().enumerate().take(usable.div_ceil(bs)) {
            let f = usable.saturating_sub(i * bs).min(bs);
            if f > self.filled[b.index()] {
                self.used_tokens += f - self.filled[b.index()];
                self.filled[b.index()] = f;
            }
        }
        kv.num_computed = usable;
        claimed / bs
    }

    fn append_slot(&mut self, seq: SeqView<'_>, kv: &mut SeqKv, log: &mut EventLog) -> Option<()> {
        // can_append then may_append, as nano-vLLM's scheduler calls them:
        // the newest token is already in the sequence, its KV is not.
        let reply = self.call("can_append(seq) / may_append(seq)", "append", seq, &[])?;
        if reply["can"].as_bool() != Some(true) {
            self.after("can_append(seq)", seq.id, kv, &reply);
            let mut mine = kv.block_table.clone();
            mine.sort();
            mine.dedup();
            // Only this request holds blocks and it fits the pool (the
            // engine validated it), so a new block must exist: saying no
            // would preempt and recompute it forever.
            if self.failed.is_none() && mine.len() == self.used && mine.len() < self.config.num_blocks {
                let f = Finding::new(None, "can_append(seq)")
                    .request(seq.id)
                    .expected(format!(
                        "yes: request {} is the only one holding blocks ({} of {})",
                        seq.id,
                        mine.len(),
                        self.config.num_blocks
                    ))
                    .actual("no, so it would be preempted and recomputed forever")
                    .hint("can_append must say yes when the newest token fits the last block or a block is free");
                self.checker().fail(f);
                self.sync_failure();
            }
            return None;
        }
        let table = self.table("may_append(seq)", seq, &reply, "table")?;
        let before = kv.block_table.len();
        self.set_table(seq.id, kv, table);
        for &b in &kv.block_table[before.min(kv.block_table.len())..] {
            log.emit(self.sites.may_append, KvEvent::BlockAppended { request_id: seq.id, block: b });
        }
        self.after("may_append(seq)", seq.id, kv, &reply);
        let late = "may_append must append a new block when the newest token starts one: len(seq) % block_size == 1";
        // A table too short is a finding; the engine stops before running it.
        self.covers("may_append(seq)", seq, kv, late);
        Some(())
    }

    fn commit_computed(&mut self, seq: SeqView<'_>, kv: &mut SeqKv) {
        let bs = self.config.block_size;
        for (i, &b) in kv.block_table.iter().enumerate() {
            let f = kv.num_computed.saturating_sub(i * bs).min(bs);
            if f == 0 {
                break;
            }
            if f > self.filled[b.index()] {
                self.used_tokens += f - self.filled[b.index()];
                self.filled[b.index()] = f;
            }
        }
        if self.api.has_hash_blocks {
            let n = json!(kv.num_computed);
            if let Some(reply) = self.call("hash_blocks(seq)", "computed", seq, &[("num_computed", n)]) {
                self.after("hash_blocks(seq)", seq.id, kv, &reply);
            }
        }
    }

    fn release(&mut self, seq: SeqView<'_>, kv: &mut SeqKv, reason: ReleaseReason, log: &mut EventLog) {
        let forget = reason != ReleaseReason::Preempted;
        let blocks = kv.block_table.clone();
        let reply = self.call("deallocate(seq)", "deallocate", seq, &[("forget", json!(forget))]);
        self.set_table(seq.id, kv, Vec::new());
        kv.num_computed = 0;
        if forget {
            self.synced.remove(&seq.id);
        }
        let cached = reply.as_ref().and_then(|r| r["cached"].as_u64()).unwrap_or(0) as usize;
        log.emit(self.sites.deallocate, KvEvent::Released { request_id: seq.id, blocks, reason, cached });
        let Some(reply) = reply else { return };
        let after: Vec<i64> =
            reply["table_after"].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
        self.checker().after_deallocate(seq.id, &after, reply["num_cached_tokens_after"].as_i64().unwrap_or(0));
        self.after("deallocate(seq)", seq.id, kv, &reply);
    }

    fn count_prefix_query(&mut self, prompt_tokens: usize, hit_tokens: usize) {
        self.counters.queried_tokens += prompt_tokens as u64;
        self.counters.hit_tokens += hit_tokens as u64;
    }

    fn failure(&self) -> Option<String> {
        self.failed.clone()
    }
}
