//! `GET /api/v1/monitoring/tasks/stuck`: running attempts that look stuck (a stale heartbeat,
//! or running far longer than their node usually does), each with its reason and a message in
//! plain words. Monitoring decides who sees which projects.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use switchyard_proto::monitoring::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use super::monitoring::ActiveTask;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::Query;
use crate::state::AppState;

/// A running attempt that looks stuck.
#[derive(Debug, Serialize, ToSchema)]
pub struct StuckTask {
    pub task: ActiveTask,
    /// `heartbeat_stale` or `over_expected_duration`.
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StuckTasks {
    pub items: Vec<StuckTask>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StuckQuery {
    /// Only this project's tasks (else every project the token may see).
    pub project_id: Option<String>,
}

/// Stuck tasks, longest running first.
#[utoipa::path(get, path = "/api/v1/monitoring/tasks/stuck", tag = "monitoring",
    params(StuckQuery),
    responses((status = 200, body = StuckTasks), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stuck_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<StuckQuery>,
) -> ApiResult<axum::Json<StuckTasks>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::ListStuckTasksRequest {
            project_id: query.project_id.unwrap_or_default(),
        },
    );
    let answer = state
        .upstreams
        .monitoring()
        .list_stuck_tasks(request)
        .await?
        .into_inner();
    Ok(axum::Json(StuckTasks {
        items: answer
            .tasks
            .into_iter()
            .filter_map(|t| {
                Some(StuckTask {
                    task: t.task?.into(),
                    reason: t.reason,
                    message: t.message,
                })
            })
            .collect(),
    }))
}
