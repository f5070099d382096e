//! What the server needs from a model besides its executor: text in, text
//! out, and the facts that bound a request. The executor itself is built on
//! the engine thread by a factory, so it never has to be `Send`.

use kvscope_core::TokenId;
use serde::{Deserialize, Serialize};

/// One chat message as OpenAI's API sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The text side of a model: tokenizer, chat template, vocabulary facts.
pub trait TextModel: Send + Sync + 'static {
    /// The name `/v1/models` lists and responses carry.
    fn model_name(&self) -> String;
    /// Prompt text to token ids (with whatever special prefix the model wants).
    fn tokenize(&self, text: &str) -> anyhow::Result<Vec<TokenId>>;
    /// Token ids to text, special tokens skipped. Incomplete UTF-8 at the end
    /// must come out as U+FFFD (as `String::from_utf8_lossy` does): the
    /// streaming detokenizer waits for the rest of such a character.
    fn detokenize(&self, ids: &[TokenId]) -> anyhow::Result<String>;
    /// The text of one token, for log-probability entries.
    fn token_text(&self, id: TokenId) -> String {
        self.detokenize(&[id]).unwrap_or_default()
    }
    /// Renders a conversation through the chat template, ending with the
    /// assistant's turn opened.
    fn render_chat(&self, messages: &[ChatMessage]) -> anyhow::Result<String>;
    /// Tokens that end generation.
    fn eos_token_ids(&self) -> Vec<TokenId>;
    fn vocab_size(&self) -> usize;
    /// The model's context length in tokens.
    fn max_context(&self) -> usize;
    /// The kernels and instruction set that run the model, e.g.
    /// `("int8", "avx512-vnni")`; `None` for models without such a choice.
    fn kernels(&self) -> Option<(String, String)> {
        None
    }
    /// How the KV cache stores K and V; `None` for models without a real
    /// KV store.
    fn kv_dtype(&self) -> Option<kvscope_core::KvDtype> {
        None
    }
    /// Bytes of text the longest token stands for, if known: text longer
    /// than `max_context() * max_token_bytes()` is surely too long, and is
    /// refused without tokenizing it.
    fn max_token_bytes(&self) -> Option<usize> {
        None
    }
    /// The texts of control tokens (`<|im_start|>`, ...). Chat content that
    /// contains one is refused: the tokenizer would read it as the control
    /// token itself, letting a user's text forge a turn.
    fn special_token_texts(&self) -> Vec<String> {
        Vec::new()
    }
    /// Where the model was loaded from, for a router's `/server_info`.
    fn model_path(&self) -> Option<String> {
        None
    }
    /// The model's architecture as its file names it (GGUF's
    /// `general.architecture`, e.g. `llama`), for `/model_info`.
    fn model_type(&self) -> Option<String> {
        None
    }
}
