//! How much memory this host can still give: the bound a KV pool is checked
//! against before it is allocated (the storage is zeroed lazily, so an
//! oversized pool would otherwise fail only when it fills up).

/// `MemAvailable` from `/proc/meminfo` in bytes; `None` where that is not
/// readable (not Linux), and the check is skipped.
pub fn available_bytes() -> Option<u64> {
    meminfo_bytes("MemAvailable:")
}

/// `MemTotal` from `/proc/meminfo` in bytes (the reports' memory line).
pub fn total_bytes() -> Option<u64> {
    meminfo_bytes("MemTotal:")
}

fn meminfo_bytes(field: &str) -> Option<u64> {
    parse_field(&std::fs::read_to_string("/proc/meminfo").ok()?, field)
}

fn parse_field(meminfo: &str, field: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_mem_available_in_bytes() {
        let text = "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(super::parse_field(text, "MemAvailable:"), Some(2 << 20));
        assert_eq!(super::parse_field(text, "MemTotal:"), Some(16_000_000 << 10));
        assert_eq!(super::parse_field("MemTotal: 1 kB\n", "MemAvailable:"), None);
    }
}
