"""kvscope's host for a student's BlockManager: one JSON object per line.

kvscope (Rust) starts `python3 -u -B -c <this file> STUDENT_FILE`, writes one
request per line on stdin and reads one reply per line on stdout. The host
keeps one Sequence per request in step with the engine (tokens arrive as
they are sampled) and calls the student's methods in nano-vLLM's order.
Replies are `{"ok": true, ...}` or `{"ok": false, "kind": ..., "error": ...}`
with kind `exception` (with the traceback), `missing_module` (with the
module's name) or `contract` (a return value of the wrong shape). Anything
the student prints goes to stderr, so it can never break the protocol.
"""

import importlib.util
import inspect
import json
import os
import sys
import traceback
import types

PROTOCOL = sys.stdout
sys.stdout = sys.stderr


class ContractError(Exception):
    """A student method answered in a shape nano-vLLM's scheduler cannot use."""


def reply(obj):
    PROTOCOL.write(json.dumps(obj) + "\n")
    PROTOCOL.flush()


def limit_memory():
    # A runaway student loop must not take the machine down: 2 GiB of
    # address space is far more than any block manager needs.
    try:
        import resource

        cap = 2 << 30
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):
        pass


def install_sequence(source):
    """kvscope's Sequence, importable the ways students import it."""
    module = types.ModuleType("sequence")
    module.__file__ = "kvscope/sequence.py"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    for name in ("nanovllm", "nanovllm.engine"):
        package = sys.modules.setdefault(name, types.ModuleType(name))
        package.__path__ = []
    sys.modules["sequence"] = module
    sys.modules["nanovllm.engine.sequence"] = module
    sys.modules["nanovllm.engine"].sequence = module
    sys.modules["nanovllm"].engine = sys.modules["nanovllm.engine"]
    return module


def student_method_line(obj, name):
    try:
        fn = getattr(type(obj), name)
        return inspect.getsourcelines(fn)[1]
    except (AttributeError, OSError, TypeError):
        return None


class Host:
    def __init__(self, path):
        self.path = path
        self.bm = None
        self.seqs = {}
        self.inspect = False
        self.allocate_takes_cached = False
        self.has_hash_blocks = False

    # -- requests -------------------------------------------------------

    def init(self, req):
        limit_memory()
        seq_module = install_sequence(req["sequence_source"])
        seq_module.Sequence.block_size = req["block_size"]
        self.Sequence = seq_module.Sequence
        directory = os.path.dirname(os.path.abspath(self.path))
        sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location("student_block_manager", self.path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cls = getattr(module, "BlockManager", None)
        if cls is None:
            raise ContractError(f"{self.path} defines no class BlockManager")
        for name in ("can_allocate", "allocate", "deallocate", "can_append", "may_append"):
            if not callable(getattr(cls, name, None)):
                raise ContractError(f"BlockManager has no method {name}(seq)")
        self.bm = cls(req["num_blocks"], req["block_size"])
        self.inspect = bool(req.get("inspect"))
        params = inspect.signature(self.bm.allocate).parameters
        self.allocate_takes_cached = len(params) >= 2
        self.has_hash_blocks = callable(getattr(self.bm, "hash_blocks", None))
        lines = {n: student_method_line(self.bm, n) for n in
                 ("can_allocate", "allocate", "deallocate", "can_append", "may_append", "hash_blocks")}
        return {
            "allocate_takes_cached_blocks": self.allocate_takes_cached,
            "has_hash_blocks": self.has_hash_blocks,
            "lines": {k: v for k, v in lines.items() if v is not None},
            "state": self.state(),
        }

    def seq(self, req):
        """The request's Sequence, with the tokens sampled since last time."""
        rid = req["rid"]
        seq = self.seqs.get(rid)
        if seq is None:
            seq = self.Sequence(req["prompt"], rid)
            self.seqs[rid] = seq
        for token in req.get("append", ()):
            seq.append_token(token)
        return seq

    def can_allocate(self, req):
        seq = self.seq(req)
        value = self.bm.can_allocate(seq)
        # nano-vLLM's versions differ: a bool, or an int (-1 = no, otherwise
        # the number of leading blocks that are prefix hits).
        if isinstance(value, bool):
            return {"admit": value, "cached_blocks": None}
        if isinstance(value, int):
            if value < -1:
                raise ContractError(f"can_allocate returned {value}: an int answer must be -1 (no) or >= 0")
            return {"admit": value >= 0, "cached_blocks": value if value >= 0 else None}
        raise ContractError(
            f"can_allocate returned {value!r} ({type(value).__name__}): return a bool, "
            "or an int (-1: cannot allocate, otherwise the number of cached blocks)"
        )

    def allocate(self, req):
        seq = self.seq(req)
        if self.allocate_takes_cached:
            self.bm.allocate(seq, req.get("cached_blocks") or 0)
        else:
            self.bm.allocate(seq)
        seq.status = type(seq.status).RUNNING
        return {"table": self.table(seq), "num_cached_tokens": self.int_field(seq, "num_cached_tokens"),
                "state": self.state()}

    def append(self, req):
        seq = self.seq(req)
        seq.is_prefill = False
        seq.num_scheduled_tokens = 1
        if not self.bm.can_append(seq):
            return {"can": False, "state": self.state()}
        self.bm.may_append(seq)
        return {"can": True, "table": self.table(seq), "state": self.state()}

    def computed(self, req):
        seq = self.seq(req)
        seq.num_scheduled_tokens = req["num_computed"] - seq.num_cached_tokens
        if self.has_hash_blocks and seq.num_scheduled_tokens > 0:
            self.bm.hash_blocks(seq)
        seq.num_cached_tokens = req["num_computed"]
        seq.num_scheduled_tokens = 0
        return {"state": self.state()}

    def deallocate(self, req):
        seq = self.seq(req)
        released = list(seq.block_table)
        cached = sum(1 for b in released if self.indexed(b))
        self.bm.deallocate(seq)
        seq.is_prefill = True
        seq.status = type(seq.status).WAITING
        answer = {"table_after": self.table(seq), "num_cached_tokens_after": self.int_field(seq, "num_cached_tokens"),
                  "cached": cached, "state": self.state()}
        if req.get("forget"):
            del self.seqs[seq.seq_id]
        return answer

    # -- reading the student's state ----------------------------------------

    def table(self, seq):
        table = seq.block_table
        if not isinstance(table, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in table):
            raise ContractError(f"seq.block_table must be a list of int block ids, got {table!r}")
        return list(table)

    def int_field(self, seq, name):
        value = getattr(seq, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ContractError(f"seq.{name} must be an int, got {value!r}")
        return value

    def indexed(self, block_id):
        blocks = getattr(self.bm, "blocks", None)
        try:
            return getattr(blocks[block_id], "hash", -1) != -1
        except (TypeError, IndexError, KeyError):
            return False

    def state(self):
        """The student's own view of the pool (nano-vLLM's layout: a list
        `blocks` of objects with `ref_count`, and `free_block_ids`), for the
        grader; None when not asked for or not readable."""
        if not self.inspect:
            return None
        try:
            refs = [int(b.ref_count) for b in self.bm.blocks]
            free = [int(b) for b in self.bm.free_block_ids]
        except (AttributeError, TypeError, ValueError):
            return {"unreadable": "expose `self.blocks` (a list of blocks with `ref_count`) and "
                                  "`self.free_block_ids` (the free block ids), as nano-vLLM does"}
        return {"ref_counts": refs, "free": free}


def failure(exc):
    if isinstance(exc, ModuleNotFoundError):
        return {"ok": False, "kind": "missing_module", "module": exc.name or "", "error": str(exc)}
    if isinstance(exc, ContractError):
        return {"ok": False, "kind": "contract", "error": str(exc)}
    # Start the traceback at the student's code: the host's frames are noise.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return {"ok": False, "kind": "exception", "error": text}


def main():
    host = Host(sys.argv[1])
    ops = {
        "init": host.init,
        "can_allocate": host.can_allocate,
        "allocate": host.allocate,
        "append": host.append,
        "computed": host.computed,
        "deallocate": host.deallocate,
        "state": lambda req: {"state": host.state()},
    }
    for line in sys.stdin:
        try:
            req = json.loads(line)
            answer = ops[req["op"]](req)
            answer["ok"] = True
            reply(answer)
        except BaseException as exc:  # the student's bug (even exit()), reported, never fatal
            reply(failure(exc))


main()
