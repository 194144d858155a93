//! Why a run is not running, and what keeps failing: the run diagnosis (monitoring asks the
//! scheduler for live state and answers in plain words), retry statistics per node and the
//! dead-letter analysis by reason (both from monitoring's execution history). Replaying dead
//! letters stays with the scheduler (`engine::retry_dead_letter`).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use switchyard_proto::monitoring::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use super::common::{List, parse_time, time};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{Path, Query};
use crate::state::AppState;

/// One reason the run (or some of its tasks) is waiting.
#[derive(Debug, Serialize, ToSchema)]
pub struct Finding {
    /// `no_matching_agent`, `concurrency_limit`, `backing_off`, `schedule_to_start_near`,
    /// `queued`, `waiting_on_upstream` or `stopping`.
    pub code: String,
    pub message: String,
    /// The tasks it is about (none for nodes not started yet).
    pub task_ids: Vec<String>,
}

/// "Why is this not running?", from live state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Diagnosis {
    pub run_id: String,
    /// The scheduler's run status.
    pub status: String,
    /// One paragraph in plain words.
    pub summary: String,
    pub findings: Vec<Finding>,
}

/// Why a run's tasks are not running: missing agents, full concurrency limits, backoffs,
/// upstream nodes, a near schedule-to-start timeout; or that nothing is waiting.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/diagnosis", tag = "runs",
    params(("run_id" = String, Path)),
    responses((status = 200, body = Diagnosis), (status = "4XX", body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn run_diagnosis(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> ApiResult<axum::Json<Diagnosis>> {
    if uuid::Uuid::parse_str(&run_id).is_err() {
        return Err(crate::error::ApiError::invalid(
            "run_id",
            "invalid_id",
            "run_id is not an id",
        ));
    }
    let request = state
        .upstreams
        .request(&caller.0, pb::DiagnoseRunRequest { run_id });
    let answer = state
        .upstreams
        .monitoring()
        .diagnose_run(request)
        .await?
        .into_inner();
    Ok(axum::Json(Diagnosis {
        run_id: answer.run_id,
        status: answer.status,
        summary: answer.summary,
        findings: answer
            .findings
            .into_iter()
            .map(|f| Finding {
                code: f.code,
                message: f.message,
                task_ids: f.task_ids,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetryStatisticsQuery {
    /// Only this project (else every project the token may see).
    pub project_id: Option<String>,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// RFC 3339: attempts that ended at or after this time (default: 7 days ago).
    pub since: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorReason {
    /// Normalised: `exit_code_1`, `timed_out`, `lease_expired`, `exit_code_2_not_retryable`…
    pub reason: String,
    pub count: u64,
}

/// Retry counts and outcomes of one node of a workflow.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryStatistics {
    pub project_id: String,
    pub workflow: String,
    pub node: String,
    /// Attempts that ended in the window.
    pub attempts: u64,
    /// Attempts beyond a task's first.
    pub retries: u64,
    /// `retries / attempts`.
    pub retry_rate: f64,
    /// Tasks that failed at least once and then succeeded.
    pub succeeded_after_retry: u64,
    pub dead_lettered: u64,
    /// The five most frequent reasons of failed attempts.
    pub top_errors: Vec<ErrorReason>,
}

/// Retry statistics per project, workflow and node, most attempts first (at most 500).
#[utoipa::path(get, path = "/api/v1/monitoring/retry-statistics", tag = "monitoring",
    params(RetryStatisticsQuery),
    responses((status = 200, body = List<RetryStatistics>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry_statistics(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<RetryStatisticsQuery>,
) -> ApiResult<axum::Json<List<RetryStatistics>>> {
    let since = match query.since.as_deref() {
        Some(text) => Some(parse_time("since", text)?),
        None => None,
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::GetRetryStatisticsRequest {
            project_id: query.project_id.unwrap_or_default(),
            workflow: query.workflow.unwrap_or_default(),
            since,
        },
    );
    let answer = state
        .upstreams
        .monitoring()
        .get_retry_statistics(request)
        .await?
        .into_inner();
    let items = answer
        .statistics
        .into_iter()
        .map(|s| RetryStatistics {
            project_id: s.project_id,
            workflow: s.workflow,
            node: s.node,
            attempts: s.attempts,
            retries: s.retries,
            retry_rate: s.retry_rate,
            succeeded_after_retry: s.succeeded_after_retry,
            dead_lettered: s.dead_lettered,
            top_errors: s
                .top_errors
                .into_iter()
                .map(|e| ErrorReason {
                    reason: e.reason,
                    count: e.count,
                })
                .collect(),
        })
        .collect();
    Ok(axum::Json(List::new(items, None)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterAnalysisQuery {
    /// Only this project (else every project the token may see).
    pub project_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterGroup {
    pub reason: String,
    pub count: u64,
    /// When the oldest of them was dead-lettered.
    pub oldest: Option<String>,
}

/// Dead letters not yet replayed, by reason.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterAnalysis {
    pub total: u64,
    /// Most frequent first (at most 50).
    pub groups: Vec<DeadLetterGroup>,
}

/// Dead letters by reason, with counts and the oldest of each; replay them through
/// `POST /api/v1/monitoring/dead-letter/{id}/retry` (a replayed one stops counting).
#[utoipa::path(get, path = "/api/v1/monitoring/dead-letter/analysis", tag = "dead letters",
    params(DeadLetterAnalysisQuery),
    responses((status = 200, body = DeadLetterAnalysis), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn dead_letter_analysis(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<DeadLetterAnalysisQuery>,
) -> ApiResult<axum::Json<DeadLetterAnalysis>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::GetDeadLetterAnalysisRequest {
            project_id: query.project_id.unwrap_or_default(),
        },
    );
    let answer = state
        .upstreams
        .monitoring()
        .get_dead_letter_analysis(request)
        .await?
        .into_inner();
    Ok(axum::Json(DeadLetterAnalysis {
        total: answer.total,
        groups: answer
            .groups
            .into_iter()
            .map(|g| DeadLetterGroup {
                oldest: time(g.oldest.as_ref()),
                reason: g.reason,
                count: g.count,
            })
            .collect(),
    }))
}
