//! What the lab learns of a target before the first case: which engine it
//! is (from its first `/metrics` page, or `--engine`), what that page
//! holds, and the KV size per token it is estimated by.

use super::engine_id::{self, EngineIdentity};
use super::exposed::Exposed;
use super::kv_estimate::{self, KvEstimate};
use super::{TargetConfig, TargetError};
use kvscope_client::{CompletionClient, ModelCard};
use kvscope_wire::{EngineFamily, MetricsPage};

/// The engine as its first `/metrics` page shows it.
pub struct Identified {
    pub engine: Option<EngineIdentity>,
    pub family: Option<EngineFamily>,
    /// What that page held (more is added by every later scrape).
    pub exposed: Exposed,
}

pub async fn identify(
    cfg: &TargetConfig,
    client: &CompletionClient,
    card: &ModelCard,
    problems: &mut Vec<String>,
) -> Identified {
    // A load balancer in front of `--replica-metrics` has no engine
    // metrics of its own (the SGLang gateway answers 404): expected, the
    // engines' figures are the replicas', so it is no gap to report.
    let behind_balancer = !cfg.replicas.metrics.is_empty();
    let mut problems_here = Vec::new();
    let found = identify_target(cfg, client, card, &mut problems_here).await;
    if !(behind_balancer && found.family.is_none()) {
        problems.extend(problems_here);
    }
    found
}

async fn identify_target(
    cfg: &TargetConfig,
    client: &CompletionClient,
    card: &ModelCard,
    problems: &mut Vec<String>,
) -> Identified {
    let page = match client.get_text("/metrics").await {
        Ok((200, text)) => MetricsPage::parse(&text),
        Ok((status, _)) => {
            problems.push(format!("{}/metrics answered HTTP {status}: no engine metrics in this report", cfg.url));
            MetricsPage::default()
        }
        Err(e) => {
            problems.push(format!("{e:#}: no engine metrics in this report"));
            MetricsPage::default()
        }
    };
    match engine_id::family_of(cfg.engine, &page) {
        Ok(family) => {
            let f = family.0;
            let version = engine_id::version(client).await;
            let engine = engine_id::identity(family, card, version, &page);
            Identified { engine: Some(engine), family: Some(f), exposed: Exposed::of(f, &page) }
        }
        Err(why) => {
            problems.push(why);
            Identified { engine: None, family: None, exposed: Exposed::default() }
        }
    }
}

/// KV bytes per token: `--model-config`, else what the engine reports,
/// else the local model's GGUF when the target serves it; and the
/// vocabulary `--model-config` states.
pub fn estimate(
    cfg: &TargetConfig,
    engine: Option<&EngineIdentity>,
    problems: &mut Vec<String>,
) -> Result<(Option<KvEstimate>, Option<usize>), TargetError> {
    if let Some((path, text)) = &cfg.model_config {
        let (est, vocab) = kv_estimate::from_hf_config(text, path).map_err(TargetError::Setup)?;
        return Ok((Some(est), vocab));
    }
    let reported = engine.and_then(|e| {
        let pool = &e.pool;
        let metric = format!("{}:cache_config_info", e.family);
        pool.bytes_per_block.zip(pool.block_size).map(|(b, s)| kv_estimate::from_engine(b, s, &metric))
    });
    let local = || {
        let local = cfg.local_model.as_ref()?;
        local.serves(engine.and_then(|e| e.model.as_deref())).then(|| local.estimate.clone())
    };
    let found = reported.or_else(local);
    // The fleet's chats report no capacity in requests: no estimate needed.
    if found.is_none() && cfg.workload == super::TargetWorkload::LabCases {
        problems.push("no KV size per token: give the model's config.json with --model-config to estimate it".into());
    }
    Ok((found, None))
}
