//! The OpenAI-compatible endpoints: `/v1/completions`,
//! `/v1/chat/completions`, `/v1/models`.

use crate::engine_loop::{AdmitError, Finish};
use crate::error::ApiError;
use crate::generate::{Generation, Piece};
use crate::intake;
use crate::openai::{self, ChatRequest, CompletionRequest, Plan};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kvscope_core::{PromptLogprob, SampledToken, TokenId};
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
    /// vLLM's `return_tokens_as_token_ids`: log-probability entries are
    /// keyed `token_id:N`, so tokens whose text collides (byte fragments of
    /// one character all print as U+FFFD) stay apart.
    token_ids_as_keys: bool,
    /// `max_tokens: 0` with `echo`: the one generated token is dropped.
    score_only: bool,
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
    if let Some(dtype) = state.model.kv_dtype() {
        model["kv_cache_dtype"] = json!(dtype);
    }
    Json(json!({ "object": "list", "data": [model] }))
}

pub async fn completions(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let body = intake::read_body(&state, request).await?;
    let req: CompletionRequest = openai::parse(&body)?;
    check_model(&state, req.common.model.as_deref())?;
    let prompts = req.prompt.into_list(crate::limits::MAX_PROMPTS_PER_REQUEST)?;
    let logprobs = openai::count(req.logprobs, "logprobs")?;
    // max_tokens 0 with echo scores the prompt without generating (what
    // lm-evaluation-harness sends for log-likelihoods): one token is
    // generated for the engine's sake and not returned.
    let score_only = req.echo && req.common.max_tokens == Some(0);
    let max_tokens = if score_only { Some(1) } else { req.common.max_tokens };
    let mut plan = req.common.plan(max_tokens, 16, logprobs, "logprobs", &state.model.eos_token_ids())?;
    if req.echo {
        // Echo with logprobs scores the prompt too (as vLLM does), so text can be scored.
        plan.params.prompt_logprobs = plan.logprobs;
    }
    let mut resolved = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        resolved.push(intake::resolve_prompt(&state, prompt).await?);
    }
    let frame = |echo: Option<(String, Vec<TokenId>)>| Frame {
        kind: Kind::Completion,
        id: String::new(),
        created: now_unix(),
        model: state.model_name.clone(),
        plan_logprobs: plan.logprobs,
        include_usage: plan.include_usage,
        echo: if req.echo { echo } else { None },
        token_ids_as_keys: req.common.return_tokens_as_token_ids,
        score_only,
    };
    if resolved.len() == 1 {
        let (text, ids) = resolved.pop().expect("one prompt");
        let frame = frame(Some((text, ids.clone())));
        return run(state, ids, plan, frame).await;
    }
    // A list of prompts: one engine request each, run together, answered
    // as one response with a choice per prompt (`index` in prompt order)
    // under the first request's id.
    let mut runs: Vec<(Generation, Ctx)> = Vec::with_capacity(resolved.len());
    for (text, ids) in resolved {
        let frame = frame(Some((text, ids.clone())));
        let (gen, mut ctx) = submit(&state, ids, &plan, frame).await?;
        if let Some((_, first)) = runs.first() {
            ctx.frame.id = first.frame.id.clone();
        }
        runs.push((gen, ctx));
    }
    if plan.stream {
        return Ok(stream(runs).into_response());
    }
    let answers = futures_util::future::try_join_all(runs.into_iter().map(|(gen, ctx)| collect(gen, ctx))).await?;
    let mut choices = Vec::with_capacity(answers.len());
    let (mut prompt_tokens, mut completion_tokens, mut cached_tokens) = (0, 0, 0);
    let mut envelope = None;
    for (i, (mut answer, finish, ctx)) in answers.into_iter().enumerate() {
        answer["index"] = json!(i);
        choices.push(answer);
        prompt_tokens += finish.prompt_tokens;
        completion_tokens += ctx.output_tokens(&finish);
        cached_tokens += finish.cached_tokens;
        envelope.get_or_insert(ctx);
    }
    let ctx = envelope.expect("at least two prompts");
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    });
    Ok(Json(ctx.envelope(false, Value::Array(choices), Some(usage))).into_response())
}

pub async fn chat_completions(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let body = intake::read_body(&state, request).await?;
    let req: ChatRequest = openai::parse(&body)?;
    check_model(&state, req.common.model.as_deref())?;
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("messages is empty: give at least one message", Some("messages")));
    }
    let prompt_ids = intake::chat_prompt(&state, req.messages).await?;
    let top = openai::count(req.top_logprobs, "top_logprobs")?;
    let logprobs = req.logprobs.then(|| top.unwrap_or(0));
    let max_tokens = req.max_completion_tokens.or(req.common.max_tokens);
    // Without a limit, the answer may fill the rest of the context — or of
    // the KV pool, if that is smaller (the last token needs no KV slot).
    let room = state.model.max_context().min(state.pool_tokens.saturating_add(1));
    let room = room.saturating_sub(prompt_ids.len()).max(1);
    let plan = req.common.plan(max_tokens, room, logprobs, "top_logprobs", &state.model.eos_token_ids())?;
    let frame = Frame {
        kind: Kind::Chat,
        id: String::new(),
        created: now_unix(),
        model: state.model_name.clone(),
        plan_logprobs: plan.logprobs,
        include_usage: plan.include_usage,
        echo: None,
        token_ids_as_keys: req.common.return_tokens_as_token_ids,
        score_only: false,
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

async fn run(state: AppState, prompt_ids: Vec<TokenId>, plan: Plan, frame: Frame) -> Result<Response, ApiError> {
    let stream_it = plan.stream;
    let (gen, ctx) = submit(&state, prompt_ids, &plan, frame).await?;
    if stream_it {
        Ok(stream(vec![(gen, ctx)]).into_response())
    } else {
        let (choice, finish, ctx) = collect(gen, ctx).await?;
        let usage = ctx.usage(&finish);
        Ok(Json(ctx.envelope(false, json!([choice]), Some(usage))).into_response())
    }
}

/// Hands one request to the engine; its answer is read from the returned
/// generation.
async fn submit(
    state: &AppState,
    prompt_ids: Vec<TokenId>,
    plan: &Plan,
    mut frame: Frame,
) -> Result<(Generation, Ctx), ApiError> {
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
        plan.stop.clone(),
        plan.params.stop_token_ids.clone(),
        plan.params.ignore_eos,
        prompt_tokens,
    );
    Ok((gen, Ctx { frame, model: state.model.clone() }))
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

    /// Tokens the client gets back (none when only scoring the prompt).
    fn output_tokens(&self, finish: &Finish) -> usize {
        if self.frame.score_only {
            0
        } else {
            finish.output_tokens
        }
    }

    /// The key of a token in log-probability entries.
    fn token_key(&self, id: TokenId) -> String {
        if self.frame.token_ids_as_keys {
            format!("token_id:{id}")
        } else {
            self.model.token_text(id)
        }
    }

    fn usage(&self, finish: &Finish) -> Value {
        let output_tokens = self.output_tokens(finish);
        json!({
            "prompt_tokens": finish.prompt_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": finish.prompt_tokens + output_tokens,
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
            // Offsets count the token's text even when the key is its id.
            offsets.push(at);
            at += self.model.token_text(id).len();
            texts.push(self.token_key(id));
            match tok {
                Some(t) => {
                    lps.push(json!(t.logprob));
                    let mut top = serde_json::Map::new();
                    for (tid, lp) in t.top_logprobs.iter().take(n) {
                        top.insert(self.token_key(*tid), json!(lp));
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
            json!({"token": self.token_key(id), "logprob": lp, "bytes": text.as_bytes()})
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

/// Reads a whole answer: its choice (index 0), how it finished, and the
/// context that frames it.
async fn collect(mut gen: Generation, ctx: Ctx) -> Result<(Value, Finish, Ctx), ApiError> {
    let mut text = String::new();
    let mut tokens: Vec<SampledToken> = Vec::new();
    let mut prompt_logprobs = Vec::new();
    let finish = loop {
        match gen.next().await {
            Some(Ok(piece)) => {
                prompt_logprobs.extend(piece.prompt_scores);
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
    if ctx.frame.score_only {
        text.clear();
        tokens.clear();
    }
    let reason = finish.reason.as_str();
    let choice = match ctx.frame.kind {
        Kind::Completion => {
            let (echo_text, echo_ids) = ctx.frame.echo.clone().unwrap_or_default();
            let prompt_scores: Vec<SampledToken> = prompt_logprobs
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
                for (p, score) in prompt_logprobs.iter().zip(&prompt_scores) {
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
    Ok((choice, finish, ctx))
}

/// What one choice's stream yields.
enum Out {
    Chunk(Value),
    /// The choice ended; its usage counts toward the response's.
    End {
        prompt_tokens: usize,
        completion_tokens: usize,
        cached_tokens: usize,
    },
    /// The executor failed: the error body; the whole response ends.
    Failed(Value),
}

struct ChoiceState {
    gen: Generation,
    ctx: Ctx,
    index: usize,
    queue: VecDeque<Out>,
    ended: bool,
    text_offset: usize,
    /// The next echoed prompt position whose score is still to be sent, and
    /// its offset in the echoed text.
    prompt_next: usize,
    prompt_offset: usize,
}

impl ChoiceState {
    /// A chunk with the scores of the echoed prompt positions up to the last
    /// one in `scores` (position 0, which has no context, goes with the
    /// first, unscored): sent as each prefill step computes them, so a
    /// scored prompt is never held whole in the server. Its text is empty —
    /// the prompt's text went out in the first chunk.
    fn prompt_chunk(&mut self, scores: &[PromptLogprob]) -> Option<Value> {
        let (_, ids) = self.ctx.frame.echo.as_ref()?;
        self.ctx.frame.plan_logprobs?;
        let last = scores.last()?.position.min(ids.len().saturating_sub(1));
        if last < self.prompt_next {
            return None;
        }
        let sampled: Vec<SampledToken> = scores
            .iter()
            .map(|p| SampledToken { token: p.token, logprob: Some(p.logprob), top_logprobs: p.top_logprobs.clone() })
            .collect();
        let positions = self.prompt_next..=last;
        // A step's scores cover consecutive positions.
        let first = scores[0].position;
        let toks: Vec<Option<&SampledToken>> = positions
            .clone()
            .map(|q| {
                q.checked_sub(first).filter(|&i| scores.get(i).is_some_and(|p| p.position == q)).map(|i| &sampled[i])
            })
            .collect();
        let logprobs = self.ctx.completion_logprobs(&toks, &ids[positions.clone()], self.prompt_offset);
        self.prompt_offset += positions.clone().map(|q| self.ctx.model.token_text(ids[q]).len()).sum::<usize>();
        self.prompt_next = last + 1;
        let choice = json!([{"index": self.index, "text": "", "logprobs": logprobs, "finish_reason": null}]);
        Some(self.ctx.envelope(true, choice, None))
    }
}

fn data(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

/// One choice as a stream of chunks (their `index` set), then its end.
fn choice_stream(gen: Generation, ctx: Ctx, index: usize) -> impl futures_util::Stream<Item = Out> {
    let mut queue = VecDeque::new();
    let mut text_offset = 0;
    match ctx.frame.kind {
        Kind::Chat => {
            let choice = json!([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]);
            queue.push_back(Out::Chunk(ctx.envelope(true, choice, None)));
        }
        Kind::Completion => {
            if let Some((text, _)) = &ctx.frame.echo {
                text_offset = text.len();
                let choice = json!([{"index": index, "text": text, "logprobs": null, "finish_reason": null}]);
                queue.push_back(Out::Chunk(ctx.envelope(true, choice, None)));
            }
        }
    }
    let state = ChoiceState { gen, ctx, index, queue, ended: false, text_offset, prompt_next: 0, prompt_offset: 0 };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(out) = st.queue.pop_front() {
                return Some((out, st));
            }
            if st.ended {
                return None;
            }
            match st.gen.next().await {
                Some(Ok(mut piece)) => {
                    if !piece.prompt_scores.is_empty() {
                        if let Some(chunk) = st.prompt_chunk(&piece.prompt_scores) {
                            st.queue.push_back(Out::Chunk(chunk));
                        }
                        continue;
                    }
                    if st.ctx.frame.score_only {
                        piece.text.clear();
                        piece.token = None;
                    }
                    if let Some(mut chunk) = st.ctx.chunk(&piece, st.text_offset) {
                        chunk["choices"][0]["index"] = json!(st.index);
                        st.queue.push_back(Out::Chunk(chunk));
                    }
                    st.text_offset += piece.text.len();
                    if let Some(finish) = piece.finish {
                        st.queue.push_back(Out::End {
                            prompt_tokens: finish.prompt_tokens,
                            completion_tokens: st.ctx.output_tokens(&finish),
                            cached_tokens: finish.cached_tokens,
                        });
                        st.ended = true;
                    }
                }
                Some(Err(message)) => {
                    st.queue.push_back(Out::Failed(ApiError::internal(message).body()));
                    st.ended = true;
                }
                None => st.ended = true,
            }
        }
    })
}

struct SseState<S> {
    choices: futures_util::stream::SelectAll<std::pin::Pin<Box<S>>>,
    /// The closing usage chunk (its `usage` filled in at the end), when asked.
    usage_chunk: Option<Value>,
    totals: (usize, usize, usize),
    queue: VecDeque<Event>,
    ended: bool,
}

/// The server-sent events of a response with one or more choices, their
/// chunks interleaved as they come, then the summed usage (when asked) and
/// `[DONE]`.
fn stream(choices: Vec<(Generation, Ctx)>) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let usage_chunk =
        choices.first().filter(|(_, ctx)| ctx.frame.include_usage).map(|(_, ctx)| ctx.envelope(true, json!([]), None));
    let streams = choices.into_iter().enumerate().map(|(index, (gen, ctx))| Box::pin(choice_stream(gen, ctx, index)));
    let state = SseState {
        choices: futures_util::stream::select_all(streams),
        usage_chunk,
        totals: (0, 0, 0),
        queue: VecDeque::new(),
        ended: false,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        use futures_util::StreamExt;
        loop {
            if let Some(event) = st.queue.pop_front() {
                return Some((Ok(event), st));
            }
            if st.ended {
                return None;
            }
            match st.choices.next().await {
                Some(Out::Chunk(chunk)) => st.queue.push_back(data(&chunk)),
                Some(Out::End { prompt_tokens, completion_tokens, cached_tokens }) => {
                    st.totals.0 += prompt_tokens;
                    st.totals.1 += completion_tokens;
                    st.totals.2 += cached_tokens;
                }
                Some(Out::Failed(body)) => {
                    st.queue.push_back(data(&body));
                    st.queue.push_back(Event::default().data("[DONE]"));
                    st.ended = true;
                }
                None => {
                    if let Some(mut chunk) = st.usage_chunk.take() {
                        let (prompt, completion, cached) = st.totals;
                        chunk["usage"] = json!({
                            "prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion,
                            "prompt_tokens_details": {"cached_tokens": cached},
                        });
                        st.queue.push_back(data(&chunk));
                    }
                    st.queue.push_back(Event::default().data("[DONE]"));
                    st.ended = true;
                }
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
