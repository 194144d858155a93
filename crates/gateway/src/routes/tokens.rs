//! Password login and service tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use switchyard_proto::controlplane::v1 as pb;
use switchyard_runtime::auth::CallContext;
use utoipa::ToSchema;

use super::common::{List, PageQuery, parse_time, time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessToken {
    pub access_token: String,
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateToken {
    pub name: String,
    pub org_id: Option<String>,
    pub project_id: Option<String>,
    /// e.g. `runs:write`, `runs:read`, `workflows:write`, `agents`, `admin`.
    pub scopes: Vec<String>,
    /// RFC 3339; no expiry when left out.
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: String,
    /// The secret. Shown only in this response; store it now.
    pub token: String,
    pub name: String,
    pub org_id: Option<String>,
    pub project_id: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub created_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub org_id: Option<String>,
    pub project_id: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub created_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

impl From<pb::ServiceToken> for TokenInfo {
    fn from(t: pb::ServiceToken) -> TokenInfo {
        TokenInfo {
            expires_at: time(t.expires_at.as_ref()),
            created_at: time(t.created_at.as_ref()),
            last_used_at: time(t.last_used_at.as_ref()),
            revoked_at: time(t.revoked_at.as_ref()),
            id: t.id,
            name: t.name,
            org_id: non_empty(t.org_id),
            project_id: non_empty(t.project_id),
            scopes: t.scopes,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// Platform admins: only this organization's tokens.
    pub org_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Password login: a short-lived access token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = AccessToken), (status = 401, body = crate::error::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Json(body): Json<Login>,
) -> ApiResult<axum::Json<AccessToken>> {
    let ctx = CallContext {
        principal: None,
        origin: crate::auth::origin(&parts),
    };
    let request = state.upstreams.request(
        &ctx,
        pb::LoginRequest {
            username: body.username,
            password: body.password,
        },
    );
    let response = state
        .upstreams
        .identity()
        .login(request)
        .await?
        .into_inner();
    Ok(axum::Json(AccessToken {
        expires_at: time(response.expires_at.as_ref()),
        access_token: response.access_token,
    }))
}

/// Creates a service token; the secret is in this response only.
#[utoipa::path(post, path = "/api/v1/auth/service-tokens", tag = "auth", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateToken>,
) -> ApiResult<(StatusCode, axum::Json<CreatedToken>)> {
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|t| parse_time("expires_at", t))
        .transpose()?;
    let request = state.upstreams.request(
        &caller.0,
        pb::CreateServiceTokenRequest {
            name: body.name,
            org_id: body.org_id.unwrap_or_default(),
            project_id: body.project_id.unwrap_or_default(),
            scopes: body.scopes,
            expires_at,
        },
    );
    let response = state
        .upstreams
        .identity()
        .create_service_token(request)
        .await?
        .into_inner();
    let token = response.token.ok_or_else(|| ApiError::not_found("token"))?;
    let info = TokenInfo::from(token);
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken {
            id: info.id,
            token: response.secret,
            name: info.name,
            org_id: info.org_id,
            project_id: info.project_id,
            scopes: info.scopes,
            expires_at: info.expires_at,
            created_at: info.created_at,
        }),
    ))
}

/// Service tokens the caller administers, without secrets.
#[utoipa::path(get, path = "/api/v1/auth/service-tokens", tag = "auth", params(TokenQuery),
    responses((status = 200, body = List<TokenInfo>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<TokenQuery>,
) -> ApiResult<axum::Json<List<TokenInfo>>> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::ListServiceTokensRequest {
            org_id: query.org_id.unwrap_or_default(),
            page: Some(page.to_proto()),
        },
    );
    let response = state
        .upstreams
        .identity()
        .list_service_tokens(request)
        .await?
        .into_inner();
    Ok(axum::Json(List::new(
        response.tokens.into_iter().map(TokenInfo::from).collect(),
        response.page,
    )))
}

/// Revokes a token; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/auth/service-tokens/{token_id}", tag = "auth",
    params(("token_id" = String, Path)),
    responses((status = 204), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(token_id): Path<String>,
) -> ApiResult<StatusCode> {
    let request = state
        .upstreams
        .request(&caller.0, pb::RevokeServiceTokenRequest { token_id });
    state
        .upstreams
        .identity()
        .revoke_service_token(request)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
