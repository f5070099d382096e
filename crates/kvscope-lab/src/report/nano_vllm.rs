//! The handout's reference code is nano-vLLM (`nanovllm/engine/`); section
//! 12.2 puts each kvscope site beside its nano-vLLM counterpart. The
//! mapping was read from nano-vLLM's source at two commits, named here so
//! a reader can open the same lines: the course's copy follows the classic
//! scheduler (whole-prompt prefill), and upstream has since added chunked
//! prefill. The words about each difference live in the templates; this
//! file holds only what both languages share.
//!
//! To re-check after nano-vLLM changes: `git log -- nanovllm/engine/` in
//! github.com/GeeeekExplorer/nano-vllm, read `block_manager.py`,
//! `sequence.py` and `scheduler.py` at the new commit, update the commit
//! here and any difference the templates state.

use serde::Serialize;

/// The nano-vLLM commits the 12.2 mapping was read from.
#[derive(Serialize)]
pub struct NanoVllmRef {
    /// The classic scheduler: a step prefills whole prompts or decodes,
    /// the prefix index is built in `allocate`.
    pub classic_commit: &'static str,
    pub classic_date: &'static str,
    /// Upstream's newest read: chunked prefill of the first waiting
    /// sequence, the index built in `hash_blocks`.
    pub upstream_commit: &'static str,
    pub upstream_date: &'static str,
}

pub const NANO_VLLM: NanoVllmRef = NanoVllmRef {
    classic_commit: "82f5ca2",
    classic_date: "2025-12-18",
    upstream_commit: "bb823b3",
    upstream_date: "2026-04-26",
};
