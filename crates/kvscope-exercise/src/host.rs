//! The `python3` process that hosts a student's BlockManager, and the
//! JSON-lines conversation with it. Every call has a deadline: a student's
//! infinite loop becomes a [`HostError::Timeout`], never a hung kvscope.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

const HOST_PY: &str = include_str!("../python/host.py");
/// kvscope's nano-vLLM-compatible `Sequence`, the one the student's code runs on.
pub const SEQUENCE_PY: &str = include_str!("../python/sequence.py");

/// Why a call into the student's code gave no usable answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HostError {
    #[error("cannot start `{python}`: {reason}. kvscope runs your BlockManager with CPython 3; install it or pass --python PATH")]
    Spawn { python: String, reason: String },
    #[error(
        "your code imports `{module}`, which {python} does not have: install it with `{python} -m pip install {package}` (or remove the import)"
    )]
    MissingModule { module: String, package: String, python: String },
    #[error("{call} raised an exception:\n{traceback}")]
    Exception { call: String, traceback: String },
    #[error("{call} broke the contract: {message}")]
    Contract { call: String, message: String },
    #[error("{call} did not return within {seconds} s (an infinite loop?); kvscope stopped your Python process")]
    Timeout { call: String, seconds: f64 },
    #[error("the Python process ended during {call} (did your code call exit()?)")]
    Exited { call: String },
}

/// Where the student's manager runs.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub file: PathBuf,
    pub python: String,
    /// Deadline of one call into the student's code.
    pub call_timeout: Duration,
    /// Whether replies carry the student's own pool state (the grader's
    /// checks need it; the lab does not).
    pub inspect: bool,
}

impl HostConfig {
    pub fn new(file: impl AsRef<Path>) -> Self {
        HostConfig {
            file: file.as_ref().to_path_buf(),
            python: "python3".into(),
            call_timeout: Duration::from_secs(5),
            inspect: false,
        }
    }
}

/// What `init` learnt about the student's class.
#[derive(Clone, Debug, Default)]
pub struct StudentApi {
    /// `allocate(seq, num_cached_blocks)`: newer nano-vLLM, whose
    /// `can_allocate` returns the number of cached blocks.
    pub allocate_takes_cached_blocks: bool,
    /// `hash_blocks(seq)` exists and is called after each computed chunk.
    pub has_hash_blocks: bool,
    /// Line of each method in the student's file, for event sites and messages.
    pub lines: Vec<(String, u64)>,
}

pub struct PythonHost {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<String>,
    config: HostConfig,
    dead: bool,
}

impl PythonHost {
    /// Starts `python3`, imports the student's file and constructs
    /// `BlockManager(num_blocks, block_size)`.
    pub fn start(
        config: HostConfig,
        num_blocks: usize,
        block_size: usize,
    ) -> Result<(PythonHost, StudentApi, Value), HostError> {
        let mut child = Command::new(&config.python)
            .args(["-u", "-B", "-c", HOST_PY])
            .arg(&config.file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| HostError::Spawn { python: config.python.clone(), reason: e.to_string() })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, replies) = mpsc::channel();
        // A reader thread turns the blocking pipe into a channel that can be
        // waited on with a deadline; it ends when the process does.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut host = PythonHost { child, stdin, replies, config, dead: false };
        let init = json!({
            "op": "init",
            "num_blocks": num_blocks,
            "block_size": block_size,
            "inspect": host.config.inspect,
            "sequence_source": SEQUENCE_PY,
        });
        let reply = host.call("BlockManager(num_blocks, block_size)", &init)?;
        let api = StudentApi {
            allocate_takes_cached_blocks: reply["allocate_takes_cached_blocks"].as_bool().unwrap_or(false),
            has_hash_blocks: reply["has_hash_blocks"].as_bool().unwrap_or(false),
            lines: reply["lines"]
                .as_object()
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
                .unwrap_or_default(),
        };
        Ok((host, api, reply))
    }

    /// One request, one reply. `call` names the student's method for messages.
    pub fn call(&mut self, call: &str, request: &Value) -> Result<Value, HostError> {
        if self.dead {
            return Err(HostError::Exited { call: call.into() });
        }
        let line = format!("{request}\n");
        if self.stdin.write_all(line.as_bytes()).and_then(|_| self.stdin.flush()).is_err() {
            self.dead = true;
            return Err(HostError::Exited { call: call.into() });
        }
        let reply = match self.replies.recv_timeout(self.config.call_timeout) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                return Err(HostError::Timeout { call: call.into(), seconds: self.config.call_timeout.as_secs_f64() });
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.kill();
                return Err(HostError::Exited { call: call.into() });
            }
        };
        let value: Value = serde_json::from_str(&reply).map_err(|e| HostError::Contract {
            call: call.into(),
            message: format!("the host answered {reply:?} ({e}); did your code write to file descriptor 1?"),
        })?;
        if value["ok"].as_bool() == Some(true) {
            return Ok(value);
        }
        let text = |k: &str| value[k].as_str().unwrap_or("").to_string();
        Err(match value["kind"].as_str() {
            Some("missing_module") => {
                let module = text("module");
                HostError::MissingModule {
                    package: pip_package(&module).to_string(),
                    module,
                    python: self.config.python.clone(),
                }
            }
            Some("contract") => HostError::Contract { call: call.into(), message: text("error") },
            _ => HostError::Exception { call: call.into(), traceback: text("error") },
        })
    }

    fn kill(&mut self) {
        self.dead = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PythonHost {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The pip package that provides an importable module, where the two names differ.
pub fn pip_package(module: &str) -> &str {
    let top = module.split('.').next().unwrap_or(module);
    match top {
        "yaml" => "pyyaml",
        "sklearn" => "scikit-learn",
        "cv2" => "opencv-python",
        "PIL" => "pillow",
        "nanovllm" => "nano-vllm",
        other => other,
    }
}
