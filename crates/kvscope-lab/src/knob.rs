//! The engine knobs a `--sweep` can vary (`--sweep block-size=8,16,32`,
//! `--sweep kv-memory=32MiB,64MiB`, `--sweep max-running=4,8,16`) and how
//! their values are read and written.

use serde::Serialize;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Knob {
    BlockSize,
    KvMemory,
    MaxRunning,
}

impl Knob {
    pub const ALL: [Knob; 3] = [Knob::BlockSize, Knob::KvMemory, Knob::MaxRunning];

    pub fn name(self) -> &'static str {
        match self {
            Knob::BlockSize => "block-size",
            Knob::KvMemory => "kv-memory",
            Knob::MaxRunning => "max-running",
        }
    }

    /// A value as the report writes it.
    pub fn show(self, v: u64) -> String {
        match self {
            Knob::KvMemory if v.is_multiple_of(1 << 20) => format!("{}MiB", v >> 20),
            Knob::KvMemory => format!("{v}B"),
            _ => v.to_string(),
        }
    }
}

/// One `--sweep KNOB=V1,V2,...`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KnobSweep {
    pub knob: Knob,
    pub values: Vec<u64>,
}

impl FromStr for KnobSweep {
    type Err = String;

    fn from_str(s: &str) -> Result<KnobSweep, String> {
        let known = Knob::ALL.map(Knob::name).join(", ");
        let (name, list) = s
            .split_once('=')
            .ok_or_else(|| format!("expected KNOB=V1,V2,... (knobs: {known}), e.g. block-size=8,16,32; got {s:?}"))?;
        let knob = Knob::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| format!("unknown knob {name:?}: the knobs are {known}"))?;
        let values = sweep_values(s, list, &format!("e.g. {}=8,16,32", knob.name()), |v| parse_value(knob, v))?;
        Ok(KnobSweep { knob, values })
    }
}

/// The values of `--sweep` `spec` (its list part `list`), each read by
/// `parse`: at least two, none twice (`example` shows a good one). Every
/// sweep's values, the engine's knobs and a target's load, are read here.
pub fn sweep_values<T: PartialEq + Copy>(
    spec: &str,
    list: &str,
    example: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let values = list.split(',').map(|v| parse(v.trim())).collect::<Result<Vec<T>, String>>()?;
    if values.len() < 2 {
        return Err(format!("--sweep {spec}: give at least two values to compare, {example}"));
    }
    if values.iter().enumerate().any(|(i, v)| values[..i].contains(v)) {
        return Err(format!("--sweep {spec}: a value is given twice"));
    }
    Ok(values)
}

fn parse_value(knob: Knob, v: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("--sweep {}: {v:?} {why}", knob.name());
    let n = match knob {
        Knob::KvMemory => parse_bytes(v).ok_or_else(|| bad("is not a size (e.g. 64MiB, 1GiB, 33554432)"))?,
        _ => v.parse::<u64>().map_err(|_| bad("is not a positive whole number"))?,
    };
    match knob {
        _ if n == 0 => Err(bad("must be positive")),
        Knob::BlockSize if n > 1024 => Err(bad("is larger than 1024 tokens per block")),
        _ => Ok(n),
    }
}

/// `64MiB`, `1GiB`, `512KiB`, `64MB` (read as MiB: a KV budget is binary),
/// or plain bytes.
fn parse_bytes(v: &str) -> Option<u64> {
    let lower = v.to_ascii_lowercase();
    let (num, shift) = [("gib", 30), ("gb", 30), ("mib", 20), ("mb", 20), ("kib", 10), ("kb", 10), ("b", 0)]
        .iter()
        .find_map(|(suffix, shift)| lower.strip_suffix(suffix).map(|n| (n.trim().to_string(), *shift)))
        .unwrap_or((lower.clone(), 0));
    let n: f64 = num.parse().ok()?;
    (n.is_finite() && n > 0.0).then(|| (n * (1u64 << shift) as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_knobs_and_refuses_bad_input_by_name() {
        let s: KnobSweep = "block-size=8,16,32".parse().unwrap();
        assert_eq!((s.knob, s.values), (Knob::BlockSize, vec![8, 16, 32]));
        let m: KnobSweep = "kv-memory=32MiB,64MiB,1GiB".parse().unwrap();
        assert_eq!(m.values, vec![32 << 20, 64 << 20, 1 << 30]);
        assert_eq!(Knob::KvMemory.show(64 << 20), "64MiB");
        assert!("max-running=4,8".parse::<KnobSweep>().is_ok());
        let err = |s: &str| s.parse::<KnobSweep>().unwrap_err();
        assert!(err("block_size=8,16").contains("unknown knob"), "{}", err("block_size=8,16"));
        assert!(err("block-size").contains("KNOB=V1,V2"));
        assert!(err("block-size=8,x").contains("not a positive whole number"));
        assert!(err("block-size=8").contains("at least two"));
        assert!(err("block-size=0,8").contains("positive"));
        assert!(err("kv-memory=lots,64MiB").contains("not a size"));
        assert!(err("max-running=4,4").contains("twice"));
    }
}
