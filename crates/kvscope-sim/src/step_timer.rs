//! Times every step an executor runs inside a real engine. Calibration uses
//! it to take samples from the lab's own workloads (batches the scheduler
//! really forms: prefill chunks beside decodes, recomputes after a
//! preemption) and to time a held-out run the fit never saw.

use crate::batch_shape::BatchShape;
use crate::calibrate::StepSample;
use kvscope_core::{BatchOutput, Clock, DecodeRun, DecodeRunOutput, Executor, ExecutorError, ScheduledBatch};

/// An executor that forwards every step to `inner` and records its shape
/// and duration on `clock`.
pub struct StepTimer<E, C> {
    inner: E,
    clock: C,
    samples: Vec<StepSample>,
}

impl<E: Executor, C: Clock> StepTimer<E, C> {
    pub fn new(inner: E, clock: C) -> Self {
        StepTimer { inner, clock, samples: Vec::new() }
    }

    /// The executor back, and one sample per step it ran.
    pub fn into_parts(self) -> (E, Vec<StepSample>) {
        (self.inner, self.samples)
    }
}

impl<E: Executor, C: Clock> Executor for StepTimer<E, C> {
    const KV_SITE: &'static str = E::KV_SITE;

    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        let start = self.clock.now();
        let out = self.inner.execute(batch)?;
        self.samples.push(StepSample { shape: BatchShape::of(batch), seconds: self.clock.now() - start });
        Ok(out)
    }

    fn reads_batch_contents(&self) -> bool {
        self.inner.reads_batch_contents()
    }

    fn kv_geometry(&self) -> Option<kvscope_core::KvGeometry> {
        self.inner.kv_geometry()
    }

    /// Declined, so that the engine runs (and this times) every step.
    fn execute_decode_run(&mut self, _run: &DecodeRun) -> Option<Result<DecodeRunOutput, ExecutorError>> {
        None
    }
}
