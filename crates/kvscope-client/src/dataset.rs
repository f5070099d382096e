//! Where benchmark prompts come from.

use crate::bench_args::{BenchArgs, DatasetName};
pub use crate::completion::BenchPrompt;
use kvscope_core::TokenId;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

#[derive(Clone, Debug, PartialEq)]
pub struct BenchRequest {
    pub prompt: BenchPrompt,
    /// `max_tokens` sent with the request.
    pub output_len: usize,
}

fn jitter(rng: &mut impl Rng, len: usize, ratio: f64) -> usize {
    let lo = ((len as f64) * (1.0 - ratio)).floor().max(1.0) as usize;
    let hi = ((len as f64) * (1.0 + ratio)).ceil().max(lo as f64) as usize;
    rng.random_range(lo..=hi)
}

/// The requests the arguments describe. `vocab_size` bounds random token
/// ids (the server's `/v1/models` reports it).
pub fn load_dataset(args: &BenchArgs, vocab_size: usize) -> anyhow::Result<Vec<BenchRequest>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut requests = match args.dataset_name {
        DatasetName::Random => (0..args.num_prompts)
            .map(|_| {
                let n = jitter(&mut rng, args.random_input_len, args.random_range_ratio);
                let ids = (0..n).map(|_| rng.random_range(0..vocab_size.max(1)) as TokenId).collect();
                BenchRequest {
                    prompt: BenchPrompt::Tokens(ids),
                    output_len: jitter(&mut rng, args.random_output_len, args.random_range_ratio),
                }
            })
            .collect(),
        DatasetName::Sharegpt => sharegpt(&read(args)?, args.num_prompts)?,
        DatasetName::Jsonl => jsonl(&read(args)?, args.num_prompts)?,
    };
    if let Some(n) = args.output_len {
        requests.iter_mut().for_each(|r| r.output_len = n);
    }
    anyhow::ensure!(!requests.is_empty(), "the dataset gave no requests");
    Ok(requests)
}

fn read(args: &BenchArgs) -> anyhow::Result<String> {
    let path = args
        .dataset_path
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--dataset-name {:?} needs --dataset-path", args.dataset_name))?;
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// ShareGPT through the experiment layer's reader: the first human turn is
/// the prompt, the reply's length (about 4 characters a token) the output
/// length; conversations without a reply are skipped.
fn sharegpt(text: &str, limit: usize) -> anyhow::Result<Vec<BenchRequest>> {
    let conversations = kvscope_experiment::dataset::parse_sharegpt(text)
        .map_err(|e| anyhow::anyhow!("not a ShareGPT JSON array: {e}"))?;
    Ok(conversations
        .into_iter()
        .filter_map(|c| {
            let output_len = (c.reply?.chars().count() / 4).max(4);
            Some(BenchRequest { prompt: BenchPrompt::Text(c.prompt), output_len })
        })
        .take(limit)
        .collect())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonPrompt {
    Text(String),
    Tokens(Vec<TokenId>),
}

#[derive(Deserialize)]
struct JsonRequest {
    prompt: JsonPrompt,
    output_len: usize,
}

fn jsonl(text: &str, limit: usize) -> anyhow::Result<Vec<BenchRequest>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit)
        .enumerate()
        .map(|(i, line)| {
            let r: JsonRequest = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?;
            Ok(BenchRequest {
                prompt: match r.prompt {
                    JsonPrompt::Text(t) => BenchPrompt::Text(t),
                    JsonPrompt::Tokens(ids) => BenchPrompt::Tokens(ids),
                },
                output_len: r.output_len,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharegpt_and_jsonl_parse() {
        let s = r#"[{"conversations":[{"from":"human","value":"hi there"},{"from":"gpt","value":"hello, how can I help you today?"}]},
                    {"conversations":[{"from":"gpt","value":"skipped"}]}]"#;
        let r = sharegpt(s, 10).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].prompt, BenchPrompt::Text("hi there".into()));
        assert_eq!(r[0].output_len, 8);
        let j =
            jsonl("{\"prompt\": [1,2,3], \"output_len\": 5}\n\n{\"prompt\": \"x\", \"output_len\": 2}\n", 10).unwrap();
        assert_eq!(j[0], BenchRequest { prompt: BenchPrompt::Tokens(vec![1, 2, 3]), output_len: 5 });
        assert_eq!(j.len(), 2);
    }

    #[test]
    fn random_prompts_have_the_asked_lengths() {
        let args = BenchArgs { num_prompts: 5, random_input_len: 10, random_output_len: 3, ..Default::default() };
        let r = load_dataset(&args, 50).unwrap();
        assert_eq!(r.len(), 5);
        for req in r {
            let BenchPrompt::Tokens(ids) = req.prompt else { panic!() };
            assert_eq!(ids.len(), 10);
            assert!(ids.iter().all(|&t| t < 50));
            assert_eq!(req.output_len, 3);
        }
    }
}
