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
pub mod matmul;
pub mod rmsnorm;
pub mod rope;
pub mod simd;
pub mod weights;

pub use simd::{isa, Isa};

/// A raw pointer that may cross into rayon tasks which write disjoint parts
/// of one output buffer.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// Through a method, so closures capture the wrapper, not the raw field.
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
