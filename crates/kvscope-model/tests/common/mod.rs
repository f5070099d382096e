//! Shared by the golden tests: the default model (fetched the way users get
//! it) and the reference fixtures.
#![allow(dead_code)]

pub use kvscope_model::kernels::Kernels;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Deserialize, Debug)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Deserialize, Debug)]
pub struct Prompt {
    pub id: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    pub prompt_text: String,
    pub prompt_token_ids: Vec<u32>,
    pub generated_token_ids: Vec<u32>,
    pub top5_first_position: Vec<(u32, f32)>,
    pub top5_per_step: Vec<Vec<(u32, f32)>>,
}

#[derive(Deserialize, Debug)]
pub struct TokenizeOnly {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub token_ids: Option<Vec<u32>>,
}

#[derive(Deserialize, Debug)]
pub struct Golden {
    pub prompts: Vec<Prompt>,
    pub tokenize_only: Vec<TokenizeOnly>,
}

fn load(name: &str) -> Golden {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_slice(&std::fs::read(&p).expect("fixture")).expect("fixture json")
}

pub fn llamacpp() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| load("golden_llamacpp_dev.json"))
}

pub fn transformers() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| load("golden_transformers_dev.json"))
}

pub fn model_path() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| kvscope_model::fetch::ensure_default_model().expect("default model")).clone()
}

/// The default model's weights on the default (int8) kernels, loaded once
/// per test binary.
pub fn llama() -> &'static kvscope_model::llama::LlamaModel {
    llama_with(Kernels::default())
}

/// The default model's weights on the given kernels, loaded once per test
/// binary.
pub fn llama_with(kernels: Kernels) -> &'static kvscope_model::llama::LlamaModel {
    static F32: OnceLock<kvscope_model::llama::LlamaModel> = OnceLock::new();
    static INT8: OnceLock<kvscope_model::llama::LlamaModel> = OnceLock::new();
    let cell = match kernels {
        Kernels::F32 => &F32,
        Kernels::Int8 => &INT8,
    };
    cell.get_or_init(|| {
        let g = kvscope_model::gguf::Gguf::open(&model_path()).expect("open model");
        kvscope_model::llama::LlamaModel::load_with(&g, kernels).expect("load model")
    })
}

pub fn prompt<'a>(g: &'a Golden, id: &str) -> &'a Prompt {
    g.prompts.iter().find(|p| p.id == id).unwrap_or_else(|| panic!("no prompt {id}"))
}

/// Block ids `first..first + n`.
pub fn blocks(first: u32, n: u32) -> Vec<kvscope_core::ids::BlockId> {
    (first..first + n).map(kvscope_core::ids::BlockId).collect()
}

pub fn argmax(v: &[f32]) -> u32 {
    kvscope_model::sampler::argmax(v)
}

/// top1 − top2 of a reference top-5 list.
pub fn margin(top5: &[(u32, f32)]) -> f32 {
    top5[0].1 - top5[1].1
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Logits for the prompt's last position and after each of the first 47
/// tokens of `trajectory` (teacher forcing): 48 rows, one per reference step.
pub fn teacher_forced(m: &kvscope_model::llama::LlamaModel, p: &Prompt, trajectory: &[u32]) -> Vec<Vec<f32>> {
    teacher_forced_kv(m, kvscope_core::KvDtype::F32, p, trajectory)
}

/// As [`teacher_forced`], with the KV cache stored as `dtype`.
pub fn teacher_forced_kv(
    m: &kvscope_model::llama::LlamaModel,
    dtype: kvscope_core::KvDtype,
    p: &Prompt,
    trajectory: &[u32],
) -> Vec<Vec<f32>> {
    use kvscope_model::kv_storage::PagedKvCache;
    use kvscope_model::llama::{LogitsFor, SeqChunk};
    let mut tokens = p.prompt_token_ids.clone();
    tokens.extend(&trajectory[..47]);
    let bs = 16;
    let nb = tokens.len().div_ceil(bs) as u32;
    let mut kv = PagedKvCache::new(m.config(), dtype, nb as usize, bs).unwrap();
    let table = blocks(0, nb);
    let rows = m
        .forward(&mut kv, &[SeqChunk { tokens: &tokens, start_pos: 0, block_table: &table, logits: LogitsFor::All }])
        .unwrap();
    rows[p.prompt_token_ids.len() - 1..].to_vec()
}
