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

pub fn load_prompts(path: &Path) -> Result<Vec<String>, DatasetError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io { path: name.clone(), source })?;
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
    fn reads_jsonl_and_sharegpt() {
        assert_eq!(parse_jsonl("{\"prompt\":\"a\"}\n\n{\"text\":\"b\"}\n").unwrap(), vec!["a", "b"]);
        assert_eq!(parse_jsonl("{\"x\":1}").unwrap_err().0, 1);
        let sg = r#"[{"conversations":[{"from":"human","value":"hi"},{"from":"gpt","value":"yo"}]},{"id":"no turns"}]"#;
        assert_eq!(parse_sharegpt(sg).unwrap(), vec![Conversation { prompt: "hi".into(), reply: Some("yo".into()) }]);
    }
}
