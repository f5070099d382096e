//! Sends the requests on their schedule and times every streamed chunk.

use super::dataset::{load_dataset, BenchPrompt, BenchRequest};
use super::report::{BenchReport, Stats};
use super::{BenchArgs, Endpoint};
use kvscope_experiment::Arrival;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, Default)]
struct Outcome {
    error: Option<String>,
    prompt_tokens: usize,
    output_tokens: usize,
    ttft: Option<f64>,
    itl: Vec<f64>,
    e2e: f64,
}

pub async fn run(args: &BenchArgs, requests: Option<Vec<BenchRequest>>) -> anyhow::Result<BenchReport> {
    let base = args.base_url.trim_end_matches('/').to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = args.api_key.as_deref().filter(|k| !k.is_empty()) {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| anyhow::anyhow!("--api-key holds characters a header cannot carry"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder().default_headers(headers).build()?;
    let models: Value = {
        let resp = client
            .get(format!("{base}/v1/models"))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the server at {base}: {e}"))?;
        serde_json::from_str(&resp.text().await?).map_err(|e| anyhow::anyhow!("{base}/v1/models is not JSON: {e}"))?
    };
    let card = &models["data"][0];
    let model = args.model.clone().or_else(|| card["id"].as_str().map(str::to_string)).unwrap_or_default();
    let vocab = card["vocab_size"].as_u64().unwrap_or(1000) as usize;
    let requests = match requests {
        Some(r) => r,
        None => load_dataset(args, vocab)?,
    };
    if args.endpoint == Endpoint::Chat && requests.iter().any(|r| matches!(r.prompt, BenchPrompt::Tokens(_))) {
        anyhow::bail!("the chat endpoint takes text prompts; use --endpoint completions for token-id prompts");
    }
    // The experiment layer's arrival process: Poisson, gamma with
    // --burstiness, or all at once for an infinite rate.
    let arrivals = Arrival::from_rate(args.request_rate, args.burstiness).times(requests.len(), args.seed);
    let limit = args.max_concurrency.map(|n| Arc::new(Semaphore::new(n)));
    let url = match args.endpoint {
        Endpoint::Completions => format!("{base}/v1/completions"),
        Endpoint::Chat => format!("{base}/v1/chat/completions"),
    };
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(requests.len());
    for (req, at) in requests.into_iter().zip(arrivals) {
        tokio::time::sleep_until((start + Duration::from_secs_f64(at)).into()).await;
        let body = body(args, &model, req);
        let (client, url, limit) = (client.clone(), url.clone(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = match &limit {
                Some(s) => Some(s.clone().acquire_owned().await.expect("never closed")),
                None => None,
            };
            one(&client, &url, body).await
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await.unwrap_or_else(|e| Outcome { error: Some(e.to_string()), ..Default::default() }));
    }
    let duration = start.elapsed().as_secs_f64();
    Ok(summarise(args, outcomes, duration))
}

fn body(args: &BenchArgs, model: &str, req: BenchRequest) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": req.output_len,
        "temperature": 0.0,
        "stream": true,
        "stream_options": {"include_usage": true},
        "ignore_eos": args.ignore_eos,
    });
    match (args.endpoint, req.prompt) {
        (Endpoint::Completions, BenchPrompt::Text(t)) => body["prompt"] = json!(t),
        (Endpoint::Completions, BenchPrompt::Tokens(ids)) => body["prompt"] = json!(ids),
        (Endpoint::Chat, BenchPrompt::Text(t)) => body["messages"] = json!([{"role": "user", "content": t}]),
        (Endpoint::Chat, BenchPrompt::Tokens(_)) => unreachable!("checked before sending"),
    }
    body
}

async fn one(client: &reqwest::Client, url: &str, body: Value) -> Outcome {
    let sent = Instant::now();
    let mut out = Outcome::default();
    let fail = |mut out: Outcome, e: String| {
        out.error = Some(e);
        out
    };
    let resp = match client.post(url).header("content-type", "application/json").body(body.to_string()).send().await {
        Ok(r) => r,
        Err(e) => return fail(out, e.to_string()),
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return fail(out, format!("{status}: {text}"));
    }
    let mut resp = resp;
    let mut buf = String::new();
    let mut last = None::<Instant>;
    let mut done = false;
    while !done {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return fail(out, e.to_string()),
        };
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(data) else { continue };
                if let Some(e) = v.get("error") {
                    return fail(out, e.to_string());
                }
                if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                    out.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0) as usize;
                    out.output_tokens = u["completion_tokens"].as_u64().unwrap_or(0) as usize;
                }
                let choice = &v["choices"][0];
                let text = choice["text"].as_str().or_else(|| choice["delta"]["content"].as_str()).unwrap_or("");
                if !text.is_empty() {
                    match last {
                        None => out.ttft = Some((now - sent).as_secs_f64()),
                        Some(prev) => out.itl.push((now - prev).as_secs_f64()),
                    }
                    last = Some(now);
                }
            }
        }
    }
    out.e2e = sent.elapsed().as_secs_f64();
    if !done {
        return fail(out, "the stream ended without [DONE]".into());
    }
    out
}

fn summarise(args: &BenchArgs, outcomes: Vec<Outcome>, duration: f64) -> BenchReport {
    let (ok, failed): (Vec<Outcome>, Vec<Outcome>) = outcomes.into_iter().partition(|o| o.error.is_none());
    let ttft: Vec<f64> = ok.iter().filter_map(|o| o.ttft).collect();
    let tpot: Vec<f64> = ok
        .iter()
        .filter(|o| o.output_tokens > 1)
        .filter_map(|o| o.ttft.map(|t| (o.e2e - t) / (o.output_tokens - 1) as f64))
        .collect();
    let itl: Vec<f64> = ok.iter().flat_map(|o| o.itl.iter().copied()).collect();
    let e2e: Vec<f64> = ok.iter().map(|o| o.e2e).collect();
    let input: usize = ok.iter().map(|o| o.prompt_tokens).sum();
    let output: usize = ok.iter().map(|o| o.output_tokens).sum();
    let per_s = |x: f64| if duration > 0.0 { x / duration } else { 0.0 };
    BenchReport {
        completed: ok.len(),
        failed: failed.len(),
        duration_s: duration,
        total_input_tokens: input,
        total_output_tokens: output,
        request_throughput: per_s(ok.len() as f64),
        output_throughput: per_s(output as f64),
        total_token_throughput: per_s((input + output) as f64),
        request_rate: args.request_rate,
        burstiness: args.burstiness,
        max_concurrency: args.max_concurrency,
        ttft_ms: Stats::of_seconds(&ttft),
        tpot_ms: Stats::of_seconds(&tpot),
        itl_ms: Stats::of_seconds(&itl),
        e2el_ms: Stats::of_seconds(&e2e),
        errors: failed.into_iter().filter_map(|o| o.error).take(5).collect(),
    }
}
