//! The process's own memory use, as the kernel accounts it.

/// Peak resident set size (`VmHWM` of `/proc/self/status`), in bytes; `None` where there is
/// no procfs.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}
