//! The unit of work of the SIMD int8 kernels.

use super::act::QuantizedRows;
use super::pack::PackedInt8;

/// Output rows from `r` × column groups from `g` (how many of each is the
/// kernel's const parameter), written into `y` with row stride `n`.
pub(super) struct Tile<'a> {
    pub a: &'a QuantizedRows,
    pub w: &'a PackedInt8,
    pub r: usize,
    pub g: usize,
    pub y: *mut f32,
    pub n: usize,
}
