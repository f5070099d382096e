//! Structured logs on stderr through `tracing`: one line per request that
//! ends in the engine, one per refusal (4xx, 503, timeouts) and per closed
//! connection. `RUST_LOG` filters them (default: `kvscope_server=info`).

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; later calls (tests starting several
/// servers) keep the first.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("kvscope_server=info,warn"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
