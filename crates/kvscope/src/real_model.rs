//! Loading the real model once, for every command that needs it.

use crate::ModelArg;
use anyhow::Context;
use kvscope_core::{KvDtype, PoolConfig};
use kvscope_model::chat_template::ChatTemplate;
use kvscope_model::kv_storage::{self, KvStorageError};
use kvscope_model::llama::LlamaModel;
use kvscope_model::model::Model;
use kvscope_model::tokenizer::Tokenizer;
use kvscope_model::ModelExecutor;
use std::path::PathBuf;
use std::sync::Arc;

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
    pub fn load(arg: &ModelArg) -> anyhow::Result<LoadedModel> {
        check_kv_dtype(arg.kv_dtype())?;
        let path = kvscope_model::fetch::resolve_model(arg.model.as_deref())?;
        eprintln!("kvscope: loading {} ({} kernels)", path.display(), arg.kernels.describe());
        let Model { path, llama, tokenizer, chat_template } = Model::load_with(&path, arg.kernels)
            .with_context(|| format!("cannot load the model at {}", path.display()))?;
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

/// `--kv-dtype` must name a format the CPU engine stores; checked before the
/// model loads.
pub fn check_kv_dtype(dtype: KvDtype) -> anyhow::Result<()> {
    Ok(kv_storage::check_cpu_dtype(dtype)?)
}
