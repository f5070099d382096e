//! Everything loaded from one GGUF file: weights, tokenizer, chat template.

use crate::chat_template::{ChatTemplate, TemplateError};
use crate::gguf::{Gguf, GgufError};
use crate::kernels::Kernels;
use crate::llama::{LlamaModel, LoadError};
use crate::tokenizer::{Tokenizer, TokenizerError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Gguf { path: PathBuf, source: GgufError },
    #[error("{path}: {source}")]
    Weights { path: PathBuf, source: LoadError },
    #[error("{path}: {source}")]
    Tokenizer { path: PathBuf, source: TokenizerError },
    #[error("{path}: {source}")]
    Template { path: PathBuf, source: TemplateError },
}

pub struct Model {
    pub path: PathBuf,
    pub llama: LlamaModel,
    pub tokenizer: Tokenizer,
    /// None when the file carries no chat template (raw prompts only).
    pub chat_template: Option<ChatTemplate>,
}

impl Model {
    /// Load with the default (fastest) kernels.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::load_with(path, Kernels::default())
    }

    pub fn load_with(path: &Path, kernels: Kernels) -> Result<Self, ModelError> {
        let p = || path.to_path_buf();
        let g = Gguf::open(path).map_err(|source| ModelError::Gguf { path: p(), source })?;
        let tokenizer = Tokenizer::from_gguf(&g).map_err(|source| ModelError::Tokenizer { path: p(), source })?;
        let chat_template = match ChatTemplate::from_gguf(&g) {
            Ok(t) => Some(t),
            Err(TemplateError::Missing) => None,
            Err(source) => return Err(ModelError::Template { path: p(), source }),
        };
        let llama = LlamaModel::load_with(&g, kernels).map_err(|source| ModelError::Weights { path: p(), source })?;
        Ok(Model { path: p(), llama, tokenizer, chat_template })
    }
}
