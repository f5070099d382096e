//! Text ↔ token ids, built from the GGUF's own vocabulary with HF `tokenizers`.
//!
//! The ids must equal llama.cpp's for the same model, because the golden
//! references (and anyone comparing with llama.cpp) are expressed in them.
//! That hinges on the pre-tokenizer: llama.cpp's `smollm` pre-tokenizer splits
//! every digit on its own before the GPT-2 regex, which HF expresses as
//! `Sequence[Digits(individual_digits), ByteLevel]`. A plain ByteLevel (what
//! transformers builds from a GGUF) differs when ≥ 2 whitespace characters
//! precede a digit.

use crate::gguf::{Gguf, MetaValue};
use kvscope_core::ids::TokenId;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, DecoderWrapper};

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Texts that end generation when they are control tokens; llama.cpp marks
/// the same ones end-of-generation by name.
const EOG_TEXTS: &[&str] =
    &["<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|return|>"];

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("GGUF metadata lacks {0}; the file carries no usable tokenizer")]
    Missing(&'static str),
    #[error("tokenizer model {0:?} is not supported (supported: gpt2 byte-level BPE)")]
    UnsupportedModel(String),
    #[error("pre-tokenizer {0:?} is not supported (supported: smollm, default); add its rules in tokenizer.rs")]
    UnsupportedPre(String),
    #[error("malformed tokenizer metadata: {0}")]
    Malformed(String),
    #[error("tokenizer failed: {0}")]
    Backend(String),
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    UnknownId { id: TokenId, vocab: usize },
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    vocab_size: usize,
    eog_ids: Vec<TokenId>,
    bos_id: Option<TokenId>,
    add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab_size", &self.vocab_size).field("eog_ids", &self.eog_ids).finish()
    }
}

fn strings<'a>(g: &'a Gguf, key: &'static str) -> Result<Vec<&'a str>, TokenizerError> {
    let arr = g.get(key).and_then(MetaValue::as_array).ok_or(TokenizerError::Missing(key))?;
    arr.iter()
        .map(|v| v.as_str().ok_or_else(|| TokenizerError::Malformed(format!("{key} holds a non-string"))))
        .collect()
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Self, TokenizerError> {
        let model = g
            .get("tokenizer.ggml.model")
            .and_then(MetaValue::as_str)
            .ok_or(TokenizerError::Missing("tokenizer.ggml.model"))?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let pre = g.get("tokenizer.ggml.pre").and_then(MetaValue::as_str).unwrap_or("default");
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            "default" | "gpt2" => byte_level.into(),
            other => return Err(TokenizerError::UnsupportedPre(other.to_string())),
        };

        let tokens = strings(g, "tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings(g, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| TokenizerError::Malformed(format!("merge {m:?} has no space")))
            })
            .collect::<Result<_, _>>()?;
        let types: Vec<i64> = match g.get("tokenizer.ggml.token_type").and_then(MetaValue::as_array) {
            Some(a) => a.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::Malformed("token_type and tokens differ in length".into()));
        }

        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizerError::Backend(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::default())));

        // Control tokens are matched in the raw text before BPE (llama.cpp's
        // parse_special=true), so a typed "<|im_start|>" is one id.
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &ty)| ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED)
            .map(|(t, &ty)| AddedToken::from(t.to_string(), ty == TOKEN_TYPE_CONTROL).normalized(false))
            .collect();
        inner.add_special_tokens(added).map_err(|e| TokenizerError::Backend(e.to_string()))?;

        let id_of = |key: &str| {
            g.get(key).and_then(MetaValue::as_u64).map(|v| v as TokenId).filter(|&v| (v as usize) < tokens.len())
        };
        let mut eog_ids: Vec<TokenId> =
            ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
                .iter()
                .filter_map(|k| id_of(k))
                .collect();
        for (i, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
            if ty == TOKEN_TYPE_CONTROL && EOG_TEXTS.contains(t) {
                eog_ids.push(i as TokenId);
            }
        }
        eog_ids.sort_unstable();
        eog_ids.dedup();

        Ok(Tokenizer {
            inner,
            vocab_size: tokens.len(),
            eog_ids,
            bos_id: id_of("tokenizer.ggml.bos_token_id"),
            add_bos: g.get("tokenizer.ggml.add_bos_token").and_then(MetaValue::as_bool).unwrap_or(false),
        })
    }

    /// Token ids for `text`, special-token strings parsed as their ids, with
    /// BOS prepended only when the model asks for it (SmolLM2 does not).
    pub fn encode(&self, text: &str) -> Result<Vec<TokenId>, TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(|e| TokenizerError::Backend(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos {
            ids.extend(self.bos_id);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text for `ids`; special tokens are rendered as their text unless
    /// `skip_special`. Byte sequences that are not UTF-8 (a cut multi-byte
    /// character) come out as U+FFFD.
    pub fn decode(&self, ids: &[TokenId], skip_special: bool) -> Result<String, TokenizerError> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(TokenizerError::UnknownId { id, vocab: self.vocab_size });
        }
        self.inner.decode(ids, skip_special).map_err(|e| TokenizerError::Backend(e.to_string()))
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Ids that end generation (EOS, end-of-turn and their kin).
    pub fn eog_ids(&self) -> &[TokenId] {
        &self.eog_ids
    }

    pub fn token_text(&self, id: TokenId) -> Option<String> {
        self.inner.id_to_token(id)
    }
}
