//! A project's concurrency limit: at most `max_running_tasks` of its tasks run at once
//! across its runs (0: no limit). Node limits are the workflow definition's `concurrency`.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use switchyard_proto::scheduler::v1 as pb;
use utoipa::ToSchema;

use super::common::time;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutProjectLimits {
    /// Most tasks of the project running at once; 0 removes the limit.
    pub max_running_tasks: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectLimits {
    pub project_id: String,
    /// 0 means no limit.
    pub max_running_tasks: u32,
    /// The project's tasks leased to agents now.
    pub running_tasks: u32,
    pub updated_at: Option<String>,
}

impl From<pb::ProjectLimits> for ProjectLimits {
    fn from(l: pb::ProjectLimits) -> ProjectLimits {
        ProjectLimits {
            updated_at: time(l.updated_at.as_ref()),
            project_id: l.project_id,
            max_running_tasks: l.max_running_tasks,
            running_tasks: l.running_tasks,
        }
    }
}

/// The project's concurrency limit and what runs under it now.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/limits", tag = "projects",
    params(("project_id" = String, Path)),
    responses((status = 200, body = ProjectLimits), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> ApiResult<axum::Json<ProjectLimits>> {
    let request = state
        .upstreams
        .request(&caller.0, pb::GetProjectLimitsRequest { project_id });
    let limits = state
        .upstreams
        .limits()
        .get_project_limits(request)
        .await?
        .into_inner()
        .limits
        .ok_or_else(|| ApiError::not_found("project"))?;
    Ok(axum::Json(limits.into()))
}

/// Sets (or with 0 removes) the project's concurrency limit. Needs `admin` on the project.
#[utoipa::path(put, path = "/api/v1/projects/{project_id}/limits", tag = "projects",
    params(("project_id" = String, Path)), request_body = PutProjectLimits,
    responses((status = 200, body = ProjectLimits), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Json(body): Json<PutProjectLimits>,
) -> ApiResult<axum::Json<ProjectLimits>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::SetProjectLimitsRequest {
            project_id,
            max_running_tasks: body.max_running_tasks,
        },
    );
    let limits = state
        .upstreams
        .limits()
        .set_project_limits(request)
        .await?
        .into_inner()
        .limits
        .ok_or_else(|| ApiError::not_found("project"))?;
    Ok(axum::Json(limits.into()))
}
