//! Backoff arithmetic for Retry: `IntervalSeconds × BackoffRate^n`, capped by
//! `MaxDelaySeconds`, with optional full jitter drawn from the execution's seeded source.

use rand_core::RngCore;

use crate::model::{JitterStrategy, Retrier};

/// Delay before retry number `retry_index` (0 for the first retry), in milliseconds.
pub fn delay_ms(retrier: &Retrier, retry_index: u64, rng: &mut dyn RngCore) -> i64 {
    let exponent = i32::try_from(retry_index).unwrap_or(i32::MAX);
    let mut seconds = retrier.interval_seconds as f64 * retrier.backoff_rate.powi(exponent);
    if let Some(cap) = retrier.max_delay_seconds {
        seconds = seconds.min(cap as f64);
    }
    // Step Functions never waits longer than its own one-year ceiling; neither do we.
    seconds = seconds.clamp(0.0, 31_622_400.0);
    let mut ms = (seconds * 1000.0).round() as i64;
    if retrier.jitter == JitterStrategy::Full && ms > 0 {
        ms = (rng.next_u64() % (ms as u64 + 1)) as i64;
    }
    ms
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;

    fn retrier(interval: u64, rate: f64, cap: Option<u64>, jitter: JitterStrategy) -> Retrier {
        Retrier {
            error_equals: vec!["States.ALL".into()],
            interval_seconds: interval,
            max_attempts: 10,
            backoff_rate: rate,
            max_delay_seconds: cap,
            jitter,
        }
    }

    #[test]
    fn grows_by_the_backoff_rate_and_stops_at_the_cap() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let r = retrier(2, 2.0, Some(10), JitterStrategy::None);
        let delays: Vec<i64> = (0..4).map(|n| delay_ms(&r, n, &mut rng)).collect();
        assert_eq!(delays, vec![2000, 4000, 8000, 10000]);
    }

    #[test]
    fn full_jitter_stays_within_the_computed_delay() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let r = retrier(3, 1.5, None, JitterStrategy::Full);
        for n in 0..20 {
            let d = delay_ms(&r, n % 5, &mut rng);
            assert!((0..=(3000.0 * 1.5f64.powi((n % 5) as i32)) as i64 + 1).contains(&d));
        }
    }
}
