//! The AMX tile operations the int8 kernel uses, behind one trait with two
//! implementations: the hardware (`Hw`, inline `asm!`: the AMX intrinsics
//! are unstable in Rust) and an exact software model of the same
//! instructions (`Emu`), which lets every machine run the kernel's tile
//! logic and check it bit for bit against the portable kernel.
//!
//! `Emu` also checks what the hardware would fault on (an invalid
//! configuration, a tile used unconfigured, shapes `tdpbsud` rejects), so a
//! kernel that passes its tests on the emulation issues no instruction that
//! raises #UD or #GP on the hardware.

/// Tile registers (`tmm0..tmm7`).
pub(crate) const TILES: usize = 8;
/// The most rows and bytes per row a tile holds (palette 1).
pub(crate) const MAX_ROWS: usize = 16;
pub(crate) const MAX_COLSB: usize = 64;

/// The 64-byte operand of `ldtilecfg`: palette 1, and per tile its rows
/// and bytes per row; tiles left at 0 × 0 are unconfigured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct TileConfig([u8; 64]);

impl TileConfig {
    pub(crate) fn new() -> Self {
        let mut b = [0u8; 64];
        b[0] = 1; // palette_id; byte 1 (start_row) and bytes 2..16 stay 0
        TileConfig(b)
    }

    /// Tile `t` holds `rows` rows of `colsb` bytes.
    pub(crate) fn set(&mut self, t: usize, rows: usize, colsb: usize) {
        assert!(t < TILES && rows <= MAX_ROWS && colsb <= MAX_COLSB, "tile {t}: {rows} × {colsb}");
        self.0[16 + 2 * t..][..2].copy_from_slice(&(colsb as u16).to_le_bytes());
        self.0[48 + t] = rows as u8;
    }

    pub(crate) fn rows(&self, t: usize) -> usize {
        self.0[48 + t] as usize
    }

    pub(crate) fn colsb(&self, t: usize) -> usize {
        u16::from_le_bytes([self.0[16 + 2 * t], self.0[17 + 2 * t]]) as usize
    }

    /// What `ldtilecfg` accepts (else #GP): palette 1, start_row 0, reserved
    /// bytes zero, each tile within the palette's limits and either both
    /// dimensions set or neither.
    pub(crate) fn valid(&self) -> bool {
        let b = &self.0;
        let reserved_zero =
            b[2..16].iter().all(|&v| v == 0) && b[32..48].iter().all(|&v| v == 0) && b[56..].iter().all(|&v| v == 0);
        reserved_zero
            && b[0] == 1
            && b[1] == 0
            && (0..TILES).all(|t| {
                let (r, c) = (self.rows(t), self.colsb(t));
                r <= MAX_ROWS && c <= MAX_COLSB && (r == 0) == (c == 0)
            })
    }
}

/// The tile instructions, one method each. Tile numbers are const
/// parameters because the hardware encodes them in the instruction.
pub(crate) trait Tiles {
    /// `ldtilecfg`: shapes the tiles (and zeroes them).
    ///
    /// # Safety
    /// `cfg.valid()`.
    unsafe fn configure(&mut self, cfg: &TileConfig);

    /// `tileloadd`: tile `T`'s rows from `src`, `src + stride`, ….
    ///
    /// # Safety
    /// Tile `T` is configured; its rows × bytes per row are readable at
    /// `src + i · stride`.
    unsafe fn load<const T: u8>(&mut self, src: *const u8, stride: usize);

    /// `tilezero`.
    ///
    /// # Safety
    /// Tile `T` is configured.
    unsafe fn zero<const T: u8>(&mut self);

    /// `tdpbsud`: `C[m][n] += Σₖ Σᵢ sext(A[m][4k+i]) · zext(B[k][4n+i])`
    /// in wrapping int32: A signed bytes, B unsigned bytes.
    ///
    /// # Safety
    /// C, A, B distinct and configured with C.rows = A.rows,
    /// A.colsb / 4 = B.rows, C.colsb = B.colsb, all bytes per row multiples
    /// of 4.
    unsafe fn dot<const C: u8, const A: u8, const B: u8>(&mut self);

    /// `tilestored`: tile `T`'s rows to `dst`, `dst + stride`, ….
    ///
    /// # Safety
    /// Tile `T` is configured; its rows × bytes per row are writable at
    /// `dst + i · stride`.
    unsafe fn store<const T: u8>(&mut self, dst: *mut u8, stride: usize);

    /// `tilerelease`: back to the unconfigured state.
    ///
    /// # Safety
    /// None beyond the implementation's own (see `Hw::new`).
    unsafe fn release(&mut self);
}

/// The AMX unit of this CPU.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Hw {
    _only_through_new: (),
}

#[cfg(target_arch = "x86_64")]
impl Hw {
    /// # Safety
    /// `super::detect::ready()` returned `Ok` in this process: the CPU has
    /// AMX-TILE and AMX-INT8 and the kernel granted the tile data state.
    /// Nothing else on this thread uses the tiles while this value lives.
    pub(crate) unsafe fn new() -> Self {
        Hw { _only_through_new: () }
    }
}

// Every asm block below keeps the default memory and side-effect
// assumptions (no `pure`, `nomem` or `readonly`): the compiler does not
// model the tile registers, so the blocks must stay in program order.
#[cfg(target_arch = "x86_64")]
impl Tiles for Hw {
    unsafe fn configure(&mut self, cfg: &TileConfig) {
        // SAFETY: AMX is usable (Hw::new's contract); cfg is a valid 64-byte
        // configuration (caller), aligned and live for the instruction.
        unsafe { std::arch::asm!("ldtilecfg [{c}]", c = in(reg) cfg.0.as_ptr(), options(nostack, preserves_flags)) }
    }

    unsafe fn load<const T: u8>(&mut self, src: *const u8, stride: usize) {
        // SAFETY: tile T is configured and the rows it reads are readable
        // (caller); AMX is usable (Hw::new).
        unsafe {
            std::arch::asm!(
                "tileloadd tmm{t}, [{p} + {s}*1]",
                t = const T,
                p = in(reg) src,
                s = in(reg) stride,
                options(nostack, preserves_flags)
            )
        }
    }

    unsafe fn zero<const T: u8>(&mut self) {
        // SAFETY: tile T is configured (caller); AMX is usable (Hw::new).
        unsafe { std::arch::asm!("tilezero tmm{t}", t = const T, options(nostack, preserves_flags)) }
    }

    unsafe fn dot<const C: u8, const A: u8, const B: u8>(&mut self) {
        // SAFETY: the three tiles are distinct, configured and of compatible
        // shapes (caller), so the instruction does not fault; AMX is usable.
        unsafe {
            std::arch::asm!(
                "tdpbsud tmm{c}, tmm{a}, tmm{b}",
                c = const C,
                a = const A,
                b = const B,
                options(nostack, preserves_flags)
            )
        }
    }

    unsafe fn store<const T: u8>(&mut self, dst: *mut u8, stride: usize) {
        // SAFETY: tile T is configured and the rows it writes are writable
        // (caller); AMX is usable (Hw::new).
        unsafe {
            std::arch::asm!(
                "tilestored [{p} + {s}*1], tmm{t}",
                t = const T,
                p = in(reg) dst,
                s = in(reg) stride,
                options(nostack, preserves_flags)
            )
        }
    }

    unsafe fn release(&mut self) {
        // SAFETY: AMX is usable (Hw::new); tilerelease has no operands.
        unsafe { std::arch::asm!("tilerelease", options(nostack, preserves_flags)) }
    }
}

/// The tile unit in software, instruction by instruction after Intel's
/// pseudo-code (SDM vol. 2, TILELOADD / TILEZERO / TDPBSUD / TILESTORED),
/// panicking where the hardware would fault.
pub(crate) struct Emu {
    cfg: Option<TileConfig>,
    t: Box<[[[u8; MAX_COLSB]; MAX_ROWS]; TILES]>,
}

impl Emu {
    pub(crate) fn new() -> Self {
        Emu { cfg: None, t: Box::new([[[0; MAX_COLSB]; MAX_ROWS]; TILES]) }
    }

    /// `(rows, colsb)` of a configured tile; #UD otherwise.
    fn shape(&self, t: u8) -> (usize, usize) {
        let cfg = self.cfg.as_ref().expect("#UD: tile instruction before ldtilecfg");
        let t = t as usize;
        assert!(t < TILES && cfg.rows(t) > 0, "#UD: tmm{t} is not configured");
        (cfg.rows(t), cfg.colsb(t))
    }
}

impl Default for Emu {
    fn default() -> Self {
        Emu::new()
    }
}

impl Tiles for Emu {
    unsafe fn configure(&mut self, cfg: &TileConfig) {
        assert!(cfg.valid(), "#GP: invalid tile configuration {cfg:?}");
        self.cfg = Some(*cfg);
        *self.t = [[[0; MAX_COLSB]; MAX_ROWS]; TILES];
    }

    unsafe fn load<const T: u8>(&mut self, src: *const u8, stride: usize) {
        let (rows, colsb) = self.shape(T);
        let tile = &mut self.t[T as usize];
        *tile = [[0; MAX_COLSB]; MAX_ROWS]; // bytes past the shape read as zero
        for (i, row) in tile.iter_mut().take(rows).enumerate() {
            // SAFETY: row i's colsb bytes are readable (caller).
            let bytes = unsafe { std::slice::from_raw_parts(src.add(i * stride), colsb) };
            row[..colsb].copy_from_slice(bytes);
        }
    }

    unsafe fn zero<const T: u8>(&mut self) {
        self.shape(T);
        self.t[T as usize] = [[0; MAX_COLSB]; MAX_ROWS];
    }

    unsafe fn dot<const C: u8, const A: u8, const B: u8>(&mut self) {
        let ((cr, cc), (ar, ac), (br, bc)) = (self.shape(C), self.shape(A), self.shape(B));
        assert!(C != A && C != B && A != B, "#UD: tdpbsud needs three distinct tiles");
        assert!(cc % 4 == 0 && ac % 4 == 0 && bc % 4 == 0, "#UD: bytes per row not a multiple of 4");
        assert!(cr == ar && ac / 4 == br && cc == bc, "#UD: tdpbsud shapes C {cr}×{cc}, A {ar}×{ac}, B {br}×{bc}");
        let (a, b) = (self.t[A as usize], self.t[B as usize]);
        let c = &mut self.t[C as usize];
        for m in 0..cr {
            for nn in 0..cc / 4 {
                let mut acc = i32::from_le_bytes(c[m][4 * nn..][..4].try_into().expect("dword"));
                for k in 0..ac / 4 {
                    for i in 0..4 {
                        let (x, w) = (a[m][4 * k + i] as i8 as i32, b[k][4 * nn + i] as i32);
                        acc = acc.wrapping_add(x * w);
                    }
                }
                c[m][4 * nn..][..4].copy_from_slice(&acc.to_le_bytes());
            }
        }
    }

    unsafe fn store<const T: u8>(&mut self, dst: *mut u8, stride: usize) {
        let (rows, colsb) = self.shape(T);
        for (i, row) in self.t[T as usize].iter().take(rows).enumerate() {
            // SAFETY: row i's colsb bytes are writable (caller) and do not
            // overlap the emulator's own tile storage.
            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), dst.add(i * stride), colsb) };
        }
    }

    unsafe fn release(&mut self) {
        self.cfg = None;
        *self.t = [[[0; MAX_COLSB]; MAX_ROWS]; TILES];
    }
}
