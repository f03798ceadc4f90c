//! Sync-job timing: latency distributions (fixed, uniform, lognormal), schedules
//! (continuous or batch ticks), sampling with a seedable RNG, and the arithmetic that
//! turns a source instant into the instant a record propagates.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::duration;

/// 99th percentile of the standard normal distribution.
const Z_99: f64 = 2.326_347_874_040_841;
/// Upper bound on any sampled latency, so a wild lognormal tail stays finite.
const MAX_LATENCY: Duration = Duration::from_secs(24 * 3600);

/// How long a sync job takes to carry one record downstream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always exactly `ms` (a duration such as `"200ms"`, or a number of milliseconds).
    Fixed {
        #[serde(with = "duration::required")]
        ms: Duration,
    },
    /// Uniform between `min` and `max`.
    Uniform {
        #[serde(with = "duration::required")]
        min: Duration,
        #[serde(with = "duration::required")]
        max: Duration,
    },
    /// Lognormal with the given median and 99th percentile.
    Lognormal {
        #[serde(with = "duration::required")]
        median: Duration,
        #[serde(with = "duration::required")]
        p99: Duration,
    },
}

impl Default for Latency {
    /// Demo-friendly: median 1.5 s, p99 6 s.
    fn default() -> Self {
        Latency::Lognormal {
            median: Duration::from_millis(1500),
            p99: Duration::from_secs(6),
        }
    }
}

impl Latency {
    /// Checks the parameters make a proper distribution.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Latency::Fixed { .. } => Ok(()),
            Latency::Uniform { min, max } if min > max => {
                Err(format!("uniform latency: min {min:?} is above max {max:?}"))
            }
            Latency::Uniform { .. } => Ok(()),
            Latency::Lognormal { median, .. } if median.is_zero() => {
                Err("lognormal latency: median must be above zero".to_string())
            }
            Latency::Lognormal { median, p99 } if p99 < median => Err(format!(
                "lognormal latency: p99 {p99:?} is below median {median:?}"
            )),
            Latency::Lognormal { .. } => Ok(()),
        }
    }

    /// Draws one latency.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let seconds = match self {
            Latency::Fixed { ms } => return *ms,
            Latency::Uniform { min, max } => {
                let (lo, hi) = (min.as_secs_f64(), max.as_secs_f64());
                lo + (hi - lo) * rng.random::<f64>()
            }
            Latency::Lognormal { median, p99 } => {
                let mu = median.as_secs_f64().ln();
                let sigma = (p99.as_secs_f64().ln() - mu) / Z_99;
                (mu + sigma * standard_normal(rng)).exp()
            }
        };
        Duration::try_from_secs_f64(seconds)
            .unwrap_or(MAX_LATENCY)
            .min(MAX_LATENCY)
    }
}

/// Box-Muller draw from N(0, 1).
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 1 - [0, 1) is in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// When a job moves records whose latency has elapsed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// Each record propagates at source time + latency.
    #[default]
    Continuous,
    /// Records propagate at the first tick (every `every`, counted from sandbox start)
    /// at or after source time + latency.
    Batch {
        #[serde(with = "duration::required")]
        every: Duration,
    },
}

impl Schedule {
    /// Checks a batch period is positive.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Schedule::Batch { every } if every.is_zero() => {
                Err("batch schedule: every must be above zero".to_string())
            }
            _ => Ok(()),
        }
    }

    /// The instant a record becomes visible downstream, given when it is ready
    /// (source time + latency) and the origin batch ticks count from.
    pub fn release_at(&self, ready: Instant, origin: Instant) -> Instant {
        match self {
            Schedule::Continuous => ready,
            Schedule::Batch { every } => next_tick(ready, origin, *every),
        }
    }
}

/// First instant `origin + k * every` (k >= 0) that is at or after `at`.
pub fn next_tick(at: Instant, origin: Instant, every: Duration) -> Instant {
    let since = at.saturating_duration_since(origin).as_nanos();
    let period = every.as_nanos().max(1);
    let ticks = since.div_ceil(period);
    let offset = period.saturating_mul(ticks);
    let offset = Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX));
    origin + offset
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn fixed_is_exact() {
        let mut rng = StdRng::seed_from_u64(1);
        let l = Latency::Fixed { ms: ms(40) };
        assert!((0..10).all(|_| l.sample(&mut rng) == ms(40)));
    }

    #[test]
    fn uniform_stays_in_range_and_is_seedable() {
        let l = Latency::Uniform {
            min: ms(100),
            max: ms(200),
        };
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let xs: Vec<_> = (0..500).map(|_| l.sample(&mut a)).collect();
        let ys: Vec<_> = (0..500).map(|_| l.sample(&mut b)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|d| *d >= ms(100) && *d <= ms(200)));
        assert!(xs.iter().any(|d| *d < ms(130)) && xs.iter().any(|d| *d > ms(170)));
    }

    #[test]
    fn lognormal_median_and_p99_are_close() {
        let l = Latency::Lognormal {
            median: ms(1500),
            p99: ms(6000),
        };
        let mut rng = StdRng::seed_from_u64(42);
        let mut xs: Vec<_> = (0..20_000)
            .map(|_| l.sample(&mut rng).as_secs_f64())
            .collect();
        xs.sort_by(f64::total_cmp);
        let median = xs[xs.len() / 2];
        let p99 = xs[xs.len() * 99 / 100];
        assert!((median - 1.5).abs() < 0.1, "median {median}");
        assert!((p99 - 6.0).abs() < 0.8, "p99 {p99}");
    }

    #[test]
    fn validation_rejects_bad_parameters() {
        assert!(
            Latency::Uniform {
                min: ms(2),
                max: ms(1)
            }
            .validate()
            .is_err()
        );
        assert!(
            Latency::Lognormal {
                median: ms(0),
                p99: ms(1)
            }
            .validate()
            .is_err()
        );
        assert!(
            Latency::Lognormal {
                median: ms(5),
                p99: ms(1)
            }
            .validate()
            .is_err()
        );
        assert!(Latency::default().validate().is_ok());
        assert!(Schedule::Batch { every: ms(0) }.validate().is_err());
    }

    #[test]
    fn parses_wire_forms() {
        let l: Latency =
            serde_json::from_value(serde_json::json!({"kind": "fixed", "ms": "50ms"})).unwrap();
        assert_eq!(l, Latency::Fixed { ms: ms(50) });
        let l: Latency = serde_json::from_value(
            serde_json::json!({"kind": "lognormal", "median": "1.5s", "p99": "6s"}),
        )
        .unwrap();
        assert_eq!(l, Latency::default());
        let s: Schedule =
            serde_json::from_value(serde_json::json!({"kind": "batch", "every": "30s"})).unwrap();
        assert_eq!(
            s,
            Schedule::Batch {
                every: Duration::from_secs(30)
            }
        );
        assert!(
            serde_json::from_value::<Latency>(
                serde_json::json!({"kind": "fixed", "ms": 1, "x": 2})
            )
            .is_err()
        );
    }

    #[test]
    fn batch_release_waits_for_next_tick() {
        let origin = Instant::now();
        let batch = Schedule::Batch { every: ms(1000) };
        assert_eq!(batch.release_at(origin + ms(1), origin), origin + ms(1000));
        assert_eq!(
            batch.release_at(origin + ms(1000), origin),
            origin + ms(1000)
        );
        assert_eq!(
            batch.release_at(origin + ms(1001), origin),
            origin + ms(2000)
        );
        assert_eq!(
            batch.release_at(origin + ms(4500), origin),
            origin + ms(5000)
        );
        assert_eq!(
            Schedule::Continuous.release_at(origin + ms(4500), origin),
            origin + ms(4500)
        );
    }
}
