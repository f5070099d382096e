#!/usr/bin/env python3
"""The speed targets (issue 10 on AVX-512, issue 21 on AVX2), kvscope beside llama.cpp in the same run.

kvscope:   `kvscope bench throughput ... --json` (S_PP and S_TG as llama-batched-bench defines them).
llama.cpp: `llama-batched-bench --output-format jsonl` on the same GGUF, same threads.

The peer is optional. Build it once (about 10 minutes on 2 cores) from the
llama.cpp vendored in the llama-cpp-python sdist:

    python3 -m pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d /tmp/peer
    cd /tmp/peer && tar xzf llama_cpp_python-0.3.36.tar.gz && cd llama_cpp_python-0.3.36/vendor/llama.cpp
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
    cmake --build build -j2 --target llama-batched-bench

then pass --llama-batched-bench PATH (or put it on PATH). For the AVX2 comparison build the peer for
AVX2 only (-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
-DGGML_AVX512=OFF) and run this script with KVSCOPE_ISA=avx2 and --targets avx2. Every case runs
--repeat times alternating the two engines; medians are printed, with the kernels and instruction
set kvscope ran and the int8 GOP/s its linear layers reached (all of the case's time counted against
them: a lower bound). llama.cpp runs in its default configuration (f16 KV) unless --no-repack is
given; its weight repacking applies on x86 to Q4_0, Q4_K, IQ4_NL and MXFP4 (and to Q8_0 only on ARM
and RISC-V: ggml-cpu/repack.cpp, ggml_repack_get_optimal_repack_type), so not to this model's Q4_1
layers and Q8_0 head: the flag changes nothing here (it was kept on earlier because the AMX repack
path died with SIGILL on the AMX machines).
"""
import argparse, json, shutil, statistics, subprocess, sys, os

CASES = [  # (name, concurrency, prompt_len, output_len, metric)
    ("prefill 512", 1, 512, 1, "prefill_tokens_per_s"),
    ("prefill 2048", 1, 2048, 1, "prefill_tokens_per_s"),
    ("decode 1 seq", 1, 128, 128, "decode_tokens_per_s"),
    ("decode 16 seqs (aggregate)", 16, 128, 128, "decode_tokens_per_s"),
]
TARGETS = {
    "avx512": {"prefill 512": 3.0, "prefill 2048": 3.0, "decode 1 seq": 1.5, "decode 16 seqs (aggregate)": 3.0},
    "avx2": {"prefill 512": 2.5, "prefill 2048": 2.0, "decode 1 seq": 1.3, "decode 16 seqs (aggregate)": 2.0},
}

# Integer multiply-adds of the linear layers per token of SmolLM2-135M on the
# int8 path: 30 layers × (QKV 960×576 counted twice for its two-term inputs,
# out 576×576, gate+up 3072×576, down 576×1536); the output head (49152×576)
# runs for every decoded token but only the last prompt token.
LAYER_MACS = 30 * (2 * 960 * 576 + 576 * 576 + 3072 * 576 + 576 * 1536)
HEAD_MACS = 49152 * 576


def kvscope(binary, model, c, l, o, kernels):
    cmd = [binary, "bench", "throughput", "--concurrency", str(c), "--prompt-len", str(l), "--output-len", str(o), "--json",
           "--kernels", kernels]
    if model:
        cmd += ["--model", model]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def llamacpp(binary, model, threads, c, l, o, no_repack):
    ctx = c * (l + o) + 64
    cmd = [binary, "-m", model, "-t", str(threads), "-tb", str(threads), "-c", str(ctx), "-b", "2048", "-ub", "512",
           "-npp", str(l), "-ntg", str(o), "-npl", str(c), "--output-format", "jsonl"] + (["--no-repack"] if no_repack else [])
    res = subprocess.run(cmd, capture_output=True, text=True)
    for line in (res.stdout + res.stderr).splitlines():
        if line.startswith("{") and '"speed_pp"' in line:
            r = json.loads(line)
            return {"prefill_tokens_per_s": r["speed_pp"], "decode_tokens_per_s": r["speed_tg"]}
    raise RuntimeError(f"llama-batched-bench gave no result:\n{res.stderr[-2000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvscope", default="target/release/kvscope")
    ap.add_argument("--llama-batched-bench", default=shutil.which("llama-batched-bench"))
    ap.add_argument("--model", default=None, help="GGUF (default: kvscope's cached default model)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kernels", default="int8", choices=["int8", "f32"])
    ap.add_argument("--targets", default="avx512", choices=sorted(TARGETS))
    ap.add_argument("--no-repack", action="store_true", help="pass --no-repack to llama.cpp")
    args = ap.parse_args()
    model = args.model
    if model is None:
        model = subprocess.run([args.kvscope, "fetch-model"], check=True, capture_output=True, text=True).stdout.strip()
    rows = []
    ran = None
    for name, c, l, o, metric in CASES:
        ours, peer = [], []
        for _ in range(args.repeat):
            r = kvscope(args.kvscope, model, c, l, o, args.kernels)
            ran = r.get("kernels", ran)
            ours.append(r[metric])
            if args.llama_batched_bench:
                peer.append(llamacpp(args.llama_batched_bench, model, args.threads, c, l, o, args.no_repack)[metric])
        k = statistics.median(ours)
        p = statistics.median(peer) if peer else None
        rows.append((name, c, l, o, metric, k, p))
    print("| case | C | L | O | kvscope (tok/s) | llama.cpp (tok/s) | ratio | target | kvscope int8 GOP/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, c, l, o, metric, k, p in rows:
        ratio = f"{k / p:.2f}×" if p else "—"
        peer = f"{p:.1f}" if p else "not run"
        macs = LAYER_MACS + (HEAD_MACS if metric == "decode_tokens_per_s" else HEAD_MACS / l)
        gops = 2 * macs * k / 1e9
        print(f"| {name} | {c} | {l} | {o} | {k:.1f} | {peer} | {ratio} | ≥ {TARGETS[args.targets][name]:g}× | {gops:.0f} |")
    print(f"\nmedians of {args.repeat} runs each, {args.threads} threads, kvscope kernels {ran}, model {model}, "
          f"KVSCOPE_ISA={os.environ.get('KVSCOPE_ISA', '(unset)')}")


if __name__ == "__main__":
    sys.exit(main())
