//! The AMX kernel against the portable one, bit for bit, through the
//! emulated tiles (every machine) and the hardware (only where AMX is
//! granted; elsewhere the hardware tests say they were skipped and why).

use super::super::act::QuantizedRows;
use super::super::pack::{PackKind, PackedInt8};
use super::tiles::{Emu, TileConfig, Tiles};
use super::{detect, kernel};
use crate::kernels::SendPtr;
use crate::quant::GgmlType;
use crate::test_blocks::blocks;

fn bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(97)) >> 13) as u8).collect()
}

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2000) as f32 / 1000.0 - 1.0).collect()
}

#[test]
fn tile_config_is_the_ldtilecfg_layout() {
    let mut c = TileConfig::new();
    assert!(c.valid());
    c.set(3, 16, 64);
    c.set(7, 5, 32);
    // SAFETY: reads the 64 bytes of a repr(C) wrapper of [u8; 64].
    let raw: [u8; 64] = unsafe { std::mem::transmute(c) };
    assert_eq!(raw[0], 1, "palette 1");
    assert_eq!(raw[1], 0, "start_row");
    assert_eq!(u16::from_le_bytes([raw[16 + 6], raw[17 + 6]]), 64);
    assert_eq!(u16::from_le_bytes([raw[16 + 14], raw[17 + 14]]), 32);
    assert_eq!((raw[48 + 3], raw[48 + 7]), (16, 5));
    assert_eq!(raw.iter().map(|&b| b as u32).sum::<u32>(), 1 + 64 + 32 + 16 + 5);
    assert!(c.valid());
}

/// `tdpbsud` on the emulation: signed A (including −128) times unsigned B
/// (including 255), accumulated onto C's previous contents, for a block
/// shape and for a K of 64.
#[test]
fn emulated_tdpbsud_follows_the_pseudocode() {
    for (m, k, ncols) in [(7, 32, 16), (16, 64, 16), (1, 8, 3)] {
        let a = bytes(m * k, 1);
        let mut b = bytes(k / 4 * ncols * 4, 2);
        b[0] = 255;
        let mut a = a;
        a[0] = 0x80;
        let c0: Vec<i32> = (0..m * ncols).map(|i| i as i32 * 1_000_003 - 7).collect();
        let mut cfg = TileConfig::new();
        cfg.set(0, m, k);
        cfg.set(1, k / 4, ncols * 4);
        cfg.set(5, m, ncols * 4);
        let mut t = Emu::new();
        let mut out = vec![0i32; m * ncols];
        // SAFETY: valid configuration; every load/store covers exactly the
        // rows × bytes per row of the buffers above.
        unsafe {
            t.configure(&cfg);
            t.load::<0>(a.as_ptr(), k);
            t.load::<1>(b.as_ptr(), ncols * 4);
            t.load::<5>(c0.as_ptr() as *const u8, ncols * 4);
            t.dot::<5, 0, 1>();
            t.store::<5>(out.as_mut_ptr() as *mut u8, ncols * 4);
            t.release();
        }
        for i in 0..m {
            for j in 0..ncols {
                let mut want = c0[i * ncols + j];
                for e in 0..k {
                    want = want.wrapping_add(a[i * k + e] as i8 as i32 * b[(e / 4) * ncols * 4 + j * 4 + e % 4] as i32);
                }
                assert_eq!(out[i * ncols + j], want, "({m},{k},{ncols}) [{i}][{j}]");
            }
        }
    }
}

#[test]
#[should_panic(expected = "#UD: tdpbsud shapes")]
fn emulation_faults_on_shapes_the_hardware_rejects() {
    let mut cfg = TileConfig::new();
    cfg.set(0, 4, 32);
    cfg.set(1, 8, 64);
    cfg.set(2, 5, 64); // C has 5 rows, A 4: #UD on the hardware
    let mut t = Emu::new();
    // SAFETY: the emulation only panics on the invalid dot.
    unsafe {
        t.configure(&cfg);
        t.dot::<2, 0, 1>();
    }
}

#[test]
#[should_panic(expected = "not configured")]
fn emulation_faults_on_an_unconfigured_tile() {
    let mut cfg = TileConfig::new();
    cfg.set(0, 4, 32);
    let mut t = Emu::new();
    // SAFETY: the emulation only panics on the unconfigured tile.
    unsafe {
        t.configure(&cfg);
        t.zero::<3>();
    }
}

/// Weights of `kind` (Q8_0 with some −128 values), `n × k`.
fn weights(kind: PackKind, n: usize, k: usize, seed: u64) -> PackedInt8 {
    let ty = if kind == PackKind::Q4_1 { GgmlType::Q4_1 } else { GgmlType::Q8_0 };
    let mut raw = blocks(ty, n * k / 32, seed);
    if kind == PackKind::Q8_0 {
        for (i, blk) in raw.chunks_mut(34).enumerate() {
            blk[2 + i % 32] = 0x80;
        }
    }
    let w = PackedInt8::from_gguf(kind, &raw, n, k);
    assert!(kind == PackKind::Q4_1 || w.has_q8_min());
    w
}

/// Runs `f` (a kernel's `columns`) on groups `g0..g1` of every row.
fn run(f: impl Fn(SendPtr), rows: usize, n: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; rows * n];
    f(SendPtr(y.as_mut_ptr()));
    y
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Ragged tokens (1..=40: one or two token tiles, partial ones), column
/// counts that are not multiples of 16, one and two column groups per pass,
/// Q4_1 and Q8_0 (with −128): the emulated AMX kernel gives the portable
/// kernel's bits. Two-term activations are two such calls (see
/// `emulated_two_term_matmul_...`).
#[test]
fn emulated_amx_kernel_gives_the_portable_bits() {
    for kind in [PackKind::Q4_1, PackKind::Q8_0] {
        for (k, n) in [(32, 16), (64, 33), (96, 9), (160, 50)] {
            let w = weights(kind, n, k, 11 + k as u64);
            let groups = w.groups();
            for rows in 1..=40 {
                let mut act = QuantizedRows::default();
                act.quantize(&data(rows * k, rows as u32), rows, k);
                for (g0, g1) in [(0, groups), (groups / 2, groups)] {
                    if g0 == g1 {
                        continue;
                    }
                    // SAFETY: y holds rows × n floats, owned by this call.
                    let want = run(|y| unsafe { super::super::portable::columns(&act, &w, g0, g1, y, n) }, rows, n);
                    // SAFETY: as above.
                    let got = run(|y| unsafe { super::columns_emulated(&act, &w, g0, g1, y, n) }, rows, n);
                    assert!(same_bits(&got, &want), "{kind:?} k {k} n {n} rows {rows} groups {g0}..{g1}");
                }
            }
        }
    }
}

/// Through `matmul_int8_on`: two-term activations, the thread split.
#[test]
fn emulated_two_term_matmul_gives_the_portable_bits() {
    use super::super::gemm::matmul_int8_on;
    use super::super::Int8Isa;
    for kind in [PackKind::Q4_1, PackKind::Q8_0] {
        for two_term in [false, true] {
            let (k, n) = (128, 70);
            let mut w = weights(kind, n, k, 5);
            w.set_two_term(two_term);
            for rows in [1, 4, 16, 17, 33] {
                let x = data(rows * k, 9 + rows as u32);
                let mut want = vec![0f32; rows * n];
                matmul_int8_on(Int8Isa::Portable, &x, &w, &mut want, rows);
                let mut got = vec![f32::NAN; rows * n];
                matmul_int8_on(Int8Isa::AmxEmulated, &x, &w, &mut got, rows);
                assert!(same_bits(&got, &want), "{kind:?} two-term {two_term} rows {rows}");
            }
        }
    }
}

#[test]
fn amx_int8_is_offered_only_when_granted() {
    let why = super::super::amx_unavailable_reason();
    assert_eq!(super::super::Int8Isa::AmxInt8.available(), why.is_none());
    match why {
        Some(why) => eprintln!("AMX-INT8 not available here: {why}"),
        None => eprintln!("AMX-INT8 available and granted"),
    }
}

/// Whether the AMX unit may run on this thread; else says why it is skipped.
#[cfg(target_arch = "x86_64")]
fn hardware() -> bool {
    match detect::ready() {
        Err(why) => eprintln!("skipped: no usable AMX-INT8 here ({why}); the emulation tests cover the kernel logic"),
        Ok(()) if !detect::ready_on_this_thread() => eprintln!("skipped: the tile permission failed on this thread"),
        Ok(()) => return true,
    }
    false
}

/// The hardware tiles against the emulation, op by op (AMX machines only).
#[cfg(target_arch = "x86_64")]
#[test]
#[cfg_attr(
    not(kvscope_amx_host),
    ignore = "needs a CPU with AMX-INT8 (none on the machine that built the tests); the emulation tests cover the kernel logic"
)]
fn hardware_tiles_equal_the_emulation() {
    if !hardware() {
        return;
    }
    for (m, ncols) in [(16, 16), (5, 16), (1, 7)] {
        let a = bytes(m * 32, 3);
        let b = bytes(8 * ncols * 4, 4);
        let mut cfg = TileConfig::new();
        cfg.set(0, m, 32);
        cfg.set(2, 8, ncols * 4);
        cfg.set(4, m, ncols * 4);
        let mut outs = [vec![0i32; m * ncols], vec![0i32; m * ncols]];
        fn ops<T: Tiles>(t: &mut T, cfg: &TileConfig, a: &[u8], b: &[u8], out: &mut [i32], m: usize, ncols: usize) {
            let _ = m;
            // SAFETY: valid configuration; loads and stores cover exactly
            // the buffers' rows × bytes per row; AMX granted (checked).
            unsafe {
                t.configure(cfg);
                t.load::<0>(a.as_ptr(), 32);
                t.load::<2>(b.as_ptr(), ncols * 4);
                t.zero::<4>();
                t.dot::<4, 0, 2>();
                t.dot::<4, 0, 2>();
                t.store::<4>(out.as_mut_ptr() as *mut u8, ncols * 4);
                t.release();
            }
        }
        let [hw_out, emu_out] = &mut outs;
        // SAFETY: AMX is granted (hardware()); this test is the thread's only tile user.
        ops(&mut unsafe { super::tiles::Hw::new() }, &cfg, &a, &b, hw_out, m, ncols);
        ops(&mut Emu::new(), &cfg, &a, &b, emu_out, m, ncols);
        assert_eq!(outs[0], outs[1], "{m} × {ncols}");
    }
}

/// The kernel on the hardware tiles for every row count (below the VNNI
/// threshold too), against portable (AMX machines only).
#[cfg(target_arch = "x86_64")]
#[test]
#[cfg_attr(
    not(kvscope_amx_host),
    ignore = "needs a CPU with AMX-INT8 (none on the machine that built the tests); the emulation tests cover the kernel logic"
)]
fn hardware_amx_kernel_gives_the_portable_bits() {
    if !hardware() {
        return;
    }
    for kind in [PackKind::Q4_1, PackKind::Q8_0] {
        let (k, n) = (96, 50);
        let w = weights(kind, n, k, 3);
        for rows in 1..=40 {
            let mut act = QuantizedRows::default();
            act.quantize(&data(rows * k, rows as u32), rows, k);
            let g = w.groups();
            // SAFETY: y holds rows × n floats, owned by this call.
            let want = run(|y| unsafe { super::super::portable::columns(&act, &w, 0, g, y, n) }, rows, n);
            let got = run(
                // SAFETY: AMX granted (checked); y as above; the test thread is the only tile user.
                |y| unsafe { kernel::columns(&mut super::tiles::Hw::new(), &act, &w, 0, g, y, n) },
                rows,
                n,
            );
            assert!(same_bits(&got, &want), "{kind:?} rows {rows}");
        }
    }
}
