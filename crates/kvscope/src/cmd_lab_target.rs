//! `kvscope lab --target URL`: the lab against a running engine (see
//! kvscope-lab's `target` module). Knobs only the engine can change are
//! refused here, each with the engine flag to restart it with.

use crate::lab_args::{LabArgs, LangArg, ScaleArg};
use anyhow::Context;
use kvscope_lab::report::Lang;
use kvscope_lab::target::kv_estimate::{from_gguf_header, LocalModel};
use kvscope_lab::target::replicas::ReplicaPlan;
use kvscope_lab::target::{engine_id, report, run_target, TargetConfig, TargetError, TargetWorkload};
use kvscope_wire::EngineFamily;
use std::time::Duration;

/// The engine's flag for a knob the client cannot change.
fn engine_flag(knob: &str, family: Option<EngineFamily>) -> String {
    let (vllm, sglang, llamacpp, kvscope) = match knob {
        "--block-size" => ("--block-size", "--page-size", "(not paged)", "--block-size"),
        "--kv-memory" => ("--gpu-memory-utilization", "--mem-fraction-static", "--ctx-size", "--kv-blocks"),
        "--kv-blocks" => ("--num-gpu-blocks-override", "--max-total-tokens", "--ctx-size", "--kv-blocks"),
        _ => ("--max-num-seqs", "--max-running-requests", "--parallel", "--max-num-seqs"),
    };
    match family {
        Some(EngineFamily::Vllm) => format!("vLLM {vllm}"),
        Some(EngineFamily::Sglang) => format!("SGLang {sglang}"),
        Some(EngineFamily::LlamaCpp) => format!("llama-server {llamacpp}"),
        Some(EngineFamily::Kvscope) => format!("kvscope serve {kvscope}"),
        None => format!("vLLM {vllm}, SGLang {sglang}, llama-server {llamacpp}, kvscope serve {kvscope}"),
    }
}

/// Refuses what only the engine decides (a knob, or a `--sweep` of one),
/// and what the target path does not run.
fn refuse_local_knobs(args: &LabArgs, family: Option<EngineFamily>) -> anyhow::Result<()> {
    let given = [
        ("--block-size", args.block_size.is_some()),
        ("--kv-memory", args.kv_memory.is_some()),
        ("--kv-blocks", args.kv_blocks.is_some()),
        ("--max-running", args.max_running.is_some()),
    ];
    if let Some((knob, _)) = given.iter().find(|(_, g)| *g) {
        anyhow::bail!(
            "{knob} cannot be changed from the client: restart the engine with {} and run the lab again",
            engine_flag(knob, family)
        );
    }
    if let Some(sweep) = args.engine_sweeps().first() {
        let knob = format!("--{}", sweep.knob.name());
        anyhow::bail!(
            "--sweep {}=… cannot be swept from the client: restart the engine with {} at each value and run the lab on each (the client sweeps concurrency=… or rate=…)",
            sweep.knob.name(),
            engine_flag(&knob, family)
        );
    }
    // Load sweeps (concurrency=, rate=) run on a target; engine sweeps
    // were refused above with the engine's flag.
    if let Some(flag) = args.first_local_only_flag().filter(|f| *f != "--sweep") {
        anyhow::bail!("{flag} is not available with --target yet: drop it (the target runs the lab's cases once)");
    }
    Ok(())
}

/// `--model PATH`, else the default model if it is already cached (never
/// fetched for this): its GGUF header's KV size, for a target serving it.
fn local_model(explicit: Option<&std::path::Path>) -> Option<LocalModel> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => kvscope_model::fetch::cache_dir().ok()?.join(kvscope_model::fetch::DEFAULT_MODEL_FILE),
    };
    let gguf = kvscope_model::gguf::Gguf::open(&path).ok()?;
    let config = kvscope_model::config::ModelConfig::from_gguf(&gguf).ok()?;
    let name = path.file_stem()?.to_string_lossy().into_owned();
    let estimate = from_gguf_header(&path.display().to_string(), config.n_layers, config.n_kv_heads, config.head_dim);
    Some(LocalModel { name, estimate })
}

pub fn run(args: &LabArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let url = t.target.clone().expect("called with --target");
    let family = engine_id::parse_family(&t.engine).map_err(anyhow::Error::msg)?;
    refuse_local_knobs(args, family)?;
    crate::preflight::check_out_dir(&args.out)?;
    let model_config = match &t.model_config {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("reading --model-config {}", p.display()))?,
        )),
        None => None,
    };
    let scale = args.scale.unwrap_or(if args.quick { ScaleArg::Quick } else { ScaleArg::Lab });
    let cfg = TargetConfig {
        url: url.trim_end_matches('/').to_string(),
        api_key: t.api_key.clone(),
        engine: family,
        model_config,
        metrics_interval: Duration::from_millis(t.metrics_interval_ms),
        kv_events: t.kv_events.clone(),
        kv_events_replay: t.kv_events_replay.clone(),
        scale: scale.into(),
        seed: args.seed,
        arrival_rate: args.arrival_rate,
        request_timeout: Duration::from_secs(t.request_timeout_s),
        local_model: local_model(args.model.model.as_deref()),
        sweeps: args.load_sweeps(),
        slo_ttft: args.slo_ttft,
        failure_budget: args.failure_budget,
        replicas: ReplicaPlan { metrics: t.replica_metrics.clone(), kv_events: t.replica_kv_events.clone() },
        workload: TargetWorkload::LabCases,
    };
    let lang = if args.lang == LangArg::Zh { Lang::Zh } else { Lang::En };
    eprintln!("kvscope lab --target {}: scale {scale:?}", cfg.url);
    let runtime = tokio::runtime::Runtime::new()?;
    let results = runtime.block_on(run_target(&cfg, &mut |step| eprintln!("  {step}")));
    match results {
        Ok(res) => {
            report::write(&res, &args.out, lang)
                .with_context(|| format!("writing the report into {}", args.out.display()))?;
            for p in &res.problems {
                eprintln!("warning: {p}");
            }
            eprintln!("wrote {}", args.out.join("report.md").display());
            Ok(())
        }
        Err(e @ TargetError::Unreachable { .. }) => {
            let _ = report::unreachable(&cfg.url, &e.to_string(), &args.out);
            Err(anyhow::anyhow!(e).context(format!("partial report in {}", args.out.join("report.md").display())))
        }
        Err(e) => Err(e.into()),
    }
}
