//! The int8 kernel on AMX-INT8 tiles (`tdpbsud`), and its exact software
//! emulation.
//!
//! - `detect`: may this process use AMX (CPUID, XCR0, Linux's tile
//!   permission)? Any failure falls back to AVX-512 VNNI, never a SIGILL.
//! - `tiles`: the tile instructions behind a trait, as inline asm (`Hw`) and
//!   as a software model of Intel's pseudo-code (`Emu`).
//! - `kernel`: the kernel, written once over that trait.
//!
//! The emulation runs the kernel's whole tile logic on any CPU, so tests
//! (and `KVSCOPE_ISA=amx-emulated`, end to end) check it bit for bit against
//! the portable kernel on machines without AMX; only the `asm!` encodings
//! and the permission request then remain untested there.

pub(crate) mod detect;
mod kernel;
pub(crate) mod tiles;

use super::act::QuantizedRows;
use super::pack::PackedInt8;
use crate::kernels::SendPtr;

/// Calls with fewer activation rows than this run on AVX-512 VNNI even when
/// AMX is available: a decode step's 1–4 rows would fill a 16-row tile to a
/// quarter at best, while the VNNI kernel's 1–4-row register tiles are its
/// tuned decode path. Unmeasured (no AMX machine was available): a guess to
/// revisit with a benchmark on AMX hardware. Both paths give the same bits,
/// so the threshold only moves time.
#[cfg(target_arch = "x86_64")]
pub(crate) const MIN_ROWS: usize = 5;

/// Column groups `g0..g1` for every row on the AMX unit (VNNI below
/// `MIN_ROWS` rows).
///
/// # Safety
/// `detect::ready()` returned `Ok` and `Int8Isa::Avx512Vnni` is available;
/// `y` must point to `a.rows × n` writable floats that no one else writes in
/// columns `16·g0 .. 16·g1` during the call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
pub(super) unsafe fn columns_hw(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize) {
    if a.rows < MIN_ROWS || !detect::ready_on_this_thread() {
        // SAFETY: AVX-512 VNNI is available and y is as required (caller).
        return unsafe { super::vnni512::columns(a, w, g0, g1, y, n) };
    }
    // SAFETY: AMX is usable (caller); this call is the thread's only tile
    // user until it returns (the kernel calls nothing that could run other
    // work on this thread), and it releases the tiles at the end.
    let mut t = unsafe { tiles::Hw::new() };
    // SAFETY: y as required (caller); `t`'s contract holds (above).
    unsafe { kernel::columns(&mut t, a, w, g0, g1, y, n) }
}

/// The same kernel on the emulated tiles, for every row count (tests and
/// `KVSCOPE_ISA=amx-emulated`; slow: plain Rust multiplies every byte).
///
/// # Safety
/// `y` must point to `a.rows × n` writable floats that no one else writes in
/// columns `16·g0 .. 16·g1` during the call.
pub(super) unsafe fn columns_emulated(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize) {
    let mut t = tiles::Emu::new();
    // SAFETY: y as required (caller); the emulation has no contract of its own.
    unsafe { kernel::columns(&mut t, a, w, g0, g1, y, n) }
}

#[cfg(test)]
mod tests;
