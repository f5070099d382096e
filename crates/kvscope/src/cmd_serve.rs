//! `kvscope serve`: the OpenAI-compatible server over the real model.

use crate::ModelArg;

#[derive(clap::Args, Debug)]
pub struct ServeCommand {
    #[command(flatten)]
    pub serve: kvscope_server::ServeArgs,
    #[command(flatten)]
    pub model: ModelArg,
}

pub fn run(cmd: ServeCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(kvscope_server::real_model::serve_model(&cmd.serve, cmd.model.model.as_deref()))
}
