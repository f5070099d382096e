//! `kvscope lab compare DIR_A DIR_B`: two runs' capacity tables and causal
//! chains side by side, with the deltas. It reads each run's `lab.json`,
//! refuses runs whose workloads differ (their figures would not measure
//! the same thing) unless forced, and lists every configuration setting
//! in which the two differ — that is what the deltas are about.

use serde::Serialize;
use serde_json::Value;
use std::fmt::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{dir} is not a lab run: it has no lab.json (give folders written by `kvscope lab --out DIR`)")]
    NotALabRun { dir: String },
    #[error("{dir}/lab.json has no workload record (written by an older kvscope): rerun that lab to compare it")]
    NoWorkload { dir: String },
    #[error("cannot read {path}: {why}")]
    Unreadable { path: String, why: String },
    #[error(
        "the two runs ran different workloads, so their figures do not measure the same thing:\n{differences}\nadd --force to compare them anyway"
    )]
    WorkloadsDiffer { differences: String },
}

/// One setting that differs: its path in lab.json, A's value, B's.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    pub setting: String,
    pub a: String,
    pub b: String,
}

/// One figure of one case (or sweep point) in both runs.
#[derive(Clone, Debug, Serialize)]
pub struct Delta {
    pub row: String,
    pub figure: String,
    pub a: f64,
    pub b: f64,
    /// B − A.
    pub delta: f64,
    /// (B − A) / A, when A is not 0.
    pub relative: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub workload_differences: Vec<Difference>,
    pub config_differences: Vec<Difference>,
    pub capacity: Vec<Delta>,
    pub chain: Vec<Delta>,
    /// Each run's chain verdict, as its report gives it.
    pub chain_a: Value,
    pub chain_b: Value,
}

fn load(dir: &Path) -> Result<Value, CompareError> {
    let path = dir.join("lab.json");
    if !path.is_file() {
        return Err(CompareError::NotALabRun { dir: dir.display().to_string() });
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CompareError::Unreadable { path: path.display().to_string(), why: e.to_string() })?;
    serde_json::from_str(&text).map_err(|e| CompareError::Unreadable {
        path: path.display().to_string(),
        why: format!("{e} (not a lab.json written by `kvscope lab`?)"),
    })
}

/// Every leaf where `a` and `b` differ, by path.
fn differences(prefix: &str, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                differences(&path, x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{prefix}[{i}]"), p, q, out);
            }
        }
        _ if a != b => out.push(Difference { setting: prefix.into(), a: a.to_string(), b: b.to_string() }),
        _ => {}
    }
}

/// A figure of a row: a plain number, or the median of a repeat spread.
fn number(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_f64().or_else(|| cur.get("median")?.as_f64())
}

const CAPACITY_FIGURES: [(&str, &[&str]); 9] = [
    ("live_requests (mean)", &["live_requests"]),
    ("live_requests (max)", &["live_requests_max"]),
    ("estimated_kv (bytes)", &["estimated_kv"]),
    ("TTFT p50 (s)", &["ttft", "p50"]),
    ("TTFT p90 (s)", &["ttft", "p90"]),
    ("queue_wait p50 (s)", &["queue_wait", "p50"]),
    ("queue_wait p90 (s)", &["queue_wait", "p90"]),
    ("stalled steps", &["stalled_steps"]),
    ("preemptions", &["preemptions"]),
];

const CHAIN_FIGURES: [(&str, &[&str]); 5] = [
    ("live (max)", &["live_max"]),
    ("live (mean)", &["live_mean"]),
    ("queue_wait p50 (s)", &["queue_wait_p50"]),
    ("TTFT p50 (s)", &["ttft_p50"]),
    ("preemptions", &["preemptions"]),
];

fn deltas(a: &Value, b: &Value, key: &str, figures: &[(&str, &[&str])], out: &mut Vec<Delta>) {
    let rows = |v: &Value| v.as_array().cloned().unwrap_or_default();
    for ra in rows(a) {
        let name = ra.get(key).map(|k| k.to_string().trim_matches('"').to_string()).unwrap_or_default();
        let Some(rb) = rows(b).into_iter().find(|r| r.get(key) == ra.get(key)) else { continue };
        for (figure, path) in figures {
            if let (Some(x), Some(y)) = (number(&ra, path), number(&rb, path)) {
                out.push(Delta {
                    row: name.clone(),
                    figure: (*figure).into(),
                    a: x,
                    b: y,
                    delta: y - x,
                    relative: (x != 0.0).then(|| (y - x) / x),
                });
            }
        }
    }
}

/// Compares two lab runs. Differing workloads are an error unless `force`.
pub fn compare(dir_a: &Path, dir_b: &Path, force: bool) -> Result<Comparison, CompareError> {
    let (a, b) = (load(dir_a)?, load(dir_b)?);
    // Without it, two unknown workloads would look equal.
    for (v, dir) in [(&a, dir_a), (&b, dir_b)] {
        if v["workload"].is_null() {
            return Err(CompareError::NoWorkload { dir: dir.display().to_string() });
        }
    }
    let mut workload_differences = Vec::new();
    differences("workload", &a["workload"], &b["workload"], &mut workload_differences);
    if !workload_differences.is_empty() && !force {
        return Err(CompareError::WorkloadsDiffer { differences: list(&workload_differences) });
    }
    let mut config_differences = Vec::new();
    for key in ["engine", "backend", "repeat"] {
        differences(key, &a[key], &b[key], &mut config_differences);
    }
    let mut capacity = Vec::new();
    deltas(&a["capacity"], &b["capacity"], "case", &CAPACITY_FIGURES, &mut capacity);
    let mut chain = Vec::new();
    deltas(&a["sweep"], &b["sweep"], "prompt_len", &CHAIN_FIGURES, &mut chain);
    Ok(Comparison {
        a: dir_a.display().to_string(),
        b: dir_b.display().to_string(),
        workload_differences,
        config_differences,
        capacity,
        chain,
        chain_a: a["chain"].clone(),
        chain_b: b["chain"].clone(),
    })
}

fn list(d: &[Difference]) -> String {
    d.iter().map(|d| format!("  {}: {} vs {}", d.setting, d.a, d.b)).collect::<Vec<_>>().join("\n")
}

fn table(o: &mut String, key: &str, rows: &[Delta]) {
    let _ = writeln!(o, "| {key} | figure | A | B | Δ (B − A) | Δ % |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for d in rows {
        let rel = d.relative.map_or("—".into(), |r| format!("{:+.1}%", 100.0 * r));
        let _ = writeln!(o, "| {} | {} | {} | {} | {:+.4} | {rel} |", d.row, d.figure, fmt(d.a), fmt(d.b), d.delta);
    }
}

fn fmt(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.4}")
    }
}

/// The comparison as markdown (English: it is a tool's output, not the
/// report a student hands in).
pub fn markdown(c: &Comparison) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# kvscope lab compare\n\n- A: `{}`\n- B: `{}`\n", c.a, c.b);
    if !c.workload_differences.is_empty() {
        let _ = writeln!(
            o,
            "> **The workloads differ** (compared with --force): the deltas mix the configuration's effect with the workload's.\n"
        );
        for d in &c.workload_differences {
            let _ = writeln!(o, "- `{}`: {} vs {}", d.setting, d.a, d.b);
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "## Configuration differences\n");
    if c.config_differences.is_empty() {
        let _ = writeln!(o, "None: the same configuration twice (the deltas are run-to-run noise).\n");
    } else {
        let _ = writeln!(o, "| setting | A | B |\n|---|---|---|");
        for d in &c.config_differences {
            let _ = writeln!(o, "| `{}` | {} | {} |", d.setting, d.a, d.b);
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "## Capacity table\n");
    table(&mut o, "case", &c.capacity);
    let _ = writeln!(o, "\n## Causal chain (sweep points)\n");
    table(&mut o, "prompt_len", &c.chain);
    let _ = writeln!(o, "\nChain verdict A: `{}`\n\nChain verdict B: `{}`", c.chain_a, c.chain_b);
    o
}
