//! Stuck detection over live facts: the attempts the scheduler leases now (fresh heartbeat
//! and lease times: the view's are only as fresh as its last reconciliation, too old to judge
//! a heartbeat by), their nodes' history from PostgreSQL, judged by `stuck`. The view, when
//! given, adds the workflow names the queue does not keep. Called by `ListStuckTasks` and by
//! the STUCK_TASKS alert condition.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use switchyard_proto::monitoring::v1::StuckTask;
use switchyard_runtime::grpc::GrpcChannel;
use switchyard_runtime::time::from_proto;

use super::config::ActiveConfig;
use super::stuck::{self, History, Running};
use super::{ActiveView, codec, scheduler};
use crate::store::durations;

/// The stuck attempts of these projects (`None`: of all), longest running first.
pub async fn stuck_tasks(
    db: &DatabaseConnection,
    channel: &GrpcChannel,
    view: Option<&ActiveView>,
    projects: Option<&[String]>,
    config: &ActiveConfig,
) -> Result<Vec<StuckTask>, String> {
    let single = projects.and_then(|p| (p.len() == 1).then(|| p[0].as_str()));
    let leased = scheduler::leased(channel, single, config.scheduler_timeout).await?;
    let workflows: HashMap<String, String> = match view {
        Some(view) => view
            .entries(projects)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|t| (codec::field_of(&t), t.workflow))
            .collect(),
        None => HashMap::new(),
    };
    let now = leased.as_of;
    let since = now
        - chrono::Duration::from_std(config.stuck.history_window)
            .unwrap_or_else(|_| chrono::Duration::days(7));
    let mut histories: HashMap<(String, String, String), History> = HashMap::new();
    let mut out = Vec::new();
    for attempt in leased
        .tasks
        .iter()
        .filter(|t| projects.is_none_or(|p| p.contains(&t.project_id)))
    {
        let mut task = scheduler::active_task(attempt);
        if let Some(workflow) = workflows.get(&codec::field_of(&task)) {
            task.workflow.clone_from(workflow);
        }
        let key = (
            task.project_id.clone(),
            task.workflow.clone(),
            task.node.clone(),
        );
        let history = match histories.get(&key) {
            Some(h) => *h,
            None => {
                let h = durations::node_history(db, &key.0, &key.1, &key.2, since)
                    .await
                    .map_err(|e| format!("the history could not be read: {e}"))?;
                histories.insert(key, h);
                h
            }
        };
        let time = |t: &Option<prost_types::Timestamp>| t.as_ref().and_then(from_proto);
        let running = Running {
            started_at: time(&task.started_at),
            last_heartbeat_at: time(&task.last_heartbeat_at),
            lease_expires_at: time(&task.lease_expires_at),
            timeout: (attempt.timeout_seconds > 0)
                .then(|| Duration::from_secs(attempt.timeout_seconds)),
        };
        if let Some(verdict) = stuck::judge(&running, history, leased.lease, now, &config.stuck) {
            out.push((
                running.started_at,
                StuckTask {
                    task: Some(task),
                    reason: verdict.reason.to_owned(),
                    message: verdict.message,
                },
            ));
        }
    }
    out.sort_by_key(|(started, _)| started.unwrap_or(DateTime::<Utc>::MAX_UTC));
    Ok(out.into_iter().map(|(_, t)| t).collect())
}
