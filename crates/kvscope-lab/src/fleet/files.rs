//! The files `kvscope lab --fleet N` writes into `--out`: fleet.json
//! (every figure), report.md (zh or en, from the fleet templates),
//! fleet_kv_usage.svg and fleet_cached_blocks.svg (each with a .png), and
//! replicas_<policy>.csv.
//!
//! The CLI writes them after every policy, so a run that stops part-way
//! (a fleet that does not start, a Ctrl-C) still leaves what it had: a
//! partial report.

use super::figure::{cached_blocks_svg, kv_usage_svg};
use super::report_model::FleetModel;
use super::results::FleetResults;
use crate::lang::Lang;
use std::path::{Path, PathBuf};

/// Writes every file; returns their paths.
pub fn write(res: &FleetResults, out: &Path, lang: Lang) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let path = out.join(name);
        std::fs::write(&path, bytes)?;
        written.push(path);
        Ok(())
    };
    let json = serde_json::to_string_pretty(res).map_err(std::io::Error::other)?;
    put("fleet.json", json.as_bytes())?;
    let md = crate::template::render_fleet(&FleetModel::of(res), lang);
    put("report.md", md.as_bytes())?;
    let figures = [
        ("fleet_kv_usage", kv_usage_svg(&res.policies, res.metrics_interval_ms)),
        ("fleet_cached_blocks", cached_blocks_svg(&res.policies, res.metrics_interval_ms)),
    ];
    for (name, svg) in figures {
        put(&format!("{name}.svg"), svg.as_bytes())?;
        let png = crate::png::svg_to_png(&svg).map_err(|e| std::io::Error::other(e.to_string()))?;
        put(&format!("{name}.png"), &png)?;
    }
    for run in res.policies.iter().filter(|r| !r.replicas_csv.is_empty()) {
        put(&format!("replicas_{}.csv", run.policy), run.replicas_csv.as_bytes())?;
    }
    Ok(written)
}
