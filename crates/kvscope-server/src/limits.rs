//! What one client may ask of the server, and how long it may take to ask.
//!
//! The cheap bounds come first: a body too large is refused before it is
//! parsed, a prompt that cannot fit the context is refused before it is
//! tokenized, a connection that sends nothing is closed. Every limit has a
//! default that a normal client never meets; the README lists them.

use std::time::Duration;

/// Most stop strings one request may give (OpenAI allows 4; vLLM has no
/// limit, but matching costs time per generated token per string).
pub const MAX_STOP_STRINGS: usize = 64;
/// Longest stop string, in bytes.
pub const MAX_STOP_STRING_BYTES: usize = 1024;
/// Most extra stop token ids one request may give.
pub const MAX_STOP_TOKEN_IDS: usize = 1024;
/// Largest request head (start line and headers) answered normally; more
/// is a 431 in OpenAI's shape (the HTTP layer itself stops reading at
/// [`HARD_MAX_HEADER_BYTES`]).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Largest request head (start line and headers) the HTTP layer reads;
/// beyond it hyper answers a 431 itself and closes the connection
/// (`head_refusal` gives that answer the OpenAI shape). Heads between
/// [`MAX_HEADER_BYTES`] and this get their 431 from `security::guard`.
pub const HARD_MAX_HEADER_BYTES: usize = 256 * 1024;
/// Most prompts in one /v1/completions request.
pub const MAX_PROMPTS_PER_REQUEST: usize = 64;

#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body; more is answered 413 before it is parsed.
    pub max_body_bytes: usize,
    /// A connection must deliver a request's headers within this time,
    /// including the next request on an idle keep-alive connection.
    pub header_timeout: Duration,
    /// A request's body must arrive within this time.
    pub body_timeout: Duration,
    /// On shutdown, open responses get this long to finish.
    pub shutdown_grace: Duration,
    /// Tokenizations (and chat template renderings) running at once, off
    /// the async workers.
    pub tokenizer_threads: usize,
    /// With work queued, no engine loop iteration finishing for this long
    /// makes `/ready` say "stalled" (503). A step of 512 tokens takes about
    /// a second on 2 CPU cores.
    pub engine_stall_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            tokenizer_threads: std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8),
            engine_stall_after: Duration::from_secs(60),
        }
    }
}

/// The limits as `kvscope serve` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct LimitArgs {
    /// Largest request body in bytes (413 beyond it).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Seconds a connection may take to send a request's headers; also how
    /// long an idle keep-alive connection stays open.
    #[arg(long, default_value_t = 30.0)]
    pub header_timeout_s: f64,
    /// Seconds a request's body may take to arrive (408 beyond it).
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout_s: f64,
    /// Seconds open responses get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10.0)]
    pub shutdown_grace_s: f64,
}

impl LimitArgs {
    pub fn limits(&self) -> anyhow::Result<Limits> {
        let seconds = |v: f64, flag: &str| {
            if v.is_finite() && v > 0.0 && v <= 86_400.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(anyhow::anyhow!("--{flag} must be a number of seconds in (0, 86400], got {v}"))
            }
        };
        anyhow::ensure!(
            self.max_body_bytes >= 1024,
            "--max-body-bytes must be at least 1024, got {}",
            self.max_body_bytes
        );
        Ok(Limits {
            max_body_bytes: self.max_body_bytes,
            header_timeout: seconds(self.header_timeout_s, "header-timeout-s")?,
            body_timeout: seconds(self.body_timeout_s, "body-timeout-s")?,
            shutdown_grace: seconds(self.shutdown_grace_s, "shutdown-grace-s")?,
            ..Limits::default()
        })
    }
}
