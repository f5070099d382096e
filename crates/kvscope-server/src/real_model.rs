//! The real model behind the server: kvscope-model's tokenizer and chat
//! template as a [`TextModel`], its `ModelExecutor` built on the engine
//! thread. `kvscope serve` is [`serve_model`].

use crate::model::{ChatMessage, TextModel};
use crate::{ServeArgs, ServerConfig};
use kvscope_core::{KvDtype, TokenId};
use kvscope_model::chat_template::{self, ChatTemplate};
use kvscope_model::kernels::Kernels;
use kvscope_model::tokenizer::Tokenizer;
use kvscope_model::{LoadedModel, ModelArgs, ModelExecutor};
use std::path::Path;
use std::sync::Arc;

pub struct ModelText {
    name: String,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    max_context: usize,
    /// Bytes of the longest token's text, and the control tokens' texts.
    max_token_bytes: usize,
    special_texts: Vec<String>,
    kernels: Kernels,
    kv_dtype: KvDtype,
    /// The file served and its architecture, for `/server_info` and `/model_info`.
    source: Option<(String, String)>,
}

impl ModelText {
    fn new(
        name: String,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        max_context: usize,
        kernels: Kernels,
        kv_dtype: KvDtype,
    ) -> Self {
        // A control token is one whose text vanishes when special tokens
        // are skipped. A byte-fragment token decodes to U+FFFD (3 bytes for
        // 1), which only makes the length bound looser, never wrong.
        let mut max_token_bytes = 1;
        let mut special_texts = Vec::new();
        for id in 0..tokenizer.vocab_size() as TokenId {
            let full = tokenizer.decode(&[id], false).unwrap_or_default();
            max_token_bytes = max_token_bytes.max(full.len());
            if !full.is_empty() && tokenizer.decode(&[id], true).is_ok_and(|t| t.is_empty()) {
                special_texts.push(full);
            }
        }
        ModelText {
            name,
            tokenizer,
            template,
            max_context,
            max_token_bytes,
            special_texts,
            kernels,
            kv_dtype,
            source: None,
        }
    }

    /// Names the file the model came from and its architecture.
    fn with_source(mut self, path: &Path, architecture: &str) -> Self {
        self.source = Some((path.display().to_string(), architecture.to_string()));
        self
    }
}

impl TextModel for ModelText {
    fn model_name(&self) -> String {
        self.name.clone()
    }
    fn tokenize(&self, text: &str) -> anyhow::Result<Vec<TokenId>> {
        Ok(self.tokenizer.encode(text)?)
    }
    fn detokenize(&self, ids: &[TokenId]) -> anyhow::Result<String> {
        Ok(self.tokenizer.decode(ids, true)?)
    }
    fn render_chat(&self, messages: &[ChatMessage]) -> anyhow::Result<String> {
        let template = self.template.as_ref().ok_or(chat_template::TemplateError::Missing)?;
        let messages: Vec<chat_template::ChatMessage> =
            messages.iter().map(|m| chat_template::ChatMessage::new(&m.role, &m.content)).collect();
        Ok(template.render(&messages, true)?)
    }
    fn eos_token_ids(&self) -> Vec<TokenId> {
        self.tokenizer.eog_ids().to_vec()
    }
    fn vocab_size(&self) -> usize {
        self.tokenizer.vocab_size()
    }
    fn max_context(&self) -> usize {
        self.max_context
    }
    fn kernels(&self) -> Option<(String, String)> {
        Some((self.kernels.name().into(), self.kernels.isa_name().into()))
    }
    fn kv_dtype(&self) -> Option<KvDtype> {
        Some(self.kv_dtype)
    }
    fn max_token_bytes(&self) -> Option<usize> {
        Some(self.max_token_bytes)
    }
    fn special_token_texts(&self) -> Vec<String> {
        self.special_texts.clone()
    }
    fn model_path(&self) -> Option<String> {
        self.source.as_ref().map(|(path, _)| path.clone())
    }
    fn model_type(&self) -> Option<String> {
        self.source.as_ref().map(|(_, arch)| arch.clone())
    }
}

/// A loaded model split for serving: the text side, the server
/// configuration, and the executor factory for the engine thread.
pub struct Loaded {
    pub config: ServerConfig,
    pub text: Arc<ModelText>,
    pub make_executor: Box<dyn FnOnce() -> anyhow::Result<ModelExecutor> + Send>,
}

/// Loads the model `args.model` names (`path`, a file given apart from
/// the flags, wins over `--model`; the default model, fetched if needed,
/// when neither) through the one model loader, and sizes the server after
/// `args`.
pub fn load(args: &ServeArgs, path: Option<&Path>) -> anyhow::Result<Loaded> {
    let model_args =
        ModelArgs { model: path.map(Path::to_path_buf).or_else(|| args.model.model.clone()), ..args.model.clone() };
    let model = LoadedModel::load(&model_args)?;
    let kernels = model.llama.kernels();
    let cfg = model.llama.config().clone();
    let name = model.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "kvscope".into());
    let bytes_per_block = model.kv_bytes_per_token() * args.block_size as u64;
    let config = args.config(cfg.context_length, model.tokenizer.vocab_size(), bytes_per_block)?;
    config.engine.validate_within(kvscope_model::host_memory::available_bytes())?;
    let LoadedModel { llama, tokenizer, chat_template, kv_dtype, path, .. } = model;
    let text = ModelText::new(name, tokenizer, chat_template, cfg.context_length, kernels, kv_dtype);
    let text = Arc::new(text.with_source(&path, &cfg.arch));
    // The executor is laid out from the engine configuration's pool.
    let pool = config.engine.pool.clone();
    let make_executor = Box::new(move || Ok(ModelExecutor::for_pool(llama, kv_dtype, &pool, 0)?));
    Ok(Loaded { config, text, make_executor })
}

/// `kvscope serve`: loads the model and serves until the process ends.
pub async fn serve_model(args: &ServeArgs) -> anyhow::Result<()> {
    // A bad flag is refused before the model loads.
    args.check()?;
    let args = args.clone();
    let loaded = tokio::task::spawn_blocking(move || load(&args, None)).await??;
    crate::serve(loaded.config, loaded.text, loaded.make_executor).await
}
