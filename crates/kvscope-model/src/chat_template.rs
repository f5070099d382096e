//! Rendering a conversation into the prompt text the model was trained on,
//! with the Jinja template stored in the GGUF (`tokenizer.chat_template`).
//!
//! The template is the single source of truth: SmolLM2's inserts a default
//! system turn when the conversation has none, which a hand-written "chatml"
//! formatter (like llama.cpp's built-in one) silently drops.

use crate::gguf::{Gguf, MetaValue};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage { role: role.to_string(), content: content.to_string() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the model has no tokenizer.chat_template; send a raw prompt instead of chat messages")]
    Missing,
    #[error("chat template does not compile: {0}")]
    Compile(String),
    #[error("chat template failed to render these messages: {0}")]
    Render(String),
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

const NAME: &str = "chat";

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = minijinja::Environment::new();
        // HF renders chat templates with these two options; templates are
        // written against them.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned(NAME, source.to_string()).map_err(|e| TemplateError::Compile(e.to_string()))?;
        Ok(ChatTemplate { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    pub fn from_gguf(g: &Gguf) -> Result<Self, TemplateError> {
        let src = g.get("tokenizer.chat_template").and_then(MetaValue::as_str).ok_or(TemplateError::Missing)?;
        let token = |key: &str| -> String {
            let tokens = g.get("tokenizer.ggml.tokens").and_then(MetaValue::as_array);
            g.get(key)
                .and_then(MetaValue::as_u64)
                .and_then(|id| tokens.and_then(|t| t.get(id as usize)))
                .and_then(MetaValue::as_str)
                .unwrap_or("")
                .to_string()
        };
        Self::new(src, &token("tokenizer.ggml.bos_token_id"), &token("tokenizer.ggml.eos_token_id"))
    }

    /// The prompt text for `messages`, ending with the assistant's turn
    /// header when `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, TemplateError> {
        let tmpl = self.env.get_template(NAME).map_err(|e| TemplateError::Compile(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| TemplateError::Render(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML_WITH_DEFAULT_SYSTEM: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nDefault<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn inserts_default_system_turn_only_when_missing() {
        let t = ChatTemplate::new(CHATML_WITH_DEFAULT_SYSTEM, "", "").unwrap();
        let s = t.render(&[ChatMessage::new("user", "Hi")], true).unwrap();
        assert_eq!(s, "<|im_start|>system\nDefault<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        let s = t.render(&[ChatMessage::new("system", "S"), ChatMessage::new("user", "Hi")], false).unwrap();
        assert_eq!(s, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn template_errors_are_values() {
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(TemplateError::Compile(_))));
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let e = t.render(&[], true).unwrap_err();
        assert!(e.to_string().contains("roles must alternate"), "{e}");
    }
}
