//! The fleet's two figures, one panel per routing policy and one line per
//! replica, drawn with the lab's panel row (plots.rs):
//! `fleet_kv_usage.svg` (each replica's KV usage: blocks held by requests
//! in flight) and `fleet_cached_blocks.svg` (blocks each replica keeps for
//! reuse by no request: where the prefixes stay, and how many replicas
//! hold a copy). The values are the replicas' own gauges as polled; a
//! killed replica's line ends at its last answered poll.

use super::policy::PolicyRun;
use crate::plots::{panel_row_svg, PALETTE};
use crate::svg::{Chart, Series};
use kvscope_wire::metric_family::source;
use kvscope_wire::{EngineFamily, Quantity};

pub fn kv_usage_svg(runs: &[PolicyRun], interval_ms: u64) -> String {
    // The gauge counts blocks held by requests in flight: a prefix cached
    // for reuse is not in it, so short requests show as short spikes.
    let about = "(blocks held by requests in flight)";
    let panels = panels(runs, "KV usage %", |run| &run.kv_usage);
    panel_row_svg("KV usage per replica over time", &subtitle(Quantity::KvUsage, about, interval_ms), &panels)
}

pub fn cached_blocks_svg(runs: &[PolicyRun], interval_ms: u64) -> String {
    let about = "(blocks kept for reuse by no request: where the prefixes stay)";
    let panels = panels(runs, "cached blocks", |run| &run.cached_blocks);
    let subtitle = subtitle(Quantity::CachedBlocks, about, interval_ms);
    panel_row_svg("Prefix-cache blocks per replica over time", &subtitle, &panels)
}

fn subtitle(q: Quantity, about: &str, interval_ms: u64) -> String {
    let metric = source(EngineFamily::Kvscope, q).map_or("?", |s| s.metric_name());
    format!("{metric} per replica {about}, polled every {interval_ms} ms; one panel per routing policy")
}

fn panels(
    runs: &[PolicyRun],
    y_label: &str,
    lines: impl Fn(&PolicyRun) -> &Vec<Vec<(f64, f64)>>,
) -> Vec<(Chart, Vec<Series>)> {
    runs.iter()
        .map(|run| {
            let chart = Chart {
                title: run.policy.clone(),
                x_label: "s since the policy's run began (client clock)".into(),
                y_label: y_label.into(),
                y_min: Some(0.0),
                ..Default::default()
            };
            let series = lines(run)
                .iter()
                .enumerate()
                .map(|(i, points)| {
                    Series::new(&format!("replica {i}"), PALETTE[i % PALETTE.len()], points.clone()).stepped()
                })
                .collect();
            (chart, series)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_panel_per_policy_one_line_per_replica() {
        let mut run = crate::fleet::policy::fixtures::run("cache_aware", 1200.0, None, 0.2);
        run.kv_usage = vec![vec![(0.0, 0.0), (1.0, 12.5)], vec![(0.0, 0.0), (1.0, 3.0)]];
        run.cached_blocks = vec![vec![(0.0, 0.0), (1.0, 40.0)], vec![(0.0, 0.0), (1.0, 0.0)]];
        let mut other = run.clone();
        other.policy = "round_robin".into();
        let svg = super::kv_usage_svg(&[run.clone(), other.clone()], 100);
        assert!(svg.contains("cache_aware") && svg.contains("round_robin"));
        assert_eq!(svg.matches(">replica 1<").count(), 2, "{svg}");
        let cached = super::cached_blocks_svg(&[run, other], 100);
        assert!(cached.contains("kvscope:kv_cache_cached_free_blocks per replica"), "{cached}");
        assert_eq!(cached.matches(">replica 1<").count(), 2, "{cached}");
    }
}
