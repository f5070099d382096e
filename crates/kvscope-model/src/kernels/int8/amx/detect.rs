//! Whether this process may run AMX-INT8: the CPU must report it (CPUID), the
//! OS must have the tile state enabled (XCR0), and Linux must grant this
//! process the tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM)`; without that
//! permission the first tile instruction raises SIGILL). Any doubt answers
//! no, and the int8 kernels run on AVX-512 VNNI instead.

use std::sync::OnceLock;

/// `Ok` when AMX-INT8 may be used, else why not. Asked once per process
/// (the permission request is a system call, and per process).
pub(crate) fn ready() -> Result<(), &'static str> {
    static READY: OnceLock<Result<(), &'static str>> = OnceLock::new();
    *READY.get_or_init(probe)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
// `__cpuid*` are safe functions on recent compilers, unsafe under the
// workspace's rust-version: keep the blocks for both.
#[allow(unused_unsafe)]
fn probe() -> Result<(), &'static str> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    /// XCR0 / XSAVE feature numbers of the tile configuration and data.
    const XTILECFG: u32 = 17;
    const XTILEDATA: u32 = 18;

    // SAFETY: CPUID exists on every x86_64 CPU; leaf 0 reports the highest leaf.
    let max_leaf = unsafe { __cpuid(0) }.eax;
    if max_leaf < 7 {
        return Err("the CPU reports no CPUID leaf 7");
    }
    // SAFETY: leaf 7 exists (checked above).
    let edx = unsafe { __cpuid_count(7, 0) }.edx;
    if edx & (1 << 24) == 0 || edx & (1 << 25) == 0 {
        return Err("the CPU reports no AMX-TILE/AMX-INT8 (CPUID.7.0:EDX bits 24, 25)");
    }
    // Palette 1 must exist with at least the shapes the kernel configures:
    // some hypervisors report AMX and XCR0 yet no palette, where every tile
    // instruction raises #UD.
    if max_leaf < 0x1d {
        return Err("the CPU reports no tile palette leaf (CPUID 0x1D)");
    }
    // SAFETY: leaf 0x1D exists (checked above).
    if unsafe { __cpuid_count(0x1d, 0) }.eax < 1 {
        return Err("the CPU reports no tile palette (CPUID.1D.0:EAX = 0)");
    }
    // SAFETY: palette 1's sub-leaf exists (max palette ≥ 1, checked above).
    let palette = unsafe { __cpuid_count(0x1d, 1) };
    let (names, bytes_per_row, max_rows) = (palette.ebx >> 16, palette.ebx & 0xffff, palette.ecx & 0xffff);
    if names < 8 || bytes_per_row < 64 || max_rows < 16 {
        return Err("palette 1 is smaller than 8 tiles × 16 rows × 64 bytes");
    }
    // SAFETY: leaf 1 exists on every x86_64 CPU.
    let os_xsave = unsafe { __cpuid(1) }.ecx & (1 << 27) != 0;
    if !os_xsave || !std::arch::is_x86_feature_detected!("xsave") || !std::arch::is_x86_feature_detected!("avx512f") {
        return Err("no OS-enabled XSAVE or no AVX-512 alongside AMX");
    }
    // SAFETY: the CPU has XSAVE and the OS enabled it (CPUID.1:ECX.OSXSAVE,
    // checked above), so XGETBV(0) is defined.
    let xcr0 = unsafe { xgetbv0() };
    let tile_bits = (1u64 << XTILECFG) | (1u64 << XTILEDATA);
    if xcr0 & tile_bits != tile_bits {
        return Err("the OS has not enabled the AMX tile state (XCR0 bits 17, 18)");
    }
    request_tile_permission()
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)`, then checks the grant with
/// `ARCH_GET_XCOMP_PERM`. Repeating it after a grant is a cheap no-op.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> Result<(), &'static str> {
    const XTILEDATA: u32 = 18;
    const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    // SAFETY: arch_prctl with these codes takes an integer (REQ) or a pointer
    // to one u64 (GET), which lives on this stack for the call.
    let granted = unsafe {
        if libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XTILEDATA as libc::c_long) != 0 {
            return Err("Linux refused the tile data permission (ARCH_REQ_XCOMP_PERM)");
        }
        let mut mask: u64 = 0;
        if libc::syscall(libc::SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &mut mask as *mut u64) != 0 {
            return Err("ARCH_GET_XCOMP_PERM failed");
        }
        mask
    };
    if granted & (1 << XTILEDATA) == 0 {
        return Err("the tile data permission is not in ARCH_GET_XCOMP_PERM's mask");
    }
    Ok(())
}

/// `ready()`, confirmed once on the calling thread. Linux documents the
/// permission as per process, but reports exist of worker threads faulting
/// where only the main thread asked (llama.cpp); asking again on each
/// thread that runs tiles costs one system call per thread and turns such a
/// kernel into a fallback to VNNI instead of a SIGILL.
pub(crate) fn ready_on_this_thread() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        thread_local! {
            static GRANTED: bool = ready().is_ok() && request_tile_permission().is_ok();
        }
        GRANTED.with(|g| *g)
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    false
}

/// XCR0, the OS-enabled XSAVE state components.
///
/// # Safety
/// The CPU supports XSAVE and the OS set CR4.OSXSAVE.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    // SAFETY: XGETBV(0) is defined under this function's contract.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn probe() -> Result<(), &'static str> {
    Err("AMX is only used on x86_64 Linux (the tile permission is a Linux system call)")
}
