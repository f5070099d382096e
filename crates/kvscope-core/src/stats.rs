//! The state statistics collector (lab extension option 1): one row per
//! engine step with the queues, the pool and the KV it holds.

use crate::csv_text::{push_fixed, push_uint};
use crate::events::{DecodeRunReport, EventRecord, KvEvent, Observer, StallReason, StepSnapshot};
use std::collections::HashMap;
use std::io::Write;

/// One CSV field: an integer, or a float with its decimals.
enum Field {
    Int(u64),
    Fixed(f64, u32),
}

#[derive(Default, Debug, Clone)]
pub struct StatsCollector {
    pub rows: Vec<StepSnapshot>,
    /// Admission stalls per reason, counted once per step.
    pub stalls: HashMap<StallReason, u64>,
    pub preemptions: u64,
    pub evictions: u64,
}

impl StatsCollector {
    pub const CSV_HEADER: &'static str = "step,t_s,waiting,running,blocks_used,blocks_free,blocks_cached_free,kv_tokens,kv_bytes,block_occupancy,token_occupancy,fragmentation,batch_tokens,prefill_tokens,decode_seqs";

    pub fn write_csv<W: Write>(&self, mut out: W) -> std::io::Result<()> {
        writeln!(out, "{}", Self::CSV_HEADER)?;
        self.write_csv_rows("", out)
    }

    /// The rows of [`write_csv`](Self::write_csv) without the header, each
    /// line starting with `prefix` (the lab's `case,` column). Each line is
    /// built in one buffer and written whole: a simulation writes tens of
    /// thousands of rows.
    pub fn write_csv_rows<W: Write>(&self, prefix: &str, mut out: W) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(prefix.len() + 160);
        for r in &self.rows {
            line.clear();
            line.extend_from_slice(prefix.as_bytes());
            let fields = [
                Field::Int(r.step),
                Field::Fixed(r.t, 6),
                Field::Int(r.waiting as u64),
                Field::Int(r.running as u64),
                Field::Int(r.used_blocks as u64),
                Field::Int(r.free_blocks as u64),
                Field::Int(r.cached_free_blocks as u64),
                Field::Int(r.kv_tokens as u64),
                Field::Int(r.used_kv_bytes),
                Field::Fixed(r.block_occupancy(), 4),
                Field::Fixed(r.token_occupancy(), 4),
                Field::Fixed(r.fragmentation(), 4),
                Field::Int(r.batch_tokens as u64),
                Field::Int(r.prefill_tokens as u64),
                Field::Int(r.decode_seqs as u64),
            ];
            for (i, field) in fields.into_iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                match field {
                    Field::Int(n) => push_uint(&mut line, n),
                    Field::Fixed(x, decimals) => push_fixed(&mut line, x, decimals),
                }
            }
            line.push(b'\n');
            out.write_all(&line)?;
        }
        Ok(())
    }

    pub fn total_stalls(&self) -> u64 {
        self.stalls.values().sum()
    }

    /// Share of stalled steps due to `reason` (0 when nothing stalled).
    pub fn stall_share(&self, reason: StallReason) -> f64 {
        let total = self.total_stalls();
        if total == 0 {
            0.0
        } else {
            *self.stalls.get(&reason).unwrap_or(&0) as f64 / total as f64
        }
    }

    pub fn max_running(&self) -> usize {
        self.rows.iter().map(|r| r.running).max().unwrap_or(0)
    }

    /// The rows of engine steps, without the step-0 row the engine
    /// publishes before its first step.
    pub fn step_rows(&self) -> &[StepSnapshot] {
        let start = self.rows.iter().take_while(|r| r.step == 0).count();
        &self.rows[start..]
    }

    /// Mean running sequences over time (each step weighted by how long
    /// it lasted until the next snapshot). It starts at the first step's
    /// row, not at the step-0 row: that row is the queue before anything
    /// was admitted, and weighting it over the first step would count the
    /// requests that step admitted (and that held KV all along) as absent.
    pub fn time_weighted_mean_running(&self) -> f64 {
        let rows = self.step_rows();
        let mut area = 0.0;
        let mut span = 0.0;
        for w in rows.windows(2) {
            let dt = w[1].t - w[0].t;
            area += w[0].running as f64 * dt;
            span += dt;
        }
        if span > 0.0 {
            area / span
        } else {
            rows.first().map_or(0.0, |r| r.running as f64)
        }
    }

    pub fn max_used_blocks(&self) -> usize {
        self.rows.iter().map(|r| r.used_blocks).max().unwrap_or(0)
    }
}

impl Observer for StatsCollector {
    fn on_event(&mut self, record: &EventRecord) {
        match &record.event {
            KvEvent::Stalled { reason, .. } => *self.stalls.entry(*reason).or_default() += 1,
            KvEvent::Preempted { .. } => self.preemptions += 1,
            KvEvent::Evicted { .. } => self.evictions += 1,
            _ => {}
        }
    }
    fn on_step(&mut self, snapshot: &StepSnapshot) {
        self.rows.push(snapshot.clone());
    }
    /// One row for the whole run (its last step); the run's steps all had
    /// the same running sequences, so the time-weighted mean is unchanged.
    fn on_decode_run(&mut self, run: &DecodeRunReport) {
        if let Some(reason) = run.stall {
            *self.stalls.entry(reason).or_default() += run.steps;
        }
        self.rows.push(run.end.clone());
    }
}
