//! kvscope-wire: the wire formats kvscope speaks with other engines.
//!
//! - vLLM's KV-event protocol ([`kv_events`], [`msgpack_layout`],
//!   [`publisher`], [`subscriber`]): msgpack batches of `BlockStored` /
//!   `BlockRemoved` / `AllBlocksCleared` over ZeroMQ, PUB/SUB with a
//!   ROUTER replay endpoint. `kvscope serve --kv-events-endpoint` publishes
//!   it; the lab's remote target reads it.
//! - Prometheus text ([`prometheus_text`]) and each engine's metric names
//!   for the lab's quantities ([`metric_family`]).
//!
//! # What was checked against which vLLM
//!
//! Read in vllm-project/vllm's `vllm/distributed/kv_events.py`:
//! - at 0181ea3173e53eea8cf04a86891488e3dc89bb34: the event fields
//!   (`BlockStored`: `block_hashes`, `parent_block_hash`, `token_ids`,
//!   `block_size`, `lora_id`, `medium`, `lora_name`, then the defaulted
//!   `extra_keys`, `group_idx`, `kv_cache_spec_kind`,
//!   `kv_cache_spec_sliding_window`; `BlockRemoved`: `block_hashes`,
//!   `medium`, defaulted `group_idx`; `AllBlocksCleared`), `tag=True`,
//!   `omit_defaults=True`, the publisher (PUB frames topic / 8-byte
//!   big-endian sequence number from 0 / payload; `publish` stamps
//!   `data_parallel_rank`; ROUTER replay answering `[identity, "", start]`
//!   with `(seq, payload)` messages and `(-1, b"")` at the end) and the
//!   `KVEventsConfig` fields (`publisher`, `endpoint`, `replay_endpoint`,
//!   `topic`, `buffer_steps` 10,000, `hwm` 100,000, `max_queue_size`
//!   100,000; PUB binds when the endpoint has `*`, `::`, `ipc://` or
//!   `inproc://`, else connects).
//! - at b4e69e0af33f4698e157a262cc787fe61983cd3d (an early version): every
//!   struct `array_like=True` — [`msgpack_layout::Layout::Legacy`].
//!
//! The array/map layout is where versions differ. That 0181ea3 copy
//! declares no `array_like` at all; two downstream projects that mirror
//! vLLM v0.28.0's classes (found by search) declare `EventBatch`
//! `array_like=True` and the events tagged maps, which is what kvscope
//! writes by default ([`msgpack_layout::Layout::Tagged`]); the Python test
//! decodes kvscope's events with those classes and re-encodes them with
//! msgspec byte for byte. The decoder here accepts all three shapes.
//! vLLM's test suite at 05d3142f485910eab6c3421d8dcf37be44d5eaca expects
//! replay answers to carry the topic too (`(topic, seq, payload)`): the
//! subscriber reads the last two frames, so it takes either.

#![forbid(unsafe_code)]

pub mod endpoint;
pub mod kv_events;
pub mod metric_family;
pub mod msgpack_layout;
pub mod prometheus_text;
pub mod publisher;
pub mod subscriber;

pub use endpoint::check_tcp_endpoint;
pub use kv_events::{BlockHash, BlockRemoved, BlockStored, EventBatch, KvCacheEvent};
pub use metric_family::{EngineFamily, MetricSource, Quantity};
pub use msgpack_layout::{decode_batch, encode_batch, DecodeError, Layout};
pub use prometheus_text::{HistogramSample, MetricsPage};
pub use publisher::{PublishError, Publisher, PublisherConfig};
pub use subscriber::{Received, SubscribeError, Subscriber, SubscriberConfig};
