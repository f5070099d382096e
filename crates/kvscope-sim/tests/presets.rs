//! Presets: KV size per token from the model shape, pool arithmetic.

use kvscope_core::KvBlockManager;
use kvscope_sim::{hardware_preset, kv_pool, model_preset, SimConfig, SimError, HARDWARE_NAMES, MODEL_NAMES};

#[test]
fn kv_bytes_per_token_match_hand_computed_figures() {
    // K and V × layers × KV heads × head_dim × bytes per element.
    // Qwen3-0.6B, bf16: 2 × 28 × 8 × 128 × 2.
    assert_eq!(model_preset("qwen3-0.6b").unwrap().kv_bytes_per_token(), 114_688);
    // Llama-3.1-8B, bf16: 2 × 32 × 8 × 128 × 2.
    assert_eq!(model_preset("llama-3.1-8b").unwrap().kv_bytes_per_token(), 131_072);
    // Qwen3-8B, bf16: 2 × 36 × 8 × 128 × 2.
    assert_eq!(model_preset("qwen3-8b").unwrap().kv_bytes_per_token(), 147_456);
    // SmolLM2-135M with kvscope-model's default f16 KV: 2 × 30 × 3 × 64 × 2.
    assert_eq!(model_preset("smollm2-135m").unwrap().kv_bytes_per_token(), 23_040);
    // ... and with its int8 KV, one f32 scale per token and head: 2 × 30 × 3 × (64 + 4).
    let int8 = model_preset("smollm2-135m").unwrap().with_kv_dtype(kvscope_core::KvDtype::Int8);
    assert_eq!(int8.kv_bytes_per_token(), 12_240);
    // fp8 KV halves Llama's.
    assert_eq!(
        model_preset("llama-3.1-8b").unwrap().with_kv_dtype(kvscope_core::KvDtype::Fp8).kv_bytes_per_token(),
        65_536
    );
}

#[test]
fn every_named_preset_exists_and_is_case_insensitive() {
    for name in MODEL_NAMES {
        let m = model_preset(name).unwrap();
        assert_eq!(m.name, name);
        assert!(m.non_embedding_params < m.params);
        assert_eq!(m.heads % m.kv_heads, 0);
    }
    for name in HARDWARE_NAMES {
        assert_eq!(hardware_preset(name).unwrap().name, name);
    }
    assert!(model_preset("Qwen3-0.6B").is_some());
    assert!(hardware_preset("H100").is_some());
    assert!(matches!(SimConfig::from_names("gpt-5", "h100"), Err(SimError::UnknownModel(_))));
    assert!(matches!(SimConfig::from_names("qwen3-0.6b", "tpu"), Err(SimError::UnknownHardware(_))));
}

#[test]
fn kv_pool_is_memory_times_utilization_minus_weights_minus_reserve() {
    let m = model_preset("qwen3-0.6b").unwrap();
    let hw = hardware_preset("h100").unwrap();
    let plan = kv_pool(&m, &hw, 0.9, 1 << 30, 16).unwrap();
    // 81559 MiB = 85_520_809_984 B; × 0.9 = 76_968_728_985 (truncated).
    assert_eq!(plan.usable_bytes, 76_968_728_985);
    // 0.6e9 params × 2 bytes.
    assert_eq!(plan.weight_bytes, 1_200_000_000);
    // 76_968_728_985 − 1_200_000_000 − 1_073_741_824.
    assert_eq!(plan.pool_bytes, 74_694_987_161);
    assert_eq!(plan.bytes_per_block, 114_688 * 16);
    // 74_694_987_161 / 1_835_008 = 40_705.7…
    assert_eq!(plan.num_blocks, 40_705);
    assert_eq!(plan.kv_tokens(), 651_280);
    let printed = plan.to_string();
    assert!(printed.contains("40705 blocks"), "{printed}");
    assert!(printed.contains("weights"), "{printed}");
}

#[test]
fn a_model_that_does_not_fit_is_refused_with_the_numbers() {
    let m = model_preset("qwen3-8b").unwrap();
    let hw = hardware_preset("rtx-4090").unwrap();
    // 24 GB × 0.5 = 12.9 GB < 16.4 GB of weights.
    let err = kv_pool(&m, &hw, 0.5, 0, 16).unwrap_err();
    assert!(matches!(err, SimError::NoRoomForKv { .. }));
    assert!(err.to_string().contains("does not fit"));
    assert!(matches!(kv_pool(&m, &hw, 1.5, 0, 16), Err(SimError::BadUtilization(_))));
    assert!(matches!(kv_pool(&m, &hw, 0.9, 0, 0), Err(SimError::BadBlockSize)));
    // At 0.9 it fits, with room for a few thousand tokens per GB left.
    assert!(kv_pool(&m, &hw, 0.9, 1 << 30, 16).unwrap().num_blocks > 0);
}

#[test]
fn sim_config_sizes_the_engine_pool_from_memory_or_the_override() {
    let mut config = SimConfig::from_names("llama-3.1-8b", "a100-80g").unwrap();
    let (engine, plan) = config.build().unwrap();
    assert_eq!(engine.scheduler().block_manager().total_blocks(), plan.num_blocks);
    assert_eq!(plan.bytes_per_block, 131_072 * 16);
    config.kv_blocks = Some(100);
    let (engine, _) = config.build().unwrap();
    assert_eq!(engine.scheduler().block_manager().total_blocks(), 100);
}
