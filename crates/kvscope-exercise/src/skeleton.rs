//! `kvscope exercise init DIR`: the student's starting point — a
//! `block_manager.py` whose five methods say what they must guarantee and
//! raise `NotImplementedError` until filled in, and the `sequence.py` they
//! run on.

use std::path::{Path, PathBuf};

pub const BLOCK_MANAGER_PY: &str = include_str!("../python/block_manager.py");

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{0} already exists: kvscope will not overwrite your work; choose another directory or move the file away"
    )]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Writes the skeleton into `dir` (created if needed); returns the files.
pub fn write_skeleton(dir: &Path) -> Result<Vec<PathBuf>, InitError> {
    let files = [("block_manager.py", BLOCK_MANAGER_PY), ("sequence.py", crate::host::SEQUENCE_PY)];
    for (name, _) in files {
        let path = dir.join(name);
        if path.exists() {
            return Err(InitError::Exists(path));
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| InitError::Io { path: dir.to_path_buf(), source })?;
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| InitError::Io { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}
