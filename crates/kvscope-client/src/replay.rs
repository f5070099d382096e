//! Replays an arrival schedule against a server: each request is sent at
//! its time (seconds after the start), optionally capped at a number in
//! flight, and streamed to the end.

use crate::completion::{CompletionClient, CompletionRequest, RequestTiming};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Every request's timing, in the order the requests were given.
#[derive(Debug)]
pub struct Replayed {
    /// When the schedule started (its time 0) on the client's clock.
    pub start: Instant,
    pub timings: Vec<RequestTiming>,
    /// The start to the last answer, seconds.
    pub duration_s: f64,
}

/// Sends `requests[i]` at `arrivals[i]` seconds after the start (the
/// experiment layer's [`kvscope_experiment::Arrival`] draws such times),
/// with at most `max_concurrency` in flight when given (a request past
/// the cap waits for a slot, then is sent).
pub async fn replay(
    client: &CompletionClient,
    requests: Vec<CompletionRequest>,
    arrivals: &[f64],
    max_concurrency: Option<usize>,
) -> anyhow::Result<Replayed> {
    anyhow::ensure!(
        requests.len() == arrivals.len(),
        "{} requests but {} arrival times: give one time per request",
        requests.len(),
        arrivals.len()
    );
    anyhow::ensure!(max_concurrency != Some(0), "--max-concurrency must be at least 1");
    requests.iter().try_for_each(CompletionRequest::check)?;
    let limit = max_concurrency.map(|n| Arc::new(Semaphore::new(n)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(requests.len());
    for (request, &at) in requests.into_iter().zip(arrivals) {
        tokio::time::sleep_until((start + Duration::from_secs_f64(at)).into()).await;
        let (client, limit) = (client.clone(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = match &limit {
                Some(s) => Some(s.clone().acquire_owned().await.expect("never closed")),
                None => None,
            };
            client.send(&request).await
        }));
    }
    let mut timings = Vec::with_capacity(tasks.len());
    for t in tasks {
        timings.push(t.await.unwrap_or_else(|e| RequestTiming::failed(start, e.to_string())));
    }
    Ok(Replayed { start, timings, duration_s: start.elapsed().as_secs_f64() })
}
