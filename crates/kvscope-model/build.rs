//! Sets `cfg(kvscope_amx_host)` when the machine building this crate reports
//! AMX-INT8 (CPUID leaf 7, EDX bits 24 and 25) and builds for itself, so
//! that the AMX hardware tests are marked ignored — with the reason — where
//! they cannot run, instead of passing without testing anything.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(kvscope_amx_host)");
    println!("cargo:rerun-if-changed=build.rs");
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    if native && host_reports_amx() {
        println!("cargo:rustc-cfg=kvscope_amx_host");
    }
}

#[cfg(target_arch = "x86_64")]
// `__cpuid*` are safe functions on recent compilers, unsafe under the
// workspace's rust-version: keep the blocks for both.
#[allow(unused_unsafe)]
fn host_reports_amx() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY: CPUID exists on every x86_64 CPU; leaf 0 reports the highest leaf.
    if unsafe { __cpuid(0) }.eax < 7 {
        return false;
    }
    // SAFETY: leaf 7 exists (checked above).
    let edx = unsafe { __cpuid_count(7, 0) }.edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn host_reports_amx() -> bool {
    false
}
