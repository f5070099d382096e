//! The engine's notion of time, injected so that the same loop measures
//! wall time on a real model and simulated time on a cost model.

use crate::ids::Seconds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub trait Clock {
    /// Seconds since the run started.
    fn now(&self) -> Seconds;
    /// Lets time pass until `t` (sleeps on a wall clock, jumps on a
    /// simulated one). Used by drivers while nothing is runnable.
    fn wait_until(&self, t: Seconds);
}

/// Real time since construction.
#[derive(Clone, Debug)]
pub struct WallClock {
    start: Instant,
}

impl WallClock {
    pub fn new() -> Self {
        WallClock { start: Instant::now() }
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for WallClock {
    fn now(&self) -> Seconds {
        self.start.elapsed().as_secs_f64()
    }
    fn wait_until(&self, t: Seconds) {
        let dt = t - self.now();
        if dt > 0.0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(dt));
        }
    }
}

/// Simulated time: moves only when told to. Clones share one time, so a
/// simulated executor can advance the clock the engine reads.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    bits: Arc<AtomicU64>,
}

impl SimClock {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn advance(&self, dt: Seconds) {
        debug_assert!(dt >= 0.0, "time does not run backwards");
        self.set(self.now() + dt.max(0.0));
    }
    fn set(&self, t: Seconds) {
        self.bits.store(t.to_bits(), Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now(&self) -> Seconds {
        f64::from_bits(self.bits.load(Ordering::SeqCst))
    }
    fn wait_until(&self, t: Seconds) {
        if t > self.now() {
            self.set(t);
        }
    }
}
