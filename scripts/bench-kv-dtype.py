#!/usr/bin/env python3
"""Decode speed per KV storage format (issue 12): 16 sequences, 1,024-token
prompts, aggregate decode tokens/s — kvscope beside llama.cpp in the same run.

kvscope:   `kvscope bench throughput --concurrency 16 --prompt-len 1024 --kv-dtype F --json`
llama.cpp: `llama-batched-bench -npl 16 -npp 1024 -ctk T -ctv T` (q8_0 V needs flash attention,
           so every llama.cpp row runs with `-fa on` to keep one attention path).

Decode at this context is where KV bytes matter: every step reads each
sequence's whole context through the block table. Every case runs --repeat
times, alternating engines and formats; medians are printed. Build the peer
as scripts/bench-vs-llamacpp.py says (it is optional).
"""
import argparse, json, os, shutil, statistics, subprocess

FORMATS = [("f32", "f32"), ("f16", "f16"), ("int8", "q8_0")]  # (kvscope, llama.cpp)


def kvscope(binary, model, c, l, o, dtype):
    cmd = [binary, "bench", "throughput", "--concurrency", str(c), "--prompt-len", str(l), "--output-len", str(o),
           "--kv-dtype", dtype, "--json"]
    if model:
        cmd += ["--model", model]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["decode_tokens_per_s"]


def llamacpp(binary, model, threads, c, l, o, cache_type):
    ctx = c * (l + o) + 64
    cmd = [binary, "-m", model, "-t", str(threads), "-tb", str(threads), "-c", str(ctx), "-b", "2048", "-ub", "512",
           "-npp", str(l), "-ntg", str(o), "-npl", str(c), "--output-format", "jsonl", "--no-repack",
           "-fa", "on", "-ctk", cache_type, "-ctv", cache_type]
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(binary)))
    for line in (res.stdout + res.stderr).splitlines():
        if line.startswith("{") and '"speed_tg"' in line:
            return json.loads(line)["speed_tg"]
    raise RuntimeError(f"llama-batched-bench gave no result:\n{res.stderr[-2000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvscope", default="target/release/kvscope")
    ap.add_argument("--llama-batched-bench", default=shutil.which("llama-batched-bench"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=1024)
    ap.add_argument("--output-len", type=int, default=32)
    args = ap.parse_args()
    model = args.model or subprocess.run([args.kvscope, "fetch-model"], check=True, capture_output=True, text=True).stdout.strip()
    c, l, o = args.concurrency, args.prompt_len, args.output_len
    ours = {f: [] for f, _ in FORMATS}
    peer = {f: [] for f, _ in FORMATS}
    for _ in range(args.repeat):
        for ours_name, peer_name in FORMATS:
            ours[ours_name].append(kvscope(args.kvscope, model, c, l, o, ours_name))
            if args.llama_batched_bench:
                peer[ours_name].append(llamacpp(args.llama_batched_bench, model, args.threads, c, l, o, peer_name))
    print(f"decode, {c} sequences × {l}-token prompts, {o} output tokens, {args.threads} threads, median of {args.repeat}")
    print("| KV format | kvscope tok/s | llama.cpp tok/s (its format) | ratio |")
    print("|---|---:|---:|---:|")
    for ours_name, peer_name in FORMATS:
        k = statistics.median(ours[ours_name])
        if peer[ours_name]:
            p = statistics.median(peer[ours_name])
            print(f"| {ours_name} | {k:.1f} | {p:.1f} ({peer_name}) | {k / p:.2f}× |")
        else:
            print(f"| {ours_name} | {k:.1f} | — | — |")
    print("raw:", json.dumps({"kvscope": ours, "llama.cpp": peer}))


if __name__ == "__main__":
    main()
