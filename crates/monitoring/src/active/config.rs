//! The `active` section of monitoring's configuration: the active-task view in Redis (how
//! often it is reconciled with the scheduler, how long an ended attempt is remembered) and
//! the stuck-task rules.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveConfig {
    /// How often the view is reconciled with the scheduler's leased tasks (once across
    /// replicas); a flushed view is rebuilt at once, whatever this says.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// How often the view's epoch key is checked for a flush.
    #[serde(with = "humantime_serde")]
    pub flush_check_interval: Duration,
    /// How long an ended attempt is remembered, so a late or duplicate LEASED event (or a
    /// reconciliation that read the queue just before the end) does not bring it back. Must
    /// outlast the longest event delivery delay worth caring about.
    #[serde(with = "humantime_serde")]
    pub tombstone_ttl: Duration,
    /// Deadline of one call to the scheduler (reconciliation, the fallback listing).
    #[serde(with = "humantime_serde")]
    pub scheduler_timeout: Duration,
    /// Stuck rules.
    pub stuck: StuckConfig,
}

impl Default for ActiveConfig {
    fn default() -> Self {
        ActiveConfig {
            reconcile_interval: Duration::from_secs(30),
            flush_check_interval: Duration::from_secs(2),
            tombstone_ttl: Duration::from_secs(600),
            scheduler_timeout: Duration::from_secs(5),
            stuck: StuckConfig::default(),
        }
    }
}

/// When a running attempt counts as stuck (see `domain::stuck`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StuckConfig {
    /// An attempt is over its expected duration past this many times the p95 of its node's
    /// successful runs...
    pub duration_factor: f64,
    /// ...of the last `history_window`...
    #[serde(with = "humantime_serde")]
    pub history_window: Duration,
    /// ...when there are at least this many of them (else the node's timeout decides)...
    pub min_samples: u64,
    /// ...and never before this long (a node whose runs take a second is not stuck at 3 s).
    #[serde(with = "humantime_serde")]
    pub min_expected: Duration,
    /// A heartbeat is stale when the last one is older than this fraction of a lease while
    /// the lease still runs. Agents heartbeat at least every third of a lease (every 2 s with
    /// the default 30 s lease), so at 2/3 at least two heartbeats in a row were missed: one
    /// late heartbeat is noise, two are a pattern, and a third of the lease is left to notice
    /// before the scheduler expires it and retries the attempt elsewhere.
    pub heartbeat_stale_fraction: f64,
}

impl Default for StuckConfig {
    fn default() -> Self {
        StuckConfig {
            duration_factor: 3.0,
            history_window: Duration::from_secs(7 * 24 * 3600),
            min_samples: 20,
            min_expected: Duration::from_secs(60),
            heartbeat_stale_fraction: 2.0 / 3.0,
        }
    }
}

impl ActiveConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.reconcile_interval < Duration::from_secs(1) {
            problems.push("active.reconcile_interval must be at least 1s".into());
        }
        if self.flush_check_interval < Duration::from_millis(100) {
            problems.push("active.flush_check_interval must be at least 100ms".into());
        }
        if self.tombstone_ttl < Duration::from_secs(10) {
            problems.push("active.tombstone_ttl must be at least 10s".into());
        }
        if self.scheduler_timeout < Duration::from_millis(100) {
            problems.push("active.scheduler_timeout must be at least 100ms".into());
        }
        let stuck = &self.stuck;
        if !(stuck.duration_factor >= 1.0 && stuck.duration_factor.is_finite()) {
            problems.push("active.stuck.duration_factor must be at least 1".into());
        }
        if stuck.history_window < Duration::from_secs(3600) {
            problems.push("active.stuck.history_window must be at least 1h".into());
        }
        if stuck.min_samples < 1 {
            problems.push("active.stuck.min_samples must be at least 1".into());
        }
        if !(stuck.heartbeat_stale_fraction > 0.0 && stuck.heartbeat_stale_fraction < 1.0) {
            problems.push("active.stuck.heartbeat_stale_fraction must be between 0 and 1".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_config_defaults_are_valid_and_bad_values_are_named() {
        assert!(ActiveConfig::default().problems().is_empty());
        let bad = ActiveConfig {
            reconcile_interval: Duration::from_millis(10),
            stuck: StuckConfig {
                heartbeat_stale_fraction: 1.5,
                duration_factor: f64::NAN,
                ..StuckConfig::default()
            },
            ..ActiveConfig::default()
        };
        assert_eq!(
            bad.problems(),
            [
                "active.reconcile_interval must be at least 1s",
                "active.stuck.duration_factor must be at least 1",
                "active.stuck.heartbeat_stale_fraction must be between 0 and 1",
            ]
        );
    }
}
