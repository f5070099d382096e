"""Lab 4 exercise: your own paged KV block manager (nano-vLLM's interface).
实验 4 练习: 自己实现分页 KV 块管理器 (nano-vLLM 的 BlockManager 接口)。

Fill in the five methods marked TODO, then grade them on the real model:
填完标 TODO 的五个方法, 然后在真实模型上评分:

    kvscope exercise check block_manager.py
    kvscope lab --quick --block-manager block_manager.py   # the whole lab on your manager / 用你的管理器跑完整实验

The KV cache is a pool of `num_blocks` physical blocks of `block_size`
token slots. Token i of a sequence lives in block seq.block_table[i //
block_size], slot i % block_size. A block can be in several tables at once
(a shared prefix); its ref_count is how many. A full block is indexed by a
chained hash of its whole prefix so a later request with the same prefix can
reuse its KV instead of recomputing it.
KV 缓存是 num_blocks 个物理块组成的池, 每块 block_size 个 token 槽位。序列的
第 i 个 token 存在 seq.block_table[i // block_size] 块的第 i % block_size 个槽
位。一个块可以同时出现在多个块表里 (共享前缀), ref_count 就是出现的次数。满块
按"整个前缀"的链式哈希建索引, 之后前缀相同的请求可以直接复用它的 KV。

How kvscope calls you (the same order as nano-vLLM's scheduler):
kvscope 的调用顺序 (与 nano-vLLM 的 scheduler 相同):
1. A waiting sequence: can_allocate(seq); if yes, allocate(seq).
   等待中的序列: 先 can_allocate(seq), 可以则 allocate(seq)。
2. Every decode step of a running sequence, after the token sampled last
   step was appended to seq (so len(seq) counts it) and before its KV is
   computed: can_append(seq); if yes, may_append(seq). If no, kvscope
   preempts the most recently admitted sequence (deallocate) and asks again.
   运行中序列的每个 decode 步: 上一步采样的 token 已追加进 seq (len(seq) 已
   包含它), 但它的 KV 还没算: 先 can_append(seq), 可以则 may_append(seq);
   不可以则 kvscope 抢占最近准入的序列 (deallocate) 后再问。
3. Finish, preemption or abort: deallocate(seq). A preempted sequence keeps
   its tokens and comes back through can_allocate / allocate.
   完成、被抢占或中止: deallocate(seq)。被抢占的序列保留 token, 之后重新走
   can_allocate / allocate。

kvscope reads your state after every call to grade you, so keep nano-vLLM's
layout: `self.blocks` (a list of Block with ref_count) and
`self.free_block_ids`. Only the standard library is available unless you
install more (`python3 -m pip install ...`).
kvscope 每次调用后都会读取你的状态来评分, 所以请保持 nano-vLLM 的数据布局:
self.blocks (Block 列表, 带 ref_count) 和 self.free_block_ids。
"""

import hashlib
import struct
from collections import deque

from sequence import Sequence  # kvscope's Sequence; see sequence.py / 见 sequence.py


class Block:
    """One physical KV block. 一个物理 KV 块。"""

    def __init__(self, block_id):
        self.block_id = block_id
        self.ref_count = 0  # block tables holding it / 持有它的块表个数
        self.hash = -1  # chained hash once full and indexed, else -1 / 满块且已索引时的链式哈希, 否则 -1
        self.token_ids = []  # the tokens its KV belongs to (full blocks) / 满块对应的 token

    def update(self, hash_value, token_ids):
        self.hash = hash_value
        self.token_ids = list(token_ids)

    def reset(self):
        """A fresh block for new KV: one holder, no content. 新块: 一个持有者, 无内容。"""
        self.ref_count = 1
        self.hash = -1
        self.token_ids = []


def compute_hash(token_ids, prefix=-1):
    """Key of a full block: its tokens chained with the key of the block
    before it (-1 for the first block), so equal keys mean equal prefixes.
    A key is only a hint: equal keys may still hide different tokens.
    满块的键: 本块 token 与前一块的键链在一起 (第一块用 -1), 所以键相等意味着
    前缀相等。但键只是线索: 键相等时 token 仍可能不同, 必须再比较 token。"""
    h = hashlib.blake2b(digest_size=8)
    h.update(struct.pack("<q", prefix if prefix < (1 << 63) else prefix - (1 << 64)))
    h.update(struct.pack(f"<{len(token_ids)}I", *token_ids))
    return int.from_bytes(h.digest(), "little")


class BlockManager:
    def __init__(self, num_blocks, block_size):
        self.block_size = block_size
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.hash_to_block_id = {}  # chained hash -> block id / 链式哈希 -> 块号
        self.free_block_ids = deque(range(num_blocks))  # ref_count == 0 / 引用计数为 0 的块
        self.used_block_ids = set()  # ref_count > 0 / 引用计数大于 0 的块

    def can_allocate(self, seq: Sequence) -> bool:
        """TODO: may `seq` (waiting, empty block_table) get a block for every
        token it has, now?

        Must guarantee: True only if allocate(seq) will find enough free
        blocks. Counting seq.num_blocks against len(self.free_block_ids) is
        correct (it ignores prefix hits, so it is conservative).
        (Newer nano-vLLM returns an int instead: -1 for no, else the number
        of leading prefix-hit blocks, and takes it as allocate(seq, n).
        kvscope accepts both.)

        TODO: 现在能否给 seq (等待中, 块表为空) 的每个 token 分配块?
        必须保证: 只有 allocate(seq) 一定能拿到足够空闲块时才返回 True。用
        seq.num_blocks 与 len(self.free_block_ids) 比较是正确的 (忽略前缀命中,
        偏保守)。(新版 nano-vLLM 返回 int: -1 表示不行, 否则是前缀命中块数,
        再以 allocate(seq, n) 传入; kvscope 两种都接受。)
        """
        raise NotImplementedError("can_allocate")

    def allocate(self, seq: Sequence):
        """TODO: give `seq` its block table, reusing cached prefix blocks.

        Must guarantee / 必须保证:
        - afterwards len(seq.block_table) == seq.num_blocks, in position
          order; 之后块表恰好有 seq.num_blocks 个块, 按位置排列;
        - a leading full block is a prefix hit only if an indexed block has
          the same chained hash AND the same token_ids; from the first miss
          on, every block is fresh; 前导满块只有在链式哈希相同且 token_ids
          也相同时才算命中; 第一次未命中之后全部用新块;
        - a hit block gets ref_count += 1 (if it was free, it leaves
          free_block_ids); a fresh block comes off free_block_ids with
          ref_count 1, and its old index entry (if any) is dropped; 命中块
          ref_count += 1 (若它在空闲队列中则移出); 新块从 free_block_ids 取出,
          ref_count 为 1, 并删除它旧的索引项;
        - seq.num_cached_tokens == block_size * (number of hits); 命中块数乘
          block_size;
        - full blocks get their hash and token_ids recorded and indexed. 满块
          记录哈希和 token 并建索引。
        kvscope always computes at least the last token (it needs its
        logits), even if every block is a hit. kvscope 总会至少计算最后一个
        token。
        """
        raise NotImplementedError("allocate")

    def deallocate(self, seq: Sequence):
        """TODO: `seq` finished, was preempted or aborted: let go of its blocks.

        Must guarantee: every block in seq.block_table gets ref_count -= 1;
        a block reaching 0 goes back to free_block_ids (keeping its hash and
        tokens, so a later request with the same prefix can still reuse it
        until the block is handed out again); seq.block_table becomes [] and
        seq.num_cached_tokens 0. Releasing from the last block to the first
        makes the tail blocks the first to be reused, the shared prefix the last.
        必须保证: 块表中每个块 ref_count -= 1; 降到 0 的块回到 free_block_ids
        (保留哈希和 token, 在被重新分配前仍可被相同前缀复用); 之后
        seq.block_table 为 [], seq.num_cached_tokens 为 0。从最后一块往前释放,
        尾部块先被复用, 共享前缀最后被复用。
        """
        raise NotImplementedError("deallocate")

    def can_append(self, seq: Sequence) -> bool:
        """TODO: can the newest token of `seq` get a slot?

        Must guarantee: if the newest token starts a new block
        (len(seq) % block_size == 1), True only when a block is free;
        otherwise True (the last block has room).
        必须保证: 如果最新 token 开启新块 (len(seq) % block_size == 1), 只有有
        空闲块时才返回 True; 否则返回 True (最后一块还有空位)。
        """
        raise NotImplementedError("can_append")

    def may_append(self, seq: Sequence):
        """TODO: make room for the newest token of `seq` (its KV is computed
        in this same step).

        Must guarantee: when the newest token starts a new block, append a
        fresh block from free_block_ids (ref_count 1); when it completes the
        last block (len(seq) % block_size == 0), record that block's chained
        hash (prefix: the previous block's hash) and tokens and index it;
        otherwise change nothing. One token late is too late: kvscope writes
        the token's KV right after this call.
        必须保证: 最新 token 开启新块时, 从 free_block_ids 取一个新块追加到块表
        (ref_count 为 1); 它填满最后一块时 (len(seq) % block_size == 0), 计算
        该块的链式哈希 (前缀为前一块的哈希), 记录 token 并建索引; 否则什么都不
        改。晚一个 token 就来不及了: 这次调用之后 kvscope 立刻写入它的 KV。
        """
        raise NotImplementedError("may_append")
