//! Repeats (`--repeat N`): every case, sweep point and probe runs N times on
//! fresh engines, and each figure is reported as its median with the
//! min–max range of the repeats. One run shows what happened once; the
//! range shows how much of a difference between two figures is noise.

use kvscope_experiment::capacity::CapacityRow;
use kvscope_experiment::dist::percentile_of_sorted;
use kvscope_experiment::dist::Dist;
use kvscope_experiment::mix::MemberRow;
use serde::Serialize;
use serde_json::Value;

/// The median and the range of one figure over the repeats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// Median (the lab's one percentile convention) and range of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        Spread { median: percentile_of_sorted(&v, 50.0), min: v[0], max: v[v.len() - 1] }
    }

    /// `median` alone when every repeat agreed, else `median (min–max)`.
    pub fn show(&self, digits: usize) -> String {
        if self.min == self.max {
            format!("{:.digits$}", self.median)
        } else {
            format!("{:.digits$} ({:.digits$}–{:.digits$})", self.median, self.min, self.max)
        }
    }
}

/// The figure `f` over `rows`, shown as [`Spread::show`].
pub fn show<T>(rows: &[T], f: impl Fn(&T) -> f64, digits: usize) -> String {
    Spread::of(rows.iter().map(f)).show(digits)
}

/// A value of the same shape as the serialized `items`, with every number
/// replaced by its `{median, min, max}` over them (strings and other
/// leaves taken from the first). This is how capacity.json reports every
/// figure of every repeat without naming each field twice.
pub fn spread_json<T: Serialize>(items: &[T]) -> Value {
    let values: Vec<Value> = items.iter().map(|i| serde_json::to_value(i).expect("serialisable")).collect();
    merge(&values)
}

fn merge(values: &[Value]) -> Value {
    let Some(first) = values.first() else { return Value::Null };
    match first {
        Value::Number(_) => {
            let s = Spread::of(values.iter().filter_map(Value::as_f64));
            serde_json::json!({ "median": s.median, "min": s.min, "max": s.max })
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, _)| {
                    let column: Vec<Value> = values.iter().filter_map(|v| v.get(k).cloned()).collect();
                    (k.clone(), merge(&column))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            (0..items.len())
                .map(|i| merge(&values.iter().filter_map(|v| v.get(i).cloned()).collect::<Vec<_>>()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The row of medians: every figure of `rows` (one case, one row per
/// repeat) replaced by its median; counts are rounded to whole numbers.
/// The explanation is the first repeat's, re-derived by the caller if it
/// needs the median's.
pub fn median_row(rows: &[CapacityRow]) -> CapacityRow {
    let mut m = rows[0].clone();
    let med = |f: &dyn Fn(&CapacityRow) -> f64| Spread::of(rows.iter().map(f)).median;
    let count = |f: &dyn Fn(&CapacityRow) -> f64| med(f).round();
    m.live_requests = med(&|r| r.live_requests);
    m.live_requests_max = count(&|r| r.live_requests_max as f64) as usize;
    m.estimated_kv = med(&|r| r.estimated_kv);
    m.estimated_kv_block_rounded = med(&|r| r.estimated_kv_block_rounded);
    m.ttft = median_dist(rows.iter().map(|r| r.ttft));
    m.queue_wait = median_dist(rows.iter().map(|r| r.queue_wait));
    m.stall_time_share_no_free_blocks = med(&|r| r.stall_time_share_no_free_blocks);
    m.stall_time_share_max_running = med(&|r| r.stall_time_share_max_running);
    m.stall_time_share_token_budget = med(&|r| r.stall_time_share_token_budget);
    m.stall_step_share_no_free_blocks = med(&|r| r.stall_step_share_no_free_blocks);
    m.stall_step_share_max_running = med(&|r| r.stall_step_share_max_running);
    m.stall_step_share_token_budget = med(&|r| r.stall_step_share_token_budget);
    m.stalled_steps = count(&|r| r.stalled_steps as f64) as u64;
    m.stalled_seconds = med(&|r| r.stalled_seconds);
    for (i, member) in m.members.iter_mut().enumerate() {
        let med =
            |f: &dyn Fn(&MemberRow) -> f64| Spread::of(rows.iter().filter_map(|r| r.members.get(i)).map(f)).median;
        member.estimated_kv = med(&|x| x.estimated_kv);
        member.estimated_kv_block_rounded = med(&|x| x.estimated_kv_block_rounded);
        member.ttft = median_dist(rows.iter().filter_map(|r| r.members.get(i)).map(|x| x.ttft));
        member.queue_wait = median_dist(rows.iter().filter_map(|r| r.members.get(i)).map(|x| x.queue_wait));
    }
    m.preemptions = count(&|r| r.preemptions as f64) as u64;
    m.peak_block_occupancy = med(&|r| r.peak_block_occupancy);
    m
}

/// Every figure of `dists` (one per repeat) replaced by its median; the
/// count of values is the first repeat's (every repeat runs the same
/// requests).
fn median_dist(dists: impl Iterator<Item = Dist> + Clone) -> Dist {
    let med = |f: fn(&Dist) -> f64| Spread::of(dists.clone().map(|d| f(&d))).median;
    Dist {
        mean: med(|d| d.mean),
        p50: med(|d| d.p50),
        p90: med(|d| d.p90),
        p99: med(|d| d.p99),
        max: med(|d| d.max),
        n: dists.clone().next().map_or(0, |d| d.n),
    }
}

/// Whether a link of the causal chain held in every repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    /// In every repeat: the link is established (⇒).
    All,
    /// In some repeats only: not established.
    Some { held: usize, of: usize },
    /// In none (⇏).
    None,
}

impl Agreement {
    pub fn of(held: impl IntoIterator<Item = bool>) -> Agreement {
        let v: Vec<bool> = held.into_iter().collect();
        let n = v.iter().filter(|&&h| h).count();
        match n {
            _ if n == v.len() && n > 0 => Agreement::All,
            0 => Agreement::None,
            _ => Agreement::Some { held: n, of: v.len() },
        }
    }
    pub fn established(&self) -> bool {
        *self == Agreement::All
    }
    pub fn arrow(&self) -> &'static str {
        match self {
            Agreement::All => "⇒",
            Agreement::Some { .. } => "⇢?",
            Agreement::None => "⇏",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_and_range() {
        let s = Spread::of([3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(s.show(1), "2.5 (1.0–10.0)");
        assert_eq!(Spread::of([2.0, 2.0]).show(2), "2.00", "no range when the repeats agree");
    }

    #[test]
    fn spread_json_keeps_the_shape_and_spreads_every_number() {
        let v = spread_json(&[
            serde_json::json!({"case": "a", "x": 1.0, "d": {"p50": 2}}),
            serde_json::json!({"case": "a", "x": 3.0, "d": {"p50": 4}}),
        ]);
        assert_eq!(v["case"], "a");
        assert_eq!(v["x"]["median"], 2.0);
        assert_eq!(v["d"]["p50"]["max"], 4.0);
    }

    #[test]
    fn a_link_is_established_only_when_every_repeat_agrees() {
        assert!(Agreement::of([true, true, true]).established());
        assert_eq!(Agreement::of([true, false, true]), Agreement::Some { held: 2, of: 3 });
        assert_eq!(Agreement::of([false, false]), Agreement::None);
    }
}
