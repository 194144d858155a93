//! The `alerts` section of monitoring's configuration: how often rules are evaluated, the
//! condition tuning, webhook delivery and which addresses webhooks may target.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::url_policy::UrlPolicy;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Runs the evaluator and the webhook deliverer (the API answers either way).
    pub enabled: bool,
    /// How often every enabled rule is evaluated (once across replicas).
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// Ended attempts a failure rate needs in its window before it may fire.
    pub min_sample: u64,
    /// An agent counts as live when it polled or heartbeated this recently.
    #[serde(with = "humantime_serde")]
    pub agent_liveness: Duration,
    /// Deadline of the scheduler call behind AGENT_POOL_EMPTY.
    #[serde(with = "humantime_serde")]
    pub scheduler_timeout: Duration,
    /// How often due webhook notifications are looked for.
    #[serde(with = "humantime_serde")]
    pub delivery_interval: Duration,
    /// Deadline of one webhook request (connect to last byte).
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Attempts per notification before it is given up (`failed_at`).
    pub webhook_max_attempts: u32,
    /// Wait after the first failed attempt; doubles per attempt up to `webhook_max_backoff`.
    #[serde(with = "humantime_serde")]
    pub webhook_initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub webhook_max_backoff: Duration,
    /// Which addresses webhook URLs may name (checked when a rule is saved and again on the
    /// resolved addresses at every delivery).
    pub webhook_urls: UrlPolicy,
    /// The stuck-task rules STUCK_TASKS alerts judge by: not a key of its own but the
    /// service's `active.stuck`, copied in at startup, so alerts and `ListStuckTasks` agree.
    #[serde(skip)]
    pub stuck: crate::active::config::StuckConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            evaluation_interval: Duration::from_secs(30),
            min_sample: 10,
            agent_liveness: Duration::from_secs(90),
            scheduler_timeout: Duration::from_secs(5),
            delivery_interval: Duration::from_secs(1),
            webhook_timeout: Duration::from_secs(10),
            webhook_max_attempts: 8,
            webhook_initial_backoff: Duration::from_secs(5),
            webhook_max_backoff: Duration::from_secs(600),
            webhook_urls: UrlPolicy::default(),
            stuck: Default::default(),
        }
    }
}

impl AlertsConfig {
    /// One message per bad key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let ms = Duration::from_millis;
        let mut range = |key: &str, value: Duration, min: Duration, max: Duration| {
            if value < min || value > max {
                problems.push(format!(
                    "alerts.{key} must be between {} and {}",
                    humantime_serde::re::humantime::format_duration(min),
                    humantime_serde::re::humantime::format_duration(max)
                ));
            }
        };
        let hour = Duration::from_secs(3600);
        range(
            "evaluation_interval",
            self.evaluation_interval,
            ms(100),
            hour,
        );
        range("agent_liveness", self.agent_liveness, ms(100), hour);
        range(
            "scheduler_timeout",
            self.scheduler_timeout,
            ms(100),
            Duration::from_secs(60),
        );
        range(
            "delivery_interval",
            self.delivery_interval,
            ms(10),
            Duration::from_secs(60),
        );
        range(
            "webhook_timeout",
            self.webhook_timeout,
            ms(100),
            Duration::from_secs(300),
        );
        range(
            "webhook_initial_backoff",
            self.webhook_initial_backoff,
            ms(10),
            hour,
        );
        range(
            "webhook_max_backoff",
            self.webhook_max_backoff,
            ms(10),
            24 * hour,
        );
        if self.webhook_initial_backoff > self.webhook_max_backoff {
            problems.push(
                "alerts.webhook_initial_backoff must not exceed alerts.webhook_max_backoff".into(),
            );
        }
        if self.min_sample == 0 {
            problems.push("alerts.min_sample must be at least 1".into());
        }
        if !(1..=100).contains(&self.webhook_max_attempts) {
            problems.push("alerts.webhook_max_attempts must be between 1 and 100".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_config_defaults_are_valid_and_bad_keys_are_named() {
        assert!(AlertsConfig::default().problems().is_empty());
        let bad = AlertsConfig {
            evaluation_interval: Duration::ZERO,
            min_sample: 0,
            webhook_initial_backoff: Duration::from_secs(700),
            webhook_max_attempts: 0,
            ..AlertsConfig::default()
        };
        assert_eq!(
            bad.problems(),
            [
                "alerts.evaluation_interval must be between 100ms and 1h",
                "alerts.webhook_initial_backoff must not exceed alerts.webhook_max_backoff",
                "alerts.min_sample must be at least 1",
                "alerts.webhook_max_attempts must be between 1 and 100",
            ]
        );
    }
}
