//! The grader against known implementations, on kvscope-core's paged test
//! executor (it reads KV back through the block tables, so a wrong table
//! changes outputs as it would on the real model, in milliseconds). The
//! real model runs in the CLI test.

use kvscope_core::testing::PagedTokenExecutor;
use kvscope_exercise::grade::{grade, Grade, GradeConfig, GradingBackend, Status};
use kvscope_exercise::report::render;
use kvscope_exercise::{HostConfig, Property};
use std::path::PathBuf;
use std::time::Duration;

struct TokenBackend;

impl GradingBackend for TokenBackend {
    type Exec = PagedTokenExecutor;
    fn executor(&mut self, num_blocks: usize, block_size: usize) -> Result<PagedTokenExecutor, String> {
        Ok(PagedTokenExecutor::new(num_blocks, block_size, 32_000))
    }
    fn vocab_size(&self) -> Option<usize> {
        Some(32_000)
    }
    fn max_model_len(&self) -> usize {
        4096
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn check(path: PathBuf) -> (Grade, String) {
    let mut host = HostConfig::new(path);
    host.call_timeout = Duration::from_secs(2);
    let grade = grade(&mut TokenBackend, &GradeConfig::new(host), &mut |_| {});
    let text = render(&grade);
    (grade, text)
}

/// The first failure is `property` (None: the code itself failed), and the
/// report names each of `needles`.
fn assert_caught(name: &str, property: Option<Property>, needles: &[&str]) {
    let (grade, text) = check(fixture(name));
    assert!(!grade.passed(), "{name} passed:\n{text}");
    let first = grade.first.as_ref().unwrap_or_else(|| panic!("{name}: no finding\n{text}"));
    assert_eq!(first.property, property, "{name}:\n{text}");
    if let Some(p) = property {
        assert_eq!(grade.status(p), Status::Fail, "{name}:\n{text}");
    }
    for needle in needles {
        assert!(text.contains(needle), "{name}: the report lacks {needle:?}:\n{text}");
    }
}

#[test]
fn a_correct_classic_manager_passes_every_property() {
    let (grade, text) = check(fixture("reference.py"));
    assert!(grade.passed(), "{text}");
    assert!(grade.workloads.iter().all(|w| w.completed && w.outputs_match == Some(true)), "{text}");
    assert!(text.contains("6/6 properties pass"), "{text}");
    // The workloads really exercise what they are for.
    let by = |n: &str| grade.workloads.iter().find(|w| w.name == n).unwrap();
    assert!(by("shared_prefix").hit_tokens > 0, "{text}");
    assert!(by("preemption").preemptions > 0, "{text}");
}

#[test]
fn a_correct_newer_manager_with_int_can_allocate_and_hash_blocks_passes() {
    let (grade, text) = check(fixture("reference_v2.py"));
    assert!(grade.passed(), "{text}");
    let api = grade.api.as_ref().unwrap();
    assert!(api.allocate_takes_cached_blocks && api.has_hash_blocks, "{text}");
}

#[test]
fn forgetting_a_ref_count_decrement_is_caught_by_ref_counts() {
    assert_caught(
        "broken_forget_decref.py",
        Some(Property::RefCounts),
        &["call deallocate(seq)", "ref_count 0 (held by no table)", "actual:   block", "ref_count 1", "must decrement"],
    );
}

#[test]
fn sharing_a_block_without_comparing_tokens_is_caught_by_prefix_hits() {
    assert_caught(
        "broken_no_token_compare.py",
        Some(Property::PrefixHits),
        &[
            "workload shared_prefix",
            "request 5",
            "call allocate(seq)",
            "a different prefix",
            "compare the block's tokens",
        ],
    );
}

#[test]
fn allocating_the_new_block_one_token_late_is_caught_by_slots() {
    assert_caught(
        "broken_late_block.py",
        Some(Property::Slots),
        &["call may_append(seq)", "len(seq) % block_size == 1"],
    );
}

#[test]
fn never_freeing_is_caught_by_release() {
    assert_caught(
        "broken_never_free.py",
        Some(Property::Release),
        &["call deallocate(seq)", "it leaked", "free_block_ids"],
    );
}

#[test]
fn an_exception_is_reported_with_its_traceback_never_a_crash() {
    assert_caught("broken_raises.py", None, &["may_append", "raised an exception", "ValueError: a bug in may_append"]);
}

#[test]
fn a_hang_is_stopped_by_the_call_deadline() {
    assert_caught("broken_hangs.py", None, &["did not return within 2 s"]);
}

#[test]
fn a_missing_module_names_the_pip_command() {
    let (grade, text) = check(fixture("imports_xxhash.py"));
    assert!(!grade.passed());
    assert!(text.contains("imports `xxhash`") && text.contains("python3 -m pip install xxhash"), "{text}");
    assert_eq!(grade.workloads.len(), 1, "an import failure is not repeated per workload:\n{text}");
}

#[test]
fn the_skeleton_passes_nothing_until_filled_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("exercise");
    let files = kvscope_exercise::skeleton::write_skeleton(&dir).unwrap();
    assert_eq!(files.len(), 2);
    assert!(kvscope_exercise::skeleton::write_skeleton(&dir).is_err(), "init must not overwrite a student's work");
    let (grade, text) = check(dir.join("block_manager.py"));
    for p in Property::ALL {
        assert_ne!(grade.status(p), Status::Pass, "{p:?} passes on the skeleton:\n{text}");
    }
    assert!(text.contains("NotImplementedError: can_allocate"), "{text}");
}

#[test]
fn a_can_append_that_always_refuses_is_reported_instead_of_looping() {
    assert_caught("broken_never_appends.py", None, &["call can_append(seq)", "preempted and recomputed forever"]);
}

/// The lab runs a student's manager without grading it; a leak must still
/// stop the engine with a message, never leave it waiting forever.
#[test]
fn in_the_lab_a_leaking_manager_stops_the_engine_instead_of_hanging() {
    use kvscope_core::{Engine, EngineConfig, PoolConfig, RequestId, SamplingParams, SchedulerConfig, SimClock};
    use kvscope_exercise::checker::Checker;
    use kvscope_exercise::PyBlockManager;
    use std::sync::{Arc, Mutex};

    let pool = PoolConfig { num_blocks: 8, block_size: 4, enable_prefix_caching: true, bytes_per_block: 0 };
    let checker = Arc::new(Mutex::new(Checker::new(8, 4)));
    let manager =
        PyBlockManager::start(HostConfig::new(fixture("broken_forget_decref.py")), pool.clone(), checker).unwrap();
    let config = EngineConfig {
        scheduler: SchedulerConfig {
            max_running: 4,
            max_batched_tokens: 64,
            max_model_len: 4096,
            long_prefill_token_threshold: 0,
            max_num_partial_prefills: 0,
        },
        pool,
        vocab_size: Some(32_000),
    };
    let mut engine =
        Engine::with_block_manager(config, Box::new(manager), PagedTokenExecutor::new(8, 4, 32_000), SimClock::new())
            .unwrap();
    for i in 0..4 {
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(6) };
        engine.submit(RequestId(i), vec![300 + i as u32; 10], params).unwrap();
    }
    for _ in 0..500 {
        match engine.step() {
            Ok(_) => assert!(engine.has_work(), "the leak must stop the run before it drains"),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("wait forever") && e.contains("deallocate"), "{e}");
                return;
            }
        }
    }
    panic!("the engine neither finished nor stopped");
}
