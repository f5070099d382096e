//! The capacity table recomputed from `events.jsonl` alone, the way a TA
//! would check a handed-in lab: no kvscope type, no statistics collector,
//! only the JSON lines and the definitions the report states.
//!
//! - live requests: each request live from its `admitted` event (stamped
//!   when the step admitting it began) to its `released` event (stamped
//!   when the step finishing it ended), weighted by time over the run
//!   (first step's start to last event); the most at once;
//! - stall shares: each `stalled` event's step weighted by its duration
//!   (its start is the stall's time, its end the last event of the step),
//!   and by count;
//! - `mixed_ctx`'s members (long and short prompts): KV per request, TTFT,
//!   queue wait, and what the most live requests were made of.
//!
//! Each must agree with `capacity.json` within 1 %. The lab runs on the
//! simulator here; `KVSCOPE_CHECK_LAB_OUT=DIR` checks a lab the real model
//! ran (`kvscope lab --quick --out DIR`, one repeat) the same way.

mod common;

use common::{config, lab};
use kvscope_experiment::workload::Scale;
use kvscope_lab::report::{Lang, ReportContext};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

fn agree(what: &str, from_events: f64, reported: f64) {
    let tolerance = 0.01 * from_events.abs().max(reported.abs()) + 1e-6;
    assert!(
        (from_events - reported).abs() <= tolerance,
        "{what}: {from_events} from events.jsonl, {reported} in capacity.json"
    );
}

/// numpy's default percentile (linear between closest ranks).
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

struct Event<'a> {
    kind: &'a str,
    request: Option<&'a str>,
    t: f64,
    step: u64,
    v: &'a Value,
}

fn parse(v: &Value) -> Event<'_> {
    Event {
        kind: v["event"].as_str().unwrap(),
        request: v["request_id"].as_str(),
        t: v["t"].as_f64().unwrap(),
        step: v["step"].as_u64().unwrap(),
        v,
    }
}

/// What one case's events say.
#[derive(Debug, Default)]
struct Derived {
    live_mean: f64,
    live_max: usize,
    /// reason → seconds, steps.
    stall_seconds: BTreeMap<String, f64>,
    stall_steps: BTreeMap<String, u64>,
    /// Requests live when the most were, with the blocks each held at
    /// the end of that step.
    peak: Vec<(String, usize)>,
}

fn derive(events: &[Event]) -> Derived {
    let mut d = Derived::default();
    // Live requests: intervals from admission to release.
    let mut admitted_at: HashMap<&str, f64> = HashMap::new();
    let mut lived = 0.0;
    let mut live: BTreeSet<&str> = BTreeSet::new();
    let mut peak_step = None;
    let mut peak_set = BTreeSet::new();
    for e in events {
        let id = e.request;
        match e.kind {
            "admitted" => {
                admitted_at.insert(id.unwrap(), e.t);
                live.insert(id.unwrap());
                if live.len() > d.live_max {
                    d.live_max = live.len();
                    peak_step = Some(e.step);
                    peak_set = live.clone();
                }
            }
            "released" => {
                lived += e.t - admitted_at.remove(id.unwrap()).expect("released after admitted");
                live.remove(id.unwrap());
            }
            _ => {}
        }
    }
    let start = events.iter().filter(|e| e.step >= 1).map(|e| e.t).fold(f64::INFINITY, f64::min);
    let end = events.iter().map(|e| e.t).fold(0.0, f64::max);
    d.live_mean = lived / (end - start);
    // The peak's blocks: its admission's table plus the blocks appended up
    // to the end of the peak step.
    if let Some(s) = peak_step {
        for id in peak_set {
            let admitted = events
                .iter()
                .rfind(|e| e.kind == "admitted" && e.request == Some(id) && e.step <= s)
                .expect("admitted");
            let appended = events
                .iter()
                .filter(|e| {
                    e.kind == "block_appended" && e.request == Some(id) && e.step > admitted.step && e.step <= s
                })
                .count();
            d.peak.push((id.to_string(), admitted.v["blocks"].as_array().unwrap().len() + appended));
        }
    }
    // Stalls: each stalled step from its start (the stall's time) to its
    // end (its last event).
    let mut step_end: HashMap<u64, f64> = HashMap::new();
    for e in events {
        let t = step_end.entry(e.step).or_insert(e.t);
        *t = t.max(e.t);
    }
    for e in events.iter().filter(|e| e.kind == "stalled") {
        let reason = e.v["reason"].as_str().unwrap().to_string();
        *d.stall_seconds.entry(reason.clone()).or_default() += step_end[&e.step] - e.t;
        *d.stall_steps.entry(reason).or_default() += 1;
    }
    d
}

/// Per request: prompt tokens, KV tokens at its largest, TTFT, queue wait.
struct RequestFigures {
    prompt: usize,
    kv_tokens: usize,
    ttft: f64,
    queue_wait: f64,
}

fn requests(events: &[Event]) -> BTreeMap<String, RequestFigures> {
    let (mut arrived, mut admitted, mut first_token) = (HashMap::new(), HashMap::new(), HashMap::new());
    let mut out = BTreeMap::new();
    for e in events {
        let Some(id) = e.request else { continue };
        match e.kind {
            "arrived" => {
                arrived.insert(id, e.t);
            }
            "admitted" => {
                admitted.entry(id).or_insert(e.t);
            }
            "first_token" => {
                first_token.insert(id, e.t);
            }
            "finished" => {
                let prompt = e.v["prompt_tokens"].as_u64().unwrap() as usize;
                let output = e.v["output_tokens"].as_u64().unwrap() as usize;
                out.insert(
                    id.to_string(),
                    RequestFigures {
                        prompt,
                        kv_tokens: prompt + output - 1,
                        ttft: first_token[id] - arrived[id],
                        queue_wait: admitted[id] - arrived[id],
                    },
                );
            }
            _ => {}
        }
    }
    out
}

fn check_dir(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let capacity: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("capacity.json")).unwrap()).unwrap();
    assert!(
        capacity["repeats"].as_u64().unwrap_or(1) == 1,
        "with repeats the table holds medians and events.jsonl the first repeat: check a single run"
    );
    let pool = Pool {
        bytes_per_token: capacity["pool"]["bytes_per_token"].as_f64().unwrap(),
        num_blocks: capacity["pool"]["num_blocks"].as_u64().unwrap(),
    };
    let rows = capacity["rows"].as_array().unwrap();
    for case in ["short_ctx", "long_ctx", "mixed_ctx"] {
        let row = rows.iter().find(|r| r["case"] == case).unwrap();
        let events: Vec<Event> = lines.iter().filter(|v| v["case"] == case).map(parse).collect();
        let d = derive(&events);
        check_live_and_stalls(case, row, &d);
        let members = row["members"].as_array().unwrap();
        if case != "mixed_ctx" {
            assert!(members.is_empty(), "{case} is one peak: {members:?}");
            continue;
        }
        check_members(row, members, &requests(&events), &d, &pool);
    }
}

/// The pool as capacity.json states it.
struct Pool {
    bytes_per_token: f64,
    num_blocks: u64,
}

/// A case's live-request and stall figures against its events.
fn check_live_and_stalls(case: &str, row: &Value, d: &Derived) {
    eprintln!(
        "{case}: live mean {:.3} (table {:.3}), max {} (table {}); stalled s {:?}",
        d.live_mean, row["live_requests"], d.live_max, row["live_requests_max"], d.stall_seconds
    );
    agree(&format!("{case} live_requests"), d.live_mean, row["live_requests"].as_f64().unwrap());
    assert_eq!(d.live_max as u64, row["live_requests_max"].as_u64().unwrap(), "{case} live_requests_max");

    let stalled_s: f64 = d.stall_seconds.values().sum();
    let stalled_steps: u64 = d.stall_steps.values().sum();
    agree(&format!("{case} stalled_seconds"), stalled_s, row["stalled_seconds"].as_f64().unwrap());
    assert_eq!(stalled_steps, row["stalled_steps"].as_u64().unwrap(), "{case} stalled_steps");
    for reason in ["no_free_blocks", "max_running", "token_budget"] {
        let by_time = if stalled_s > 0.0 { d.stall_seconds.get(reason).unwrap_or(&0.0) / stalled_s } else { 0.0 };
        let by_step = if stalled_steps > 0 {
            *d.stall_steps.get(reason).unwrap_or(&0) as f64 / stalled_steps as f64
        } else {
            0.0
        };
        agree(
            &format!("{case} stall_time_share_{reason}"),
            by_time,
            row[format!("stall_time_share_{reason}")].as_f64().unwrap(),
        );
        agree(
            &format!("{case} stall_step_share_{reason}"),
            by_step,
            row[format!("stall_step_share_{reason}")].as_f64().unwrap(),
        );
    }
}

/// mixed_ctx's two members (long and short prompts) against its events.
fn check_members(row: &Value, members: &[Value], reqs: &BTreeMap<String, RequestFigures>, d: &Derived, pool: &Pool) {
    let lengths: BTreeSet<usize> = reqs.values().map(|r| r.prompt).collect();
    // The two peaks: long and short prompts (the lengths alternate).
    assert_eq!(lengths.len(), 2, "mixed_ctx has two prompt lengths: {lengths:?}");
    let short_len = *lengths.first().unwrap();
    let member_of = |id: &str| if reqs[id].prompt > short_len { "long" } else { "short" };
    assert_eq!(members.len(), 2);
    let mut blocks_at_peak = 0;
    for m in members {
        let name = m["member"].as_str().unwrap();
        let mine: Vec<&RequestFigures> = reqs.iter().filter(|(id, _)| member_of(id) == name).map(|(_, r)| r).collect();
        assert_eq!(mine.len() as u64, m["requests"].as_u64().unwrap(), "mixed_ctx {name} requests");
        let kv = mine.iter().map(|r| r.kv_tokens as f64 * pool.bytes_per_token).sum::<f64>() / mine.len() as f64;
        agree(&format!("mixed_ctx {name} estimated_kv"), kv, m["estimated_kv"].as_f64().unwrap());
        for (figure, values) in [
            ("ttft", mine.iter().map(|r| r.ttft).collect::<Vec<_>>()),
            ("queue_wait", mine.iter().map(|r| r.queue_wait).collect()),
        ] {
            for (p, key) in [(50.0, "p50"), (90.0, "p90"), (100.0, "max")] {
                agree(
                    &format!("mixed_ctx {name} {figure} {key}"),
                    percentile(&values, p),
                    m[figure][key].as_f64().unwrap(),
                );
            }
            assert_eq!(values.len() as u64, m[figure]["n"].as_u64().unwrap());
        }
        let at_peak: Vec<usize> = d.peak.iter().filter(|(id, _)| member_of(id) == name).map(|(_, b)| *b).collect();
        assert_eq!(at_peak.len() as u64, m["live_at_max"].as_u64().unwrap(), "mixed_ctx {name} live at the max");
        assert_eq!(at_peak.iter().sum::<usize>() as u64, m["blocks_at_max"].as_u64().unwrap(), "{name} blocks");
        blocks_at_peak += at_peak.iter().sum::<usize>();
    }
    // The explanation says what the maximum was made of.
    let (long, short) = (members[0]["live_at_max"].as_u64().unwrap(), members[1]["live_at_max"].as_u64().unwrap());
    let mix = format!("{long} long + {short} short = {blocks_at_peak} of {} blocks", pool.num_blocks);
    let explanation = row["explanation"].as_str().unwrap();
    assert!(explanation.contains(&mix), "{mix} not in: {explanation}");
    assert_eq!(long + short, d.live_max as u64);
}

#[test]
fn the_capacity_table_agrees_with_its_own_events() {
    let res = lab(&config(Scale::Quick, 1, &[]));
    let tmp = tempfile::tempdir().unwrap();
    kvscope_lab::artifacts::write_all(&res, tmp.path(), &ReportContext::default(), Lang::En).unwrap();
    check_dir(tmp.path());
    // The check is not vacuous: the quick lab's long prompts stall and
    // the mix's maximum holds both kinds.
    let long = res.capacity.iter().find(|r| r.case == "long_ctx").unwrap();
    assert!(long.stalled_steps > 0 && long.stalled_seconds > 0.0);
    let mixed = res.capacity.iter().find(|r| r.case == "mixed_ctx").unwrap();
    assert!(mixed.members.iter().all(|m| m.live_at_max > 0), "{:?}", mixed.members);
}

/// `KVSCOPE_CHECK_LAB_OUT=DIR`: the same check on a lab's output folder
/// (a real-model run); skipped when unset.
#[test]
fn a_lab_output_folder_agrees_with_its_own_events() {
    let Some(dir) = std::env::var_os("KVSCOPE_CHECK_LAB_OUT") else {
        eprintln!("KVSCOPE_CHECK_LAB_OUT not set: no lab output folder to check");
        return;
    };
    check_dir(Path::new(&dir));
}
