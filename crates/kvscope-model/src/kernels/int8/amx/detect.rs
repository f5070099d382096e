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
    const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;

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
    if !std::arch::is_x86_feature_detected!("xsave") || !std::arch::is_x86_feature_detected!("avx512f") {
        return Err("no XSAVE/AVX-512 reported alongside AMX");
    }
    // SAFETY: the CPU has XSAVE and the OS enabled it (is_x86_feature_detected
    // checks OSXSAVE for "xsave"), so XGETBV(0) is defined.
    let xcr0 = unsafe { xgetbv0() };
    let tile_bits = (1u64 << XTILECFG) | (1u64 << XTILEDATA);
    if xcr0 & tile_bits != tile_bits {
        return Err("the OS has not enabled the AMX tile state (XCR0 bits 17, 18)");
    }
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
