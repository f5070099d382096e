//! What the tests that start a real `kvscope serve` share: a free loopback
//! port, the server killed however the test ends, and its health check.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the server however the test ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// A `kvscope serve` publishing its KV events, healthy (loading, and on
/// first use fetching, the model may take minutes: 300 s at most).
pub struct ServeWithEvents {
    pub server: Server,
    pub http: u16,
    pub endpoint: String,
    pub replay_endpoint: String,
}

/// Starts `kvscope serve` with `kv_blocks` blocks of `block_size` tokens and
/// its KV events on, and waits until it is healthy.
pub fn serve_with_kv_events(kv_blocks: usize, block_size: usize, stderr: Stdio) -> ServeWithEvents {
    let (http, publish, replay) = (free_port(), free_port(), free_port());
    let (endpoint, replay_endpoint) = (format!("tcp://127.0.0.1:{publish}"), format!("tcp://127.0.0.1:{replay}"));
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_kvscope"))
            .args(["serve", "--port", &http.to_string(), "--kv-blocks", &kv_blocks.to_string()])
            .args(["--block-size", &block_size.to_string()])
            .args(["--kv-events-endpoint", &endpoint, "--kv-events-replay-endpoint", &replay_endpoint])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("kvscope serve starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while !healthy(http) {
        assert!(Instant::now() < deadline, "kvscope serve did not become healthy within 300 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    ServeWithEvents { server, http, endpoint, replay_endpoint }
}
