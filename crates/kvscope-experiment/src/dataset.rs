//! Prompts from a user's dataset file: JSONL with one `{"prompt": "..."}`
//! (or `"text"`) per line, or the ShareGPT JSON that serving benchmarks use
//! (an array of `{"conversations": [{"from": "human", "value": "..."}, …]}`;
//! the first human turn is the prompt).

use serde_json::Value;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read dataset {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("dataset {path}, line {line}: {msg}")]
    Line { path: String, line: usize, msg: String },
    #[error("dataset {path}: {msg}")]
    Format { path: String, msg: String },
}

/// The most a dataset file may hold. ShareGPT's usual file is ~0.7 GB; a
/// device or a pipe (`/dev/zero`) would otherwise be read without end.
pub const MAX_DATASET_BYTES: u64 = 1 << 30;

pub fn load_prompts(path: &Path) -> Result<Vec<String>, DatasetError> {
    let text = read_bounded(path, MAX_DATASET_BYTES)?;
    let name = path.display().to_string();
    let prompts = if text.trim_start().starts_with('[') {
        parse_sharegpt(&text)
            .map_err(|msg| DatasetError::Format { path: name.clone(), msg })?
            .into_iter()
            .map(|c| c.prompt)
            .collect()
    } else {
        parse_jsonl(&text).map_err(|(line, msg)| DatasetError::Line { path: name.clone(), line, msg })?
    };
    if prompts.is_empty() {
        return Err(DatasetError::Format { path: name, msg: "no prompts found".into() });
    }
    Ok(prompts)
}

/// Reads a regular file of at most `limit` bytes as UTF-8. The bound holds
/// even for a file that grows while it is read.
fn read_bounded(path: &Path, limit: u64) -> Result<String, DatasetError> {
    use std::io::Read;
    let name = path.display().to_string();
    let io = |source| DatasetError::Io { path: name.clone(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(DatasetError::Format {
            path: name,
            msg: "not a regular file (a device, pipe or directory): give a JSONL or ShareGPT JSON file".into(),
        });
    }
    let too_big = |size: u64| DatasetError::Format {
        path: name.clone(),
        msg: format!("{size} bytes or more, above the limit of {limit} bytes: use a smaller file or a subset"),
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| DatasetError::Format {
        path: name.clone(),
        msg: format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
    })
}

fn parse_jsonl(text: &str) -> Result<Vec<String>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| (i + 1, format!("not JSON: {e}")))?;
        let prompt = ["prompt", "text"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .ok_or((i + 1, "expected an object with a \"prompt\" or \"text\" string".to_string()))?;
        out.push(prompt.to_string());
    }
    Ok(out)
}

/// A ShareGPT conversation's first human turn and the turn that answers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub prompt: String,
    pub reply: Option<String>,
}

/// The conversations of a ShareGPT JSON array (`[{"conversations": [{"from":
/// "human", "value": "..."}, ...]}, ...]`) that have a non-empty human (or
/// user) turn; the lab and `kvscope bench serve` read datasets through it.
pub fn parse_sharegpt(text: &str) -> Result<Vec<Conversation>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = v.as_array().ok_or("expected a JSON array of conversations")?;
    let value = |turn: &Value| turn.get("value").and_then(Value::as_str).map(str::to_string);
    Ok(items
        .iter()
        .filter_map(|item| {
            let turns = item.get("conversations")?.as_array()?;
            let human = turns
                .iter()
                .position(|turn| matches!(turn.get("from").and_then(Value::as_str), Some("human" | "user")))?;
            let prompt = value(&turns[human]).filter(|p| !p.trim().is_empty())?;
            Some(Conversation { prompt, reply: turns.get(human + 1).and_then(value) })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_and_oversized_files_before_reading_them() {
        if std::path::Path::new("/dev/zero").exists() {
            let err = load_prompts(std::path::Path::new("/dev/zero")).unwrap_err().to_string();
            assert!(err.contains("not a regular file"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let err = load_prompts(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let file = dir.path().join("big.jsonl");
        std::fs::write(&file, "{\"prompt\":\"hello\"}\n".repeat(10)).unwrap();
        let err = read_bounded(&file, 50).unwrap_err().to_string();
        assert!(err.contains("above the limit of 50 bytes"), "{err}");
        assert_eq!(load_prompts(&file).unwrap().len(), 10);
    }

    #[test]
    fn reads_jsonl_and_sharegpt() {
        assert_eq!(parse_jsonl("{\"prompt\":\"a\"}\n\n{\"text\":\"b\"}\n").unwrap(), vec!["a", "b"]);
        assert_eq!(parse_jsonl("{\"x\":1}").unwrap_err().0, 1);
        let sg = r#"[{"conversations":[{"from":"human","value":"hi"},{"from":"gpt","value":"yo"}]},{"id":"no turns"}]"#;
        assert_eq!(parse_sharegpt(sg).unwrap(), vec![Conversation { prompt: "hi".into(), reply: Some("yo".into()) }]);
    }
}
