//! CPU kernels for the forward pass.
//!
//! Batch invariance is the rule every kernel here keeps: a value computed for
//! one row (token) depends only on that row's inputs, never on which other
//! rows share the call, how they are tiled, or how threads split the work.
//! Every reduction therefore runs in one fixed order per instruction set:
//! `simd::dot` defines it (16 lanes accumulated over k in order, then a fixed
//! tree), and every kernel that reduces uses that order. Threads split over
//! output columns, rows or heads — never over a reduction.
//!
//! The AVX-512 and AVX2 paths compute the same 16-lane order and give the
//! same bits (checked: identical logits on this model); the portable path is
//! its own fixed order.

pub mod activation;
pub mod attention;
pub mod int8;
pub mod kv_elem;
pub mod matmul;
pub mod rmsnorm;
pub mod rope;
pub mod simd;
pub mod softmax;
pub mod weights;

pub use simd::{isa, Isa};

/// Threads the kernels split their work over: rayon's pool, which
/// `RAYON_NUM_THREADS` sizes (each `kvscope fleet` replica runs a share of
/// the machine), not the machine's CPU count.
pub fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Which numerics the linear layers use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// Weights dequantized to f32, f32 FMAs in one fixed order: the
    /// reference path (within ~1e-4 of HF transformers' f32 logits).
    F32,
    /// Activations quantized to int8 per 32-value block, integer dot products
    /// with the stored Q4_1/Q8_0 weights (`int8`): the fast path.
    #[default]
    Int8,
}

impl Kernels {
    pub fn name(self) -> &'static str {
        match self {
            Kernels::F32 => "f32",
            Kernels::Int8 => "int8",
        }
    }

    /// The instruction set these kernels run on in this process.
    pub fn isa_name(self) -> &'static str {
        match self {
            Kernels::F32 => match isa() {
                Isa::Avx512 => "avx512",
                Isa::Avx2 => "avx2",
                Isa::Portable => "portable",
            },
            Kernels::Int8 => int8::int8_isa().name(),
        }
    }

    /// "int8 (avx512-vnni)": what ran, for reports and JSON.
    pub fn describe(self) -> String {
        format!("{} ({})", self.name(), self.isa_name())
    }
}

impl std::str::FromStr for Kernels {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Kernels::F32),
            "int8" => Ok(Kernels::Int8),
            other => Err(format!("unknown kernels '{other}': use f32 (reference numerics) or int8 (fast, default)")),
        }
    }
}

/// Elementwise work on up to this many values runs on the calling thread:
/// handing it to the pool costs more than doing it (a decode step's rows).
pub(crate) const SERIAL_VALUES: usize = 1 << 15;

/// A raw pointer that may cross into rayon tasks which write disjoint parts
/// of one output buffer.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: the pointer is only written through by tasks that own disjoint
// parts of the buffer, which outlives the parallel call (see each user).
unsafe impl Send for SendPtr {}
// SAFETY: as for Send: shared only among tasks writing disjoint parts.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// Through a method, so closures capture the wrapper, not the raw field.
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
