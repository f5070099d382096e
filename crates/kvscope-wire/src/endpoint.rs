//! What a KV-event endpoint must look like, checked once for the publisher
//! (`kvscope serve --kv-events-endpoint`) and every subscriber flag
//! (`kvscope lab --kv-events`, `--replica-kv-events`): kvscope speaks ZMQ
//! over TCP only, `tcp://HOST:PORT` (`tcp://*:PORT` binds every
//! interface).

/// `Ok` for `tcp://HOST:PORT` with a numeric port; else the error, naming
/// the form to give.
pub fn check_tcp_endpoint(endpoint: &str) -> Result<(), String> {
    let port = endpoint
        .strip_prefix("tcp://")
        .and_then(|rest| rest.rsplit_once(':'))
        .filter(|(host, _)| !host.is_empty())
        .and_then(|(_, port)| port.parse::<u16>().ok());
    match port {
        Some(_) => Ok(()),
        None => Err(format!(
            "KV-event endpoint {endpoint:?} is not tcp://HOST:PORT (kvscope speaks ZMQ over TCP only): give e.g. tcp://127.0.0.1:5557"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::check_tcp_endpoint;

    #[test]
    fn only_tcp_host_and_numeric_port_pass() {
        for good in ["tcp://127.0.0.1:5557", "tcp://*:5557", "tcp://gpu-box:5557", "tcp://[::1]:5557"] {
            assert_eq!(check_tcp_endpoint(good), Ok(()), "{good}");
        }
        for bad in ["garbage", "127.0.0.1:5557", "ipc:///tmp/x", "tcp://:5557", "tcp://host", "tcp://host:port"] {
            assert!(check_tcp_endpoint(bad).unwrap_err().contains("tcp://127.0.0.1:5557"), "{bad}");
        }
    }
}
