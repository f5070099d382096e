//! The other end of vLLM's KV-event protocol: a SUB socket on the PUB
//! endpoint, decoding every batch and stamping when it arrived, and a
//! DEALER socket on the replay endpoint to ask for batches a gap in the
//! sequence numbers says were missed.
//!
//! Bounded everywhere: a replay is asked for at most
//! [`SubscriberConfig::max_replay`] batches and waited for at most
//! [`SubscriberConfig::replay_timeout`]; what it could not recover is
//! counted in [`Subscriber::missed`]. Frames that are not a KV-event batch
//! are counted in [`Subscriber::malformed`], never a panic.

use crate::kv_events::EventBatch;
use crate::msgpack_layout::decode_batch;
use crate::publisher::END_SEQ;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, SubSocket, ZmqMessage};

#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// The engine's PUB endpoint, e.g. `tcp://127.0.0.1:5557`.
    pub endpoint: String,
    /// Its replay (ROUTER) endpoint, if it has one.
    pub replay_endpoint: Option<String>,
    /// Topic prefix to subscribe to (empty: everything).
    pub topic: String,
    /// Most batches one replay may bring back.
    pub max_replay: u64,
    /// How long to wait for a replay's answers.
    pub replay_timeout: Duration,
}

impl SubscriberConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        SubscriberConfig {
            endpoint: endpoint.into(),
            replay_endpoint: None,
            topic: String::new(),
            max_replay: 10_000,
            replay_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("cannot connect to the KV-event endpoint {endpoint}: {reason} (is the engine running with KV events on, e.g. vLLM's --kv-events-config or kvscope serve --kv-events-endpoint?)")]
    Connect { endpoint: String, reason: String },
    #[error("the KV-event socket failed: {0}")]
    Socket(String),
}

/// A batch as it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub seq: u64,
    pub batch: EventBatch,
    /// When this subscriber read it (for a replayed batch: when the replay
    /// answer arrived, not when it was first published).
    pub received_at: SystemTime,
    pub replayed: bool,
}

pub struct Subscriber {
    sub: SubSocket,
    replay: Option<DealerSocket>,
    config: SubscriberConfig,
    last_seq: Option<u64>,
    /// Replayed batches and the live one that revealed the gap, in order.
    ready: VecDeque<Received>,
    missed: u64,
    malformed: u64,
}

fn socket_err(e: zeromq::ZmqError) -> SubscribeError {
    SubscribeError::Socket(e.to_string())
}

impl Subscriber {
    pub async fn connect(config: SubscriberConfig) -> Result<Subscriber, SubscribeError> {
        let connect_err = |endpoint: &str, e: zeromq::ZmqError| SubscribeError::Connect {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        };
        let mut sub = SubSocket::new();
        sub.connect(&config.endpoint).await.map_err(|e| connect_err(&config.endpoint, e))?;
        sub.subscribe(&config.topic).await.map_err(socket_err)?;
        let replay = match &config.replay_endpoint {
            Some(endpoint) => {
                let mut dealer = DealerSocket::new();
                dealer.connect(endpoint).await.map_err(|e| connect_err(endpoint, e))?;
                Some(dealer)
            }
            None => None,
        };
        Ok(Subscriber { sub, replay, config, last_seq: None, ready: VecDeque::new(), missed: 0, malformed: 0 })
    }

    /// Batches a gap revealed that no replay brought back.
    pub fn missed(&self) -> u64 {
        self.missed
    }
    /// Messages that were not `(topic, seq, batch)` or did not decode.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// The next batch in sequence order, or `None` if none arrives within
    /// `timeout`. A gap is filled from the replay endpoint first.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<Received>, SubscribeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.ready.is_empty() {
            let message = match tokio::time::timeout_at(deadline, self.sub.recv()).await {
                Err(_) => return Ok(None),
                Ok(message) => message.map_err(socket_err)?,
            };
            let Some((seq, batch)) = self.parse_live(message) else { continue };
            let received = Received { seq, batch, received_at: SystemTime::now(), replayed: false };
            match self.last_seq {
                Some(last) if seq > last + 1 => self.fill_gap(last + 1, seq).await?,
                _ => {}
            }
            self.last_seq = Some(seq);
            self.ready.push_back(received);
        }
        Ok(self.ready.pop_front())
    }

    fn parse_live(&mut self, message: ZmqMessage) -> Option<(u64, EventBatch)> {
        let frames = message.into_vec();
        let parsed = match frames.as_slice() {
            [_topic, seq, payload] => parse_seq(seq).zip(decode_batch(payload).ok()),
            _ => None,
        };
        if parsed.is_none() {
            self.malformed += 1;
        }
        parsed
    }

    /// Asks for `[from, until)` and queues what comes back.
    async fn fill_gap(&mut self, from: u64, until: u64) -> Result<(), SubscribeError> {
        let wanted = until - from;
        let got = if wanted <= self.config.max_replay { self.replay_from(from, until).await? } else { Vec::new() };
        self.missed += wanted - got.len() as u64;
        self.ready.extend(got);
        Ok(())
    }

    /// Batches from `from` up to (not including) `until`, from the replay
    /// endpoint; empty without one. Stops at the end marker, at `until`, at
    /// `max_replay` batches or at the replay timeout.
    pub async fn replay_from(&mut self, from: u64, until: u64) -> Result<Vec<Received>, SubscribeError> {
        let Some(dealer) = self.replay.as_mut() else { return Ok(Vec::new()) };
        let mut request = ZmqMessage::from(Vec::new());
        request.push_back(from.to_be_bytes().to_vec().into());
        dealer.send(request).await.map_err(socket_err)?;
        let deadline = tokio::time::Instant::now() + self.config.replay_timeout;
        let mut got = Vec::new();
        while (got.len() as u64) < self.config.max_replay {
            let Ok(answer) = tokio::time::timeout_at(deadline, dealer.recv()).await else { break };
            let frames = answer.map_err(socket_err)?.into_vec();
            // [delimiter, (topic,) seq, payload]: newer vLLM adds the topic.
            let [.., seq, payload] = frames.as_slice() else { break };
            let Some(seq) = parse_seq(seq) else {
                if <[u8; 8]>::try_from(seq.as_ref()).ok().map(i64::from_be_bytes) != Some(END_SEQ) {
                    self.malformed += 1;
                }
                break;
            };
            if seq >= until {
                continue;
            }
            match decode_batch(payload) {
                Ok(batch) if seq >= from => {
                    got.push(Received { seq, batch, received_at: SystemTime::now(), replayed: true })
                }
                Ok(_) => {}
                Err(_) => self.malformed += 1,
            }
        }
        Ok(got)
    }
}

/// A sequence number: 8 big-endian bytes, not the end marker.
fn parse_seq(frame: &[u8]) -> Option<u64> {
    let bytes = <[u8; 8]>::try_from(frame).ok()?;
    let seq = i64::from_be_bytes(bytes);
    (seq >= 0).then_some(seq as u64)
}
