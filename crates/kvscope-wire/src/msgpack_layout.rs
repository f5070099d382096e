//! How vLLM's msgspec structs lie in msgpack, both ways.
//!
//! msgspec writes a struct as a map of its fields in declaration order, or
//! as an array of them with `array_like=True`; `tag=True` adds the class
//! name (a `"type"` key first in a map, the first element of an array);
//! `omit_defaults=True` leaves out fields that have a default and hold it
//! (required fields are written even when nil). Integers take their
//! shortest msgpack form and Python floats are float64, as `rmpv` writes
//! them, so a batch encoded here is byte for byte what msgspec writes for
//! the same values (the Python test re-encodes every received payload with
//! msgspec and compares).
//!
//! vLLM has shipped two layouts (see the crate docs for the versions):
//! [`Layout::Tagged`], the batch an array and each event a tagged map, and
//! [`Layout::Legacy`], everything arrays. Decoding accepts both, and also a
//! batch written as a map, so a reader follows whichever engine it meets.

use crate::kv_events::{BlockHash, BlockRemoved, BlockStored, EventBatch, KvCacheEvent};
use rmpv::Value;

/// Which of vLLM's msgpack layouts to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// `EventBatch` array-like `[ts, events, data_parallel_rank]`; events
    /// tagged maps (`{"type": "BlockStored", ...}`).
    #[default]
    Tagged,
    /// Events array-like too: `["BlockStored", block_hashes, ...]`.
    Legacy,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not msgpack: {0}")]
    Msgpack(String),
    #[error("not a vLLM KV-event batch: {0}")]
    Shape(String),
}

fn shape(what: impl Into<String>) -> DecodeError {
    DecodeError::Shape(what.into())
}

/// The msgpack bytes of `batch` in `layout`.
pub fn encode_batch(batch: &EventBatch, layout: Layout) -> Vec<u8> {
    let events = batch.events.iter().map(|e| encode_event(e, layout)).collect();
    let mut fields = vec![Value::F64(batch.ts), Value::Array(events)];
    if let Some(rank) = batch.data_parallel_rank {
        fields.push(Value::from(rank));
    }
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &Value::Array(fields)).expect("writing to a Vec cannot fail");
    out
}

fn hash_value(hash: &BlockHash) -> Value {
    match hash {
        BlockHash::Int(v) => Value::from(*v),
        BlockHash::Bytes(b) => Value::Binary(b.clone()),
    }
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Nil, Into::into)
}

/// An event's fields in declaration order: `(name, value, has_default)`.
fn event_fields(event: &KvCacheEvent) -> Vec<(&'static str, Value, bool)> {
    let hashes = |h: &[BlockHash]| Value::Array(h.iter().map(hash_value).collect());
    match event {
        KvCacheEvent::BlockStored(s) => vec![
            ("block_hashes", hashes(&s.block_hashes), false),
            ("parent_block_hash", s.parent_block_hash.as_ref().map_or(Value::Nil, hash_value), false),
            ("token_ids", Value::Array(s.token_ids.iter().map(|&t| Value::from(t)).collect()), false),
            ("block_size", Value::from(s.block_size), false),
            ("lora_id", opt(s.lora_id), false),
            ("medium", opt(s.medium.clone()), false),
            ("lora_name", opt(s.lora_name.clone()), false),
            ("group_idx", opt(s.group_idx), true),
        ],
        KvCacheEvent::BlockRemoved(r) => vec![
            ("block_hashes", hashes(&r.block_hashes), false),
            ("medium", opt(r.medium.clone()), false),
            ("group_idx", opt(r.group_idx), true),
        ],
        KvCacheEvent::AllBlocksCleared | KvCacheEvent::Unknown(_) => Vec::new(),
    }
}

fn encode_event(event: &KvCacheEvent, layout: Layout) -> Value {
    let tag = Value::from(event.tag());
    // omit_defaults: a defaulted field holding its default (nil) is left out.
    let fields = event_fields(event).into_iter().filter(|(_, v, has_default)| !(*has_default && v.is_nil()));
    match layout {
        Layout::Tagged => {
            let mut map = vec![(Value::from("type"), tag)];
            map.extend(fields.map(|(name, v, _)| (Value::from(name), v)));
            Value::Map(map)
        }
        Layout::Legacy => {
            let mut array = vec![tag];
            array.extend(fields.map(|(_, v, _)| v));
            Value::Array(array)
        }
    }
}

/// Decodes one published payload, in any layout vLLM has used.
pub fn decode_batch(bytes: &[u8]) -> Result<EventBatch, DecodeError> {
    let mut reader = bytes;
    let value = rmpv::decode::read_value(&mut reader).map_err(|e| DecodeError::Msgpack(e.to_string()))?;
    if !reader.is_empty() {
        return Err(DecodeError::Msgpack(format!("{} bytes after the batch", reader.len())));
    }
    let (ts, events, rank) = match &value {
        Value::Array(items) => (items.first(), items.get(1), items.get(2)),
        Value::Map(_) => (map_get(&value, "ts"), map_get(&value, "events"), map_get(&value, "data_parallel_rank")),
        _ => return Err(shape("the batch is neither an array nor a map")),
    };
    let ts = ts.and_then(Value::as_f64).ok_or_else(|| shape("`ts` is missing or not a number"))?;
    let events = events.and_then(Value::as_array).ok_or_else(|| shape("`events` is missing or not a list"))?;
    let data_parallel_rank = match rank {
        None | Some(Value::Nil) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| shape("`data_parallel_rank` is not an integer"))?),
    };
    let events = events.iter().map(decode_event).collect::<Result<_, _>>()?;
    Ok(EventBatch { ts, events, data_parallel_rank })
}

fn map_get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

/// An event's fields by name, from either layout.
struct Fields<'a> {
    value: &'a Value,
    names: &'static [&'static str],
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a Value> {
        match self.value {
            Value::Map(_) => map_get(self.value, name),
            // Position 0 is the tag.
            Value::Array(items) => self.names.iter().position(|n| *n == name).and_then(|i| items.get(i + 1)),
            _ => None,
        }
    }
    fn required(&self, name: &str) -> Result<&'a Value, DecodeError> {
        self.get(name).ok_or_else(|| shape(format!("the event has no `{name}`")))
    }
    fn opt_str(&self, name: &str) -> Result<Option<String>, DecodeError> {
        match self.get(name) {
            None | Some(Value::Nil) => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| shape(format!("`{name}` is not a string"))),
        }
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>, DecodeError> {
        match self.get(name) {
            None | Some(Value::Nil) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| shape(format!("`{name}` is not an integer"))),
        }
    }
    fn hashes(&self, name: &str) -> Result<Vec<BlockHash>, DecodeError> {
        let list = self.required(name)?.as_array().ok_or_else(|| shape(format!("`{name}` is not a list")))?;
        list.iter().map(decode_hash).collect()
    }
}

const STORED_FIELDS: &[&str] = &[
    "block_hashes",
    "parent_block_hash",
    "token_ids",
    "block_size",
    "lora_id",
    "medium",
    "lora_name",
    "extra_keys",
    "group_idx",
];
const REMOVED_FIELDS: &[&str] = &["block_hashes", "medium", "group_idx"];

fn decode_hash(v: &Value) -> Result<BlockHash, DecodeError> {
    match v {
        Value::Binary(b) => Ok(BlockHash::Bytes(b.clone())),
        // A signed form (some relays send i64) keeps its bits.
        Value::Integer(i) => {
            i.as_u64().or(i.as_i64().map(|s| s as u64)).map(BlockHash::Int).ok_or_else(|| shape("bad hash"))
        }
        _ => Err(shape("a block hash is neither an integer nor bytes")),
    }
}

fn decode_event(value: &Value) -> Result<KvCacheEvent, DecodeError> {
    let tag = match value {
        Value::Map(_) => map_get(value, "type"),
        Value::Array(items) => items.first(),
        _ => None,
    }
    .and_then(Value::as_str)
    .ok_or_else(|| shape("an event has no tag"))?;
    match tag {
        "BlockStored" => decode_stored(&Fields { value, names: STORED_FIELDS }).map(KvCacheEvent::BlockStored),
        "BlockRemoved" => {
            let f = Fields { value, names: REMOVED_FIELDS };
            Ok(KvCacheEvent::BlockRemoved(BlockRemoved {
                block_hashes: f.hashes("block_hashes")?,
                medium: f.opt_str("medium")?,
                group_idx: f.opt_int("group_idx")?,
            }))
        }
        "AllBlocksCleared" => Ok(KvCacheEvent::AllBlocksCleared),
        other => Ok(KvCacheEvent::Unknown(other.to_owned())),
    }
}

fn decode_stored(f: &Fields) -> Result<BlockStored, DecodeError> {
    let tokens = f.required("token_ids")?.as_array().ok_or_else(|| shape("`token_ids` is not a list"))?;
    let token_ids = tokens
        .iter()
        .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()).ok_or_else(|| shape("a token id is not a u32")))
        .collect::<Result<_, _>>()?;
    let block_size = f.required("block_size")?.as_u64().and_then(|b| u32::try_from(b).ok());
    Ok(BlockStored {
        block_hashes: f.hashes("block_hashes")?,
        parent_block_hash: match f.get("parent_block_hash") {
            None | Some(Value::Nil) => None,
            Some(v) => Some(decode_hash(v)?),
        },
        token_ids,
        block_size: block_size.ok_or_else(|| shape("`block_size` is not a u32"))?,
        lora_id: f.opt_int("lora_id")?,
        medium: f.opt_str("medium")?,
        lora_name: f.opt_str("lora_name")?,
        group_idx: f.opt_int("group_idx")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> KvCacheEvent {
        KvCacheEvent::BlockStored(BlockStored {
            block_hashes: vec![BlockHash::Int(u64::MAX), BlockHash::Int(7)],
            parent_block_hash: None,
            token_ids: vec![1, 300, 70_000, 4],
            block_size: 2,
            lora_id: None,
            medium: Some("CPU".into()),
            lora_name: None,
            group_idx: None,
        })
    }

    fn batch() -> EventBatch {
        let removed = KvCacheEvent::BlockRemoved(BlockRemoved {
            block_hashes: vec![BlockHash::Bytes(vec![1, 2, 3])],
            medium: None,
            group_idx: Some(0),
        });
        EventBatch {
            ts: 1.5,
            events: vec![stored(), removed, KvCacheEvent::AllBlocksCleared],
            data_parallel_rank: Some(0),
        }
    }

    #[test]
    fn both_layouts_round_trip() {
        for layout in [Layout::Tagged, Layout::Legacy] {
            assert_eq!(decode_batch(&encode_batch(&batch(), layout)).unwrap(), batch());
        }
    }

    #[test]
    fn tagged_layout_is_msgspecs_bytes() {
        // msgspec.msgpack.encode(KVEventBatch(ts=1.5, events=[AllBlocksCleared()],
        // data_parallel_rank=0)) with vLLM's tagged-map events.
        let b = EventBatch { ts: 1.5, events: vec![KvCacheEvent::AllBlocksCleared], data_parallel_rank: Some(0) };
        let mut want = vec![0x93, 0xcb];
        want.extend(1.5f64.to_be_bytes());
        want.extend([0x91, 0x81, 0xa4]);
        want.extend(b"type");
        want.push(0xb0);
        want.extend(b"AllBlocksCleared");
        want.push(0x00);
        assert_eq!(encode_batch(&b, Layout::Tagged), want);
    }

    #[test]
    fn a_batch_written_as_a_map_and_unknown_events_decode() {
        let value = Value::Map(vec![
            (Value::from("ts"), Value::F64(2.0)),
            (
                Value::from("events"),
                Value::Array(vec![Value::Map(vec![(Value::from("type"), Value::from("BlockMoved"))])]),
            ),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        let b = decode_batch(&bytes).unwrap();
        assert_eq!(b.events, vec![KvCacheEvent::Unknown("BlockMoved".into())]);
        assert_eq!(b.data_parallel_rank, None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\xc1", b"\x93\xcb", b"\x92\x01\x02", b"\x93\xcb\0\0\0\0\0\0\0\0\x91\x05\x00"] {
            assert!(decode_batch(bytes).is_err(), "{bytes:?}");
        }
    }
}
