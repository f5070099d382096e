//! A request's way in, before the engine: the body bounded in bytes and
//! time, prompt text bounded before it is tokenized, tokenization (and chat
//! template rendering) off the async workers, chat messages checked.

use crate::error::ApiError;
use crate::model::ChatMessage;
use crate::openai::Prompt;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::Request;
use kvscope_core::TokenId;

/// A prompt as text and token ids: text is tokenized off the async
/// workers, after a cheap length check; ids are checked against the
/// vocabulary.
pub async fn resolve_prompt(state: &AppState, prompt: Prompt) -> Result<(String, Vec<TokenId>), ApiError> {
    match prompt {
        Prompt::Text(text) => {
            check_text_fits(state, text.len(), "prompt")?;
            let model = state.model.clone();
            blocking(state, move || {
                let ids = model.tokenize(&text);
                (text, ids)
            })
            .await
            .and_then(|(text, ids)| {
                let ids = ids
                    .map_err(|e| ApiError::bad_request(&format!("cannot tokenize the prompt: {e}"), Some("prompt")))?;
                Ok((text, ids))
            })
        }
        Prompt::Tokens(ids) => {
            let vocab = state.model.vocab_size();
            if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                return Err(ApiError::bad_request(
                    &format!("token id {bad} is outside the vocabulary (size {vocab})"),
                    Some("prompt"),
                ));
            }
            let max = state.model.max_context();
            if ids.len() > max {
                return Err(ApiError::bad_request(
                    &format!("the prompt has {} tokens, more than the model's context of {max}", ids.len()),
                    Some("prompt"),
                ));
            }
            let model = state.model.clone();
            blocking(state, move || (model.detokenize(&ids).unwrap_or_default(), ids)).await
        }
        Prompt::TextBatch(_) | Prompt::TokensBatch(_) => unreachable!("into_list unpacks batches"),
    }
}

/// The request body, bounded in bytes (413) and in time (408).
pub async fn read_body(state: &AppState, request: Request) -> Result<Bytes, ApiError> {
    let limit = state.limits.max_body_bytes;
    let read = axum::body::to_bytes(request.into_body(), limit);
    match tokio::time::timeout(state.limits.body_timeout, read).await {
        Err(_) => Err(ApiError::timeout(format!(
            "the request body did not arrive within {} s (--body-timeout-s)",
            state.limits.body_timeout.as_secs_f64()
        ))),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(ApiError::payload_too_large(format!(
                    "the request body is larger than {limit} bytes (--max-body-bytes)"
                )))
            } else {
                Err(ApiError::bad_request(&format!("cannot read the request body: {e}"), None))
            }
        }
    }
}

/// Text that surely needs more tokens than the context holds is refused
/// before tokenizing it: tokenizing costs CPU and memory in proportion to
/// the text, and the answer is known anyway.
fn check_text_fits(state: &AppState, bytes: usize, param: &str) -> Result<(), ApiError> {
    let Some(per_token) = state.max_token_bytes.filter(|&b| b > 0) else { return Ok(()) };
    let context = state.model.max_context();
    if bytes > context.saturating_mul(per_token) {
        return Err(ApiError::bad_request(
            &format!(
                "the {param} is {bytes} bytes of text: at least {} tokens (no token is longer than {per_token} bytes), more than the model's context of {context} tokens; shorten it",
                bytes / per_token
            ),
            Some(param),
        ));
    }
    Ok(())
}

/// Runs CPU-heavy work (tokenizing, rendering a chat template) on the
/// blocking pool, at most `tokenizer_threads` at a time, so that the async
/// workers stay free to answer `/health` and stream tokens.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = state
        .tokenizers
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::internal("the server is shutting down".into()))?;
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(format!("tokenization failed: {e}")))
}

/// Roles the chat endpoint accepts. The template would render any string as
/// a role, so an unknown one (a typo, or "function" from an old client) is
/// refused rather than silently sent to the model.
const CHAT_ROLES: &[&str] = &["system", "user", "assistant"];

/// A conversation as prompt token ids: roles and control-token text
/// checked, its length bounded, then rendered and tokenized off the async
/// workers.
pub async fn chat_prompt(state: &AppState, messages: Vec<ChatMessage>) -> Result<Vec<TokenId>, ApiError> {
    let specials = state.model.special_token_texts();
    for (i, m) in messages.iter().enumerate() {
        if !CHAT_ROLES.contains(&m.role.as_str()) {
            return Err(ApiError::bad_request(
                &format!("messages[{i}].role is {:?}: use one of {}", m.role, CHAT_ROLES.join(", ")),
                Some("messages"),
            ));
        }
        if let Some(special) = specials.iter().find(|t| m.content.contains(t.as_str())) {
            return Err(ApiError::bad_request(
                &format!(
                    "messages[{i}].content contains the control token text {special:?}, which would be read as a control token and could forge a turn; remove it (use /v1/completions with your own prompt to send control tokens on purpose)"
                ),
                Some("messages"),
            ));
        }
    }
    let content_bytes = messages.iter().map(|m| m.content.len() + m.role.len()).sum();
    check_text_fits(state, content_bytes, "messages")?;
    let model = state.model.clone();
    blocking(state, move || -> Result<Vec<TokenId>, ApiError> {
        let text = model
            .render_chat(&messages)
            .map_err(|e| ApiError::bad_request(&format!("cannot apply the chat template: {e}"), Some("messages")))?;
        model.tokenize(&text).map_err(|e| ApiError::bad_request(&format!("cannot tokenize: {e}"), Some("messages")))
    })
    .await?
}
