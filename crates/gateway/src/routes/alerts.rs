//! Alerts and alert rules: monitoring decides what fires, who sees what and who may change it;
//! this module translates JSON to its messages and back. Rules live under their project
//! (`/projects/{project_id}/alert-rules`), alerts under monitoring like the other operational
//! views.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_proto::monitoring::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use super::common::{List, PageQuery, time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

const KINDS: [(&str, pb::AlertKind); 5] = [
    ("failure_rate", pb::AlertKind::FailureRate),
    ("dead_letter_count", pb::AlertKind::DeadLetterCount),
    ("stuck_tasks", pb::AlertKind::StuckTasks),
    ("agent_pool_empty", pb::AlertKind::AgentPoolEmpty),
    ("api_check_failing", pb::AlertKind::ApiCheckFailing),
];

const STATES: [(&str, pb::AlertState); 3] = [
    ("firing", pb::AlertState::Firing),
    ("acknowledged", pb::AlertState::Acknowledged),
    ("resolved", pb::AlertState::Resolved),
];

fn kind_name(value: i32) -> String {
    KINDS
        .iter()
        .find(|(_, k)| *k as i32 == value)
        .map_or("unspecified", |(name, _)| name)
        .to_owned()
}

fn state_name(value: i32) -> String {
    STATES
        .iter()
        .find(|(_, s)| *s as i32 == value)
        .map_or("unspecified", |(name, _)| name)
        .to_owned()
}

/// A rule as written by a client.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleBody {
    pub name: String,
    /// `failure_rate`, `dead_letter_count`, `agent_pool_empty`, `stuck_tasks` or
    /// `api_check_failing`.
    pub kind: String,
    /// A rate in (0, 1] for `failure_rate`; a whole count of at least 1 otherwise.
    pub threshold: f64,
    /// The window the condition looks back over: 60 to 604800 seconds (default 900).
    pub window_seconds: Option<u64>,
    /// http(s) URLs notified when an alert fires and when it resolves.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertRule {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub kind: String,
    pub threshold: f64,
    pub window_seconds: i64,
    pub webhooks: Vec<String>,
    pub enabled: bool,
}

impl From<pb::AlertRule> for AlertRule {
    fn from(r: pb::AlertRule) -> AlertRule {
        AlertRule {
            kind: kind_name(r.kind),
            window_seconds: r.window.map_or(0, |w| w.seconds),
            id: r.id,
            project_id: r.project_id,
            name: r.name,
            threshold: r.threshold,
            webhooks: r.webhooks,
            enabled: r.enabled,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Alert {
    pub id: String,
    pub rule_id: String,
    pub project_id: String,
    pub kind: String,
    /// `firing`, `acknowledged` or `resolved`.
    pub state: String,
    /// The condition (rule and subject): at most one open alert per key.
    pub dedupe_key: String,
    pub message: String,
    pub fired_at: Option<String>,
    pub acknowledged_at: Option<String>,
    pub resolved_at: Option<String>,
    /// `auto` (the condition cleared) or the id of who resolved it.
    pub resolved_by: Option<String>,
}

impl From<pb::Alert> for Alert {
    fn from(a: pb::Alert) -> Alert {
        Alert {
            kind: kind_name(a.kind),
            state: state_name(a.state),
            fired_at: time(a.fired_at.as_ref()),
            acknowledged_at: time(a.acknowledged_at.as_ref()),
            resolved_at: time(a.resolved_at.as_ref()),
            resolved_by: (!a.resolved_by.is_empty()).then_some(a.resolved_by),
            id: a.id,
            rule_id: a.rule_id,
            project_id: a.project_id,
            dedupe_key: a.dedupe_key,
            message: a.message,
        }
    }
}

fn rule_message(id: String, project_id: String, body: AlertRuleBody) -> ApiResult<pb::AlertRule> {
    let kind = KINDS
        .iter()
        .find(|(name, _)| *name == body.kind)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            let names = KINDS.map(|(n, _)| n).join(", ");
            ApiError::invalid(
                "kind",
                "unknown_kind",
                format!("kind must be one of {names}"),
            )
        })?;
    let window = match body.window_seconds {
        None => None,
        Some(s) => Some(prost_types::Duration {
            seconds: i64::try_from(s).map_err(|_| {
                ApiError::invalid(
                    "window_seconds",
                    "out_of_range",
                    "window_seconds is too large",
                )
            })?,
            nanos: 0,
        }),
    };
    Ok(pb::AlertRule {
        id,
        project_id,
        name: body.name,
        kind: kind as i32,
        threshold: body.threshold,
        window,
        webhooks: body.webhooks,
        enabled: body.enabled.unwrap_or(true),
    })
}

async fn put(state: &AppState, caller: &Caller, rule: pb::AlertRule) -> ApiResult<AlertRule> {
    let request = state
        .upstreams
        .request(&caller.0, pb::PutAlertRuleRequest { rule: Some(rule) });
    state
        .upstreams
        .alerts()
        .put_alert_rule(request)
        .await?
        .into_inner()
        .rule
        .map(Into::into)
        .ok_or_else(|| ApiError::not_found("alert rule"))
}

/// Creates an alert rule in the project.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/alert-rules", tag = "alerts",
    params(("project_id" = String, Path)), request_body = AlertRuleBody,
    responses((status = 201, body = AlertRule), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Json(body): Json<AlertRuleBody>,
) -> ApiResult<(StatusCode, axum::Json<AlertRule>)> {
    let rule = put(
        &state,
        &caller,
        rule_message(String::new(), project_id, body)?,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(rule)))
}

/// Replaces an alert rule.
#[utoipa::path(put, path = "/api/v1/projects/{project_id}/alert-rules/{id}", tag = "alerts",
    params(("project_id" = String, Path), ("id" = String, Path)), request_body = AlertRuleBody,
    responses((status = 200, body = AlertRule), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
    Json(body): Json<AlertRuleBody>,
) -> ApiResult<axum::Json<AlertRule>> {
    if id.is_empty() {
        return Err(ApiError::invalid(
            "id",
            "missing",
            "the rule id is required",
        ));
    }
    let rule = put(&state, &caller, rule_message(id, project_id, body)?).await?;
    Ok(axum::Json(rule))
}

/// The project's alert rules, by name.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/alert-rules", tag = "alerts",
    params(("project_id" = String, Path)),
    responses((status = 200, body = List<AlertRule>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_rules(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> ApiResult<axum::Json<List<AlertRule>>> {
    let request = state
        .upstreams
        .request(&caller.0, pb::ListAlertRulesRequest { project_id });
    let answer = state
        .upstreams
        .alerts()
        .list_alert_rules(request)
        .await?
        .into_inner();
    Ok(axum::Json(List::new(
        answer.rules.into_iter().map(Into::into).collect(),
        None,
    )))
}

/// Deletes an alert rule; its open alerts are resolved.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/alert-rules/{id}", tag = "alerts",
    params(("project_id" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let request = state.upstreams.request(
        &caller.0,
        pb::DeleteAlertRuleRequest {
            rule_id: id,
            project_id,
        },
    );
    state.upstreams.alerts().delete_alert_rule(request).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only this project's alerts (else every project the token may see).
    pub project_id: Option<String>,
    /// `firing`, `acknowledged` or `resolved`.
    pub state: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/api/v1/monitoring/alerts", tag = "alerts",
    params(AlertsQuery),
    responses((status = 200, body = List<Alert>), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AlertsQuery>,
) -> ApiResult<axum::Json<List<Alert>>> {
    let wanted = match query.state.as_deref() {
        None | Some("") => pb::AlertState::Unspecified,
        Some(text) => STATES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                ApiError::invalid(
                    "state",
                    "unknown_state",
                    "state must be firing, acknowledged or resolved",
                )
            })?,
    };
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let request = state.upstreams.request(
        &caller.0,
        pb::ListAlertsRequest {
            project_id: query.project_id.unwrap_or_default(),
            state: wanted as i32,
            page: Some(page.to_proto()),
        },
    );
    let answer = state
        .upstreams
        .alerts()
        .list_alerts(request)
        .await?
        .into_inner();
    Ok(axum::Json(List::new(
        answer.alerts.into_iter().map(Into::into).collect(),
        answer.page,
    )))
}

/// Resolves an open alert by hand (`resolved_by` is the caller).
#[utoipa::path(post, path = "/api/v1/monitoring/alerts/{id}/resolve", tag = "alerts",
    params(("id" = String, Path)),
    responses((status = 200, body = Alert), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn resolve_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Alert>> {
    let request = state
        .upstreams
        .request(&caller.0, pb::ResolveAlertRequest { alert_id: id });
    let alert = state
        .upstreams
        .alerts()
        .resolve_alert(request)
        .await?
        .into_inner()
        .alert
        .ok_or_else(|| ApiError::not_found("alert"))?;
    Ok(axum::Json(alert.into()))
}

/// Acknowledges a firing alert.
#[utoipa::path(post, path = "/api/v1/monitoring/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = String, Path)),
    responses((status = 200, body = Alert), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn acknowledge_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Alert>> {
    let request = state
        .upstreams
        .request(&caller.0, pb::AcknowledgeAlertRequest { alert_id: id });
    let alert = state
        .upstreams
        .alerts()
        .acknowledge_alert(request)
        .await?
        .into_inner()
        .alert
        .ok_or_else(|| ApiError::not_found("alert"))?;
    Ok(axum::Json(alert.into()))
}
