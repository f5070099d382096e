//! Streaming detokenization. A character may be split across tokens (byte
//! fallback, multi-byte UTF-8); text is emitted only once it is complete,
//! and a decoder's context-dependent spacing is respected by always decoding
//! a short window that starts a little before the new tokens.

use crate::model::TextModel;
use kvscope_core::TokenId;

#[derive(Debug, Default)]
pub struct IncrementalDetokenizer {
    ids: Vec<TokenId>,
    /// Start of the window decoded for context.
    prefix_offset: usize,
    /// Tokens before this one have had their text emitted.
    read_offset: usize,
}

impl IncrementalDetokenizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token; returns the text that became complete.
    pub fn push(&mut self, model: &dyn TextModel, id: TokenId) -> String {
        self.ids.push(id);
        let prefix = decode(model, &self.ids[self.prefix_offset..self.read_offset]);
        let full = decode(model, &self.ids[self.prefix_offset..]);
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') {
            if let Some(new) = full.get(prefix.len()..) {
                let new = new.to_string();
                self.prefix_offset = self.read_offset;
                self.read_offset = self.ids.len();
                return new;
            }
        }
        String::new()
    }

    /// The end of the stream: whatever is left, complete or not.
    pub fn flush(&mut self, model: &dyn TextModel) -> String {
        let prefix = decode(model, &self.ids[self.prefix_offset..self.read_offset]);
        let full = decode(model, &self.ids[self.prefix_offset..]);
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        match full.get(prefix.len()..) {
            Some(rest) if full.starts_with(&prefix) => rest.to_string(),
            _ => String::new(),
        }
    }
}

fn decode(model: &dyn TextModel, ids: &[TokenId]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    model.detokenize(ids).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChatMessage;

    /// One token per byte, like a byte-fallback vocabulary.
    struct Bytes;
    impl TextModel for Bytes {
        fn model_name(&self) -> String {
            "bytes".into()
        }
        fn tokenize(&self, text: &str) -> anyhow::Result<Vec<TokenId>> {
            Ok(text.bytes().map(u32::from).collect())
        }
        fn detokenize(&self, ids: &[TokenId]) -> anyhow::Result<String> {
            Ok(String::from_utf8_lossy(&ids.iter().map(|&i| i as u8).collect::<Vec<_>>()).into_owned())
        }
        fn render_chat(&self, _: &[ChatMessage]) -> anyhow::Result<String> {
            Ok(String::new())
        }
        fn eos_token_ids(&self) -> Vec<TokenId> {
            Vec::new()
        }
        fn vocab_size(&self) -> usize {
            256
        }
        fn max_context(&self) -> usize {
            1024
        }
    }

    #[test]
    fn multi_byte_characters_split_across_tokens_come_out_whole() {
        let text = "KV é 中文 😀!";
        let mut d = IncrementalDetokenizer::new();
        let mut pieces = Vec::new();
        for id in Bytes.tokenize(text).unwrap() {
            let piece = d.push(&Bytes, id);
            assert!(!piece.contains('\u{FFFD}'), "an incomplete character leaked: {piece:?}");
            pieces.push(piece);
        }
        pieces.push(d.flush(&Bytes));
        assert_eq!(pieces.concat(), text);
        // The emoji's four bytes produce text only at the fourth.
        assert!(pieces.iter().any(|p| p == "😀"));
    }

    #[test]
    fn an_unfinished_character_is_flushed_at_the_end() {
        let mut d = IncrementalDetokenizer::new();
        assert_eq!(d.push(&Bytes, b'a' as u32), "a");
        assert_eq!(d.push(&Bytes, 0xE4), "");
        assert_eq!(d.flush(&Bytes), "\u{FFFD}");
    }
}
