//! `fleet_kv_usage.svg`: each replica's KV usage over time, one panel per
//! routing policy, drawn with the lab's panel row (plots.rs). The values
//! are the replicas' own gauge as polled; a killed replica's line ends at
//! its last answered poll.

use super::policy::PolicyRun;
use crate::plots::{panel_row_svg, PALETTE};
use crate::svg::{Chart, Series};
use kvscope_wire::metric_family::source;
use kvscope_wire::{EngineFamily, Quantity};

pub fn kv_usage_svg(runs: &[PolicyRun], interval_ms: u64) -> String {
    let metric = source(EngineFamily::Kvscope, Quantity::KvUsage).map_or("KV usage", |s| s.metric_name());
    let panels: Vec<(Chart, Vec<Series>)> = runs
        .iter()
        .map(|run| {
            let chart = Chart {
                title: run.policy.clone(),
                x_label: "s since the policy's run began (client clock)".into(),
                y_label: "KV usage %".into(),
                y_min: Some(0.0),
                ..Default::default()
            };
            let series = run
                .kv_usage
                .iter()
                .enumerate()
                .map(|(i, points)| {
                    Series::new(&format!("replica {i}"), PALETTE[i % PALETTE.len()], points.clone()).stepped()
                })
                .collect();
            (chart, series)
        })
        .collect();
    // The gauge counts blocks held by requests in flight: a prefix cached
    // for reuse is not in it, so short requests show as short spikes.
    let subtitle = format!(
        "{metric} per replica (blocks held by requests in flight), polled every {interval_ms} ms; one panel per routing policy"
    );
    panel_row_svg("KV usage per replica over time", &subtitle, &panels)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_panel_per_policy_one_line_per_replica() {
        let mut run = crate::fleet::policy::fixtures::run("cache_aware", 1200.0, None, 0.2);
        run.kv_usage = vec![vec![(0.0, 0.0), (1.0, 12.5)], vec![(0.0, 0.0), (1.0, 3.0)]];
        let mut other = run.clone();
        other.policy = "round_robin".into();
        let svg = super::kv_usage_svg(&[run, other], 100);
        assert!(svg.contains("cache_aware") && svg.contains("round_robin"));
        assert_eq!(svg.matches(">replica 1<").count(), 2, "{svg}");
    }
}
