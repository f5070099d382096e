//! Checks a command runs before it loads a model or allocates KV, so that a
//! configuration or an output path that can never work is refused at once
//! instead of after minutes of work (or an OOM kill).

use anyhow::Context;
use std::path::Path;

/// The one configuration check (kvscope-core's), with the pool held to the
/// memory this host has.
pub fn check_engine_config(config: &kvscope_core::EngineConfig) -> anyhow::Result<()> {
    Ok(config.validate_within(kvscope_model::host_memory::available_bytes())?)
}

/// `--out DIR` must be a directory this process can write: it is created
/// if missing and a probe file is written and removed.
pub fn check_out_dir(dir: &Path) -> anyhow::Result<()> {
    let shown = dir.display();
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("--out {shown} is a file, not a directory: give a directory (it is created if missing)");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("--out {shown}: cannot create the directory"))?;
    let probe = dir.join(".kvscope-write-check");
    std::fs::write(&probe, b"").with_context(|| format!("--out {shown}: cannot write into the directory"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
