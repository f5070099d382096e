//! The `kvscope` command line: one CLI over the engine, the lab, the server
//! and the simulator.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kvscope", version, about = "An LLM inference engine that makes the KV cache visible as state")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
