//! What the scheduler knows: a run's tasks, dead letters and their replay, the agent pool.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_proto::scheduler::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use super::common::{List, PageQuery, time};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Task {
    pub id: String,
    pub run_id: String,
    pub node: String,
    pub shard_index: u32,
    pub shard_count: u32,
    pub attempt: u32,
    pub iteration: u32,
    /// `queued`, `leased`, `succeeded`, `failed`, `dead` or `cancelled`.
    pub status: String,
    pub exit_code: Option<i32>,
    pub agent_id: Option<String>,
    pub error: Option<String>,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

fn task_status(status: i32) -> String {
    let name = pb::TaskStatus::try_from(status)
        .unwrap_or(pb::TaskStatus::Unspecified)
        .as_str_name();
    name.strip_prefix("TASK_STATUS_")
        .unwrap_or(name)
        .to_ascii_lowercase()
}

impl From<pb::Task> for Task {
    fn from(t: pb::Task) -> Task {
        Task {
            status: task_status(t.status),
            queued_at: time(t.queued_at.as_ref()),
            started_at: time(t.started_at.as_ref()),
            finished_at: time(t.finished_at.as_ref()),
            agent_id: (!t.agent_id.is_empty()).then_some(t.agent_id),
            error: (!t.error.is_empty()).then_some(t.error),
            id: t.id,
            run_id: t.run_id,
            node: t.node,
            shard_index: t.shard_index,
            shard_count: t.shard_count,
            attempt: t.attempt,
            iteration: t.iteration,
            exit_code: t.exit_code,
        }
    }
}

/// One page of a run's tasks from the scheduler; a run it has not taken yet has none.
async fn tasks_page(
    state: &AppState,
    caller: &Caller,
    run_id: String,
    page: &PageQuery,
) -> ApiResult<pb::ListTasksResponse> {
    let request = state.upstreams.request(
        &caller.0,
        pb::ListTasksRequest {
            run_id,
            page: Some(page.to_proto()),
        },
    );
    match state.upstreams.scheduler().list_tasks(request).await {
        Ok(answer) => Ok(answer.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => {
            Ok(pb::ListTasksResponse::default())
        }
        Err(status) => Err(status.into()),
    }
}

/// A run's tasks (one per shard, attempt and loop iteration), in creation order.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/tasks", tag = "runs",
    params(("run_id" = String, Path), PageQuery),
    responses((status = 200, body = List<Task>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<List<Task>>> {
    let answer = tasks_page(&state, &caller, run_id, &page).await?;
    Ok(axum::Json(List::new(
        answer.tasks.into_iter().map(Into::into).collect(),
        answer.page,
    )))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetter {
    pub id: String,
    pub task: Option<Task>,
    pub last_error: String,
    /// The end of the last attempt's output.
    pub log_tail: String,
    pub dead_at: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    pub project_id: Option<String>,
    pub run_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Tasks that used up their attempts (or failed with a non-retryable code), not yet replayed.
#[utoipa::path(get, path = "/api/v1/monitoring/dead-letter", tag = "dead letters",
    params(DeadLetterQuery),
    responses((status = 200, body = List<DeadLetter>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<DeadLetterQuery>,
) -> ApiResult<axum::Json<List<DeadLetter>>> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::ListDeadLettersRequest {
            project_id: query.project_id.unwrap_or_default(),
            run_id: query.run_id.unwrap_or_default(),
            page: Some(page.to_proto()),
        },
    );
    let answer = state
        .upstreams
        .dead_letters()
        .list_dead_letters(request)
        .await?
        .into_inner();
    let items = answer
        .dead_letters
        .into_iter()
        .map(|d| DeadLetter {
            dead_at: time(d.dead_at.as_ref()),
            task: d.task.map(Into::into),
            id: d.id,
            last_error: d.last_error,
            log_tail: d.log_tail,
        })
        .collect();
    Ok(axum::Json(List::new(items, answer.page)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    pub retried: u32,
}

/// Replays one dead letter: the task is queued with a fresh attempt budget and its run
/// resumes.
#[utoipa::path(post, path = "/api/v1/monitoring/dead-letter/{id}/retry", tag = "dead letters",
    params(("id" = String, Path)),
    responses((status = 202, body = Retried), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<Retried>)> {
    retry(&state, &caller, vec![id], String::new()).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryMany {
    /// Specific dead letters; or leave out and name a run to replay all of its dead letters.
    #[serde(default)]
    pub ids: Vec<String>,
    pub run_id: Option<String>,
}

/// Replays many dead letters at once.
#[utoipa::path(post, path = "/api/v1/monitoring/dead-letter/retry", tag = "dead letters",
    request_body = RetryMany,
    responses((status = 202, body = Retried), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<RetryMany>,
) -> ApiResult<(StatusCode, axum::Json<Retried>)> {
    retry(&state, &caller, body.ids, body.run_id.unwrap_or_default()).await
}

async fn retry(
    state: &AppState,
    caller: &Caller,
    ids: Vec<String>,
    run_id: String,
) -> ApiResult<(StatusCode, axum::Json<Retried>)> {
    let request = state.upstreams.request(
        &caller.0,
        pb::RetryDeadLettersRequest {
            dead_letter_ids: ids,
            run_id,
        },
    );
    let retried = state
        .upstreams
        .dead_letters()
        .retry_dead_letters(request)
        .await?
        .into_inner()
        .retried;
    Ok((StatusCode::ACCEPTED, axum::Json(Retried { retried })))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub capacity: u32,
    pub version: String,
    pub registered_at: Option<String>,
    pub last_heartbeat_at: Option<String>,
    /// Tasks leased to the agent now.
    pub tasks: Vec<String>,
}

/// Registered agents with their labels, capacity, last heartbeat and tasks in hand (admins).
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    params(PageQuery),
    responses((status = 200, body = List<Agent>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<List<Agent>>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::ListAgentsRequest {
            page: Some(page.to_proto()),
        },
    );
    let answer = state
        .upstreams
        .agents()
        .list_agents(request)
        .await?
        .into_inner();
    let items = answer
        .agents
        .into_iter()
        .map(|a| Agent {
            registered_at: time(a.registered_at.as_ref()),
            last_heartbeat_at: time(a.last_heartbeat_at.as_ref()),
            labels: a.labels.into_iter().collect(),
            id: a.id,
            name: a.name,
            capacity: a.capacity,
            version: a.version,
            tasks: a.task_ids,
        })
        .collect();
    Ok(axum::Json(List::new(items, None)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskLog {
    pub task_id: String,
    pub node: String,
    pub shard_index: u32,
    pub attempt: u32,
    pub status: String,
    /// The end of the attempt's combined stdout and stderr (bounded by the agent).
    pub log_tail: String,
}

/// The end of each task's output.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/logs", tag = "runs",
    params(("run_id" = String, Path), PageQuery),
    responses((status = 200, body = List<TaskLog>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn run_logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<List<TaskLog>>> {
    let answer = tasks_page(&state, &caller, run_id, &page).await?;
    let items = answer
        .tasks
        .into_iter()
        .map(|t| TaskLog {
            status: task_status(t.status),
            task_id: t.id,
            node: t.node,
            shard_index: t.shard_index,
            attempt: t.attempt,
            log_tail: t.log_tail,
        })
        .collect();
    Ok(axum::Json(List::new(items, answer.page)))
}
