//! The `kvscope` command line: one CLI over the engine, the lab, the server
//! and the simulator.

#![forbid(unsafe_code)]

mod arg_values;
mod capacity_table;
mod cmd_bench;
mod cmd_exercise;
mod cmd_generate;
mod cmd_lab;
mod cmd_lab_fleet;
mod cmd_lab_target;
mod cmd_serve;
mod cmd_sim;
mod fleet;
mod fleet_lab_args;
mod lab_args;
mod lab_backends;
mod machine;
mod preflight;
mod rate_search;
mod sim_args;
mod sim_calibrate;
mod sim_fleet;

use clap::{Parser, Subcommand};

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
    Lab(Box<lab_args::LabArgs>),
    /// The OpenAI-compatible server with /metrics, /kv, /events and a live KV view at /.
    Serve(cmd_serve::ServeCommand),
    /// Capacity questions on model and hardware presets, with a cost model
    /// instead of a real model (and `--calibrate` to fit this CPU).
    Sim(sim_args::SimArgs),
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
        Command::Lab(args) => cmd_lab::run(*args),
        Command::Serve(cmd) => cmd_serve::run(cmd),
        Command::Sim(args) => cmd_sim::run(args),
        Command::Fleet(args) => fleet::run(args),
        Command::Bench(cmd) => cmd_bench::run(cmd),
        Command::Exercise(cmd) => cmd_exercise::run(cmd),
    }
}
