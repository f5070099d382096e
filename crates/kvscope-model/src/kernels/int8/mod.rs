//! The int8 matrix engine: activations quantized to int8 per 32-value block,
//! multiplied with the weights' own Q4_1 nibbles or Q8_0 bytes in integer
//! arithmetic.
//!
//! ## The numbers it computes
//!
//! Each activation row is cut into 32-value blocks; block `b` of row `r` is
//! stored as `q[r][32b..32b+32]` (int8, rounded half to even from
//! `x * (1 / d)`) with `d = max|x| / 127`, and `Σq`, and `s = d · Σq` (the
//! form llama.cpp calls Q8_1). Output `y[r][j]` is then, with `w[j]` block `b`
//! either `dw · qw` (Q8_0) or `dw · qw + mw` (Q4_1):
//!
//! ```text
//! acc = 0
//! for b in 0..k/32:                       (always in this order)
//!     isum = Σᵢ q[r][32b+i] · qw[j][32b+i]   exact in int32
//!     acc  = fma(f32(isum), d[r][b] · dw[j][b], acc)
//!     acc  = fma(mw[j][b], s[r][b], acc)        (Q4_1 only)
//! y[r][j] = acc
//! ```
//!
//! Every step is one IEEE operation on values that depend only on row `r`
//! and column `j`, and the integer sum is exact whatever order the hardware
//! adds its products in. So every instruction set gives the same bits, and a
//! row's output never depends on which rows share the call or how threads
//! split the columns: batch invariance holds exactly, as on the f32 path.
//!
//! ## Layout
//!
//! Weights are repacked once at load (`pack`) into records of 16 output
//! columns × one 32-value block, the bytes of each column interleaved 4 at a
//! time, so that one 64-byte load feeds one `vpdpbusd` that advances 16
//! columns by 4 products each (`vnni512`), or two 32-byte halves on
//! AVX-VNNI or AVX2 (`avx2`); `portable` reads the same records in plain
//! Rust.
//!
//! On CPUs with AMX-INT8 (and Linux's permission for the tile state) the
//! same records are B tiles of `tdpbsud` (`amx`): one instruction per block
//! gives 16 tokens × 16 columns their exact block sums, folded in f32 as
//! above. The machines this was built on have no AMX; the kernel's tile
//! logic is tested there through an exact emulation of the tile
//! instructions (`amx::tiles::Emu`, `KVSCOPE_ISA=amx-emulated`).

pub mod act;
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod gemm;
pub mod pack;
mod portable;
#[cfg(target_arch = "x86_64")]
mod tile;
#[cfg(target_arch = "x86_64")]
mod vnni512;

pub use act::QuantizedRows;
pub use gemm::matmul_int8;
pub use pack::PackedInt8;

/// The instruction set the int8 kernels run on, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Int8Isa {
    /// AMX-INT8 tiles (`tdpbsud`), with AVX-512 VNNI for calls of fewer than
    /// `amx::MIN_ROWS` rows.
    AmxInt8,
    /// The AMX kernel on emulated tiles: plain Rust, any CPU, slow. Only
    /// chosen by `KVSCOPE_ISA=amx-emulated`, to check the AMX kernel's logic
    /// end to end where there is no AMX.
    AmxEmulated,
    /// AVX-512 with VNNI (`vpdpbusd` on 64 bytes).
    Avx512Vnni,
    /// AVX-VNNI (`vpdpbusd` on 32 bytes; AVX2-class CPUs that have it).
    AvxVnni,
    /// AVX2 (`vpmaddubsw` + `vpmaddwd` on 32 bytes).
    Avx2,
    Portable,
}

impl Int8Isa {
    pub fn name(self) -> &'static str {
        match self {
            Int8Isa::AmxInt8 => "amx-int8",
            Int8Isa::AmxEmulated => "amx-emulated",
            Int8Isa::Avx512Vnni => "avx512-vnni",
            Int8Isa::AvxVnni => "avx-vnni",
            Int8Isa::Avx2 => "avx2",
            Int8Isa::Portable => "portable",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            // The hardware path also needs AVX-512 VNNI (its small calls and
            // its f32 fold); every AMX CPU has it.
            #[cfg(target_arch = "x86_64")]
            Int8Isa::AmxInt8 => amx::detect::ready().is_ok() && Int8Isa::Avx512Vnni.available(),
            Int8Isa::AmxEmulated => true,
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("f16c")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            // The 256-bit int8 kernels need what the f32 AVX2 path needs
            // (avx2, fma, f16c: `simd::available`), AVX-VNNI its dot product.
            #[cfg(target_arch = "x86_64")]
            Int8Isa::AvxVnni => {
                std::arch::is_x86_feature_detected!("avxvnni")
                    && crate::kernels::simd::available(crate::kernels::simd::Isa::Avx2)
            }
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx2 => crate::kernels::simd::available(crate::kernels::simd::Isa::Avx2),
            Int8Isa::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// Why `Int8Isa::AmxInt8` is not available here (`None` when it is).
pub fn amx_unavailable_reason() -> Option<&'static str> {
    match amx::detect::ready() {
        Err(why) => Some(why),
        Ok(()) if !Int8Isa::Avx512Vnni.available() => Some("AMX without AVX-512 VNNI"),
        Ok(()) => None,
    }
}

/// The best int8 path this process may use, best first: AMX-INT8, AVX-512
/// VNNI, AVX-VNNI, AVX2, portable. `KVSCOPE_ISA=avx512-vnni`, `=avx-vnni`,
/// `=avx2` or `=portable` caps it (`avx-vnni` and `avx2` also cap the f32
/// kernels at AVX2, see `simd::isa`); `=amx-emulated` runs the AMX kernel on
/// emulated tiles (tests).
pub fn int8_isa() -> Int8Isa {
    static ISA: std::sync::OnceLock<Int8Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = std::env::var("KVSCOPE_ISA").unwrap_or_default();
        let allowed: &[Int8Isa] = match cap.as_str() {
            "portable" => &[Int8Isa::Portable],
            "avx2" => &[Int8Isa::Avx2, Int8Isa::Portable],
            "avx-vnni" => &[Int8Isa::AvxVnni, Int8Isa::Avx2, Int8Isa::Portable],
            "avx512-vnni" => &[Int8Isa::Avx512Vnni, Int8Isa::AvxVnni, Int8Isa::Avx2, Int8Isa::Portable],
            "amx-emulated" => &[Int8Isa::AmxEmulated],
            _ => &[Int8Isa::AmxInt8, Int8Isa::Avx512Vnni, Int8Isa::AvxVnni, Int8Isa::Avx2, Int8Isa::Portable],
        };
        allowed.iter().copied().find(|i| i.available()).unwrap_or(Int8Isa::Portable)
    })
}
