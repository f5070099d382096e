//! The model behind a gate: before a batch runs, the grader checks its
//! tables and writes (and stops the run on the first broken promise, so a
//! bad table never reaches the KV storage); after it runs, the sampled
//! tokens extend the grader's ground truth.

use crate::checker::Checker;
use kvscope_core::{BatchOutput, Executor, ExecutorError, ScheduledBatch};
use std::sync::{Arc, Mutex};

pub struct CheckingExecutor<E> {
    pub inner: E,
    pub checker: Arc<Mutex<Checker>>,
}

impl<E: Executor> Executor for CheckingExecutor<E> {
    const KV_SITE: &'static str = E::KV_SITE;

    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        let mut checker = self.checker.lock().unwrap_or_else(|e| e.into_inner());
        if !checker.check_batch(batch) {
            return Err(ExecutorError("kvscope stopped the step: the grader found a broken property".into()));
        }
        let output = self.inner.execute(batch)?;
        for (seq, token) in batch.seqs.iter().zip(&output.sampled) {
            if let Some(t) = token {
                checker.sampled(seq.request_id, t.token);
            }
        }
        Ok(output)
    }

    /// The model's KV layout, so the engine's geometry check sees through
    /// the gate.
    fn kv_geometry(&self) -> Option<kvscope_core::KvGeometry> {
        self.inner.kv_geometry()
    }
}
