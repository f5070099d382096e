//! `kvscope serve`: the OpenAI-compatible server over the real model.

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ServeCommand {
    /// The server's own flags, `--kernels` among them.
    #[command(flatten)]
    pub serve: kvscope_server::ServeArgs,
    /// A GGUF file to serve instead of the default model.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

pub fn run(cmd: ServeCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(kvscope_server::real_model::serve_model(&cmd.serve, cmd.model.as_deref()))
}
