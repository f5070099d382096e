//! `kvscope exercise` end to end on the real model: the skeleton a student
//! starts from fails, a correct manager passes with outputs identical to
//! the native manager's, and a broken one is caught by the right property.
//! (Every kind of broken manager is covered, fast, in kvscope-exercise's
//! own tests.)

use std::path::PathBuf;
use std::process::{Command, Output};

fn kvscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvscope")).args(args).output().unwrap()
}

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kvscope-exercise/tests/fixtures").join(name);
    p.to_string_lossy().into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn init_writes_a_skeleton_that_passes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("exercise");
    let d = dir.to_string_lossy().into_owned();
    assert!(kvscope(&["exercise", "init", &d]).status.success());
    let skeleton = std::fs::read_to_string(dir.join("block_manager.py")).unwrap();
    assert!(skeleton.contains("TODO") && skeleton.contains("必须保证") && skeleton.contains("Must guarantee"));
    assert!(!kvscope(&["exercise", "init", &d]).status.success(), "init must not overwrite");
    let out = kvscope(&["exercise", "check", &format!("{d}/block_manager.py")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("NotImplementedError: can_allocate") && text.contains("0/6 properties pass"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_correct_manager_passes_on_the_real_model() {
    let out = kvscope(&["exercise", "check", &fixture("reference.py")]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("(e) outputs            PASS") && text.contains("6/6 properties pass"), "{text}");
}

#[test]
fn a_hit_without_token_comparison_fails_prefix_hits_on_the_real_model() {
    let out = kvscope(&["exercise", "check", &fixture("broken_no_token_compare.py")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("first failure — (c) prefix hits: workload shared_prefix") && text.contains("request 5"),
        "{text}"
    );
}

#[test]
fn the_lab_runs_on_a_students_manager_and_the_report_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("lab");
    let d = out_dir.to_string_lossy().into_owned();
    let reference = fixture("reference.py");
    let out = kvscope(&["lab", "--quick", "--lang", "en", "--out", &d, "--block-manager", &reference]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    let first = report.lines().next().unwrap();
    assert!(first.contains("Block manager: the student's") && first.contains("reference.py"), "{first}");
    let lifecycle = &report[report.find("## 12.2").unwrap()..report.find("## 12.3").unwrap()];
    for method in ["::allocate", "::may_append", "::deallocate"] {
        assert!(lifecycle.contains("reference.py:") && lifecycle.contains(method), "12.2 lacks {method}:\n{lifecycle}");
    }
    let events = std::fs::read_to_string(out_dir.join("events.jsonl")).unwrap();
    // The three cases ran on the student's manager alone: its methods are
    // the sites that released, never kvscope's.
    assert!(events.contains("\"site\":\"reference.py:") && !events.contains("block_manager::release"));
}
