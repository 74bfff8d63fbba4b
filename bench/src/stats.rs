//! Percentiles of measured durations.

use std::time::Duration;

/// The distribution of a set of timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` without samples.
    pub fn of(mut samples: Vec<Duration>) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |percent: usize| {
            let rank = (samples.len() * percent).div_ceil(100);
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Some(Percentiles {
            samples: samples.len(),
            p50: rank(50),
            p99: rank(99),
            max: samples[samples.len() - 1],
        })
    }
}

/// Microseconds with one decimal below 100 µs.
pub fn micros(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 100.0 {
        format!("{micros:.1} µs")
    } else {
        format!("{micros:.0} µs")
    }
}

/// Milliseconds with one decimal.
pub fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let samples = (1..=200).map(Duration::from_micros).collect();
        let percentiles = Percentiles::of(samples).unwrap();
        assert_eq!(percentiles.p50, Duration::from_micros(100));
        assert_eq!(percentiles.p99, Duration::from_micros(198));
        assert_eq!(percentiles.max, Duration::from_micros(200));
        let one = Percentiles::of(vec![Duration::from_millis(3)]).unwrap();
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_millis(3), Duration::from_millis(3))
        );
        assert_eq!(Percentiles::of(Vec::new()), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(micros(Duration::from_nanos(1_250)), "1.2 µs");
        assert_eq!(micros(Duration::from_micros(250)), "250 µs");
        assert_eq!(millis(Duration::from_micros(12_340)), "12.3 ms");
    }
}
