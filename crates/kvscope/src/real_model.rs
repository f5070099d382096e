//! Loading the real model once, for every command that needs it.

use crate::ModelArg;
use anyhow::Context;
use kvscope_model::chat_template::ChatTemplate;
use kvscope_model::llama::LlamaModel;
use kvscope_model::model::Model;
use kvscope_model::tokenizer::Tokenizer;
use std::path::PathBuf;
use std::sync::Arc;

pub struct LoadedModel {
    pub path: PathBuf,
    pub llama: Arc<LlamaModel>,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
}

impl LoadedModel {
    /// `--model PATH` if given, else the default model (fetched on first
    /// use), on the kernels `--kernels` names.
    pub fn load(arg: &ModelArg) -> anyhow::Result<LoadedModel> {
        let path = kvscope_model::fetch::resolve_model(arg.model.as_deref())?;
        eprintln!("kvscope: loading {} ({} kernels)", path.display(), arg.kernels.describe());
        let Model { path, llama, tokenizer, chat_template } = Model::load_with(&path, arg.kernels)
            .with_context(|| format!("cannot load the model at {}", path.display()))?;
        Ok(LoadedModel { path, llama: Arc::new(llama), tokenizer, chat_template })
    }

    /// "int8 (avx512-vnni)": the kernels and instruction set that run.
    pub fn kernels(&self) -> String {
        self.llama.kernels().describe()
    }

    pub fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
    }
}
