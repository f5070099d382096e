"""The per-request state object a block manager works on (kvscope's copy).

请求的状态对象: 块管理器读它的 token, 写它的块表。
The per-request state a block manager reads (its tokens) and writes (its
block table).

kvscope 运行你的 BlockManager 时用的就是这个类 (和 nano-vLLM 的 Sequence
字段同名、含义相同)。这个文件只供阅读: kvscope 使用它自带的副本, 改这里
不会改变评分。
kvscope runs your BlockManager on exactly this class (same field names and
meaning as nano-vLLM's Sequence). This file is for reading: kvscope uses its
own copy, so editing it here changes nothing in the grading.

Who writes which field / 谁写哪个字段:
- kvscope (the engine / 引擎): token_ids, num_tokens, last_token,
  num_prompt_tokens, num_scheduled_tokens, is_prefill. A sampled token is
  appended (append_token) *before* the next may_append(seq) call.
  新采样的 token 会在下一次 may_append(seq) 之前追加进来。
- your BlockManager / 你的块管理器: block_table, and num_cached_tokens in
  allocate (how many leading tokens the prefix hits already hold) and
  deallocate (back to 0).
  allocate 里设置 num_cached_tokens (前缀命中已持有 KV 的 token 数),
  deallocate 里清零。
"""

from enum import Enum, auto


class SequenceStatus(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


class Sequence:
    # Tokens per KV block; kvscope sets it to the pool's block size before
    # your BlockManager is constructed. / 每块 token 数, 由 kvscope 设置。
    block_size = 256

    def __init__(self, token_ids, seq_id=0):
        self.seq_id = seq_id
        self.status = SequenceStatus.WAITING
        self.token_ids = list(token_ids)
        self.last_token = self.token_ids[-1]
        self.num_tokens = len(self.token_ids)
        self.num_prompt_tokens = len(self.token_ids)
        # Leading tokens whose KV already exists in the blocks of block_table.
        # 块表里已经有 KV 的前缀 token 数。
        self.num_cached_tokens = 0
        # Tokens the current step computes (newer nano-vLLM's hash_blocks).
        self.num_scheduled_tokens = 0
        self.is_prefill = True
        # Physical block ids, in position order: token i lives in
        # block_table[i // block_size] at slot i % block_size.
        # 物理块号, 按位置排列: 第 i 个 token 在 block_table[i // block_size]
        # 的第 i % block_size 个槽位。
        self.block_table = []

    def __len__(self):
        return self.num_tokens

    def __getitem__(self, key):
        return self.token_ids[key]

    @property
    def is_finished(self):
        return self.status == SequenceStatus.FINISHED

    @property
    def num_completion_tokens(self):
        return self.num_tokens - self.num_prompt_tokens

    @property
    def prompt_token_ids(self):
        return self.token_ids[: self.num_prompt_tokens]

    @property
    def completion_token_ids(self):
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_cached_blocks(self):
        return self.num_cached_tokens // self.block_size

    @property
    def num_blocks(self):
        """Blocks needed to hold every token / 放下全部 token 需要的块数."""
        return (self.num_tokens + self.block_size - 1) // self.block_size

    @property
    def last_block_num_tokens(self):
        return self.num_tokens - (self.num_blocks - 1) * self.block_size

    def block(self, i):
        """The tokens of logical block i (the last one may be partial).
        第 i 个逻辑块的 token (最后一块可能不满)。"""
        assert 0 <= i < self.num_blocks, f"block {i} of a {self.num_blocks}-block sequence"
        return self.token_ids[i * self.block_size : (i + 1) * self.block_size]

    def append_token(self, token_id):
        self.token_ids.append(token_id)
        self.last_token = token_id
        self.num_tokens += 1
