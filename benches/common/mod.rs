//! What the benchmarks share: the run count and the timing of one row.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// `BENCH_RUNS`, or `default` timed runs per row.
pub fn runs(default: usize) -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Timings of one row.
pub struct Timing {
    pub median: Duration,
    pub min: Duration,
}

/// Warm up once, then time `runs` calls of `f`.
pub fn time(runs: usize, mut f: impl FnMut()) -> Timing {
    f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    Timing {
        median: times[times.len() / 2],
        min: times[0],
    }
}
