//! The `kvscope` command line: one CLI over the engine, the lab, the server
//! and the simulator.

#![forbid(unsafe_code)]

mod capacity_table;
mod cmd_bench;
mod cmd_exercise;
mod cmd_generate;
mod cmd_lab;
mod cmd_serve;
mod cmd_sim;
mod fleet;
mod lab_backends;
mod machine;
mod preflight;
mod real_model;
mod sim_calibrate;
mod sim_fleet;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kvscope", version, about = "An LLM inference engine that makes the KV cache visible as state")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the default model (SmolLM2-135M-Instruct, GGUF Q4_1) available offline.
    FetchModel,
    /// Generate a continuation of one prompt.
    Generate(cmd_generate::GenerateArgs),
    /// Run Lab 4: the KV state and capacity experiment, writing its artifacts.
    Lab(cmd_lab::LabArgs),
    /// The OpenAI-compatible server with /metrics, /kv, /events and a live KV view at /.
    Serve(cmd_serve::ServeCommand),
    /// Capacity questions on model and hardware presets, with a cost model
    /// instead of a real model (and `--calibrate` to fit this CPU).
    Sim(cmd_sim::SimArgs),
    /// N `kvscope serve` replicas behind the SGLang Model Gateway
    /// (installed from PyPI on first use): the gateway routes, each replica
    /// keeps its own KV pool.
    Fleet(fleet::FleetArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(cmd_bench::BenchCommand),
    /// The course exercise: write your own nano-vLLM-style BlockManager in
    /// Python (`init`) and grade it inside the real engine (`check`).
    #[command(subcommand)]
    Exercise(cmd_exercise::ExerciseCommand),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::FetchModel => {
            let path = kvscope_model::fetch::ensure_default_model()?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Generate(args) => cmd_generate::run(args),
        Command::Lab(args) => cmd_lab::run(args),
        Command::Serve(cmd) => cmd_serve::run(cmd),
        Command::Sim(args) => cmd_sim::run(args),
        Command::Fleet(args) => fleet::run(args),
        Command::Bench(cmd) => cmd_bench::run(cmd),
        Command::Exercise(cmd) => cmd_exercise::run(cmd),
    }
}

/// `--model PATH`, `--kernels` and `--kv-dtype` as every command that runs
/// the real model spells them.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ModelArg {
    /// A GGUF file to use instead of the default model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Linear-layer numerics: `int8` (the fast engine: int8 activations ×
    /// stored Q4_1/Q8_0 weights) or `f32` (dequantized weights, f32 FMAs:
    /// the reference path).
    #[arg(long, default_value = "int8")]
    pub kernels: kvscope_model::kernels::Kernels,
    /// How the KV cache stores K and V: `f16` (the default: half the bytes
    /// of f32), `int8` (a quarter, plus one scale per token and head) or
    /// `f32` (exact: the reference path). A pool holds bytes ÷ bytes per
    /// token tokens. (With `lab --executor sim --model-preset`, also bf16 or
    /// fp8; the preset's own bf16 when not given.)
    #[arg(long, alias = "kv-cache-dtype")]
    pub kv_dtype: Option<kvscope_core::KvDtype>,
}

impl ModelArg {
    /// `--kv-dtype`, or the CPU engine's default.
    pub fn kv_dtype(&self) -> kvscope_core::KvDtype {
        self.kv_dtype.unwrap_or(kvscope_model::kv_storage::DEFAULT_KV_DTYPE)
    }
}
