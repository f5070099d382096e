//! `kvscope serve`: the OpenAI-compatible server over the real model.

#[derive(clap::Args, Debug)]
pub struct ServeCommand {
    /// The server's own flags and the model group (`--model`, `--kernels`,
    /// `--kv-dtype`) every model command shares.
    #[command(flatten)]
    pub serve: kvscope_server::ServeArgs,
}

pub fn run(cmd: ServeCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(kvscope_server::real_model::serve_model(&cmd.serve))
}
