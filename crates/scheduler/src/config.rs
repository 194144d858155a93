//! The scheduler service's configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_runtime::config::{ServiceConfig as _, Validate};

use crate::domain::retry::Budget;
use crate::engine::Settings;

switchyard_runtime::service_config! {
    pub struct SchedulerConfig {
        grpc_port: 7020,
        metrics_port: 9020,
        schema: "scheduler",
        /// gRPC endpoint of the control plane, which authenticates agents' tokens.
        pub control_plane: ControlPlaneEndpoint,
        pub engine: EngineConfig,
        pub artifacts: ArtifactsConfig,
    }
}

/// How the scheduler reaches artifact stores (to delete what is past
/// `engine.artifact_retention`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactsConfig {
    /// Options handed to the object store for `s3://` locations (`aws_endpoint`,
    /// `aws_region`, `aws_allow_http`, ...); `AWS_*` environment variables are read as well,
    /// and these win.
    pub object_store: std::collections::BTreeMap<String, String>,
}

pub use switchyard_runtime::config::ControlPlaneEndpoint;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// How long a lease lasts without a heartbeat.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often each replica looks for expired leases.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Attempts of one task that may be lost to the platform (expired leases) before it is
    /// dead-lettered.
    pub infra_attempts: u32,
    /// How long a ready task may wait for an agent before its run ends `infra_failed`.
    #[serde(with = "humantime_serde")]
    pub schedule_to_start: Duration,
    /// Finished runs (with their tasks and dead letters) are deleted after this long.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the retention jobs run (once across replicas).
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// Artifacts agents reported are deleted from their stores after this long; at most
    /// `retention` (a run is deleted only once its artifacts are gone).
    #[serde(with = "humantime_serde")]
    pub artifact_retention: Duration,
    /// Task lifecycle events (leased, and how each attempt ended) go to monitoring through the
    /// outbox (`outbox.monitoring_endpoint`). Off: monitoring sees no task history.
    pub task_events: bool,
    /// How often the `LEASED` steps of the claims made since are written for monitoring, as
    /// one event in a transaction of their own (not in the claims': see
    /// `engine::lifecycle`). The active-task view shows a lease up to this much later.
    #[serde(with = "humantime_serde")]
    pub leased_flush_interval: Duration,
    /// How long an attempt runs before its `LEASED` step is written: one that ends sooner is
    /// told to monitoring by its ending alone (half the events for short tasks), and a longer
    /// one shows in the active-task view this much later.
    #[serde(with = "humantime_serde")]
    pub leased_delay: Duration,
    /// How often the queue depth gauge (`switchyard_queue_depth`) is refreshed: one grouped
    /// count of queued tasks, never done per claim.
    #[serde(with = "humantime_serde")]
    pub queue_depth_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            infra_attempts: 3,
            schedule_to_start: Duration::from_secs(600),
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_interval: Duration::from_secs(3600),
            artifact_retention: Duration::from_secs(14 * 24 * 3600),
            task_events: true,
            leased_flush_interval: Duration::from_millis(100),
            leased_delay: Duration::from_secs(1),
            queue_depth_interval: Duration::from_secs(15),
        }
    }
}

impl EngineConfig {
    pub fn settings(&self) -> Settings {
        Settings {
            lease: self.lease,
            budget: Budget {
                infra_attempts: self.infra_attempts,
            },
            schedule_to_start: self.schedule_to_start,
            task_events: self.task_events,
            leased_delay: self.leased_delay,
            leased_flush_interval: self.leased_flush_interval,
        }
    }
}

impl Validate for SchedulerConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = self.base().validate();
        if self.engine.lease < Duration::from_secs(1) {
            problems.push("engine.lease must be at least 1s".into());
        }
        if self.engine.sweep_interval.is_zero() {
            problems.push("engine.sweep_interval must be greater than zero".into());
        }
        problems.extend(self.control_plane.problem());
        if self.engine.retention < Duration::from_secs(3600) {
            problems.push("engine.retention must be at least 1h".into());
        }
        if self.engine.artifact_retention < Duration::from_secs(3600) {
            problems.push("engine.artifact_retention must be at least 1h".into());
        }
        if self.engine.artifact_retention > self.engine.retention {
            problems
                .push("engine.artifact_retention must not be longer than engine.retention".into());
        }
        if self.engine.retention_interval.is_zero() {
            problems.push("engine.retention_interval must be greater than zero".into());
        }
        if self.engine.schedule_to_start < Duration::from_secs(1) {
            problems.push("engine.schedule_to_start must be at least 1s".into());
        }
        if self.engine.leased_flush_interval.is_zero()
            || self.engine.leased_flush_interval > Duration::from_secs(10)
        {
            problems
                .push("engine.leased_flush_interval must be more than 0 and at most 10s".into());
        }
        if self.engine.leased_delay > Duration::from_secs(60) {
            problems.push("engine.leased_delay must be at most 1m".into());
        }
        if self.engine.queue_depth_interval < Duration::from_secs(1) {
            problems.push("engine.queue_depth_interval must be at least 1s".into());
        }
        if self.engine.infra_attempts == 0 {
            problems.push("engine.infra_attempts must be at least 1".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_retention_must_not_outlive_run_retention() {
        let mut config = SchedulerConfig::default();
        let about_artifacts = |config: &SchedulerConfig| {
            config
                .validate()
                .into_iter()
                .filter(|p| p.contains("artifact_retention"))
                .collect::<Vec<_>>()
        };
        assert!(
            about_artifacts(&config).is_empty(),
            "the defaults are valid"
        );
        config.engine.artifact_retention = config.engine.retention + Duration::from_secs(1);
        assert_eq!(
            about_artifacts(&config),
            ["engine.artifact_retention must not be longer than engine.retention"]
        );
        config.engine.artifact_retention = Duration::from_secs(60);
        assert_eq!(
            about_artifacts(&config),
            ["engine.artifact_retention must be at least 1h"]
        );
    }

    #[test]
    fn the_leased_flush_interval_must_be_above_zero_and_at_most_ten_seconds() {
        let problems = |interval: Duration| {
            let mut config = SchedulerConfig::default();
            config.engine.leased_flush_interval = interval;
            config
                .validate()
                .into_iter()
                .filter(|p| p.contains("leased_flush_interval"))
                .count()
        };
        assert_eq!(problems(Duration::from_millis(100)), 0, "the default");
        assert_eq!(problems(Duration::from_secs(10)), 0);
        assert_eq!(problems(Duration::ZERO), 1);
        assert_eq!(problems(Duration::from_secs(11)), 1);
    }

    #[test]
    fn the_leased_delay_is_at_most_a_minute() {
        let problems = |delay: Duration| {
            let mut config = SchedulerConfig::default();
            config.engine.leased_delay = delay;
            config.validate()
        };
        assert!(problems(Duration::from_secs(1)).is_empty(), "the default");
        assert!(
            problems(Duration::ZERO).is_empty(),
            "every step at the next flush"
        );
        assert_eq!(
            problems(Duration::from_secs(61)),
            ["engine.leased_delay must be at most 1m"]
        );
    }
}
