//! Cron schedules: a schedule starts a run of a workflow each time its expression comes due.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_proto::scheduler::v1 as pb;
use utoipa::ToSchema;

use super::common::{List, PageQuery, json_value, time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    pub workflow: String,
    /// 5 fields (minute hour day month weekday) or 6 (seconds first), in UTC.
    pub cron: String,
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
    #[serde(default)]
    pub paused: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    pub paused: Option<bool>,
    pub cron: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Schedule {
    pub id: String,
    pub project_id: String,
    pub workflow: String,
    pub cron: String,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    pub paused: bool,
    pub next_fire_at: Option<String>,
    pub last_fired_at: Option<String>,
    pub created_at: Option<String>,
}

impl From<pb::Schedule> for Schedule {
    fn from(s: pb::Schedule) -> Schedule {
        Schedule {
            params: json_value(&s.params_json),
            next_fire_at: time(s.next_fire_at.as_ref()),
            last_fired_at: time(s.last_fired_at.as_ref()),
            created_at: time(s.created_at.as_ref()),
            id: s.id,
            project_id: s.project_id,
            workflow: s.workflow,
            cron: s.cron,
            paused: s.paused,
        }
    }
}

/// Creates a schedule.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/schedules", tag = "schedules",
    params(("project_id" = String, Path)), request_body = CreateSchedule,
    responses((status = 201, body = Schedule), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Json(body): Json<CreateSchedule>,
) -> ApiResult<(StatusCode, axum::Json<Schedule>)> {
    let request = state.upstreams.request(
        &caller.0,
        pb::CreateScheduleRequest {
            project_id,
            workflow: body.workflow,
            cron: body.cron,
            params_json: body.params.map(|p| p.to_string()).unwrap_or_default(),
            paused: body.paused,
        },
    );
    let schedule = state
        .upstreams
        .schedules()
        .create_schedule(request)
        .await?
        .into_inner()
        .schedule
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    Ok((StatusCode::CREATED, axum::Json(schedule.into())))
}

/// The project's schedules, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/schedules", tag = "schedules",
    params(("project_id" = String, Path), PageQuery),
    responses((status = 200, body = List<Schedule>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<List<Schedule>>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::ListSchedulesRequest {
            project_id,
            page: Some(page.to_proto()),
        },
    );
    let answer = state
        .upstreams
        .schedules()
        .list_schedules(request)
        .await?
        .into_inner();
    Ok(axum::Json(List::new(
        answer.schedules.into_iter().map(Into::into).collect(),
        answer.page,
    )))
}

/// Pauses or resumes a schedule, or changes its expression or params.
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/schedules/{id}", tag = "schedules",
    params(("project_id" = String, Path), ("id" = String, Path)), request_body = UpdateSchedule,
    responses((status = 200, body = Schedule), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path((_project_id, id)): Path<(String, String)>,
    Json(body): Json<UpdateSchedule>,
) -> ApiResult<axum::Json<Schedule>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::UpdateScheduleRequest {
            schedule_id: id,
            paused: body.paused,
            cron: body.cron,
            params_json: body.params.map(|p| p.to_string()),
        },
    );
    let schedule = state
        .upstreams
        .schedules()
        .update_schedule(request)
        .await?
        .into_inner()
        .schedule
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    Ok(axum::Json(schedule.into()))
}

/// Deletes a schedule; runs it started keep running.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/schedules/{id}", tag = "schedules",
    params(("project_id" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path((_project_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let request = state
        .upstreams
        .request(&caller.0, pb::DeleteScheduleRequest { schedule_id: id });
    state.upstreams.schedules().delete_schedule(request).await?;
    Ok(StatusCode::NO_CONTENT)
}
