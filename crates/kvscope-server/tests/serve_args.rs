//! `serve` takes the model group every model command shares (`--model`,
//! `--kernels`, `--kv-dtype`) and runs the same KV-format check before the
//! model loads.

use clap::Parser;
use kvscope_server::ServeArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn serve_args(args: &[&str]) -> ServeArgs {
    Cli::parse_from(std::iter::once("serve").chain(args.iter().copied())).serve
}

#[test]
fn serve_refuses_a_kv_format_the_cpu_engine_cannot_store_with_the_shared_check() {
    for dtype in ["bf16", "fp8"] {
        let args = serve_args(&["--kv-dtype", dtype]);
        let refused = args.check().expect_err("the CPU engine stores no such KV").to_string();
        let shared = args.model.check_kv_dtype().expect_err("the shared check refuses it").to_string();
        assert_eq!(refused, shared);
        assert!(refused.contains("--kv-dtype f32, f16 or int8"), "{refused}");
    }
    for dtype in ["f32", "f16", "int8"] {
        serve_args(&["--kv-cache-dtype", dtype]).check().unwrap();
    }
}

#[test]
fn serve_parses_the_model_group() {
    let args = serve_args(&["--model", "m.gguf", "--kernels", "f32", "--kv-dtype", "int8"]);
    assert_eq!(args.model.model.as_deref(), Some(std::path::Path::new("m.gguf")));
    assert_eq!(args.model.kernels, kvscope_model::kernels::Kernels::F32);
    assert_eq!(args.model.kv_dtype(), kvscope_core::KvDtype::Int8);
    assert_eq!(serve_args(&[]).model.kv_dtype(), kvscope_model::kv_storage::DEFAULT_KV_DTYPE);
}
