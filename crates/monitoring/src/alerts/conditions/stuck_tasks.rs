//! STUCK_TASKS: at least `threshold` of the project's running attempts look stuck (a stale
//! heartbeat, or far over their node's usual duration — the rules of `active::stuck`, facts
//! from `active::detect`, the same as `ListStuckTasks`). One alert per project; it resolves
//! when fewer are stuck.
//!
//! The stuck rules are the service's `active.stuck` (copied into the alerts config at
//! startup), with the alerts' scheduler deadline.

use super::Inputs;
use crate::active::config::ActiveConfig;
use crate::active::detect;
use crate::domain::alert::{Finding, PROJECT_SUBJECT};
use crate::store::alert_entity::alert_rule;

pub async fn evaluate(
    inputs: &Inputs<'_>,
    rule: &alert_rule::Model,
) -> Result<Option<Finding>, String> {
    let config = ActiveConfig {
        scheduler_timeout: inputs.config.scheduler_timeout,
        stuck: inputs.config.stuck.clone(),
        ..ActiveConfig::default()
    };
    let project = [rule.project_id.clone()];
    let stuck =
        detect::stuck_tasks(inputs.db, inputs.scheduler, None, Some(&project), &config).await?;
    Ok(finding(&stuck, rule.threshold))
}

/// The finding for these stuck attempts, if there are at least `threshold`.
fn finding(
    stuck: &[switchyard_proto::monitoring::v1::StuckTask],
    threshold: f64,
) -> Option<Finding> {
    let count = stuck.len();
    if count == 0 || (count as f64) < threshold {
        return None;
    }
    let first = &stuck[0];
    let node = first.task.as_ref().map(|t| t.node.as_str()).unwrap_or("?");
    Some(Finding {
        subject: PROJECT_SUBJECT.to_owned(),
        message: format!(
            "{count} running task(s) look stuck (threshold {threshold}); the longest running, of node {node}: {}",
            first.message
        ),
    })
}

#[cfg(test)]
mod tests {
    use switchyard_proto::monitoring::v1::{ActiveTask, StuckTask};

    use super::*;

    #[test]
    fn stuck_alert_fires_at_the_threshold_and_names_the_longest() {
        let stuck = |node: &str| StuckTask {
            task: Some(ActiveTask {
                node: node.into(),
                ..ActiveTask::default()
            }),
            reason: "heartbeat_stale".into(),
            message: "its agent went quiet".into(),
        };
        assert_eq!(finding(&[], 1.0), None);
        assert_eq!(finding(&[stuck("a")], 2.0), None);
        let fired = finding(&[stuck("build"), stuck("b")], 2.0);
        assert!(fired.is_some_and(|f| f.subject == PROJECT_SUBJECT
            && f.message.starts_with("2 running task(s) look stuck")
            && f.message.ends_with("of node build: its agent went quiet")));
    }
}
