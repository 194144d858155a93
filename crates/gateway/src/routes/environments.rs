//! Environments: variables handed to every task of a run, and the dataset version whose
//! health a gated suite checks.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_proto::controlplane::v1 as pb;
use utoipa::ToSchema;

use super::common::{List, time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEnvironment {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// A dataset version of this project; left out or null for none.
    pub dataset_version_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Environment {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub variables: BTreeMap<String, String>,
    pub dataset_version_id: Option<String>,
    pub updated_at: Option<String>,
}

impl From<pb::Environment> for Environment {
    fn from(e: pb::Environment) -> Environment {
        Environment {
            updated_at: time(e.updated_at.as_ref()),
            id: e.id,
            project_id: e.project_id,
            name: e.name,
            variables: e.variables.into_iter().collect(),
            dataset_version_id: (!e.dataset_version_id.is_empty()).then_some(e.dataset_version_id),
        }
    }
}

/// Creates (201) or replaces (200) an environment by name.
#[utoipa::path(put, path = "/api/v1/projects/{project_id}/environments/{name}", tag = "environments",
    params(("project_id" = String, Path), ("name" = String, Path)), request_body = PutEnvironment,
    responses((status = 200, body = Environment), (status = 201, body = Environment),
        (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, name)): Path<(String, String)>,
    Json(body): Json<PutEnvironment>,
) -> ApiResult<(StatusCode, axum::Json<Environment>)> {
    let request = state.upstreams.request(
        &caller.0,
        pb::PutEnvironmentRequest {
            project_id,
            name,
            variables: body.variables.into_iter().collect(),
            dataset_version_id: body.dataset_version_id.unwrap_or_default(),
        },
    );
    let response = state
        .upstreams
        .tenancy()
        .put_environment(request)
        .await?
        .into_inner();
    let environment = response
        .environment
        .ok_or_else(|| ApiError::not_found("environment"))?;
    let status = if response.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(environment.into())))
}

/// The project's environments.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/environments", tag = "environments",
    params(("project_id" = String, Path)),
    responses((status = 200, body = List<Environment>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_environments(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> ApiResult<axum::Json<List<Environment>>> {
    let request = state
        .upstreams
        .request(&caller.0, pb::ListEnvironmentsRequest { project_id });
    let environments = state
        .upstreams
        .tenancy()
        .list_environments(request)
        .await?
        .into_inner()
        .environments;
    Ok(axum::Json(List::new(
        environments.into_iter().map(Into::into).collect(),
        None,
    )))
}
