//! Workflow definitions.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use switchyard_proto::controlplane::v1 as pb;
use utoipa::ToSchema;

use super::common::{json_value, time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Path, Query};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Workflow {
    pub project_id: String,
    pub name: String,
    pub version: u32,
    /// The definition in canonical form (defaults omitted).
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
    pub created_at: Option<String>,
}

impl From<pb::Workflow> for Workflow {
    fn from(w: pb::Workflow) -> Workflow {
        Workflow {
            definition: json_value(&w.definition_json),
            created_at: time(w.created_at.as_ref()),
            project_id: w.project_id,
            name: w.name,
            version: w.version,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A specific version; the latest when left out.
    pub version: Option<u32>,
}

/// Stores a definition (JSON, or YAML with a YAML content type). A changed definition is a
/// new version (201); an unchanged one keeps its version (200). Invalid: 422 listing every
/// problem.
#[utoipa::path(put, path = "/api/v1/projects/{project_id}/workflows/{name}", tag = "workflows",
    params(("project_id" = String, Path), ("name" = String, Path)),
    request_body(content = Object, description = "Workflow definition (API.md)", content_type = "application/json"),
    responses((status = 200, body = Workflow), (status = 201, body = Workflow),
        (status = 422, body = crate::error::ErrorBody), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_workflow(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, name)): Path<(String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<(StatusCode, axum::Json<Workflow>)> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let format = if content_type.contains("yaml") {
        pb::DefinitionFormat::Yaml
    } else {
        pb::DefinitionFormat::Json
    };
    let definition = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::invalid("body", "invalid_utf8", "the definition is not UTF-8 text")
    })?;
    let request = state.upstreams.request(
        &caller.0,
        pb::PutWorkflowRequest {
            project_id,
            name,
            format: format as i32,
            definition,
        },
    );
    let response = state
        .upstreams
        .workflows()
        .put_workflow(request)
        .await?
        .into_inner();
    let workflow = response
        .workflow
        .ok_or_else(|| ApiError::not_found("workflow"))?;
    let status = if response.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(workflow.into())))
}

/// The latest version of a workflow, or `?version=`.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/workflows/{name}", tag = "workflows",
    params(("project_id" = String, Path), ("name" = String, Path), VersionQuery),
    responses((status = 200, body = Workflow), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_workflow(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, name)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<axum::Json<Workflow>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::GetWorkflowRequest {
            project_id,
            name,
            version: query.version.unwrap_or(0),
        },
    );
    let workflow = state
        .upstreams
        .workflows()
        .get_workflow(request)
        .await?
        .into_inner()
        .workflow;
    let workflow = workflow.ok_or_else(|| ApiError::not_found("workflow"))?;
    Ok(axum::Json(workflow.into()))
}

/// Soft delete: runs keep the version they pinned.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/workflows/{name}", tag = "workflows",
    params(("project_id" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_workflow(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let request = state
        .upstreams
        .request(&caller.0, pb::DeleteWorkflowRequest { project_id, name });
    state.upstreams.workflows().delete_workflow(request).await?;
    Ok(StatusCode::NO_CONTENT)
}
