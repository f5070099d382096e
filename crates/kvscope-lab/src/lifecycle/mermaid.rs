//! The state machine as Mermaid `stateDiagram-v2` text (`lifecycle.mmd`).

use super::{LifecycleGraph, State};

impl LifecycleGraph {
    /// Mermaid `stateDiagram-v2` text.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("stateDiagram-v2\n    direction LR\n");
        for s in [State::Waiting, State::Prefill, State::Decode, State::Finished] {
            out.push_str(&format!("    {} : {}<br/>{}\n", s.name(), s.name(), mermaid_text(s.kv_note())));
        }
        for t in &self.transitions {
            let mut label = format!("{} ×{}", t.name, t.count);
            for d in &t.details {
                label.push_str("<br/>");
                label.push_str(d);
            }
            for s in &t.sites {
                label.push_str("<br/>@ ");
                label.push_str(s);
            }
            out.push_str(&format!("    {} --> {} : {}\n", t.from.name(), t.to.name(), mermaid_text(&label)));
        }
        // The two links the PNG draws beside the counted transitions.
        if self.readmissions > 0 {
            let label = format!(
                "preemption → recompute ×{} (readmitted, prefill recomputes the released KV)",
                self.readmissions
            );
            out.push_str(&format!("    Waiting --> Prefill : {}\n", mermaid_text(&label)));
        }
        out.push_str("    note left of Prefill\n");
        out.push_str("        request_id → block table: admission allocates the blocks into it, preemption or finish releases them\n");
        out.push_str("    end note\n");
        out.push_str("    note right of Finished\n");
        out.push_str(&format!(
            "        block side — {} released blocks kept cached (evictable)\n",
            self.released_cached_blocks
        ));
        let sites: Vec<String> = self.evicted_sites.iter().map(|s| mermaid_text(s)).collect();
        let at = if sites.is_empty() { String::new() } else { format!(" @ {}", sites.join(", ")) };
        out.push_str(&format!("        cached free block evicted ×{}{}\n", self.evicted_blocks, at));
        out.push_str("    end note\n");
        out.push_str(&format!("    %% {}\n", mermaid_text(&self.legend())));
        out
    }
}

/// Text safe inside a Mermaid state-diagram label: the description token
/// stops at '#', ';' and newlines, and ':' separates the label, so code
/// sites are written `scheduler·admit_waiting`.
fn mermaid_text(s: &str) -> String {
    s.replace("::", "·").replace([':', ';', '#', '\n'], " ").replace(['{', '}'], "")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{small_run, small_run_with};
    use super::*;

    #[test]
    fn labels_carry_counts_and_sites_without_mermaid_separators() {
        let g = LifecycleGraph::from_run(&small_run(40));
        let m = g.to_mermaid();
        assert!(m.starts_with("stateDiagram-v2"));
        assert!(m.contains("[*] --> Waiting : arrived ×12<br/>@ engine·submit"));
        for line in m.lines().filter(|l| l.contains("-->")) {
            let label = line.split_once(" : ").expect("labelled").1;
            assert!(!label.contains([':', ';', '#']), "{line}");
        }
        assert!(m.contains("request_id → block table"));
        assert!(g.readmissions > 0, "a 40-block run preempts and readmits");
        assert!(m.contains(&format!("Waiting --> Prefill : preemption → recompute ×{}", g.readmissions)));
        let roomy = LifecycleGraph::from_run(&small_run(400));
        assert!(roomy.readmissions == 0 && !roomy.to_mermaid().contains("preemption → recompute"));
        let stalls = LifecycleGraph::from_run(&small_run_with(80, 16, 4, 1)).to_mermaid();
        assert!(stalls.contains("stalled (max_partial_prefills)"));
    }
}
