//! Organizations, projects and users.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_proto::controlplane::v1 as pb;
use utoipa::ToSchema;

use super::common::time;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrg {
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub created_at: Option<String>,
}

impl From<pb::Organization> for Org {
    fn from(o: pb::Organization) -> Org {
        Org {
            created_at: time(o.created_at.as_ref()),
            id: o.id,
            name: o.name,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProject {
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Project {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created_at: Option<String>,
}

impl From<pb::Project> for Project {
    fn from(p: pb::Project) -> Project {
        Project {
            created_at: time(p.created_at.as_ref()),
            id: p.id,
            org_id: p.org_id,
            name: p.name,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    /// `admin`, `maintainer` or `viewer`.
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub org_id: String,
    pub username: String,
    pub role: String,
    pub created_at: Option<String>,
}

fn role_name(role: i32) -> String {
    match pb::Role::try_from(role).unwrap_or(pb::Role::Unspecified) {
        pb::Role::Admin => "admin",
        pb::Role::Maintainer => "maintainer",
        pb::Role::Viewer => "viewer",
        pb::Role::Unspecified => "",
    }
    .to_owned()
}

/// Creates an organization (platform admins).
#[utoipa::path(post, path = "/api/v1/orgs", tag = "tenancy", request_body = CreateOrg,
    responses((status = 201, body = Org), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_org(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateOrg>,
) -> ApiResult<(StatusCode, axum::Json<Org>)> {
    let request = state
        .upstreams
        .request(&caller.0, pb::CreateOrganizationRequest { name: body.name });
    let org = state
        .upstreams
        .tenancy()
        .create_organization(request)
        .await?
        .into_inner()
        .organization;
    let org = org.ok_or_else(|| ApiError::not_found("organization"))?;
    Ok((StatusCode::CREATED, axum::Json(org.into())))
}

/// Creates a project in an organization (organization admins).
#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/projects", tag = "tenancy", request_body = CreateProject,
    params(("org_id" = String, Path)),
    responses((status = 201, body = Project), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Json(body): Json<CreateProject>,
) -> ApiResult<(StatusCode, axum::Json<Project>)> {
    let request = state.upstreams.request(
        &caller.0,
        pb::CreateProjectRequest {
            org_id,
            name: body.name,
        },
    );
    let project = state
        .upstreams
        .tenancy()
        .create_project(request)
        .await?
        .into_inner()
        .project;
    let project = project.ok_or_else(|| ApiError::not_found("project"))?;
    Ok((StatusCode::CREATED, axum::Json(project.into())))
}

/// A project the caller can reach.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}", tag = "tenancy",
    params(("project_id" = String, Path)),
    responses((status = 200, body = Project), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> ApiResult<axum::Json<Project>> {
    let request = state
        .upstreams
        .request(&caller.0, pb::GetProjectRequest { project_id });
    let project = state
        .upstreams
        .tenancy()
        .get_project(request)
        .await?
        .into_inner()
        .project;
    let project = project.ok_or_else(|| ApiError::not_found("project"))?;
    Ok(axum::Json(project.into()))
}

/// Creates a user with a role in the organization (organization admins).
#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/users", tag = "tenancy", request_body = CreateUser,
    params(("org_id" = String, Path)),
    responses((status = 201, body = User), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Json(body): Json<CreateUser>,
) -> ApiResult<(StatusCode, axum::Json<User>)> {
    let role = match body.role.as_str() {
        "admin" => pb::Role::Admin,
        "maintainer" => pb::Role::Maintainer,
        "viewer" => pb::Role::Viewer,
        _ => {
            return Err(ApiError::invalid(
                "role",
                "invalid_role",
                "role must be one of admin, maintainer, viewer",
            ));
        }
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::CreateUserRequest {
            org_id,
            username: body.username,
            password: body.password,
            role: role as i32,
        },
    );
    let user = state
        .upstreams
        .identity()
        .create_user(request)
        .await?
        .into_inner()
        .user;
    let user = user.ok_or_else(|| ApiError::not_found("user"))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(User {
            created_at: time(user.created_at.as_ref()),
            role: role_name(user.role),
            id: user.id,
            org_id: user.org_id,
            username: user.username,
        }),
    ))
}
