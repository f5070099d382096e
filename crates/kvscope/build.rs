//! Records the git commit the binary is built from (`KVSCOPE_COMMIT`), so
//! a report can name the exact code behind its numbers; empty when the
//! source is not a git checkout (a crate tarball), which the report says
//! in words. Uncommitted changes are not marked: the script reruns when
//! HEAD or the index moves, not on every edit, so a "dirty" mark would be
//! as stale as the last rerun.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_default();
    if !commit.is_empty() {
        // Rebuild when HEAD moves (a commit, a checkout) or the index
        // changes; the paths are the git directory's, which in a worktree
        // is not `.git/`.
        for path in ["HEAD", "index"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                watch(&p);
            }
        }
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(p) = git(&["rev-parse", "--git-path", &head_ref]) {
                watch(&p);
            }
        }
    }
    println!("cargo:rustc-env=KVSCOPE_COMMIT={commit}");
}

/// A path cargo should watch; a missing one (a packed ref) would make the
/// script rerun on every build, so it is left out.
fn watch(path: &str) {
    if std::path::Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}
