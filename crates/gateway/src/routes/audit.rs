//! The audit trail, for administrators: organization admins see their organization's records,
//! platform admins everything.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use switchyard_proto::audit::v1 as pb;
use switchyard_proto::common::v1::ActorType;
use switchyard_proto::events::v1::Outcome;
use switchyard_runtime::ErrorCode;
use switchyard_runtime::auth::{Scope, held_scopes};
use utoipa::ToSchema;

use super::common::{List, PageQuery, json_value, parse_time, time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Actor id (user id, token id, service name).
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Platform admins: only this organization.
    pub org_id: Option<String>,
    pub project_id: Option<String>,
    /// RFC 3339, inclusive.
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    pub seq: u64,
    pub event_id: String,
    pub source: String,
    pub actor_type: String,
    pub actor_id: String,
    pub actor_name: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub org_id: Option<String>,
    pub project_id: Option<String>,
    /// `success`, `denied` or `failed`.
    pub outcome: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub occurred_at: Option<String>,
    pub recorded_at: Option<String>,
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    pub ok: bool,
    pub checked: u64,
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
}

fn some(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn lower_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

impl From<pb::AuditEvent> for AuditEvent {
    fn from(e: pb::AuditEvent) -> AuditEvent {
        let actor = e.actor.unwrap_or_default();
        let origin = e.origin.unwrap_or_default();
        AuditEvent {
            actor_type: lower_name(
                ActorType::try_from(actor.r#type)
                    .unwrap_or_default()
                    .as_str_name(),
                "ACTOR_TYPE_",
            ),
            outcome: lower_name(
                Outcome::try_from(e.outcome)
                    .unwrap_or_default()
                    .as_str_name(),
                "OUTCOME_",
            ),
            details: json_value(&e.details_json),
            occurred_at: time(e.occurred_at.as_ref()),
            recorded_at: time(e.recorded_at.as_ref()),
            seq: e.seq,
            event_id: e.event_id,
            source: e.source,
            actor_id: actor.id,
            actor_name: actor.display_name,
            action: e.action,
            resource_type: e.resource_type,
            resource_id: e.resource_id,
            org_id: some(e.org_id),
            project_id: some(e.project_id),
            client_ip: some(origin.client_ip),
            user_agent: some(origin.user_agent),
            request_id: some(origin.request_id),
            hash: e.hash,
        }
    }
}

/// The filter the caller may use: non-platform admins are held to their organization (and
/// project, for project-scoped tokens).
fn filter(caller: &Caller, query: &AuditQuery) -> ApiResult<pb::EventFilter> {
    let principal = caller.principal();
    let is_admin = principal.platform_admin || held_scopes(principal).any(|s| s == Scope::Admin);
    if !is_admin {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "the audit trail is for administrators (`admin` scope)",
        ));
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut filter = pb::EventFilter {
        actor: text(&query.actor),
        action: text(&query.action),
        resource_type: text(&query.resource_type),
        resource_id: text(&query.resource_id),
        org_id: text(&query.org_id),
        project_id: text(&query.project_id),
        since: query
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
    };
    if !principal.platform_admin {
        if !filter.org_id.is_empty() && filter.org_id != principal.org_id {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "the token does not grant access to this organization",
            ));
        }
        filter.org_id = principal.org_id.clone();
        if !principal.project_id.is_empty() {
            filter.project_id = principal.project_id.clone();
        }
    }
    Ok(filter)
}

/// Audit records, newest first. Filters: `actor`, `action`, `resource_type`, `resource_id`,
/// `since`, `until`.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", params(AuditQuery),
    responses((status = 200, body = List<AuditEvent>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> ApiResult<axum::Json<List<AuditEvent>>> {
    let filter = filter(&caller, &query)?;
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor.clone(),
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::ListEventsRequest {
            filter: Some(filter),
            page: Some(page.to_proto()),
        },
    );
    let response = state
        .upstreams
        .audit()
        .list_events(request)
        .await?
        .into_inner();
    Ok(axum::Json(List::new(
        response.events.into_iter().map(AuditEvent::from).collect(),
        response.page,
    )))
}

/// Recomputes the hash chain: `{ok, checked, first_bad_seq?}`.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = Verification), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Verification>> {
    filter(&caller, &AuditQuery::default())?;
    let request = state
        .upstreams
        .request(&caller.0, pb::VerifyChainRequest {});
    let response = state
        .upstreams
        .audit()
        .verify_chain(request)
        .await?
        .into_inner();
    Ok(axum::Json(Verification {
        ok: response.ok,
        checked: response.checked,
        first_bad_seq: response.first_bad_seq,
        problem: some(response.problem),
    }))
}

/// Matching records as JSON lines, oldest first.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit", params(AuditQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = String), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Response> {
    let filter = filter(&caller, &query)?;
    let request = state.upstreams.request(
        &caller.0,
        pb::ExportEventsRequest {
            filter: Some(filter),
        },
    );
    let stream = state
        .upstreams
        .audit()
        .export_events(request)
        .await?
        .into_inner();
    let body = Body::from_stream(stream.map(|chunk| chunk.map(|c| c.jsonl)));
    Ok(([(CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
