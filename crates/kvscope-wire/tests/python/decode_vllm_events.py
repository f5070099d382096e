"""Decodes the KV events a running `kvscope serve --kv-events-endpoint` publishes
with vLLM's own schema (msgspec), strictly, and checks them.

The classes below mirror vllm/distributed/kv_events.py: the fields and struct
options of vllm-project/vllm 0181ea3173e53eea8cf04a86891488e3dc89bb34, with
EventBatch array_like=True as vLLM v0.28.0 declares it (see kvscope-wire's
crate docs for why). The __hash__ methods vLLM adds for its multi-worker
aggregator play no part in encoding and are left out.

Every frame is checked: the topic, an 8-byte big-endian sequence number
counting up by one, and a payload that msgspec decodes as a KVEventBatch and
re-encodes to the very same bytes (so kvscope writes nothing msgspec would
not). The prompts are sent as token ids, so the stored blocks' token_ids can
be compared with them. The replay endpoint is asked for everything from
sequence 0 and must answer with the same payloads and the end marker.

Usage: decode_vllm_events.py HTTP_BASE PUB_ENDPOINT REPLAY_ENDPOINT BLOCK_SIZE
Exit status 0 when every check passed; every wait is bounded.
"""

import json
import sys
import time
import urllib.request
from typing import Any

import msgspec
import zmq


class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    ts: float
    events: list[Any]
    data_parallel_rank: int | None = None


class KVCacheEvent(msgspec.Struct, omit_defaults=True, gc=False, tag=True):
    """Base class for all KV cache-related events"""


class BlockStored(KVCacheEvent):
    block_hashes: list[bytes | int]
    parent_block_hash: bytes | int | None
    token_ids: list[int]
    block_size: int
    lora_id: int | None
    medium: str | None
    lora_name: str | None
    extra_keys: list[tuple[Any, ...] | None] | None = None
    group_idx: int | None = None
    kv_cache_spec_kind: str | None = None
    kv_cache_spec_sliding_window: int | None = None


class BlockRemoved(KVCacheEvent):
    block_hashes: list[bytes | int]
    medium: str | None
    group_idx: int | None = None


class AllBlocksCleared(KVCacheEvent):
    pass


class KVEventBatch(EventBatch):
    events: list[BlockStored | BlockRemoved | AllBlocksCleared]


DECODER = msgspec.msgpack.Decoder(type=KVEventBatch)
ENCODER = msgspec.msgpack.Encoder()
END_SEQ = (-1).to_bytes(8, "big", signed=True)


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def complete(base: str, prompt: list[int]) -> None:
    body = json.dumps({"prompt": prompt, "max_tokens": 1, "ignore_eos": True}).encode()
    request = urllib.request.Request(
        f"{base}/v1/completions", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        if answer.status != 200:
            fail(f"completion answered {answer.status}")


def decode_strictly(payload: bytes) -> KVEventBatch:
    batch = DECODER.decode(payload)
    if ENCODER.encode(batch) != payload:
        fail(f"msgspec re-encodes the batch differently:\n{ENCODER.encode(batch).hex()}\n{payload.hex()}")
    return batch


def check_batch(batch: KVEventBatch, block_size: int) -> None:
    if batch.data_parallel_rank != 0:
        fail(f"data_parallel_rank {batch.data_parallel_rank!r}, vLLM's publisher stamps 0")
    if not batch.events:
        fail("an empty batch was published")
    for event in batch.events:
        if isinstance(event, BlockStored):
            if event.block_size != block_size:
                fail(f"block_size {event.block_size} != {block_size}")
            if len(event.token_ids) != block_size * len(event.block_hashes):
                fail(f"{len(event.token_ids)} tokens for {len(event.block_hashes)} blocks")
            if not all(isinstance(h, int) and 0 <= h < 2**64 for h in event.block_hashes):
                fail(f"block hashes are not u64 ints: {event.block_hashes}")
        elif isinstance(event, BlockRemoved):
            if not event.block_hashes:
                fail("a BlockRemoved without hashes")


class Listener:
    def __init__(self, endpoint: str, block_size: int) -> None:
        self.sub = zmq.Context.instance().socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(endpoint)
        self.block_size = block_size
        self.last_seq = None
        self.payloads: dict[int, bytes] = {}
        self.batches: list[KVEventBatch] = []

    def drain(self, wait_ms: int) -> int:
        """Reads every message that arrives within wait_ms of the last one."""
        count = 0
        while self.sub.poll(wait_ms):
            frames = self.sub.recv_multipart()
            if len(frames) != 3:
                fail(f"{len(frames)} frames, vLLM sends (topic, seq, payload)")
            topic, seq_bytes, payload = frames
            if topic != b"":
                fail(f"topic {topic!r}, expected the default empty topic")
            if len(seq_bytes) != 8:
                fail(f"sequence number of {len(seq_bytes)} bytes")
            seq = int.from_bytes(seq_bytes, "big")
            if self.last_seq is not None and seq != self.last_seq + 1:
                fail(f"sequence {seq} after {self.last_seq}")
            self.last_seq = seq
            batch = decode_strictly(payload)
            check_batch(batch, self.block_size)
            self.payloads[seq] = payload
            self.batches.append(batch)
            count += 1
        return count


def check_replay(endpoint: str, payloads: dict[int, bytes]) -> int:
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.connect(endpoint)
    dealer.send_multipart([b"", (0).to_bytes(8, "big")])
    replayed = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not dealer.poll(2000):
            fail("the replay answer stopped before its end marker")
        frames = dealer.recv_multipart()
        if len(frames) != 3 or frames[0] != b"":
            fail(f"replay answer of {len(frames)} frames: {frames!r}")
        _, seq_bytes, payload = frames
        if seq_bytes == END_SEQ:
            if payload != b"":
                fail("the end marker carries a payload")
            return replayed
        seq = int.from_bytes(seq_bytes, "big")
        decode_strictly(payload)
        if seq in payloads and payloads[seq] != payload:
            fail(f"replayed batch {seq} differs from the live one")
        replayed += 1
    fail("the replay did not end within 10 s")
    return replayed


def main() -> None:
    base, endpoint, replay_endpoint, block_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    listener = Listener(endpoint, block_size)
    # PUB/SUB drops what is sent before the subscription arrives: warm up
    # with distinct prompts until a batch is heard (bounded).
    for i in range(40):
        complete(base, [1000 + i] * (2 * block_size))
        if listener.drain(300):
            break
    else:
        fail("no KV event batch arrived after 40 completions")
    shared = list(range(2000, 2000 + 2 * block_size))
    complete(base, shared + [7, 8, 9])
    complete(base, shared + [10, 11, 12])
    listener.drain(1000)
    stored = [e for b in listener.batches for e in b.events if isinstance(e, BlockStored)]
    if not any(e.token_ids[: 2 * block_size] == shared and e.parent_block_hash is None for e in stored):
        fail(f"no BlockStored carries the shared prompt's two blocks: {stored}")
    replayed = check_replay(replay_endpoint, listener.payloads)
    print(
        f"ok: {len(listener.batches)} batches decoded with vLLM's schema and re-encoded byte for byte, "
        f"{len(stored)} BlockStored, {replayed} replayed"
    )


if __name__ == "__main__":
    main()
