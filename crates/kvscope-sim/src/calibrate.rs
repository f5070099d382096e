//! Calibration: time a real executor on synthetic batches, fit the linear
//! step-cost model to the measurements, and keep the fit in a file that
//! later `cpu` simulations load.
//!
//! The measuring ([`calibrate`]) is generic over any `Executor` and any
//! `Clock`, so the binary runs it with the real model and a wall clock
//! while tests run it with a reference executor on a simulated clock. The
//! fitting ([`fit`]) only sees [`StepSample`]s.

use crate::batch_shape::{BatchShape, FEATURES};
use crate::coefficients::LinearCoefficients;
use crate::error::SimError;
use kvscope_core::{BlockId, Clock, Executor, RequestId, SamplingParams, ScheduledBatch, ScheduledSeq, TokenId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One measured step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSample {
    pub shape: BatchShape,
    /// Measured duration, seconds.
    pub seconds: f64,
}

/// What to measure. The defaults take about 40 s with SmolLM2-135M on
/// 2 cores (≈ 68k prompt tokens to fill every decoding sequence's own
/// context, 48 decode steps and 9 prefills timed 3 times each).
#[derive(Clone, Debug)]
pub struct CalibrationPlan {
    /// Must equal the executor's KV block size.
    pub block_size: usize,
    /// Single-sequence prefills from position 0, one step each.
    pub prefill_lengths: Vec<usize>,
    /// Context lengths for decode (rounded up to whole blocks); each context
    /// is prefilled first in chunks of `prefill_chunk` (measured too).
    pub decode_contexts: Vec<usize>,
    pub prefill_chunk: usize,
    /// Sequences decoding together, in increasing order; each reads its own
    /// copy of the context (prefilled once; chunks of the copies after the
    /// first are timed once each).
    pub decode_batches: Vec<usize>,
    /// Decode steps measured per (context, batch).
    pub decode_steps: usize,
    /// Times each step is run; its sample is the median. A step run again
    /// writes the same KV into the same slots, so repeating it changes
    /// nothing but the noise of one timing (one preempted thread, one
    /// page fault).
    pub timings_per_step: usize,
    /// Token ids of the synthetic prompts are below this.
    pub vocab: u32,
}

impl Default for CalibrationPlan {
    fn default() -> Self {
        CalibrationPlan {
            block_size: kvscope_core::DEFAULT_BLOCK_SIZE,
            prefill_lengths: vec![16, 64, 192, 512],
            decode_contexts: vec![64, 512, 1536],
            prefill_chunk: 512,
            // 3 and 6 straddle the kernels' row tiles (a batch of 6 costs
            // two passes over the weights at a tile of 4, one at 8).
            decode_batches: vec![1, 3, 4, 6, 16, 32],
            decode_steps: 4,
            timings_per_step: 3,
            vocab: 32_000,
        }
    }
}

impl CalibrationPlan {
    fn round_context(&self, c: usize) -> usize {
        c.div_ceil(self.block_size).max(1) * self.block_size
    }

    /// KV blocks the executor under test must have.
    pub fn required_blocks(&self) -> usize {
        let bs = self.block_size;
        let prefill = self.prefill_lengths.iter().map(|l| l.div_ceil(bs)).max().unwrap_or(0);
        let max_batch = self.decode_batches.iter().copied().max().unwrap_or(0);
        let per_seq = self.decode_steps.div_ceil(bs);
        let decode =
            self.decode_contexts.iter().map(|&c| max_batch * (self.round_context(c) / bs + per_seq)).max().unwrap_or(0);
        prefill.max(decode).max(1)
    }

    /// Longest context the plan builds (the executor's context must allow it).
    pub fn max_context(&self) -> usize {
        let decode = self.decode_contexts.iter().map(|&c| self.round_context(c) + self.decode_steps).max().unwrap_or(0);
        decode.max(self.prefill_lengths.iter().copied().max().unwrap_or(0))
    }
}

/// Times `executor` on the plan's batches, measuring each step on `clock`.
/// `progress` is called after each measured step with (done, total).
pub fn calibrate<E: Executor, C: Clock>(
    executor: &mut E,
    clock: &C,
    plan: &CalibrationPlan,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<StepSample>, SimError> {
    let bs = plan.block_size;
    let max_batch = plan.decode_batches.iter().copied().max().unwrap_or(0).max(1);
    let total = plan.prefill_lengths.len()
        + max_batch
            * plan
                .decode_contexts
                .iter()
                .map(|&c| plan.round_context(c).div_ceil(plan.prefill_chunk.max(1)))
                .sum::<usize>()
        + plan.decode_contexts.len() * plan.decode_batches.len() * plan.decode_steps;
    let mut samples = Vec::with_capacity(total);
    let mut next_id = 0u64;
    let mut fresh_id = || {
        next_id += 1;
        RequestId(u64::MAX - next_id)
    };
    let repeats = plan.timings_per_step.max(1);
    let mut measure = |executor: &mut E, batch: ScheduledBatch, timings: usize, samples: &mut Vec<StepSample>| {
        let mut times = Vec::with_capacity(timings);
        for _ in 0..timings {
            let t0 = clock.now();
            executor.execute(&batch)?;
            times.push(clock.now() - t0);
        }
        times.sort_by(f64::total_cmp);
        // The project's one percentile rule (the middle value for an odd count).
        let seconds = kvscope_experiment::dist::percentile_of_sorted(&times, 50.0);
        samples.push(StepSample { shape: BatchShape::of(&batch), seconds });
        progress(samples.len(), total);
        Ok::<(), SimError>(())
    };
    // Each sequence's blocks in address order, as a fresh pool hands them
    // out. (Scattered blocks decode up to 1.7× slower at long contexts on
    // this engine; the lab's own steps, timed in the real pool, carry that.)
    let blocks = |from: usize, n: usize| (from..from + n).map(|b| BlockId(b as u32)).collect::<Vec<_>>();

    // Warm-up (caches, thread pools, lazily built tables): not recorded.
    let warm = prefill_seq(fresh_id(), 0, bs, blocks(0, 1), plan.vocab, true);
    executor.execute(&ScheduledBatch { seqs: vec![warm] })?;

    for &len in &plan.prefill_lengths {
        let seq = prefill_seq(fresh_id(), 0, len, blocks(0, len.div_ceil(bs)), plan.vocab, true);
        measure(executor, ScheduledBatch { seqs: vec![seq] }, repeats, &mut samples)?;
    }

    // Every decoding sequence reads its own copy of the context, as the
    // requests of a real run do: sequences sharing one copy keep it in
    // cache and time decode up to 40 % fast at long contexts (measured).
    let per_seq_blocks = plan.decode_steps.div_ceil(bs);
    for &context in &plan.decode_contexts {
        let context = plan.round_context(context);
        let seq_blocks = context / bs + per_seq_blocks;
        let table = |j: usize, upto: usize| blocks(j * seq_blocks, upto.div_ceil(bs));
        let chunk = plan.prefill_chunk.max(1);
        let mut prefilled = 0;
        for &batch_size in &plan.decode_batches {
            while prefilled < batch_size {
                let id = fresh_id();
                let mut start = 0;
                while start < context {
                    let n = chunk.min(context - start);
                    let seq = prefill_seq(id, start, n, table(prefilled, context), plan.vocab, start + n == context);
                    // The copies after the first are timed once: they are run
                    // anyway, and many long prefill chunks weigh the fit
                    // towards the steps a TTFT is made of.
                    let timings = if prefilled == 0 { repeats } else { 1 };
                    measure(executor, ScheduledBatch { seqs: vec![seq] }, timings, &mut samples)?;
                    start += n;
                }
                prefilled += 1;
            }
            let ids: Vec<RequestId> = (0..batch_size).map(|_| fresh_id()).collect();
            for step in 0..plan.decode_steps {
                let pos = context + step;
                let seqs = ids
                    .iter()
                    .enumerate()
                    .map(|(j, &id)| ScheduledSeq {
                        request_id: id,
                        tokens: vec![synthetic_prompt_token(pos, plan.vocab)],
                        num_tokens: 1,
                        start_pos: pos,
                        block_table: table(j, pos + 1),
                        sample: true,
                        output_index: step,
                        sampling: std::sync::Arc::new(SamplingParams::greedy(1 << 20)),
                        is_prefill: false,
                        next_prompt_token: None,
                    })
                    .collect();
                measure(executor, ScheduledBatch { seqs }, repeats, &mut samples)?;
            }
        }
    }
    Ok(samples)
}

fn synthetic_prompt_token(pos: usize, vocab: u32) -> TokenId {
    ((pos as u64 * 7919 + 17) % u64::from(vocab.max(1))) as TokenId
}

fn prefill_seq(id: RequestId, start: usize, n: usize, table: Vec<BlockId>, vocab: u32, sample: bool) -> ScheduledSeq {
    ScheduledSeq {
        request_id: id,
        tokens: (start..start + n).map(|p| synthetic_prompt_token(p, vocab)).collect(),
        num_tokens: n,
        start_pos: start,
        block_table: table,
        sample,
        output_index: 0,
        sampling: std::sync::Arc::new(SamplingParams::greedy(1 << 20)),
        is_prefill: true,
        next_prompt_token: None,
    }
}

/// A fit and how well it explains its own samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFit {
    pub coefficients: LinearCoefficients,
    /// Root mean square of (predicted − measured) / measured.
    pub rms_relative_error: f64,
    pub max_relative_error: f64,
}

/// Row-tile heights the fit tries: the int8 kernels' register tiles on
/// AVX2 and AVX-512 (4 rows), and AMX's 16 (with 2 and 8 between).
const ROW_TILES: [u64; 4] = [2, 4, 8, 16];

/// Fits non-negative coefficients minimising the squared *relative* error
/// of the predicted step times (short steps matter as much as long ones:
/// decode steps are short, TTFT is made of long prefill steps), at the
/// row-tile height (of [`ROW_TILES`]) that explains the steps best.
pub fn fit(model: &str, samples: &[StepSample]) -> Result<CalibrationFit, SimError> {
    let usable: Vec<&StepSample> = samples.iter().filter(|s| s.seconds.is_finite() && s.seconds > 0.0).collect();
    if usable.len() < FEATURES {
        return Err(SimError::TooFewSamples { needed: FEATURES, got: usable.len() });
    }
    let (coefficients, _) = ROW_TILES
        .iter()
        .map(|&tile| fit_at_tile(model, &usable, tile))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("at least one tile height");
    let (rms_relative_error, max_relative_error) = relative_errors(&coefficients, usable.iter().copied());
    Ok(CalibrationFit { rms_relative_error, max_relative_error, coefficients })
}

/// The non-negative least-squares fit at one row-tile height, and its sum
/// of squared relative errors.
///
/// Non-negative least squares by enumeration: the optimum is the
/// unconstrained least-squares solution on some subset of the features
/// with all its coefficients >= 0, and with 6 features there are only 63
/// subsets to try.
fn fit_at_tile(model: &str, usable: &[&StepSample], row_tile: u64) -> (LinearCoefficients, f64) {
    // Rows scaled by 1 / measured (relative error); columns scaled to unit
    // maximum so the normal equations stay well conditioned.
    let rows: Vec<[f64; FEATURES]> = usable
        .iter()
        .map(|s| {
            let f = s.shape.features(row_tile);
            std::array::from_fn(|j| f[j] / s.seconds)
        })
        .collect();
    let scale: [f64; FEATURES] = std::array::from_fn(|j| rows.iter().map(|r| r[j].abs()).fold(0.0, f64::max));
    let x: Vec<[f64; FEATURES]> =
        rows.iter().map(|r| std::array::from_fn(|j| if scale[j] > 0.0 { r[j] / scale[j] } else { 0.0 })).collect();

    let mut best: Option<([f64; FEATURES], f64)> = None;
    for mask in 1u32..(1 << FEATURES) {
        let cols: Vec<usize> = (0..FEATURES).filter(|&j| mask & (1 << j) != 0 && scale[j] > 0.0).collect();
        if cols.len() != mask.count_ones() as usize {
            continue;
        }
        let Some(beta) = least_squares(&x, &cols) else { continue };
        if beta.iter().any(|&b| b < 0.0) {
            continue;
        }
        let mut c = [0.0; FEATURES];
        for (&j, &b) in cols.iter().zip(&beta) {
            c[j] = b;
        }
        let sse: f64 = x.iter().map(|r| (r.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>() - 1.0).powi(2)).sum();
        if best.as_ref().is_none_or(|(_, e)| sse < *e) {
            best = Some((c, sse));
        }
    }
    let (c, sse) = best.unwrap_or(([0.0; FEATURES], f64::INFINITY));
    let coefficients: [f64; FEATURES] = std::array::from_fn(|j| if scale[j] > 0.0 { c[j] / scale[j] } else { 0.0 });
    (LinearCoefficients::from_array(model, coefficients, row_tile), sse)
}

/// Root mean square and maximum of (predicted − measured) / measured over
/// the steps with a positive measured time.
fn relative_errors<'a>(
    coefficients: &LinearCoefficients,
    samples: impl IntoIterator<Item = &'a StepSample>,
) -> (f64, f64) {
    let rel: Vec<f64> = samples
        .into_iter()
        .filter(|s| s.seconds.is_finite() && s.seconds > 0.0)
        .map(|s| (coefficients.seconds(&s.shape) - s.seconds) / s.seconds)
        .collect();
    if rel.is_empty() {
        return (0.0, 0.0);
    }
    let rms = (rel.iter().map(|e| e * e).sum::<f64>() / rel.len() as f64).sqrt();
    (rms, rel.iter().map(|e| e.abs()).fold(0.0, f64::max))
}

/// How well a fit predicts a run it was not fitted on: step by step, and
/// for the run as a whole (a queue wait or a TTFT is a sum of steps, so the
/// whole run's error is the one the lab's validation table inherits).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOutCheck {
    /// What was held out, in words.
    pub description: String,
    pub steps: usize,
    /// Over single steps, each timed once (so this includes timing noise).
    pub rms_relative_error: f64,
    pub max_relative_error: f64,
    /// Sum of the measured step times, seconds.
    pub measured_s: f64,
    /// Sum of the predicted step times, seconds.
    pub predicted_s: f64,
}

impl HeldOutCheck {
    pub fn new(description: impl Into<String>, coefficients: &LinearCoefficients, samples: &[StepSample]) -> Self {
        let (rms_relative_error, max_relative_error) = relative_errors(coefficients, samples);
        HeldOutCheck {
            description: description.into(),
            steps: samples.len(),
            rms_relative_error,
            max_relative_error,
            measured_s: samples.iter().map(|s| s.seconds).sum(),
            predicted_s: samples.iter().map(|s| coefficients.seconds(&s.shape)).sum(),
        }
    }

    /// (predicted − measured) / measured for the whole run.
    pub fn total_relative_error(&self) -> f64 {
        if self.measured_s > 0.0 {
            (self.predicted_s - self.measured_s) / self.measured_s
        } else {
            0.0
        }
    }
}

/// Solves min ‖X[:, cols] β − 1‖² by the normal equations (Gaussian
/// elimination with partial pivoting); `None` when singular.
fn least_squares(x: &[[f64; FEATURES]], cols: &[usize]) -> Option<Vec<f64>> {
    let k = cols.len();
    let mut a = vec![vec![0.0; k + 1]; k];
    for r in x {
        for (p, &i) in cols.iter().enumerate() {
            for (q, &j) in cols.iter().enumerate() {
                a[p][q] += r[i] * r[j];
            }
            a[p][k] += r[i];
        }
    }
    for col in 0..k {
        let pivot = (col..k).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        for row in 0..k {
            if row != col {
                let f = a[row][col] / a[col][col];
                let pivot_row = a[col].clone();
                for (x, p) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    Some((0..k).map(|i| a[i][k] / a[i][i]).collect())
}

/// What a calibration file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFile {
    pub version: u32,
    /// Free text: the machine and executor measured.
    pub description: String,
    pub fit: CalibrationFit,
    /// The steps the fit was made from.
    pub samples: Vec<StepSample>,
    /// The fit's check on steps it did not see, and those steps (absent
    /// from files written before the check existed).
    #[serde(default)]
    pub held_out: Option<HeldOutCheck>,
    #[serde(default)]
    pub held_out_samples: Vec<StepSample>,
}

impl CalibrationFile {
    pub const VERSION: u32 = 1;

    pub fn new(description: impl Into<String>, fit: CalibrationFit, samples: Vec<StepSample>) -> Self {
        CalibrationFile {
            version: Self::VERSION,
            description: description.into(),
            fit,
            samples,
            held_out: None,
            held_out_samples: Vec::new(),
        }
    }

    /// The file with the fit's held-out check and the steps it was made on.
    pub fn with_held_out(mut self, check: HeldOutCheck, samples: Vec<StepSample>) -> Self {
        self.held_out = Some(check);
        self.held_out_samples = samples;
        self
    }

    pub fn save(&self, path: &Path) -> Result<(), SimError> {
        let io = |source| SimError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let json = serde_json::to_string_pretty(self).expect("calibration serialises");
        std::fs::write(path, json + "\n").map_err(io)
    }

    pub fn load(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|source| SimError::Json { path: path.to_path_buf(), source })
    }

    /// Loads the file if it exists; `Ok(None)` when it does not.
    pub fn load_if_present(path: &Path) -> Result<Option<Self>, SimError> {
        if path.exists() {
            Self::load(path).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// `~/.cache/kvscope/sim-cpu-calibration.json` (`$XDG_CACHE_HOME` first).
pub fn default_calibration_path() -> Result<PathBuf, SimError> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or(SimError::NoHome)?).join(".cache")
        }
    };
    Ok(base.join("kvscope").join("sim-cpu-calibration.json"))
}

/// The `cpu` hardware profile with the calibration from `path` (default:
/// [`default_calibration_path`]) when that file exists; the uncalibrated
/// roofline defaults otherwise. Returns the file used, if any.
pub fn cpu_profile(path: Option<&Path>) -> Result<(crate::HardwareProfile, Option<PathBuf>), SimError> {
    let cpu = crate::hardware_preset("cpu").expect("the cpu preset exists");
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => match default_calibration_path() {
            Ok(p) => p,
            Err(_) => return Ok((cpu, None)),
        },
    };
    Ok(match CalibrationFile::load_if_present(&path)? {
        Some(file) => (cpu.with_calibration(file.fit.coefficients), Some(path)),
        None => (cpu, None),
    })
}
