//! The one model loader: the model the [`ModelArgs`] name, loaded once
//! for every command that runs it (the CLI's and the server's).

use crate::chat_template::ChatTemplate;
use crate::kv_storage::{self, KvStorageError};
use crate::llama::LlamaModel;
use crate::model::{Model, ModelError};
use crate::model_args::ModelArgs;
use crate::tokenizer::Tokenizer;
use crate::ModelExecutor;
use kvscope_core::{KvDtype, PoolConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// Why the model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    KvDtype(#[from] KvStorageError),
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error("cannot load the model at {}: {source}", path.display())]
    Model { path: PathBuf, source: Box<ModelError> },
}

/// A model loaded for the engine: weights, tokenizer, chat template, and
/// the KV format every pool made for it uses.
pub struct LoadedModel {
    pub path: PathBuf,
    pub llama: Arc<LlamaModel>,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    /// How every KV pool made for this model stores K and V (`--kv-dtype`).
    pub kv_dtype: KvDtype,
}

impl LoadedModel {
    /// `--model PATH` if given, else the default model (fetched on first
    /// use), on the kernels `--kernels` names.
    pub fn load(arg: &ModelArgs) -> Result<LoadedModel, LoadError> {
        arg.check_kv_dtype()?;
        let path = crate::fetch::resolve_model(arg.model.as_deref())?;
        eprintln!("kvscope: loading {} ({} kernels)", path.display(), arg.kernels.describe());
        let Model { path, llama, tokenizer, chat_template } = Model::load_with(&path, arg.kernels)
            .map_err(|source| LoadError::Model { path: path.clone(), source: Box::new(source) })?;
        Ok(LoadedModel { path, llama: Arc::new(llama), tokenizer, chat_template, kv_dtype: arg.kv_dtype() })
    }

    /// Bytes one token's KV takes in this model's pools.
    pub fn kv_bytes_per_token(&self) -> u64 {
        kv_storage::bytes_per_token(self.llama.config(), self.kv_dtype) as u64
    }

    /// An executor over a fresh KV store laid out as `pool` (the engine
    /// configuration's), in this model's KV format.
    pub fn executor(&self, pool: &PoolConfig) -> Result<ModelExecutor, KvStorageError> {
        ModelExecutor::for_pool(self.llama.clone(), self.kv_dtype, pool, 0)
    }

    /// "int8 (avx512-vnni)": the kernels and instruction set that run.
    pub fn kernels(&self) -> String {
        self.llama.kernels().describe()
    }

    pub fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
    }
}
