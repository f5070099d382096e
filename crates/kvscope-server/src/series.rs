//! The last minutes of pool usage, queue lengths, queue waits and TTFTs,
//! for the web view's curves (`/api/series`).

use kvscope_core::{Seconds, StepSnapshot};
use serde::Serialize;
use std::collections::VecDeque;

/// How far back the curves reach.
const WINDOW: Seconds = 300.0;
/// At most one usage point per this interval (steps can be much faster).
const MIN_GAP: Seconds = 0.1;

#[derive(Clone, Debug, Serialize)]
pub struct UsagePoint {
    pub t: Seconds,
    pub kv_usage: f64,
    pub token_usage: f64,
    pub waiting: usize,
    pub running: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Series {
    pub usage: VecDeque<UsagePoint>,
    /// `(t, seconds)` per request at its first admission.
    pub queue_wait: VecDeque<(Seconds, Seconds)>,
    /// `(t, seconds)` per request at its first token.
    pub ttft: VecDeque<(Seconds, Seconds)>,
}

impl Series {
    pub fn record_step(&mut self, s: &StepSnapshot) {
        let point = UsagePoint {
            t: s.t,
            kv_usage: s.block_occupancy(),
            token_usage: s.token_occupancy(),
            waiting: s.waiting,
            running: s.running,
        };
        // Steps can be far faster than a curve needs: the newest point keeps
        // moving until it is MIN_GAP past the one before it.
        let n = self.usage.len();
        if n >= 2 && self.usage[n - 1].t - self.usage[n - 2].t < MIN_GAP {
            self.usage[n - 1] = point;
        } else {
            self.usage.push_back(point);
        }
        trim(&mut self.usage, s.t, |p| p.t);
    }
    pub fn record_queue_wait(&mut self, t: Seconds, wait: Seconds) {
        self.queue_wait.push_back((t, wait));
        trim(&mut self.queue_wait, t, |p| p.0);
    }
    pub fn record_ttft(&mut self, t: Seconds, ttft: Seconds) {
        self.ttft.push_back((t, ttft));
        trim(&mut self.ttft, t, |p| p.0);
    }
}

fn trim<T>(points: &mut VecDeque<T>, now: Seconds, t: impl Fn(&T) -> Seconds) {
    while points.front().is_some_and(|p| now - t(p) > WINDOW) {
        points.pop_front();
    }
}
