//! Per-token rate limiting with GCRA (governor): each principal gets `per_second` sustained
//! and `burst` at once; over it, 429 with `retry-after`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;

#[derive(Clone)]
pub struct Limiter {
    inner: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl Limiter {
    pub fn new(config: &RateLimitConfig) -> Limiter {
        let quota = NonZeroU32::new(config.per_second)
            .zip(NonZeroU32::new(config.burst))
            .filter(|_| config.enabled)
            .map(|(rate, burst)| Quota::per_second(rate).allow_burst(burst));
        Limiter {
            inner: quota.map(|q| Arc::new(RateLimiter::keyed(q))),
        }
    }

    /// `Err(wait)` when `key` is over its quota.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys that are back to a full quota, so memory follows active tokens only.
    pub fn prune(&self) {
        if let Some(limiter) = &self.inner {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_burst_is_told_to_wait_and_others_are_not() {
        let limiter = Limiter::new(&RateLimitConfig {
            enabled: true,
            per_second: 1,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limiter.check("b").is_ok());
        let off = Limiter::new(&RateLimitConfig {
            enabled: false,
            per_second: 1,
            burst: 1,
        });
        assert!((0..10).all(|_| off.check("a").is_ok()));
    }
}
