//! A stand-in tokenizer for a target whose vocabulary the client does not
//! know: the generator's prose numbered word by word, so the experiment
//! layer can cut prompts to a length in words and the client can send them
//! back as text. The engine's own `usage.prompt_tokens` then says how many
//! tokens it saw, and the report says the prompts were not token-exact.

use kvscope_core::TokenId;
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Default)]
pub struct Words {
    ids: RefCell<HashMap<String, TokenId>>,
    words: RefCell<Vec<String>>,
}

impl Words {
    pub fn tokenize(&self, text: &str) -> Vec<TokenId> {
        let (mut ids, mut words) = (self.ids.borrow_mut(), self.words.borrow_mut());
        text.split_whitespace()
            .map(|w| {
                *ids.entry(w.to_string()).or_insert_with(|| {
                    words.push(w.to_string());
                    (words.len() - 1) as TokenId
                })
            })
            .collect()
    }

    /// How many distinct words have been numbered (the ids below it).
    pub fn len(&self) -> usize {
        self.words.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn text(&self, tokens: &[TokenId]) -> String {
        let words = self.words.borrow();
        let word = |t: &TokenId| words.get(*t as usize).map_or("the", String::as_str);
        tokens.iter().map(word).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_round_trip() {
        let w = super::Words::default();
        let ids = w.tokenize("the cache holds the blocks");
        assert_eq!(ids[0], ids[3]);
        assert_eq!(w.text(&ids), "the cache holds the blocks");
    }
}
