//! The state statistics collector (lab extension option 1): one row per
//! engine step with the queues, the pool and the KV it holds.
//!
//! Time-weighted figures count a step as the state it computed with: a
//! request is live from the start of the step that admits it to the end
//! of the step that releases it ([`StepSnapshot::live`] over
//! [`StepSnapshot::t_start`]..[`StepSnapshot::t`]). On a CPU the steps that
//! admit are the long prefills, so weighting the state *after* each step
//! over the next one would drop most of a long request's life.

use crate::csv_text::{push_fixed, push_uint};
use crate::events::{DecodeRunReport, EventRecord, KvEvent, Observer, ReleaseReason, StallReason, StepSnapshot};
use crate::ids::{RequestId, Seconds};
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
    /// Seconds of the steps in which the queue's head stalled, per reason
    /// (a stalled step counts whole: the head waited all of it).
    pub stall_seconds: HashMap<StallReason, Seconds>,
    pub preemptions: u64,
    pub evictions: u64,
    /// The requests live in the first step that had the most, each with
    /// the blocks it held at that step's end (before the step released
    /// the ones it finished): what the maximum was made of.
    pub peak_live: Vec<(RequestId, usize)>,
    /// Blocks each request holds now.
    held: HashMap<RequestId, usize>,
    /// Requests the current step finished, with the blocks they held.
    finished_this_step: Vec<(RequestId, usize)>,
    /// Why the current step's queue head stalled, if it did.
    stalled_this_step: Option<StallReason>,
}

impl StatsCollector {
    pub const CSV_HEADER: &'static str = "step,t_s,waiting,running,blocks_used,blocks_free,blocks_cached_free,kv_tokens,kv_bytes,block_occupancy,token_occupancy,fragmentation,batch_tokens,prefill_tokens,decode_seqs,t_start_s,live_requests";

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
                Field::Fixed(r.t_start, 6),
                Field::Int(r.live as u64),
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

    /// Stalled steps, all reasons.
    pub fn total_stalls(&self) -> u64 {
        self.stalls.values().sum()
    }

    /// Seconds of stalled steps, all reasons.
    pub fn total_stall_seconds(&self) -> Seconds {
        self.stall_seconds.values().sum()
    }

    /// Share of the stalled steps due to `reason` (0 when nothing stalled).
    /// A short decode step and a long prefill step weigh the same here:
    /// [`Self::stall_time_share`] is the share of the waiting.
    pub fn stall_step_share(&self, reason: StallReason) -> f64 {
        let total = self.total_stalls();
        if total == 0 {
            0.0
        } else {
            *self.stalls.get(&reason).unwrap_or(&0) as f64 / total as f64
        }
    }

    /// Share of the stalled time due to `reason` (0 when nothing stalled
    /// for any time).
    pub fn stall_time_share(&self, reason: StallReason) -> f64 {
        let total = self.total_stall_seconds();
        if total > 0.0 {
            self.stall_seconds.get(&reason).unwrap_or(&0.0) / total
        } else {
            0.0
        }
    }

    /// Most requests live in one step (see [`StepSnapshot::live`]).
    pub fn max_live(&self) -> usize {
        self.rows.iter().map(|r| r.live).max().unwrap_or(0)
    }

    /// The rows of engine steps, without the step-0 row the engine
    /// publishes before its first step.
    pub fn step_rows(&self) -> &[StepSnapshot] {
        let start = self.rows.iter().take_while(|r| r.step == 0).count();
        &self.rows[start..]
    }

    /// A count over time, piecewise constant: each `(t, v)` holds from `t`
    /// until the next point's `t`; the last point is the end of the run.
    /// `during` is the count while a step ran (`t_start..t`), `between`
    /// the count a row leaves behind until the next step starts.
    pub fn series(
        &self,
        during: impl Fn(&StepSnapshot) -> usize,
        between: impl Fn(&StepSnapshot) -> usize,
    ) -> Vec<(Seconds, usize)> {
        let Some(first) = self.rows.first() else { return Vec::new() };
        let mut out = vec![(first.t, between(first))];
        for w in self.rows.windows(2) {
            let (prev, r) = (&w[0], &w[1]);
            if r.t_start > prev.t {
                out.push((prev.t, between(prev)));
            }
            out.push((r.t_start.max(prev.t), during(r)));
        }
        let last = self.rows.last().expect("non-empty");
        out.push((last.t, between(last)));
        out
    }

    /// Requests holding KV over time (see [`Self::series`]).
    pub fn live_series(&self) -> Vec<(Seconds, usize)> {
        self.series(|r| r.live, |r| r.running)
    }

    /// Mean live requests over the run, weighted by time: each step counts
    /// the requests it computed with for its whole duration, the time
    /// between steps the requests holding KV then. The run spans from the
    /// first row (the step-0 row: the start of the first step) to the end
    /// of the last step. A run whose steps took no time has the first
    /// step's count.
    pub fn time_weighted_mean_live(&self) -> f64 {
        let series = self.live_series();
        let (mut area, mut span) = (0.0, 0.0);
        for w in series.windows(2) {
            let dt = w[1].0 - w[0].0;
            area += w[0].1 as f64 * dt;
            span += dt;
        }
        if span > 0.0 {
            area / span
        } else {
            self.step_rows().first().map_or(0.0, |r| r.live as f64)
        }
    }

    pub fn max_used_blocks(&self) -> usize {
        self.rows.iter().map(|r| r.used_blocks).max().unwrap_or(0)
    }

    /// Closes a step: its stall's time, and the peak's make-up if the step
    /// had more live requests than any before.
    fn close(&mut self, row: &StepSnapshot) {
        if let Some(reason) = self.stalled_this_step.take() {
            *self.stall_seconds.entry(reason).or_default() += (row.t - row.t_start).max(0.0);
        }
        let finished = std::mem::take(&mut self.finished_this_step);
        if row.live > self.peak_live.len() {
            let mut peak: Vec<(RequestId, usize)> = self.held.iter().map(|(id, b)| (*id, *b)).collect();
            peak.extend(finished);
            peak.sort();
            self.peak_live = peak;
        }
    }
}

impl Observer for StatsCollector {
    fn on_event(&mut self, record: &EventRecord) {
        match &record.event {
            KvEvent::Stalled { reason, .. } => {
                *self.stalls.entry(*reason).or_default() += 1;
                self.stalled_this_step = Some(*reason);
            }
            KvEvent::Admitted { request_id, blocks, .. } => {
                self.held.insert(*request_id, blocks.len());
            }
            KvEvent::BlockAppended { request_id, .. } => {
                *self.held.entry(*request_id).or_default() += 1;
            }
            KvEvent::Released { request_id, blocks, reason, .. } => {
                self.held.remove(request_id);
                // A finished request computed in this step; a preempted one
                // was released before the step ran, an aborted one between
                // steps.
                if *reason == ReleaseReason::Finished {
                    self.finished_this_step.push((*request_id, blocks.len()));
                }
            }
            KvEvent::Preempted { .. } => self.preemptions += 1,
            KvEvent::Evicted { .. } => self.evictions += 1,
            _ => {}
        }
    }
    fn on_step(&mut self, snapshot: &StepSnapshot) {
        self.close(snapshot);
        self.rows.push(snapshot.clone());
    }
    /// One row for the whole run (its last step), whose `t_start` and
    /// `live` are the run's: every step of it computed with the same
    /// requests, so the time-weighted mean is unchanged.
    fn on_decode_run(&mut self, run: &DecodeRunReport) {
        if let Some(reason) = run.stall {
            *self.stalls.entry(reason).or_default() += run.steps;
            self.stalled_this_step = Some(reason);
        }
        self.close(&run.end);
        self.rows.push(run.end.clone());
    }
}
