//! `exercise check`: every workload on the student's manager under the
//! grader's eye, then on the native manager for the reference outputs.

use crate::checker::Checker;
use crate::checking_executor::CheckingExecutor;
use crate::external::PyBlockManager;
use crate::finding::{Finding, Property};
use crate::host::{HostConfig, StudentApi};
use crate::workloads::{self, Workload};
use kvscope_core::{
    Engine, EngineConfig, Executor, KvBlockManager, PoolConfig, RequestId, SamplingParams, SchedulerConfig, SimClock,
    TokenId,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where the graded engine's model comes from: the real model for
/// `kvscope exercise check`, a test executor in the unit tests.
pub trait GradingBackend {
    type Exec: Executor;
    fn executor(&mut self, num_blocks: usize, block_size: usize) -> Result<Self::Exec, String>;
    fn vocab_size(&self) -> Option<usize>;
    fn max_model_len(&self) -> usize;
}

#[derive(Clone, Debug)]
pub struct GradeConfig {
    pub host: HostConfig,
    pub seed: u64,
    /// A workload that takes more engine steps than this is stopped.
    pub max_steps: u64,
}

impl GradeConfig {
    pub fn new(host: HostConfig) -> Self {
        GradeConfig { host, seed: 2026, max_steps: 2_000 }
    }
}

/// Each request's output tokens, and whether it was aborted.
type Outputs = BTreeMap<RequestId, (Vec<TokenId>, bool)>;

#[derive(Clone, Debug)]
pub struct WorkloadResult {
    pub name: &'static str,
    pub purpose: &'static str,
    pub steps: u64,
    /// Prompt tokens the student's prefix hits served, and preemptions:
    /// evidence that the workload exercised what it is for.
    pub hit_tokens: u64,
    pub preemptions: u64,
    /// Ran to the end without a finding.
    pub completed: bool,
    pub finding: Option<Finding>,
    /// Outputs identical to the native manager's (`None`: not compared).
    pub outputs_match: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// A workload stopped before this property could be checked to its end.
    NotChecked,
}

#[derive(Clone, Debug)]
pub struct Grade {
    pub file: String,
    pub api: Option<StudentApi>,
    pub workloads: Vec<WorkloadResult>,
    pub first: Option<Finding>,
}

impl Grade {
    pub fn status(&self, p: Property) -> Status {
        let failed = self.workloads.iter().any(|w| {
            w.finding.as_ref().is_some_and(|f| f.property == Some(p))
                || (p == Property::Outputs && w.outputs_match == Some(false))
        });
        if failed {
            Status::Fail
        } else if self.workloads.iter().all(|w| w.completed && w.outputs_match == Some(true)) {
            Status::Pass
        } else {
            Status::NotChecked
        }
    }

    pub fn passed(&self) -> bool {
        Property::ALL.iter().all(|&p| self.status(p) == Status::Pass)
    }
}

/// Grades the student's file on every workload.
pub fn grade<B: GradingBackend>(backend: &mut B, cfg: &GradeConfig, progress: &mut dyn FnMut(&str)) -> Grade {
    let mut grade = Grade { file: cfg.host.file.display().to_string(), api: None, workloads: Vec::new(), first: None };
    for w in workloads::all(cfg.seed) {
        progress(w.name);
        let result = grade_workload(backend, cfg, &w, &mut grade.api);
        if grade.first.is_none() {
            grade.first = result.finding.clone();
        }
        let import_failed = result.finding.as_ref().is_some_and(|f| f.step == 0 && f.property.is_none());
        grade.workloads.push(result);
        // A file that cannot even be imported fails the same way everywhere.
        if import_failed {
            break;
        }
    }
    grade
}

fn engine_config<B: GradingBackend>(backend: &B, w: &Workload) -> EngineConfig {
    EngineConfig::new(
        // Whole-prompt prefills where the budget allows, as in nano-vLLM.
        SchedulerConfig::new(w.max_running, w.max_batched_tokens, backend.max_model_len()),
        PoolConfig::new(w.num_blocks, w.block_size, 0, true),
        backend.vocab_size(),
    )
}

fn grade_workload<B: GradingBackend>(
    backend: &mut B,
    cfg: &GradeConfig,
    w: &Workload,
    api: &mut Option<StudentApi>,
) -> WorkloadResult {
    let mut result = WorkloadResult {
        name: w.name,
        purpose: w.purpose,
        steps: 0,
        hit_tokens: 0,
        preemptions: 0,
        completed: false,
        finding: None,
        outputs_match: None,
    };
    let config = engine_config(backend, w);
    let checker = Arc::new(Mutex::new(Checker::new(w.num_blocks, w.block_size)));
    lock(&checker).workload = w.name.to_string();
    let host = HostConfig { inspect: true, ..cfg.host.clone() };
    let manager = match PyBlockManager::start(host, config.pool.clone(), checker.clone()) {
        Ok(m) => m,
        Err(e) => {
            let mut f = Finding::new(None, "import / BlockManager(num_blocks, block_size)").actual(e.to_string());
            f.workload = w.name.to_string();
            result.finding = Some(f);
            return result;
        }
    };
    api.get_or_insert_with(|| manager.api().clone());
    let exec = match backend.executor(config.pool.num_blocks, config.pool.block_size) {
        Ok(e) => e,
        Err(e) => {
            result.finding = Some(Finding::new(None, "(kvscope)").actual(format!("the model could not start: {e}")));
            return result;
        }
    };
    let executor = CheckingExecutor { inner: exec, checker: checker.clone() };
    let mut engine = match Engine::with_block_manager(config.clone(), manager, executor, SimClock::new()) {
        Ok(engine) => engine,
        Err(e) => {
            result.finding = Some(Finding::new(None, "(kvscope)").actual(format!("the engine could not start: {e}")));
            return result;
        }
    };
    let student = drive(&mut engine, w, Some(&checker), cfg.max_steps);
    result.steps = engine.current_step();
    result.hit_tokens = engine.scheduler().block_manager().counters().hit_tokens;
    result.preemptions = engine.scheduler().num_preemptions();
    drop(engine);
    let finding = {
        let mut c = lock(&checker);
        if student.is_ok() {
            c.at_end();
        }
        c.finding().cloned()
    };
    result.finding = finding.or_else(|| student.as_ref().err().map(|f| (**f).clone()));
    let Ok(student) = student else { return result };
    if result.finding.is_some() {
        return result;
    }
    result.completed = true;
    // The reference: the same workload on kvscope's own block manager.
    let pool = &config.pool;
    let reference = backend.executor(pool.num_blocks, pool.block_size).map_err(|e| e.to_string()).and_then(|exec| {
        let mut native = Engine::new(config.clone(), exec, SimClock::new()).map_err(|e| e.to_string())?;
        drive(&mut native, w, None, cfg.max_steps).map_err(|f| f.actual)
    });
    match reference {
        Ok(native) => {
            let mismatch = first_mismatch(&student, &native);
            result.outputs_match = Some(mismatch.is_none());
            if let Some((id, want, got)) = mismatch {
                let mut f = Finding::new(Some(Property::Outputs), "(the whole workload)")
                    .request(id)
                    .expected(format!("output tokens {want:?} (native block manager)"))
                    .actual(format!("output tokens {got:?}"))
                    .hint("the model read KV that is not this request's: check which blocks a prefix hit reuses");
                f.workload = w.name.to_string();
                f.step = result.steps;
                result.finding = Some(f);
            }
        }
        Err(e) => {
            result.finding =
                Some(Finding::new(None, "(kvscope)").actual(format!("the native reference run failed: {e}")))
        }
    }
    result
}

fn lock(c: &Arc<Mutex<Checker>>) -> std::sync::MutexGuard<'_, Checker> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a workload to its end: arrivals and aborts at their steps.
fn drive<E: Executor, B: KvBlockManager>(
    engine: &mut Engine<E, SimClock, B>,
    w: &Workload,
    checker: Option<&Arc<Mutex<Checker>>>,
    max_steps: u64,
) -> Result<Outputs, Box<Finding>> {
    let mut outputs = Outputs::new();
    let mut pending: Vec<_> = w.requests.iter().collect();
    let mut aborts = w.aborts.clone();
    let stop = |engine: &Engine<E, SimClock, B>, what: String| {
        let mut f = Finding::new(None, "(engine step)").actual(what);
        f.workload = w.name.to_string();
        f.step = engine.current_step();
        Box::new(f)
    };
    loop {
        let now = engine.current_step();
        if let Some(c) = checker {
            lock(c).step = now + 1;
        }
        for r in pending.iter().filter(|r| r.at_step <= now) {
            if let Some(c) = checker {
                lock(c).submitted(r.id, &r.prompt);
            }
            let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(r.max_tokens) };
            engine.submit(r.id, r.prompt.clone(), params).map_err(|e| stop(engine, e.to_string()))?;
        }
        pending.retain(|r| r.at_step > now);
        for &(id, _) in aborts.iter().filter(|(_, at)| *at <= now + 1) {
            if let Some(seq) = engine.abort(id) {
                outputs.insert(id, (seq.output, true));
            }
        }
        aborts.retain(|(_, at)| *at > now + 1);
        if let Some(why) = engine.scheduler().block_manager().failure() {
            return Err(stop(engine, why));
        }
        if !engine.has_work() && pending.is_empty() {
            return Ok(outputs);
        }
        if now >= max_steps {
            return Err(stop(engine, format!("the workload did not finish within {max_steps} engine steps")));
        }
        let idle_before = engine.scheduler().num_running() == 0;
        let outcome = engine.step().map_err(|e| stop(engine, e.to_string()))?;
        for seq in outcome.finished {
            outputs.insert(seq.id, (seq.output, false));
        }
        // Nothing ran and nothing could be admitted: nothing will ever free.
        let s = engine.scheduler();
        if idle_before && s.num_running() == 0 && s.num_waiting() > 0 {
            let head = s.waiting_ids().next().expect("waiting");
            let mut f = match checker {
                Some(c) => lock(c).deadlock(head),
                None => Finding::new(None, "can_allocate(seq)").actual("the native manager cannot admit"),
            };
            f.workload = w.name.to_string();
            f.step = engine.current_step();
            return Err(Box::new(f));
        }
    }
}

/// The first request whose outputs differ: `(id, native, student)`. An
/// aborted request stopped at different points in the two runs, so only
/// the tokens both have are compared.
fn first_mismatch(student: &Outputs, native: &Outputs) -> Option<(RequestId, Vec<TokenId>, Vec<TokenId>)> {
    for (id, (want, aborted)) in native {
        let got = student.get(id).map(|(g, _)| g.clone()).unwrap_or_default();
        let n =
            if *aborted || student.get(id).is_some_and(|(_, a)| *a) { want.len().min(got.len()) } else { want.len() };
        if got.len() < n || want[..n] != got[..n] || (!aborted && got.len() != want.len()) {
            return Some((*id, want.clone(), got));
        }
    }
    None
}
