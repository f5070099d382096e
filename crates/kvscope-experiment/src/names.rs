//! What a report calls a stall reason or a mix member in each language.
//! `StallReason::as_str` is the `events.jsonl` schema and stays English;
//! a Chinese sentence must not carry an enum's snake_case name in the
//! middle of its prose ("主要准入约束为 none" reads as untranslated), so
//! every Chinese text takes its words from here.

use kvscope_core::StallReason;

/// The constraint a stall reason names: the schema's name in English, the
/// resource in Chinese.
pub fn stall_reason(r: StallReason, zh: bool) -> &'static str {
    match (zh, r) {
        (false, r) => r.as_str(),
        (true, StallReason::NoFreeBlocks) => "KV 块不足",
        (true, StallReason::MaxRunning) => "运行请求数上限",
        (true, StallReason::TokenBudget) => "每步 token 预算",
        (true, StallReason::MaxPartialPrefills) => "部分 prefill 数上限",
    }
}

/// A two-peak mix's member (`long` / `short`, [`crate::mix`]) in prose.
pub fn member(name: &str, zh: bool) -> &str {
    match (zh, name) {
        (true, "long") => "长",
        (true, "short") => "短",
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_chinese_name_is_an_ascii_identifier() {
        for r in StallReason::ALL {
            let zh = stall_reason(r, true);
            assert!(!zh.contains('_'), "{zh} is a schema name, not a word");
            assert_eq!(stall_reason(r, false), r.as_str());
        }
        assert_eq!(member("long", true), "长");
    }
}
