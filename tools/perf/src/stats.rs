//! Measurement helpers: send timestamps, the latency histogram summary, and CPU and memory
//! readings from `/proc`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Name prefix of the tool's runtime threads; their CPU time is the client's CPU time.
pub(crate) const THREAD_NAME: &str = "perf-worker";

/// Largest latency the histogram tracks (one hour, in nanoseconds); larger values are clamped.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// Nanoseconds since the first call in this process (monotonic). Every client of a run lives
/// in this process, so send and receive timestamps are comparable.
pub(crate) fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A fresh latency histogram (nanoseconds, 3 significant digits).
pub(crate) fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
        .map_err(|e| anyhow::anyhow!("creating the latency histogram: {e}"))
}

/// Records one end-to-end latency (nanoseconds), clamped into the histogram's range.
pub(crate) fn record(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record(ns.clamp(1, MAX_LATENCY_NS));
}

/// End-to-end latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of messages whose latency was recorded.
    pub samples: u64,
    /// Smallest latency (µs).
    pub min_us: f64,
    /// Mean latency (µs).
    pub mean_us: f64,
    /// Median (µs).
    pub p50_us: f64,
    /// 90th percentile (µs).
    pub p90_us: f64,
    /// 99th percentile (µs).
    pub p99_us: f64,
    /// 99.9th percentile (µs).
    pub p999_us: f64,
    /// Largest latency (µs).
    pub max_us: f64,
}

impl LatencySummary {
    /// Summarises a histogram of nanosecond values; all zero when it is empty.
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencySummary {
            samples: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }

    /// `p50 … max` for the human-readable report.
    pub fn line(&self) -> String {
        if self.samples == 0 {
            return "no samples".to_string();
        }
        format!(
            "p50 {} p90 {} p99 {} p99.9 {} max {} ({} samples)",
            fmt_us(self.p50_us),
            fmt_us(self.p90_us),
            fmt_us(self.p99_us),
            fmt_us(self.p999_us),
            fmt_us(self.max_us),
            self.samples
        )
    }
}

/// A duration in µs shown with a fitting unit.
pub(crate) fn fmt_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// `n / secs`, 0 for an empty interval.
pub(crate) fn rate(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        n / secs
    } else {
        0.0
    }
}

/// First number of a `schedstat` file: time spent on the CPU, in nanoseconds.
fn schedstat_ns(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time used so far by this process's threads whose name starts with `prefix`, summed
/// from `/proc/self/task/*/schedstat` (zero where `/proc` is unavailable). Threads that have
/// already exited are not counted, so call this while the runtime is alive.
pub(crate) fn threads_cpu(prefix: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ns = 0u64;
    for entry in dir.flatten() {
        let path = entry.path();
        let named = std::fs::read_to_string(path.join("comm"))
            .map(|c| c.trim_end().starts_with(prefix))
            .unwrap_or(false);
        if !named {
            continue;
        }
        if let Some(v) = path.join("schedstat").to_str().and_then(schedstat_ns) {
            ns += v;
        }
    }
    Duration::from_nanos(ns)
}

/// CPU time (user + system) process `pid` has used so far, from `/proc/PID/stat`.
pub(crate) fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based) → 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let tick = clock_ticks();
    Some(Duration::from_secs_f64((utime + stime) as f64 / tick))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, normally 100).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub(crate) fn process_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises this process's soft open-file limit to the hard limit (for many idle connections).
/// Returns the soft limit now in force, if it could be read.
pub(crate) fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    Some(lim.rlim_cur as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let mut h = new_histogram().unwrap();
        for us in 1..=1000u64 {
            record(&mut h, us * 1000);
        }
        let s = LatencySummary::from_histogram(&h);
        assert_eq!(s.samples, 1000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002 + 1.0;
        assert!(close(s.p50_us, 500.0), "{s:?}");
        assert!(close(s.p90_us, 900.0), "{s:?}");
        assert!(close(s.p99_us, 990.0), "{s:?}");
        assert!(close(s.p999_us, 999.0), "{s:?}");
        assert!(close(s.max_us, 1000.0), "{s:?}");
        assert!(close(s.min_us, 1.0), "{s:?}");
        assert!(close(s.mean_us, 500.5), "{s:?}");
        assert!(s.line().starts_with("p50 "));
    }

    #[test]
    fn empty_and_out_of_range() {
        let h = new_histogram().unwrap();
        assert_eq!(
            LatencySummary::from_histogram(&h),
            LatencySummary::default()
        );
        let mut h = new_histogram().unwrap();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert!(LatencySummary::from_histogram(&h).max_us >= 3.5e9);
    }

    #[test]
    fn clock_and_proc_readings() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert!(process_rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(process_cpu(std::process::id()).is_some());
        assert_eq!(fmt_us(1500.0), "1.50 ms");
        assert_eq!(rate(10.0, 0.0), 0.0);
    }
}
