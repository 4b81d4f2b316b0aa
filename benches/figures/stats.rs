//! The statistics every figure prints: median and spread of samples, percentiles, unit
//! conversions and ratios.

use std::time::Duration;

/// The nearest-rank percentile of sorted `values`.
pub(crate) fn percentile(values: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// The median and range of a few throughput samples.
#[derive(Clone, Copy)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    pub(crate) fn of(samples: &mut [f64]) -> Spread {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        Spread {
            median: (samples[(n - 1) / 2] + samples[n / 2]) / 2.0,
            min: samples[0],
            max: samples[n - 1],
        }
    }
}

impl Spread {
    /// As the `Display` form, to one decimal place.
    pub(crate) fn fine(&self) -> String {
        format!("{:.1} ({:.1}-{:.1})", self.median, self.min, self.max)
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = format!("{:.0} ({:.0}-{:.0})", self.median, self.min, self.max);
        f.pad(&text)
    }
}

pub(crate) struct Stats {
    pub(crate) min: Duration,
    pub(crate) median: Duration,
    pub(crate) mean: Duration,
}

impl From<Vec<Duration>> for Stats {
    fn from(mut times: Vec<Duration>) -> Stats {
        times.sort();
        let n = times.len();
        let median = if n % 2 == 1 {
            times[n / 2]
        } else {
            (times[n / 2 - 1] + times[n / 2]) / 2
        };
        let count = u32::try_from(n).expect("run count fits in u32");
        Stats {
            min: times[0],
            median,
            mean: times.iter().sum::<Duration>() / count,
        }
    }
}

pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

pub(crate) fn us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

pub(crate) fn ratio(ours: Duration, theirs: Duration) -> f64 {
    ours.as_secs_f64() / theirs.as_secs_f64()
}
