//! Samples of a process's CPU time and resident memory from `/proc` (Linux),
//! to put the server's cost next to the load that caused it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};

/// CPU time and memory of a process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProcessSample {
    /// User + system CPU time.
    pub(super) cpu: Duration,
    /// Resident set size, in KiB.
    pub(super) rss_kib: u64,
}

impl ProcessSample {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
    pub(super) fn read(pid: u32, clock_ticks_per_sec: u64) -> anyhow::Result<Self> {
        Self::read_at(&format!("/proc/{pid}"), clock_ticks_per_sec)
    }

    /// The bench's own process.
    pub(super) fn read_self(clock_ticks_per_sec: u64) -> anyhow::Result<Self> {
        Self::read_at("/proc/self", clock_ticks_per_sec)
    }

    fn read_at(dir: &str, clock_ticks_per_sec: u64) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("{dir}/stat"))
            .with_context(|| format!("reading {dir}/stat (is the process running?)"))?;
        let status =
            std::fs::read_to_string(format!("{dir}/status")).with_context(|| format!("reading {dir}/status"))?;
        let ticks = cpu_ticks(&stat).with_context(|| format!("parsing {dir}/stat"))?;
        let rss_kib = rss_kib(&status).with_context(|| format!("parsing {dir}/status"))?;
        let tps = clock_ticks_per_sec.max(1);
        let cpu = Duration::from_secs(ticks / tps) + Duration::from_nanos((ticks % tps) * 1_000_000_000 / tps);
        Ok(Self { cpu, rss_kib })
    }
}

/// CPU time per thread name of a process (`/proc/<pid>/task/*/stat`),
/// threads of the same name summed: where a server's CPU goes (the socket
/// runtime, the SQLite writer, the forwarder). Threads that end between two
/// samples drop out of both.
pub(super) fn thread_cpu(pid: u32, clock_ticks_per_sec: u64) -> anyhow::Result<BTreeMap<String, Duration>> {
    let dir = format!("/proc/{pid}/task");
    let mut by_name = BTreeMap::<String, u64>::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(stat) = std::fs::read_to_string(entry?.path().join("stat")) else { continue };
        let Some(name) = comm(&stat) else { continue };
        *by_name.entry(name.to_owned()).or_default() += cpu_ticks(&stat)?;
    }
    let tps = clock_ticks_per_sec.max(1);
    Ok(by_name.into_iter().map(|(name, ticks)| (name, Duration::from_micros(ticks * 1_000_000 / tps))).collect())
}

/// The command (thread) name of a `/proc/.../stat` line: between the first
/// `(` and the last `)`.
fn comm(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may contain spaces and parentheses, so fields are
/// counted from the last `)`.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let after_comm = stat.rfind(')').map(|i| &stat[i + 1..]).context("no ')'")?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state): utime is field 14.
    let field = |n: usize| -> anyhow::Result<u64> {
        let raw = fields.get(n - 3).with_context(|| format!("no field {n}"))?;
        raw.parse().with_context(|| format!("field {n} = {raw:?}"))
    };
    Ok(field(14)? + field(15)?)
}

/// `VmRSS` of a `/proc/<pid>/status`, in KiB.
fn rss_kib(status: &str) -> anyhow::Result<u64> {
    let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:")) else {
        bail!("no VmRSS line (a kernel thread or a zombie?)");
    };
    let value = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim();
    value.parse().with_context(|| format!("VmRSS value {value:?}"))
}

/// `USER_HZ`, the unit of the CPU fields: from `getconf CLK_TCK`, else 100
/// (its value on every mainstream Linux build).
pub(super) fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "4242 (wecare rt (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 9 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(cpu_ticks(stat).expect("valid stat"), 325);
    }

    #[test]
    fn the_thread_name_may_hold_spaces_and_parentheses() {
        assert_eq!(comm("7 (wecare-forward) S 1"), Some("wecare-forward"));
        assert_eq!(comm("7 (a (b) c) S 1"), Some("a (b) c"));
        assert_eq!(comm("no parens"), None);
    }

    #[test]
    fn own_threads_can_be_sampled() {
        let threads = thread_cpu(std::process::id(), clock_ticks_per_sec()).expect("/proc/PID/task");
        assert!(!threads.is_empty());
    }

    #[test]
    fn truncated_stat_is_an_error() {
        assert!(cpu_ticks("1 (x) S 1 2").is_err());
        assert!(cpu_ticks("no parens").is_err());
    }

    #[test]
    fn rss_is_read_in_kib() {
        let status = "Name:\twecare-rt\nVmPeak:\t  9000 kB\nVmRSS:\t   51234 kB\nThreads:\t3\n";
        assert_eq!(rss_kib(status).expect("valid status"), 51234);
        assert!(rss_kib("Name:\tkthreadd\n").is_err());
    }

    #[test]
    fn own_process_can_be_sampled() {
        let sample = ProcessSample::read_self(clock_ticks_per_sec()).expect("/proc/self");
        assert!(sample.rss_kib > 0);
    }
}
