//! vLLM's `ZmqEventPublisher`, in Rust: a PUB socket sending each batch as
//! three frames (topic, sequence number as 8 big-endian bytes, msgpack
//! payload), and an optional ROUTER socket that replays recent batches.
//!
//! Replay (vLLM's protocol): a client (REQ, or DEALER with an empty
//! delimiter) sends the first sequence number it wants as 8 big-endian
//! bytes; the publisher answers with one `(seq, payload)` message per
//! buffered batch from there on, then `(-1, b"")` as the end marker.
//!
//! Nothing here can hold up the caller: [`Publisher::publish`] puts the
//! batch in a bounded queue and counts it as dropped when the queue is full;
//! the sockets live on the publisher's own thread; a PUB socket drops
//! messages to a subscriber that does not keep up (ZeroMQ's rule); the
//! replay ring keeps the last `buffer_steps` batches.

use crate::kv_events::EventBatch;
use crate::msgpack_layout::{encode_batch, Layout};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use zeromq::{PubSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// vLLM's end-of-replay sequence number.
pub const END_SEQ: i64 = -1;

/// vLLM's `--kv-events-config` fields that a publisher uses, with vLLM's
/// defaults where it has them.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// PUB address, e.g. `tcp://127.0.0.1:5557` or vLLM's `tcp://*:5557`.
    pub endpoint: String,
    /// ROUTER address for replay requests; no replay when `None`.
    pub replay_endpoint: Option<String>,
    /// First frame of every message (vLLM's default: empty).
    pub topic: String,
    /// Batches kept for replay (vLLM's `buffer_steps`, default 10,000).
    pub buffer_steps: usize,
    /// Batches waiting to be sent before new ones are dropped (vLLM's
    /// `max_queue_size`, default 100,000; vLLM blocks when full, kvscope drops).
    pub max_queue_size: usize,
    pub layout: Layout,
}

impl PublisherConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        PublisherConfig {
            endpoint: endpoint.into(),
            replay_endpoint: None,
            topic: String::new(),
            buffer_steps: 10_000,
            max_queue_size: 100_000,
            layout: Layout::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot bind the KV-event socket to {endpoint}: {reason} (give a free tcp://HOST:PORT)")]
    Bind { endpoint: String, reason: String },
    #[error("the KV-event publisher thread could not start: {0}")]
    Thread(String),
}

/// A running publisher. Dropping it closes the queue; the thread sends what
/// is queued and ends.
pub struct Publisher {
    tx: mpsc::Sender<EventBatch>,
    dropped: Arc<AtomicU64>,
    endpoint: String,
    replay_endpoint: Option<String>,
}

impl Publisher {
    /// Binds the sockets on a new thread and returns once they are bound.
    pub fn start(config: PublisherConfig) -> Result<Publisher, PublishError> {
        let (tx, rx) = mpsc::channel(config.max_queue_size.max(1));
        let (bound_tx, bound_rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("kvscope-kv-events".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = bound_tx.send(Err(PublishError::Thread(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Sockets::bind(&config).await {
                        Ok((sockets, addrs)) => {
                            let _ = bound_tx.send(Ok(addrs));
                            sockets.run(rx, config).await;
                        }
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| PublishError::Thread(e.to_string()))?;
        let (endpoint, replay_endpoint) =
            bound_rx.recv().map_err(|_| PublishError::Thread("it ended before binding".into()))??;
        Ok(Publisher { tx, dropped: Arc::new(AtomicU64::new(0)), endpoint, replay_endpoint })
    }

    /// Queues `batch`; returns false (and counts it) when the queue is full
    /// or the publisher has stopped. Never waits.
    pub fn publish(&self, batch: EventBatch) -> bool {
        let sent = self.tx.try_send(batch).is_ok();
        if !sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Batches dropped because the queue was full, shared so a metrics
    /// registry can export it.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    /// The PUB address actually bound (the real port when 0 was asked for).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
    pub fn replay_endpoint(&self) -> Option<&str> {
        self.replay_endpoint.as_deref()
    }
}

/// vLLM's `tcp://*:PORT` means every interface; the ZeroMQ crate wants an
/// address.
fn bind_address(endpoint: &str) -> String {
    match endpoint.strip_prefix("tcp://*:") {
        Some(port) => format!("tcp://0.0.0.0:{port}"),
        None => endpoint.to_owned(),
    }
}

struct Sockets {
    publish: PubSocket,
    replay: Option<RouterSocket>,
}

type BoundAddrs = (String, Option<String>);

impl Sockets {
    async fn bind(config: &PublisherConfig) -> Result<(Sockets, BoundAddrs), PublishError> {
        let bind_err = |endpoint: &str, e: zeromq::ZmqError| PublishError::Bind {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        };
        let mut publish = PubSocket::new();
        let addr = publish.bind(&bind_address(&config.endpoint)).await.map_err(|e| bind_err(&config.endpoint, e))?;
        let (replay, replay_addr) = match &config.replay_endpoint {
            Some(endpoint) => {
                let mut router = RouterSocket::new();
                let addr = router.bind(&bind_address(endpoint)).await.map_err(|e| bind_err(endpoint, e))?;
                (Some(router), Some(addr.to_string()))
            }
            None => (None, None),
        };
        Ok((Sockets { publish, replay }, (addr.to_string(), replay_addr)))
    }

    async fn run(mut self, mut rx: mpsc::Receiver<EventBatch>, config: PublisherConfig) {
        let mut ring: VecDeque<(u64, Vec<u8>)> = VecDeque::with_capacity(config.buffer_steps.min(1024));
        let mut next_seq = 0u64;
        loop {
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    let payload = encode_batch(&batch, config.layout);
                    let message = frames(vec![config.topic.as_bytes().to_vec(), next_seq.to_be_bytes().to_vec(), payload.clone()]);
                    // A send error means no peer could take it; PUB drops then.
                    let _ = self.publish.send(message).await;
                    if config.buffer_steps > 0 {
                        if ring.len() == config.buffer_steps {
                            ring.pop_front();
                        }
                        ring.push_back((next_seq, payload));
                    }
                    next_seq += 1;
                }
                request = next_request(&mut self.replay) => {
                    if let (Ok(request), Some(router)) = (request, self.replay.as_mut()) {
                        serve_replay(router, request, &ring).await;
                    }
                }
            }
        }
    }
}

async fn next_request(replay: &mut Option<RouterSocket>) -> zeromq::ZmqResult<ZmqMessage> {
    match replay {
        Some(router) => router.recv().await,
        None => std::future::pending().await,
    }
}

fn frames(parts: Vec<Vec<u8>>) -> ZmqMessage {
    let mut parts = parts.into_iter();
    let mut message = ZmqMessage::from(parts.next().unwrap_or_default());
    for part in parts {
        message.push_back(part.into());
    }
    message
}

/// Answers one replay request `[identity, "", start_seq]`; anything else is
/// ignored, as vLLM does.
async fn serve_replay(router: &mut RouterSocket, request: ZmqMessage, ring: &VecDeque<(u64, Vec<u8>)>) {
    let parts = request.into_vec();
    let [identity, _, start] = parts.as_slice() else { return };
    let Ok(start) = <[u8; 8]>::try_from(start.as_ref()) else { return };
    let start = u64::from_be_bytes(start);
    for (seq, payload) in ring.iter().filter(|(seq, _)| *seq >= start) {
        let reply = frames(vec![identity.to_vec(), Vec::new(), seq.to_be_bytes().to_vec(), payload.clone()]);
        if router.send(reply).await.is_err() {
            return;
        }
    }
    let _ = router.send(frames(vec![identity.to_vec(), Vec::new(), END_SEQ.to_be_bytes().to_vec(), Vec::new()])).await;
}
