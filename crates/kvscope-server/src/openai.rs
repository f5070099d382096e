//! OpenAI request bodies. Unknown fields are ignored; a field of the wrong
//! type or out of range is a 400 whose message names it.

use crate::error::ApiError;
use crate::model::ChatMessage;
use kvscope_core::{SamplingParams, TokenId};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<TokenId>),
    /// A batch; only a batch of one is served (n = 1 semantics).
    TextBatch(Vec<String>),
    TokensBatch(Vec<Vec<TokenId>>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields both endpoints share.
#[derive(Debug, Deserialize)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// vLLM's extension; -1 or 0 keeps all tokens.
    pub top_k: Option<i64>,
    pub seed: Option<u64>,
    pub stop: Option<StopField>,
    /// vLLM's extension: more token ids that end generation.
    pub stop_token_ids: Option<Vec<TokenId>>,
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// vLLM's extension, for benchmarks: generate exactly `max_tokens`.
    #[serde(default)]
    pub ignore_eos: bool,
    /// vLLM's extension: log-probability entries keyed `token_id:N`.
    #[serde(default)]
    pub return_tokens_as_token_ids: bool,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    /// Top log-probabilities per token (0: only the sampled token's).
    pub logprobs: Option<i64>,
    #[serde(default)]
    pub echo: bool,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    #[serde(flatten)]
    pub common: Common,
}

/// Parses a body, turning serde's complaint into an OpenAI-style 400.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty: send a JSON object", None));
    }
    serde_json::from_slice(body).map_err(|e| {
        let message = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("the request body is not valid JSON: {e}")
            }
            _ => format!("invalid request: {e}"),
        };
        ApiError::bad_request(&message, None)
    })
}

impl Prompt {
    /// The prompts of the request, each a text or a list of token ids.
    pub fn into_list(self, max: usize) -> Result<Vec<Prompt>, ApiError> {
        let list: Vec<Prompt> = match self {
            Prompt::TextBatch(v) => v.into_iter().map(Prompt::Text).collect(),
            Prompt::TokensBatch(v) => v.into_iter().map(Prompt::Tokens).collect(),
            p => vec![p],
        };
        if list.is_empty() {
            return Err(ApiError::bad_request("prompt is an empty list: give at least one prompt", Some("prompt")));
        }
        if list.len() > max {
            return Err(ApiError::bad_request(
                &format!("{} prompts in one request; at most {max}: split them over several requests", list.len()),
                Some("prompt"),
            ));
        }
        Ok(list)
    }
}

/// What the engine needs, plus what the answer needs.
pub struct Plan {
    pub params: SamplingParams,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// Top log-probabilities to report per token, `None` if not asked.
    pub logprobs: Option<usize>,
}

fn check_range(value: Option<f32>, name: &str, ok: impl Fn(f32) -> bool, what: &str) -> Result<(), ApiError> {
    match value {
        Some(v) if !ok(v) => Err(ApiError::bad_request(&format!("{name} must be {what}, got {v}"), Some(name))),
        _ => Ok(()),
    }
}

impl Common {
    /// Sampling parameters; `default_max_tokens` applies when the client
    /// gave none, `logprobs` is the number of top log-probabilities asked.
    pub fn plan(
        &self,
        max_tokens: Option<i64>,
        default_max_tokens: usize,
        logprobs: Option<usize>,
        logprobs_param: &str,
        eos: &[TokenId],
    ) -> Result<Plan, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::bad_request(
                    &format!("n must be 1 (one choice per request), got {n}"),
                    Some("n"),
                ));
            }
        }
        let max_tokens = match max_tokens {
            None => default_max_tokens,
            Some(m) if m >= 1 => m as usize,
            Some(m) => {
                return Err(ApiError::bad_request(
                    &format!(
                        "max_tokens must be at least 1, got {m} (0 is accepted on /v1/completions with echo: true, to score the prompt)"
                    ),
                    Some("max_tokens"),
                ))
            }
        };
        check_range(self.temperature, "temperature", |t| t.is_finite() && (0.0..=2.0).contains(&t), "between 0 and 2")?;
        check_range(self.top_p, "top_p", |p| p > 0.0 && p <= 1.0, "in (0, 1]")?;
        let top_k = match self.top_k {
            None | Some(-1) | Some(0) => None,
            Some(k) if k > 0 => Some(k as usize),
            Some(k) => {
                return Err(ApiError::bad_request(
                    &format!("top_k must be -1 (off) or at least 1, got {k}"),
                    Some("top_k"),
                ))
            }
        };
        if let Some(n) = logprobs {
            if n > kvscope_core::request::MAX_LOGPROBS {
                return Err(ApiError::bad_request(
                    &format!("{logprobs_param} must be at most {}, got {n}", kvscope_core::request::MAX_LOGPROBS),
                    Some(logprobs_param),
                ));
            }
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(v)) => v.clone(),
        };
        check_stops(&stop, self.stop_token_ids.as_deref().unwrap_or_default())?;
        let mut stop_token_ids = eos.to_vec();
        stop_token_ids.extend(self.stop_token_ids.iter().flatten().copied());
        let params = SamplingParams {
            temperature: self.temperature.unwrap_or(1.0),
            top_k,
            top_p: self.top_p.unwrap_or(1.0),
            seed: self.seed,
            max_tokens,
            stop_token_ids,
            ignore_eos: self.ignore_eos,
            // The engine reports the sampled token's log-probability only
            // when at least one top entry is asked for.
            logprobs: logprobs.map_or(0, |n| n.max(1)),
            prompt_logprobs: None,
        };
        Ok(Plan {
            params,
            stop,
            stream: self.stream,
            include_usage: self.stream_options.as_ref().is_some_and(|o| o.include_usage),
            logprobs,
        })
    }
}

/// A negative or absurd count from the client as a 400.
pub fn count(value: Option<i64>, name: &str) -> Result<Option<usize>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if v >= 0 => Ok(Some(v as usize)),
        Some(v) => Err(ApiError::bad_request(&format!("{name} must be >= 0, got {v}"), Some(name))),
    }
}

/// Stop strings and stop token ids are matched at every generated token:
/// their number and length are bounded so that one request cannot make
/// every step slow.
fn check_stops(stop: &[String], stop_token_ids: &[TokenId]) -> Result<(), ApiError> {
    use crate::limits::{MAX_STOP_STRINGS, MAX_STOP_STRING_BYTES, MAX_STOP_TOKEN_IDS};
    if stop.len() > MAX_STOP_STRINGS {
        return Err(ApiError::bad_request(
            &format!("{} stop strings; at most {MAX_STOP_STRINGS} are accepted", stop.len()),
            Some("stop"),
        ));
    }
    if let Some(long) = stop.iter().find(|s| s.len() > MAX_STOP_STRING_BYTES) {
        return Err(ApiError::bad_request(
            &format!("a stop string of {} bytes; at most {MAX_STOP_STRING_BYTES} bytes each", long.len()),
            Some("stop"),
        ));
    }
    if stop_token_ids.len() > MAX_STOP_TOKEN_IDS {
        return Err(ApiError::bad_request(
            &format!("{} stop token ids; at most {MAX_STOP_TOKEN_IDS} are accepted", stop_token_ids.len()),
            Some("stop_token_ids"),
        ));
    }
    Ok(())
}
