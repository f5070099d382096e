//! `kvscope exercise init DIR` and `kvscope exercise check FILE.py`: the
//! student's own block manager, written from a skeleton and graded on the
//! real model.

use crate::arg_values::positive_seconds;
use kvscope_exercise::grade::{grade, GradeConfig, GradingBackend};
use kvscope_exercise::HostConfig;
use kvscope_model::executor::ModelExecutor;
use kvscope_model::LoadedModel;
use kvscope_model::ModelArgs;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum ExerciseCommand {
    /// Write the starting skeleton (block_manager.py to fill in, and the
    /// sequence.py it runs on) into DIR.
    Init {
        #[arg(default_value = "lab4-exercise")]
        dir: PathBuf,
    },
    /// Grade a nano-vLLM-style BlockManager on the real model: exit 0 only
    /// if every property holds.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The student's block_manager.py.
    pub file: PathBuf,
    /// The Python interpreter that runs it.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Seconds one call into the student's code may take.
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    pub call_timeout: f64,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(cmd: ExerciseCommand) -> anyhow::Result<()> {
    match cmd {
        ExerciseCommand::Init { dir } => {
            let files = kvscope_exercise::skeleton::write_skeleton(&dir)?;
            for f in &files {
                println!("wrote {}", f.display());
            }
            println!(
                "next: fill in the TODOs of {}, then `kvscope exercise check {}`",
                files[0].display(),
                files[0].display()
            );
            Ok(())
        }
        ExerciseCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    if !args.file.is_file() {
        anyhow::bail!(
            "{} is not a file: give the path of your block_manager.py (`kvscope exercise init DIR` writes one)",
            args.file.display()
        );
    }
    let model = LoadedModel::load(&args.model)?;
    let mut backend = RealModel { model };
    let mut host = HostConfig::new(&args.file);
    host.python = args.python;
    host.call_timeout = Duration::from_secs_f64(args.call_timeout);
    let graded = grade(&mut backend, &GradeConfig::new(host), &mut |w| eprintln!("workload {w} ..."));
    print!("{}", kvscope_exercise::report::render(&graded));
    if !graded.passed() {
        std::process::exit(1);
    }
    Ok(())
}

struct RealModel {
    model: LoadedModel,
}

impl GradingBackend for RealModel {
    type Exec = ModelExecutor;
    fn executor(&mut self, num_blocks: usize, block_size: usize) -> Result<ModelExecutor, String> {
        let pool = kvscope_core::PoolConfig::new(num_blocks, block_size, self.model.kv_bytes_per_token(), true);
        self.model.executor(&pool).map_err(|e| e.to_string())
    }
    fn vocab_size(&self) -> Option<usize> {
        Some(self.model.llama.config().vocab_size)
    }
    fn max_model_len(&self) -> usize {
        self.model.llama.config().context_length
    }
}
