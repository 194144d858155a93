//! Runs.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_proto::controlplane::v1 as pb;
use utoipa::ToSchema;

use super::common::{List, PageQuery, json_value, time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    pub workflow: String,
    /// The latest version when left out.
    pub version: Option<u32>,
    /// A JSON object: the run's initial state.
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
    /// Environment name.
    pub environment: Option<String>,
    /// Suite whose gating rules apply.
    pub suite: Option<String>,
    /// A retried request with the same key returns the same run.
    pub idempotency_key: Option<String>,
    /// Higher runs' tasks are leased first; 0 (normal) when left out, -1000..=1000.
    #[serde(default)]
    pub priority: i32,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct TaskCounts {
    pub total: u32,
    pub queued: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub dead: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShardResult {
    pub node: String,
    pub shard_index: u32,
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileCoverage {
    pub path: String,
    pub lines_covered: u32,
    pub lines_total: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Coverage {
    pub files: Vec<FileCoverage>,
    pub total_percent: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Run {
    pub id: String,
    pub project_id: String,
    pub workflow: String,
    pub version: u32,
    /// `queued`, `provisioning`, `running`, `reporting`, `completed`, `failed`,
    /// `partial_failed`, `timed_out`, `infra_failed` or `cancelled`.
    pub status: String,
    pub environment: Option<String>,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub tasks: TaskCounts,
    pub shards: Vec<ShardResult>,
    pub coverage: Option<Coverage>,
    #[schema(value_type = Object)]
    pub initial_state: serde_json::Value,
    #[schema(value_type = Object)]
    pub current_state: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    pub final_state: serde_json::Value,
    /// Why the run failed, for failure statuses.
    pub reason: Option<String>,
}

pub fn status_name(status: i32) -> String {
    let name = pb::RunStatus::try_from(status)
        .unwrap_or(pb::RunStatus::Unspecified)
        .as_str_name();
    name.strip_prefix("RUN_STATUS_")
        .unwrap_or(name)
        .to_ascii_lowercase()
}

fn status_from_name(name: &str) -> Option<pb::RunStatus> {
    pb::RunStatus::from_str_name(&format!("RUN_STATUS_{}", name.to_ascii_uppercase()))
        .filter(|s| *s != pb::RunStatus::Unspecified)
}

impl From<pb::Run> for Run {
    fn from(r: pb::Run) -> Run {
        let tasks = r.tasks.unwrap_or_default();
        Run {
            status: status_name(r.status),
            params: json_value(&r.params_json),
            initial_state: json_value(&r.initial_state_json),
            current_state: json_value(&r.current_state_json),
            final_state: json_value(&r.final_state_json),
            created_at: time(r.created_at.as_ref()),
            started_at: time(r.started_at.as_ref()),
            finished_at: time(r.finished_at.as_ref()),
            duration_ms: r.duration_ms,
            tasks: TaskCounts {
                total: tasks.total,
                queued: tasks.queued,
                running: tasks.running,
                succeeded: tasks.succeeded,
                failed: tasks.failed,
                dead: tasks.dead,
            },
            shards: r
                .shards
                .into_iter()
                .map(|s| ShardResult {
                    node: s.node,
                    shard_index: s.shard_index,
                    passed: s.passed,
                    failed: s.failed,
                    skipped: s.skipped,
                })
                .collect(),
            coverage: r.coverage.map(|c| Coverage {
                files: c
                    .files
                    .into_iter()
                    .map(|f| FileCoverage {
                        path: f.path,
                        lines_covered: f.lines_covered,
                        lines_total: f.lines_total,
                    })
                    .collect(),
                total_percent: c.total_percent,
            }),
            environment: (!r.environment.is_empty()).then_some(r.environment),
            reason: (!r.reason.is_empty()).then_some(r.reason),
            id: r.id,
            project_id: r.project_id,
            workflow: r.workflow,
            version: r.version,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Only runs in this status.
    pub status: Option<String>,
    pub workflow: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Starts a run: stored `queued` and handed to the scheduler.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/runs", tag = "runs", request_body = CreateRun,
    params(("project_id" = String, Path)),
    responses((status = 201, body = Run), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Json(body): Json<CreateRun>,
) -> ApiResult<(StatusCode, axum::Json<Run>)> {
    let params_json = match body.params {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(value @ serde_json::Value::Object(_)) => value.to_string(),
        Some(_) => {
            return Err(ApiError::invalid(
                "params",
                "not_an_object",
                "params must be a JSON object",
            ));
        }
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::CreateRunRequest {
            project_id,
            workflow: body.workflow,
            version: body.version.unwrap_or(0),
            params_json,
            environment: body.environment.unwrap_or_default(),
            suite: body.suite.unwrap_or_default(),
            idempotency_key: body.idempotency_key.unwrap_or_default(),
            priority: body.priority,
        },
    );
    let run = state
        .upstreams
        .runs()
        .create_run(request)
        .await?
        .into_inner()
        .run;
    let run = run.ok_or_else(|| ApiError::not_found("run"))?;
    Ok((StatusCode::CREATED, axum::Json(run.into())))
}

/// One run.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = String, Path)),
    responses((status = 200, body = Run), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> ApiResult<axum::Json<Run>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::GetRunRequest {
            run_id: run_id.clone(),
        },
    );
    // The record first: a caller refused there is refused (and audited) once, not again by
    // the scheduler for the task counts.
    let run = state
        .upstreams
        .runs()
        .get_run(request)
        .await?
        .into_inner()
        .run;
    let run = run.ok_or_else(|| ApiError::not_found("run"))?;
    let mut run: Run = run.into();
    run.tasks = progress(&state, &caller, &run_id).await?;
    Ok(axum::Json(run))
}

/// The run's task counts, from the scheduler. A run the scheduler has not taken yet has none.
async fn progress(state: &AppState, caller: &Caller, run_id: &str) -> ApiResult<TaskCounts> {
    let request = state.upstreams.request(
        &caller.0,
        switchyard_proto::scheduler::v1::GetRunProgressRequest {
            run_id: run_id.to_owned(),
        },
    );
    match state.upstreams.scheduler().get_run_progress(request).await {
        Ok(answer) => {
            let p = answer.into_inner();
            Ok(TaskCounts {
                total: p.total,
                queued: p.queued,
                running: p.running,
                succeeded: p.succeeded,
                failed: p.failed,
                dead: p.dead,
            })
        }
        Err(status) if status.code() == tonic::Code::NotFound => Ok(TaskCounts::default()),
        Err(status) => Err(status.into()),
    }
}

/// A project's runs, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/runs", tag = "runs",
    params(("project_id" = String, Path), RunQuery),
    responses((status = 200, body = List<Run>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(query): Query<RunQuery>,
) -> ApiResult<axum::Json<List<Run>>> {
    let status = match query.status.as_deref() {
        None | Some("") => pb::RunStatus::Unspecified,
        Some(name) => status_from_name(name).ok_or_else(|| {
            ApiError::invalid(
                "status",
                "invalid_status",
                format!("`{name}` is not a run status"),
            )
        })?,
    };
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::ListRunsRequest {
            project_id,
            status: status as i32,
            workflow: query.workflow.unwrap_or_default(),
            page: Some(page.to_proto()),
        },
    );
    let response = state
        .upstreams
        .runs()
        .list_runs(request)
        .await?
        .into_inner();
    Ok(axum::Json(List::new(
        response.runs.into_iter().map(Run::from).collect(),
        response.page,
    )))
}

/// Asks to stop a run; a queued run is cancelled at once, a running one once its tasks stop.
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/cancel", tag = "runs",
    params(("run_id" = String, Path)),
    responses((status = 202, body = Run), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<Run>)> {
    let request = state
        .upstreams
        .request(&caller.0, pb::CancelRunRequest { run_id });
    let run = state
        .upstreams
        .runs()
        .cancel_run(request)
        .await?
        .into_inner()
        .run;
    let run = run.ok_or_else(|| ApiError::not_found("run"))?;
    Ok((StatusCode::ACCEPTED, axum::Json(run.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for status in [
            pb::RunStatus::Queued,
            pb::RunStatus::PartialFailed,
            pb::RunStatus::InfraFailed,
        ] {
            let name = status_name(status as i32);
            assert_eq!(status_from_name(&name), Some(status));
        }
        assert_eq!(
            status_name(pb::RunStatus::PartialFailed as i32),
            "partial_failed"
        );
        assert_eq!(status_from_name("unspecified"), None);
        assert_eq!(status_from_name("bogus"), None);
    }
}
