//! The KV-precision extension: the storage format of K and V as a capacity
//! lever, with its price measured.
//!
//! Every format gets the same pool *bytes* (the main run's) and runs the
//! same requests (one of the lab's cases) on a fresh engine, so the only
//! thing that changes is how many tokens those bytes hold. The cost side is
//! measured, not assumed: the lab's own prompts are teacher-forced with KV
//! stored in each format and compared position by position with the f32 KV
//! path on the same kernels.

use crate::backend::{LabBackend, NextToken};
use crate::run::{run_one, LabError, Progress};
use kvscope_core::{EngineConfig, KvDtype, TokenId};
use kvscope_experiment::capacity::CapacityRow;
use kvscope_experiment::driver::{CaseRun, RunOptions};
use kvscope_experiment::workload::{CaseSpec, WorkloadRequest};
use serde::Serialize;

/// The case every format runs: the long prompts, where the pool binds.
pub const PRECISION_CASE: &str = "long_ctx";
/// A top-1 lead (in logits) above which a flipped top-1 is a real change of
/// the model's choice, not a near-tie (the golden tests' threshold).
pub const DECISIVE_MARGIN: f32 = 0.5;
/// Prompts scored per standard case for the accuracy columns.
pub const ACCURACY_PROMPTS_PER_CASE: usize = 2;

#[derive(Clone, Debug, Serialize)]
pub struct KvPrecision {
    /// Bytes of KV pool every format gets.
    pub pool_bytes: u64,
    /// The case every format runs.
    pub case: String,
    pub num_requests: usize,
    /// The format the rest of the lab ran with (its row reuses that run).
    pub main_dtype: KvDtype,
    pub rows: Vec<KvDtypeRow>,
    /// Prompts teacher-forced for the accuracy columns, and their scored
    /// positions (0 when the backend computes no logits).
    pub accuracy_prompts: usize,
    pub accuracy_positions: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct KvDtypeRow {
    pub kv_dtype: KvDtype,
    pub bytes_per_token: u64,
    pub blocks: usize,
    pub token_slots: usize,
    /// `None` when one request of the case needs more blocks than this
    /// pool has: the format cannot run the workload at all.
    pub capacity: Option<CapacityRow>,
    /// Against the f32 KV path; `None` for f32 itself and for backends
    /// without logits.
    pub accuracy: Option<KvAccuracy>,
}

/// One format's predictions against the f32 KV path's, position by position.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KvAccuracy {
    pub positions: usize,
    /// Share of positions whose top-1 token is the f32 path's.
    pub top1_agreement: f64,
    /// The same over the decisive positions only: where the f32 path's
    /// top-1 leads by at least [`DECISIVE_MARGIN`] (elsewhere a flip is a
    /// near-tie breaking the other way).
    pub decisive_positions: usize,
    pub decisive_top1_agreement: f64,
    /// Mean |log p − log p_f32| of the token that follows, over positions.
    pub mean_abs_logprob_diff: f64,
    pub max_abs_logprob_diff: f64,
}

impl KvAccuracy {
    /// Compares per-prompt predictions with the reference's (same prompts,
    /// same order).
    pub fn compare(reference: &[Vec<NextToken>], candidate: &[Vec<NextToken>]) -> KvAccuracy {
        let pairs: Vec<(&NextToken, &NextToken)> =
            reference.iter().zip(candidate).flat_map(|(r, c)| r.iter().zip(c)).collect();
        let n = pairs.len();
        let share = |agree: usize, of: usize| if of == 0 { 0.0 } else { agree as f64 / of as f64 };
        let agree = pairs.iter().filter(|(r, c)| r.top1 == c.top1).count();
        let decisive: Vec<_> = pairs.iter().filter(|(r, _)| r.margin >= DECISIVE_MARGIN).collect();
        let decisive_agree = decisive.iter().filter(|(r, c)| r.top1 == c.top1).count();
        let diffs: Vec<f64> = pairs.iter().map(|(r, c)| (r.logprob as f64 - c.logprob as f64).abs()).collect();
        KvAccuracy {
            positions: n,
            top1_agreement: share(agree, n),
            decisive_positions: decisive.len(),
            decisive_top1_agreement: share(decisive_agree, decisive.len()),
            mean_abs_logprob_diff: if n == 0 { 0.0 } else { diffs.iter().sum::<f64>() / n as f64 },
            max_abs_logprob_diff: diffs.iter().cloned().fold(0.0, f64::max),
        }
    }
}

/// What the extension needs from the main run.
pub(crate) struct MainRun<'a> {
    pub engine: &'a EngineConfig,
    pub spec: &'a CaseSpec,
    pub requests: &'a [WorkloadRequest],
    pub run: &'a CaseRun,
    /// The lab's own prompts to score.
    pub prompts: Vec<Vec<TokenId>>,
}

/// Runs the extension; `None` when the backend stores only one format.
/// The backend is left storing the main run's format.
pub(crate) fn run_kv_precision<B: LabBackend>(
    backend: &mut B,
    main: MainRun,
    progress: Progress,
) -> Result<Option<KvPrecision>, LabError> {
    let formats = backend.kv_dtypes();
    if formats.len() < 2 {
        return Ok(None);
    }
    let main_dtype = backend.info().kv_dtype;
    let result = run_formats(backend, &formats, main_dtype, &main, &mut *progress);
    backend.set_kv_dtype(main_dtype).map_err(LabError::Backend)?;
    result.map(Some)
}

fn run_formats<B: LabBackend>(
    backend: &mut B,
    formats: &[KvDtype],
    main_dtype: KvDtype,
    main: &MainRun,
    progress: Progress,
) -> Result<KvPrecision, LabError> {
    let pool_bytes = main.engine.pool.total_bytes();
    let block_size = main.engine.pool.block_size;
    let largest_blocks =
        main.requests.iter().map(|r| (r.prompt.len() + r.max_tokens).div_ceil(block_size)).max().unwrap_or(0);
    let reference = scores(backend, KvDtype::F32, &main.prompts)?;
    let mut rows = Vec::new();
    for &dtype in formats {
        backend.set_kv_dtype(dtype).map_err(LabError::Backend)?;
        let bytes_per_token = backend.info().kv_bytes_per_token;
        let bytes_per_block = bytes_per_token * block_size as u64;
        let blocks = (pool_bytes / bytes_per_block.max(1)) as usize;
        let capacity = if dtype == main_dtype {
            Some(CapacityRow::from_run(main.run, false))
        } else if largest_blocks > blocks || blocks == 0 {
            None
        } else {
            let mut engine = main.engine.clone();
            engine.pool.num_blocks = blocks;
            engine.pool.bytes_per_block = bytes_per_block;
            engine.validate()?;
            let spec = CaseSpec { name: format!("{}@{dtype}", main.spec.name), ..main.spec.clone() };
            let run = run_one(backend, &engine, &spec, main.requests, RunOptions::SUMMARY, &mut *progress)?;
            Some(CapacityRow::from_run(&run, false))
        };
        let accuracy = match (&reference, dtype) {
            (Some(_), KvDtype::F32) | (None, _) => None,
            (Some(r), _) => scores(backend, dtype, &main.prompts)?.map(|c| KvAccuracy::compare(r, &c)),
        };
        rows.push(KvDtypeRow {
            kv_dtype: dtype,
            bytes_per_token,
            blocks,
            token_slots: blocks * block_size,
            capacity,
            accuracy,
        });
    }
    Ok(KvPrecision {
        pool_bytes,
        case: main.spec.name.clone(),
        num_requests: main.requests.len(),
        main_dtype,
        rows,
        accuracy_prompts: if reference.is_some() { main.prompts.len() } else { 0 },
        accuracy_positions: reference.as_ref().map_or(0, |r| r.iter().map(Vec::len).sum()),
    })
}

/// Every prompt's teacher-forced predictions with KV stored as `dtype`.
fn scores<B: LabBackend>(
    backend: &mut B,
    dtype: KvDtype,
    prompts: &[Vec<TokenId>],
) -> Result<Option<Vec<Vec<NextToken>>>, LabError> {
    let mut all = Vec::with_capacity(prompts.len());
    for p in prompts {
        match backend.next_token_scores(dtype, p) {
            None => return Ok(None),
            Some(scored) => all.push(scored.map_err(LabError::Backend)?),
        }
    }
    Ok(Some(all))
}

/// `kv_dtype.csv`: one line per format.
pub fn to_csv(kp: &KvPrecision) -> String {
    #[derive(Serialize)]
    struct Line {
        kv_dtype: KvDtype,
        bytes_per_token: u64,
        pool_bytes: u64,
        blocks: usize,
        token_slots: usize,
        runs_the_case: bool,
        live_requests_max: Option<usize>,
        live_requests_mean: Option<f64>,
        queue_wait_p50_s: Option<f64>,
        queue_wait_p90_s: Option<f64>,
        ttft_p50_s: Option<f64>,
        ttft_p90_s: Option<f64>,
        preemptions: Option<u64>,
        accuracy_positions: Option<usize>,
        top1_agreement: Option<f64>,
        decisive_positions: Option<usize>,
        decisive_top1_agreement: Option<f64>,
        mean_abs_logprob_diff: Option<f64>,
        max_abs_logprob_diff: Option<f64>,
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    for r in &kp.rows {
        let c = r.capacity.as_ref();
        let a = r.accuracy.as_ref();
        out.serialize(Line {
            kv_dtype: r.kv_dtype,
            bytes_per_token: r.bytes_per_token,
            pool_bytes: kp.pool_bytes,
            blocks: r.blocks,
            token_slots: r.token_slots,
            runs_the_case: c.is_some(),
            live_requests_max: c.map(|c| c.live_requests_max),
            live_requests_mean: c.map(|c| c.live_requests),
            queue_wait_p50_s: c.map(|c| c.queue_wait.p50),
            queue_wait_p90_s: c.map(|c| c.queue_wait.p90),
            ttft_p50_s: c.map(|c| c.ttft.p50),
            ttft_p90_s: c.map(|c| c.ttft.p90),
            preemptions: c.map(|c| c.preemptions),
            accuracy_positions: a.map(|a| a.positions),
            top1_agreement: a.map(|a| a.top1_agreement),
            decisive_positions: a.map(|a| a.decisive_positions),
            decisive_top1_agreement: a.map(|a| a.decisive_top1_agreement),
            mean_abs_logprob_diff: a.map(|a| a.mean_abs_logprob_diff),
            max_abs_logprob_diff: a.map(|a| a.max_abs_logprob_diff),
        })
        .expect("writing CSV to memory");
    }
    String::from_utf8(out.into_inner().expect("flushing to memory")).expect("CSV of UTF-8 strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_compares_position_by_position() {
        let t = |top1, margin, logprob| NextToken { top1, margin, logprob };
        // the second position is a near-tie (lead 0.1)
        let reference = vec![vec![t(1, 2.0, -0.5), t(2, 0.1, -1.0)], vec![t(3, 1.0, -2.0)]];
        let same = KvAccuracy::compare(&reference, &reference);
        assert_eq!(
            same,
            KvAccuracy {
                positions: 3,
                top1_agreement: 1.0,
                decisive_positions: 2,
                decisive_top1_agreement: 1.0,
                mean_abs_logprob_diff: 0.0,
                max_abs_logprob_diff: 0.0
            }
        );
        let other = vec![vec![t(1, 2.0, -0.75), t(9, 0.1, -1.0)], vec![t(3, 1.0, -1.5)]];
        let a = KvAccuracy::compare(&reference, &other);
        assert_eq!(a.positions, 3);
        assert!((a.top1_agreement - 2.0 / 3.0).abs() < 1e-12);
        // the only flip is the near-tie
        assert_eq!((a.decisive_positions, a.decisive_top1_agreement), (2, 1.0));
        assert!((a.mean_abs_logprob_diff - 0.25).abs() < 1e-9 && (a.max_abs_logprob_diff - 0.5).abs() < 1e-9);
    }
}
