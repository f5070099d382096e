//! The same logits on every instruction set: `kvscope generate` run with the
//! instruction set capped (`KVSCOPE_ISA`) gives the same tokens and the same
//! log-probabilities (every top-5 value to the last bit) as the best path
//! this CPU has, on both the int8 and the f32 kernels and on every KV
//! storage format. `amx-emulated` runs the int8 AMX kernel's tile logic on
//! emulated tiles, so its end-to-end logits are checked on machines without
//! AMX too (where AMX-INT8 itself is the best path, `avx512-vnni` is then
//! the cap that checks VNNI).

use serde_json::Value;
use std::process::Command;

/// `(isa that ran, token ids, logprobs)` of one short greedy generation.
fn generate(kernels: &str, kv_dtype: &str, cap: Option<&str>) -> (String, Value, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvscope"));
    cmd.args(["generate", "--prompt", "The KV cache of a transformer holds", "--max-tokens", "6"]).args([
        "--json",
        "--logprobs",
        "5",
        "--kernels",
        kernels,
        "--kv-dtype",
        kv_dtype,
    ]);
    match cap {
        Some(isa) => cmd.env("KVSCOPE_ISA", isa),
        None => cmd.env_remove("KVSCOPE_ISA"),
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["isa"].as_str().unwrap().to_string(), v["token_ids"].clone(), v["logprobs"].clone())
}

#[test]
fn every_instruction_set_gives_the_same_logits() {
    for (kernels, kv) in [("int8", "f16"), ("f32", "f32"), ("int8", "int8")] {
        let (best, ids, logprobs) = generate(kernels, kv, None);
        let mut checked = vec![best.clone()];
        for cap in ["amx-emulated", "avx512-vnni", "avx-vnni", "avx2", "portable"] {
            let (isa, cap_ids, cap_logprobs) = generate(kernels, kv, Some(cap));
            if checked.contains(&isa) {
                continue; // this CPU has nothing between the best path and the cap
            }
            assert_eq!(cap_ids, ids, "{kernels}, {kv} KV: tokens on {isa} differ from {best}");
            assert_eq!(cap_logprobs, logprobs, "{kernels}, {kv} KV: log-probabilities on {isa} differ from {best}");
            checked.push(isa);
        }
        eprintln!("{kernels} kernels, {kv} KV: identical logits on {checked:?}");
        assert!(checked.iter().any(|i| i == "portable"), "the portable path always runs");
    }
}
