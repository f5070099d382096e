//! Which engine the target is: its metric family (detected from the names
//! `/metrics` exports, or forced by `--engine`), its name and version
//! (`/version` or llama-server's `/props` where they answer, else
//! `/v1/models`' `owned_by`, else the family), its model, and its KV pool where it exports one.

use kvscope_client::{CompletionClient, ModelCard};
use kvscope_wire::metric_family::source;
use kvscope_wire::{EngineFamily, MetricsPage, Quantity};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct EngineIdentity {
    pub family: &'static str,
    /// `detected from /metrics` or `forced by --engine`.
    pub family_source: String,
    pub name: String,
    pub version: Option<String>,
    pub model: Option<String>,
    pub vocab_size: Option<usize>,
    pub max_model_len: Option<usize>,
    pub pool: PoolReport,
}

/// The KV pool as the engine reports it, each figure with the metric it
/// came from; `None`: not exported.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PoolReport {
    pub block_size: Option<usize>,
    pub total_blocks: Option<usize>,
    /// The pool in tokens, where the engine says it in tokens (SGLang).
    pub pool_tokens: Option<usize>,
    /// KV bytes per block, where the engine says it (kvscope's
    /// `cache_config_info{bytes_per_block}`).
    pub bytes_per_block: Option<u64>,
    pub block_size_metric: Option<&'static str>,
    pub total_blocks_metric: Option<&'static str>,
}

impl PoolReport {
    pub fn read(family: EngineFamily, page: &MetricsPage) -> PoolReport {
        let read = |q| source(family, q).and_then(|s| s.read(page).map(|v| (v, s.metric_name())));
        let block_size = read(Quantity::BlockSize);
        let total_blocks = read(Quantity::TotalBlocks);
        let info = format!("{}cache_config_info", family.prefix());
        PoolReport {
            block_size: block_size.map(|(v, _)| v as usize),
            total_blocks: total_blocks.map(|(v, _)| v as usize),
            pool_tokens: read(Quantity::PoolTokens).map(|(v, _)| v as usize),
            bytes_per_block: page.label(&info, "bytes_per_block").and_then(|v| v.parse().ok()),
            block_size_metric: block_size.map(|(_, m)| m),
            total_blocks_metric: total_blocks.map(|(_, m)| m),
        }
    }

    /// The pool's size in tokens: blocks × block size, or as exported.
    pub fn tokens(&self) -> Option<usize> {
        self.block_size.zip(self.total_blocks).map(|(b, n)| b * n).or(self.pool_tokens)
    }
}

/// `--engine`'s values: a family, or `auto` (detect).
pub fn parse_family(name: &str) -> Result<Option<EngineFamily>, String> {
    if name == "auto" {
        return Ok(None);
    }
    EngineFamily::ALL
        .into_iter()
        .find(|f| f.name() == name)
        .map(Some)
        .ok_or_else(|| format!("--engine {name:?}: give auto, vllm, sglang, llamacpp or kvscope"))
}

/// The family: forced, or detected from `page`'s names.
pub fn family_of(forced: Option<EngineFamily>, page: &MetricsPage) -> Result<(EngineFamily, String), String> {
    match forced {
        Some(f) => Ok((f, "forced by --engine".into())),
        None => EngineFamily::detect(page).map(|f| (f, "detected from the names on /metrics".into())).ok_or_else(
            || "the target's /metrics has no vllm:, sglang:, llamacpp: or kvscope: metric: start the engine with its metrics on (llama-server --metrics) or name the engine with --engine".to_string(),
        ),
    }
}

/// The engine's version: `/version`'s `version` (vLLM, kvscope serve),
/// else `/props`' `build_info` (llama-server: `b1-0c1e570` on the build
/// the lab was run against), else none.
pub async fn version(client: &CompletionClient) -> Option<String> {
    match json_field(client, "/version", "version").await {
        Some(v) => Some(v),
        None => json_field(client, "/props", "build_info").await,
    }
}

/// One string field of a JSON document the target serves at `path`.
async fn json_field(client: &CompletionClient, path: &str, field: &str) -> Option<String> {
    let (status, text) = client.get_text(path).await.ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v[field].as_str().map(str::to_string)
}

pub fn identity(
    family: (EngineFamily, String),
    card: &ModelCard,
    version: Option<String>,
    page: &MetricsPage,
) -> EngineIdentity {
    EngineIdentity {
        family: family.0.name(),
        family_source: family.1,
        name: card.owned_by.clone().unwrap_or_else(|| family.0.name().to_string()),
        version,
        model: card.id.clone(),
        vocab_size: card.vocab_size,
        max_model_len: card.max_model_len,
        pool: PoolReport::read(family.0, page),
    }
}
