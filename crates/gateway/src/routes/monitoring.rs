//! What monitoring knows about tasks: the execution history (one item per attempt) and the
//! attempts running now. Who sees which projects is monitoring's decision; this module
//! translates queries and answers.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use switchyard_proto::monitoring::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use super::common::{List, PageQuery, parse_time, time};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::Query;
use crate::state::AppState;

fn some(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn millis(d: Option<&prost_types::Duration>) -> Option<i64> {
    d.map(|d| d.seconds * 1000 + i64::from(d.nanos / 1_000_000))
}

/// One attempt of a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskExecution {
    pub task_id: String,
    pub run_id: String,
    pub project_id: String,
    /// Null until an event that names it arrived.
    pub workflow: Option<String>,
    pub node: String,
    pub shard_index: u32,
    pub shard_count: u32,
    pub attempt: u32,
    pub iteration: u32,
    /// `running`, `succeeded`, `retrying`, `lease_expired`, `dead_lettered`, `cancelled` or
    /// `failed`.
    pub status: String,
    pub agent_id: Option<String>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// Why a retry was scheduled, e.g. `exit_code_1`, `timed_out`, `lease_expired`.
    pub retry_reason: Option<String>,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// From eligible to leased.
    pub wait_ms: Option<i64>,
    /// From leased to ended.
    pub run_ms: Option<i64>,
}

impl From<pb::TaskExecution> for TaskExecution {
    fn from(e: pb::TaskExecution) -> TaskExecution {
        TaskExecution {
            queued_at: time(e.queued_at.as_ref()),
            started_at: time(e.started_at.as_ref()),
            finished_at: time(e.finished_at.as_ref()),
            wait_ms: millis(e.wait.as_ref()),
            run_ms: millis(e.run.as_ref()),
            workflow: some(e.workflow),
            agent_id: some(e.agent_id),
            error: some(e.error),
            retry_reason: some(e.retry_reason),
            task_id: e.task_id,
            run_id: e.run_id,
            project_id: e.project_id,
            node: e.node,
            shard_index: e.shard_index,
            shard_count: e.shard_count,
            attempt: e.attempt,
            iteration: e.iteration,
            status: e.status,
            exit_code: e.exit_code,
        }
    }
}

/// An attempt leased to an agent now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveTask {
    pub task_id: String,
    pub run_id: String,
    pub project_id: String,
    pub workflow: Option<String>,
    pub node: String,
    pub shard_index: u32,
    pub shard_count: u32,
    pub attempt: u32,
    pub iteration: u32,
    /// Always `running`.
    pub status: String,
    pub agent_id: Option<String>,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    /// As of the active view's last reconciliation with the scheduler (null before it).
    pub last_heartbeat_at: Option<String>,
    /// When the lease runs out unless the agent heartbeats (null before the first
    /// reconciliation).
    pub lease_expires_at: Option<String>,
    pub wait_ms: Option<i64>,
    /// How long it has been running, as of this answer.
    pub running_ms: Option<i64>,
}

impl From<pb::ActiveTask> for ActiveTask {
    fn from(t: pb::ActiveTask) -> ActiveTask {
        let started = t
            .started_at
            .as_ref()
            .and_then(switchyard_runtime::time::from_proto);
        ActiveTask {
            running_ms: started.map(|s| (chrono::Utc::now() - s).num_milliseconds().max(0)),
            queued_at: time(t.queued_at.as_ref()),
            started_at: time(t.started_at.as_ref()),
            last_heartbeat_at: time(t.last_heartbeat_at.as_ref()),
            lease_expires_at: time(t.lease_expires_at.as_ref()),
            wait_ms: millis(t.wait.as_ref()),
            workflow: some(t.workflow),
            agent_id: some(t.agent_id),
            status: "running".to_owned(),
            task_id: t.task_id,
            run_id: t.run_id,
            project_id: t.project_id,
            node: t.node,
            shard_index: t.shard_index,
            shard_count: t.shard_count,
            attempt: t.attempt,
            iteration: t.iteration,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only this project's attempts (else every project the token may see).
    pub project_id: Option<String>,
    pub run_id: Option<String>,
    /// One status, e.g. `retrying`.
    pub status: Option<String>,
    /// RFC 3339: attempts that ended at or after this time.
    pub since: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActiveQuery {
    /// Only this project's tasks (else every project the token may see).
    pub project_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Execution history: one item per ended attempt, newest first by finish time (running
/// attempts are listed by `tasks/active`).
#[utoipa::path(get, path = "/api/v1/monitoring/tasks/history", tag = "monitoring",
    params(HistoryQuery),
    responses((status = 200, body = List<TaskExecution>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn task_history(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<axum::Json<List<TaskExecution>>> {
    let since = match query.since.as_deref() {
        Some(text) => Some(parse_time("since", text)?),
        None => None,
    };
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::ListTaskHistoryRequest {
            project_id: query.project_id.unwrap_or_default(),
            run_id: query.run_id.unwrap_or_default(),
            status: query.status.unwrap_or_default(),
            since,
            page: Some(page.to_proto()),
        },
    );
    let answer = state
        .upstreams
        .monitoring()
        .list_task_history(request)
        .await?
        .into_inner();
    Ok(axum::Json(List::new(
        answer.executions.into_iter().map(Into::into).collect(),
        answer.page,
    )))
}

/// Tasks leased to agents now, newest first.
#[utoipa::path(get, path = "/api/v1/monitoring/tasks/active", tag = "monitoring",
    params(ActiveQuery),
    responses((status = 200, body = List<ActiveTask>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn active_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ActiveQuery>,
) -> ApiResult<axum::Json<List<ActiveTask>>> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::ListActiveTasksRequest {
            project_id: query.project_id.unwrap_or_default(),
            page: Some(page.to_proto()),
        },
    );
    let answer = state
        .upstreams
        .monitoring()
        .list_active_tasks(request)
        .await?
        .into_inner();
    Ok(axum::Json(List::new(
        answer.tasks.into_iter().map(Into::into).collect(),
        answer.page,
    )))
}
