//! Loading the real model once, for every command that needs it.

use anyhow::Context;
use kvscope_model::chat_template::ChatTemplate;
use kvscope_model::llama::LlamaModel;
use kvscope_model::model::Model;
use kvscope_model::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct LoadedModel {
    pub path: PathBuf,
    pub llama: Arc<LlamaModel>,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
}

impl LoadedModel {
    /// `--model PATH` if given, else the default model (fetched on first use).
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<LoadedModel> {
        let path = kvscope_model::fetch::resolve_model(explicit)?;
        eprintln!("kvscope: loading {}", path.display());
        let Model { path, llama, tokenizer, chat_template } =
            Model::load(&path).with_context(|| format!("cannot load the model at {}", path.display()))?;
        Ok(LoadedModel { path, llama: Arc::new(llama), tokenizer, chat_template })
    }

    pub fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
    }
}
