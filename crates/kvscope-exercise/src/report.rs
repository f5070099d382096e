//! The grader's verdict as a student reads it: the workloads, a table of
//! properties, then the first failure with where, what and why.

use crate::finding::Property;
use crate::grade::{Grade, Status};
use std::fmt::Write;

pub fn render(grade: &Grade) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "kvscope exercise check: {}", grade.file);
    if let Some(api) = &grade.api {
        let _ = writeln!(
            out,
            "API seen: allocate({}), hash_blocks: {}",
            if api.allocate_takes_cached_blocks { "seq, num_cached_blocks" } else { "seq" },
            if api.has_hash_blocks { "yes (called after each computed chunk)" } else { "no" }
        );
    }
    let _ = writeln!(out, "\n{:<15} {:>6} {:>9} {:>12}  result", "workload", "steps", "hit tok.", "preemptions");
    for w in &grade.workloads {
        let result = match (&w.finding, w.completed) {
            (None, true) => "completed".to_string(),
            (Some(f), _) => {
                format!("stopped at step {}: {}", f.step, f.property.map_or("your code failed", Property::label))
            }
            (None, false) => "not run".to_string(),
        };
        let _ = writeln!(out, "{:<15} {:>6} {:>9} {:>12}  {result}", w.name, w.steps, w.hit_tokens, w.preemptions);
    }
    let _ = writeln!(out, "\n{:<22} {:<12} meaning", "property", "result");
    let mut passed = 0;
    for p in Property::ALL {
        let status = grade.status(p);
        passed += usize::from(status == Status::Pass);
        let text = match status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotChecked => "not checked",
        };
        let _ = writeln!(out, "{:<22} {:<12} {}", p.label(), text, p.meaning());
    }
    match &grade.first {
        Some(f) => {
            let _ = write!(out, "\nfirst failure — {f}");
        }
        None if !grade.passed() => {
            let _ = writeln!(out, "\nsome workloads did not complete");
        }
        None => {}
    }
    let verdict = if grade.passed() { "all properties hold" } else { "not yet" };
    let _ = writeln!(out, "\n{passed}/{} properties pass: {verdict}", Property::ALL.len());
    out
}
