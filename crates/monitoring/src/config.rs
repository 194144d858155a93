//! The monitoring service's configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_runtime::config::{ServiceConfig as _, Validate};

switchyard_runtime::service_config! {
    pub struct MonitoringConfig {
        grpc_port: 7030,
        metrics_port: 9030,
        schema: "monitoring",
        /// gRPC endpoint of the control plane, which knows which organization a project
        /// belongs to (monitoring authorizes reads on it).
        pub control_plane: ControlPlaneEndpoint,
        /// gRPC endpoint of the scheduler, asked about live queue state (agents, limits,
        /// waiting tasks) for diagnosis and alerts.
        pub scheduler: SchedulerEndpoint,
        /// Deletion of old execution history.
        pub retention: RetentionConfig,
        /// Alert rule evaluation and webhook delivery.
        pub alerts: crate::alerts::config::AlertsConfig,
        /// The API check prober and the addresses checks may target.
        pub checks: crate::checks::ChecksConfig,
        /// How long the gateway's API usage reports are kept.
        pub api_usage: crate::checks::ApiUsageConfig,
        /// The active-task view in Redis and the stuck-task rules.
        pub active: crate::active::config::ActiveConfig,
    }
}

/// Execution history of attempts that ended longer ago than `max_age` is deleted every
/// `interval`, once across replicas.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            max_age: Duration::from_secs(30 * 24 * 3600),
            interval: Duration::from_secs(3600),
        }
    }
}

pub use switchyard_runtime::config::{ControlPlaneEndpoint, SchedulerEndpoint};

impl Validate for MonitoringConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = self.base().validate();
        problems.extend(self.control_plane.problem());
        problems.extend(self.scheduler.problem());
        problems.extend(self.alerts.problems());
        problems.extend(self.checks.problems());
        problems.extend(self.api_usage.problems());
        problems.extend(self.active.problems());
        if self.retention.max_age < Duration::from_secs(3600) {
            problems.push("retention.max_age must be at least 1h".into());
        }
        if self.retention.interval < Duration::from_secs(1) {
            problems.push("retention.interval must be at least 1s".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitoring_config_wants_an_http_control_plane() {
        assert!(MonitoringConfig::default().validate().is_empty());
        let config = MonitoringConfig {
            control_plane: ControlPlaneEndpoint("control-plane:7010".into()),
            ..MonitoringConfig::default()
        };
        assert_eq!(
            config.validate(),
            ["control_plane must be an http(s) URL, got \"control-plane:7010\""]
        );
        let mut short = MonitoringConfig::default();
        short.retention.max_age = Duration::from_secs(60);
        assert_eq!(short.validate(), ["retention.max_age must be at least 1h"]);
    }
}
