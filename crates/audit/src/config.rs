//! The audit service's configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_runtime::config::{ServiceConfig as _, Validate};

switchyard_runtime::service_config! {
    pub struct AuditConfig {
        grpc_port: 7040,
        metrics_port: 9040,
        schema: "audit",
        pub retention: RetentionConfig,
    }
}

/// Automatic deletion of old records (the chain stays verifiable through a checkpoint).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub enabled: bool,
    /// Records older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How often the retention job runs.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            max_age: Duration::from_secs(400 * 24 * 3600),
            interval: Duration::from_secs(3600),
        }
    }
}

impl Validate for AuditConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = self.base().validate();
        if self.retention.max_age < Duration::from_secs(3600) {
            problems.push("retention.max_age must be at least 1h".into());
        }
        if self.retention.interval < Duration::from_secs(1) {
            problems.push("retention.interval must be at least 1s".into());
        }
        problems
    }
}
