//! The KV blocks' lifecycle as the target's KV events show it, in the
//! lab's Mermaid form (`kv_lifecycle.mmd`): stored into the prefix cache,
//! reused by later requests (inferred from the tokens the client sent),
//! removed, or cleared with the whole cache. Block-level only: the events
//! carry no request ids, so the request-level diagram of the local lab
//! (waiting, prefill, decode, finished) cannot be drawn from them.

use super::TargetResults;

/// `stateDiagram-v2` text, or `None` without KV events.
pub fn mermaid(res: &TargetResults) -> Option<String> {
    let k = res.kv_events.as_ref()?;
    let blocks = res.case_blocks.iter().flatten();
    let (bound, shared) = blocks.fold((0, 0), |(b, s), c| (b + c.blocks_bound, s + c.shared_blocks));
    let requests: usize = res.case_blocks.iter().flatten().map(|c| c.requests_bound).sum();
    let mut out = String::from("stateDiagram-v2\n    direction LR\n");
    out.push_str("    Cached : Cached<br/>full block in the prefix cache\n");
    out.push_str(&format!(
        "    [*] --> Cached : BlockStored ×{}<br/>{bound} blocks bound to {requests} requests (inferred)\n",
        k.stored
    ));
    out.push_str(&format!("    Cached --> Cached : reused by ≥2 requests ×{shared} blocks (inferred)\n"));
    out.push_str(&format!("    Cached --> [*] : BlockRemoved ×{}\n", k.removed));
    if k.cleared > 0 {
        out.push_str(&format!("    Cached --> [*] : AllBlocksCleared ×{}\n", k.cleared));
    }
    Some(out)
}
