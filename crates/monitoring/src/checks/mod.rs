//! The API check prober: every `tick` it claims the checks that are due (see
//! `store::checks` for how replicas share them), probes each on a task of its own (at most
//! `concurrency` at once per replica), and records the outcome. Also owns the cleanup of
//! what API checks and API usage leave behind (`cleanup`). Never touches check definitions.

pub mod cleanup;
pub mod probe;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use switchyard_runtime::shutdown::Shutdown;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::domain::url_policy::UrlPolicy;
use crate::store::checks;

/// How API checks run (`checks.*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    /// Off: checks can be registered but nothing probes them on this replica.
    pub enabled: bool,
    /// How often the prober looks for due checks.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Probes in flight at once on this replica.
    pub concurrency: usize,
    /// Which addresses checks may probe. Private networks are allowed by default (probed
    /// services live there); loopback, link-local and cloud metadata addresses are not unless
    /// allowed here. Applied at registration and again to every resolved address when probing.
    pub target_policy: UrlPolicy,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig {
            enabled: true,
            tick: Duration::from_secs(1),
            concurrency: 32,
            target_policy: UrlPolicy::default(),
        }
    }
}

impl ChecksConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.tick < Duration::from_millis(100) || self.tick > Duration::from_secs(60) {
            problems.push("checks.tick must be between 100ms and 60s".into());
        }
        if !(1..=1024).contains(&self.concurrency) {
            problems.push("checks.concurrency must be between 1 and 1024".into());
        }
        problems
    }
}

/// How long API usage is kept (`api_usage.*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiUsageConfig {
    /// Per-minute usage buckets older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for ApiUsageConfig {
    fn default() -> Self {
        ApiUsageConfig {
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl ApiUsageConfig {
    pub fn problems(&self) -> Vec<String> {
        if self.max_age < Duration::from_secs(3600) {
            return vec!["api_usage.max_age must be at least 1h".into()];
        }
        Vec::new()
    }
}

/// Runs the prober until shutdown.
pub async fn run(db: DatabaseConnection, config: ChecksConfig, shutdown: Shutdown) {
    let prober = match probe::Prober::new(config.target_policy) {
        Ok(prober) => Arc::new(prober),
        Err(error) => {
            tracing::error!(%error, "api check prober could not start");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.tick) => {}
            _ = shutdown.cancelled() => break,
        }
        while running.try_join_next().is_some() {}
        let free = permits.available_permits() as u64;
        let due = match checks::claim_due(&db, Utc::now(), free).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "claiming due api checks failed; retrying next tick");
                continue;
            }
        };
        for check in due {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (db, prober) = (db.clone(), prober.clone());
            running.spawn(async move {
                let result = prober.probe(&check).await;
                probe::observe(&check, &result);
                if let Err(error) = checks::record(&db, &check.id, &result).await {
                    tracing::warn!(%error, check_id = %check.id, "api check result not recorded");
                }
                drop(permit);
            });
        }
    }
    running.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_config_defaults_are_valid_and_bounds_are_named() {
        assert!(ChecksConfig::default().problems().is_empty());
        assert!(ApiUsageConfig::default().problems().is_empty());
        let policy = ChecksConfig::default().target_policy;
        assert!(policy.allow_private && !policy.allow_link_local && !policy.allow_metadata);
        let busy = ChecksConfig {
            concurrency: 0,
            tick: Duration::from_millis(10),
            ..ChecksConfig::default()
        };
        assert_eq!(busy.problems().len(), 2);
        let short = ApiUsageConfig {
            max_age: Duration::from_secs(60),
        };
        assert_eq!(short.problems(), ["api_usage.max_age must be at least 1h"]);
    }
}
