//! The OpenAI-compatible endpoints: `/v1/completions`,
//! `/v1/chat/completions`, `/v1/models`.

use crate::engine_loop::{AdmitError, Finish};
use crate::error::ApiError;
use crate::generate::{Generation, Piece};
use crate::openai::{self, ChatRequest, CompletionRequest, Plan, Prompt};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kvscope_core::{SampledToken, TokenId};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Completion,
    Chat,
}

/// Everything an answer is framed with.
struct Frame {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    plan_logprobs: Option<usize>,
    include_usage: bool,
    /// `echo`: the prompt's text and ids, put in front of the answer.
    echo: Option<(String, Vec<TokenId>)>,
}

pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let mut model = json!({
        "id": state.model_name,
        "object": "model",
        "created": state.started_unix,
        "owned_by": "kvscope",
        "max_model_len": state.model.max_context(),
        "vocab_size": state.model.vocab_size(),
    });
    if let Some((kernels, isa)) = state.model.kernels() {
        model["kernels"] = json!(kernels);
        model["isa"] = json!(isa);
    }
    Json(json!({ "object": "list", "data": [model] }))
}

pub async fn completions(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: CompletionRequest = openai::parse(&body)?;
    check_model(&state, req.common.model.as_deref())?;
    let (prompt_text, prompt_ids) = match req.prompt.single()? {
        Prompt::Text(text) => {
            let ids = state
                .model
                .tokenize(&text)
                .map_err(|e| ApiError::bad_request(&format!("cannot tokenize the prompt: {e}"), Some("prompt")))?;
            (text, ids)
        }
        Prompt::Tokens(ids) => {
            let vocab = state.model.vocab_size();
            if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                return Err(ApiError::bad_request(
                    &format!("token id {bad} is outside the vocabulary (size {vocab})"),
                    Some("prompt"),
                ));
            }
            (state.model.detokenize(&ids).unwrap_or_default(), ids)
        }
        Prompt::TextBatch(_) | Prompt::TokensBatch(_) => unreachable!("single() unpacks batches"),
    };
    let logprobs = openai::count(req.logprobs, "logprobs")?;
    let mut plan = req.common.plan(req.common.max_tokens, 16, logprobs, &state.model.eos_token_ids())?;
    if req.echo {
        // Echo with logprobs scores the prompt too (as vLLM does), so text can be scored.
        plan.params.prompt_logprobs = plan.logprobs;
    }
    let frame = Frame {
        kind: Kind::Completion,
        id: String::new(),
        created: now_unix(),
        model: state.model_name.clone(),
        plan_logprobs: plan.logprobs,
        include_usage: plan.include_usage,
        echo: req.echo.then(|| (prompt_text, prompt_ids.clone())),
    };
    run(state, prompt_ids, plan, frame).await
}

pub async fn chat_completions(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: ChatRequest = openai::parse(&body)?;
    check_model(&state, req.common.model.as_deref())?;
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("messages is empty: give at least one message", Some("messages")));
    }
    let text = state
        .model
        .render_chat(&req.messages)
        .map_err(|e| ApiError::bad_request(&format!("cannot apply the chat template: {e}"), Some("messages")))?;
    let prompt_ids = state
        .model
        .tokenize(&text)
        .map_err(|e| ApiError::bad_request(&format!("cannot tokenize: {e}"), Some("messages")))?;
    let top = openai::count(req.top_logprobs, "top_logprobs")?;
    let logprobs = req.logprobs.then(|| top.unwrap_or(0));
    let max_tokens = req.max_completion_tokens.or(req.common.max_tokens);
    // Without a limit, the answer may fill the rest of the context.
    let room = state.model.max_context().saturating_sub(prompt_ids.len()).max(1);
    let plan = req.common.plan(max_tokens, room, logprobs, &state.model.eos_token_ids())?;
    let frame = Frame {
        kind: Kind::Chat,
        id: String::new(),
        created: now_unix(),
        model: state.model_name.clone(),
        plan_logprobs: plan.logprobs,
        include_usage: plan.include_usage,
        echo: None,
    };
    run(state, prompt_ids, plan, frame).await
}

fn check_model(state: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(m) if !m.is_empty() && m != state.model_name => Err(ApiError::not_found(format!(
            "the model `{m}` does not exist; this server serves `{}`",
            state.model_name
        ))),
        _ => Ok(()),
    }
}

async fn run(state: AppState, prompt_ids: Vec<TokenId>, plan: Plan, mut frame: Frame) -> Result<Response, ApiError> {
    let prompt_tokens = prompt_ids.len();
    let submitted = state.engine.submit(prompt_ids, plan.params.clone()).await.map_err(|e| match e {
        AdmitError::Invalid(e) => ApiError::bad_request(&e.to_string(), None),
        AdmitError::Overloaded { .. } => ApiError::overloaded(e.to_string()),
        AdmitError::Stopped => ApiError::internal(e.to_string()),
    })?;
    let prefix = if frame.kind == Kind::Chat { "chatcmpl" } else { "cmpl" };
    frame.id = format!("{prefix}-{}", submitted.id);
    let gen = Generation::new(
        submitted,
        state.model.clone(),
        plan.stop,
        plan.params.stop_token_ids.clone(),
        plan.params.ignore_eos,
        prompt_tokens,
    );
    let ctx = Ctx { frame, model: state.model.clone() };
    if plan.stream {
        Ok(stream(gen, ctx).into_response())
    } else {
        collect(gen, ctx).await.map(|v| Json(v).into_response())
    }
}

struct Ctx {
    frame: Frame,
    model: std::sync::Arc<dyn crate::model::TextModel>,
}

impl Ctx {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.frame.kind, chunk) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value, usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.frame.id,
            "object": self.object(chunk),
            "created": self.frame.created,
            "model": self.frame.model,
            "choices": choices,
        });
        if !chunk || self.frame.include_usage {
            v["usage"] = usage.unwrap_or(Value::Null);
        }
        v
    }

    fn usage(&self, finish: &Finish) -> Value {
        json!({
            "prompt_tokens": finish.prompt_tokens,
            "completion_tokens": finish.output_tokens,
            "total_tokens": finish.prompt_tokens + finish.output_tokens,
            "prompt_tokens_details": {"cached_tokens": finish.cached_tokens},
        })
    }

    /// Completions' log-probability block for `tokens` (with text offsets
    /// starting at `offset`).
    fn completion_logprobs(&self, tokens: &[Option<&SampledToken>], ids: &[TokenId], offset: usize) -> Value {
        let n = self.frame.plan_logprobs.unwrap_or(0);
        let mut texts = Vec::new();
        let mut lps = Vec::new();
        let mut tops = Vec::new();
        let mut offsets = Vec::new();
        let mut at = offset;
        for (tok, &id) in tokens.iter().zip(ids) {
            let text = self.model.token_text(id);
            offsets.push(at);
            at += text.len();
            texts.push(text);
            match tok {
                Some(t) => {
                    lps.push(json!(t.logprob));
                    let mut top = serde_json::Map::new();
                    for (tid, lp) in t.top_logprobs.iter().take(n) {
                        top.insert(self.model.token_text(*tid), json!(lp));
                    }
                    tops.push(Value::Object(top));
                }
                // Prompt token 0, or an executor that does not score prompts.
                None => {
                    lps.push(Value::Null);
                    tops.push(Value::Null);
                }
            }
        }
        json!({"tokens": texts, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
    }

    fn chat_logprobs(&self, tokens: &[&SampledToken]) -> Value {
        let n = self.frame.plan_logprobs.unwrap_or(0);
        let entry = |id: TokenId, lp: Option<f32>| {
            let text = self.model.token_text(id);
            json!({"token": text, "logprob": lp, "bytes": text.as_bytes()})
        };
        let content: Vec<Value> = tokens
            .iter()
            .map(|t| {
                let mut e = entry(t.token, t.logprob);
                e["top_logprobs"] =
                    Value::Array(t.top_logprobs.iter().take(n).map(|(id, lp)| entry(*id, Some(*lp))).collect());
                e
            })
            .collect();
        json!({"content": content})
    }

    /// One streamed chunk for a piece (None when it carries nothing).
    fn chunk(&self, piece: &Piece, text_offset: usize) -> Option<Value> {
        let wants_logprobs = self.frame.plan_logprobs.is_some() && piece.token.is_some();
        if piece.text.is_empty() && piece.finish.is_none() && !wants_logprobs {
            return None;
        }
        let finish_reason = piece.finish.as_ref().map(|f| f.reason.as_str());
        let choice = match self.frame.kind {
            Kind::Completion => {
                let logprobs = if wants_logprobs {
                    let t = piece.token.as_ref().expect("checked");
                    self.completion_logprobs(&[Some(t)], &[t.token], text_offset)
                } else {
                    Value::Null
                };
                json!({"index": 0, "text": piece.text, "logprobs": logprobs, "finish_reason": finish_reason})
            }
            Kind::Chat => {
                let logprobs = if wants_logprobs {
                    self.chat_logprobs(&[piece.token.as_ref().expect("checked")])
                } else {
                    Value::Null
                };
                let delta = if piece.text.is_empty() && piece.finish.is_some() {
                    json!({})
                } else {
                    json!({"content": piece.text})
                };
                json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason})
            }
        };
        Some(self.envelope(true, json!([choice]), None))
    }
}

async fn collect(mut gen: Generation, ctx: Ctx) -> Result<Value, ApiError> {
    let mut text = String::new();
    let mut tokens: Vec<SampledToken> = Vec::new();
    let finish = loop {
        match gen.next().await {
            Some(Ok(piece)) => {
                text.push_str(&piece.text);
                tokens.extend(piece.token);
                if let Some(finish) = piece.finish {
                    break finish;
                }
            }
            Some(Err(message)) => return Err(ApiError::internal(message)),
            None => return Err(ApiError::internal("the request ended without an answer".into())),
        }
    };
    let reason = finish.reason.as_str();
    let choice = match ctx.frame.kind {
        Kind::Completion => {
            let (echo_text, echo_ids) = ctx.frame.echo.clone().unwrap_or_default();
            let prompt_scores: Vec<SampledToken> = finish
                .prompt_logprobs
                .iter()
                .map(|p| SampledToken {
                    token: p.token,
                    logprob: Some(p.logprob),
                    top_logprobs: p.top_logprobs.clone(),
                })
                .collect();
            let logprobs = if ctx.frame.plan_logprobs.is_some() {
                // Prompt token 0 has no context, so no score; the others
                // are scored by the engine when the request asked.
                let mut toks: Vec<Option<&SampledToken>> = echo_ids.iter().map(|_| None).collect();
                for (p, score) in finish.prompt_logprobs.iter().zip(&prompt_scores) {
                    if let Some(slot) = toks.get_mut(p.position) {
                        *slot = Some(score);
                    }
                }
                let mut ids = echo_ids.clone();
                toks.extend(tokens.iter().map(Some));
                ids.extend(tokens.iter().map(|t| t.token));
                ctx.completion_logprobs(&toks, &ids, 0)
            } else {
                Value::Null
            };
            json!({"index": 0, "text": format!("{echo_text}{text}"), "logprobs": logprobs, "finish_reason": reason})
        }
        Kind::Chat => {
            let logprobs = if ctx.frame.plan_logprobs.is_some() {
                ctx.chat_logprobs(&tokens.iter().collect::<Vec<_>>())
            } else {
                Value::Null
            };
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs, "finish_reason": reason})
        }
    };
    let usage = ctx.usage(&finish);
    Ok(ctx.envelope(false, json!([choice]), Some(usage)))
}

struct StreamState {
    gen: Generation,
    ctx: Ctx,
    queue: VecDeque<Event>,
    ended: bool,
    text_offset: usize,
}

fn data(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

fn stream(gen: Generation, ctx: Ctx) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let mut queue = VecDeque::new();
    let mut text_offset = 0;
    match ctx.frame.kind {
        Kind::Chat => {
            let choice = json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]);
            queue.push_back(data(&ctx.envelope(true, choice, None)));
        }
        Kind::Completion => {
            if let Some((text, _)) = &ctx.frame.echo {
                text_offset = text.len();
                let choice = json!([{"index": 0, "text": text, "logprobs": null, "finish_reason": null}]);
                queue.push_back(data(&ctx.envelope(true, choice, None)));
            }
        }
    }
    let state = StreamState { gen, ctx, queue, ended: false, text_offset };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.queue.pop_front() {
                return Some((Ok(event), st));
            }
            if st.ended {
                return None;
            }
            match st.gen.next().await {
                Some(Ok(piece)) => {
                    if let Some(chunk) = st.ctx.chunk(&piece, st.text_offset) {
                        st.queue.push_back(data(&chunk));
                    }
                    st.text_offset += piece.text.len();
                    if let Some(finish) = piece.finish {
                        if st.ctx.frame.include_usage {
                            let usage = st.ctx.usage(&finish);
                            st.queue.push_back(data(&st.ctx.envelope(true, json!([]), Some(usage))));
                        }
                        st.queue.push_back(Event::default().data("[DONE]"));
                        st.ended = true;
                    }
                }
                Some(Err(message)) => {
                    st.queue.push_back(data(&ApiError::internal(message).body()));
                    st.queue.push_back(Event::default().data("[DONE]"));
                    st.ended = true;
                }
                None => st.ended = true,
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
