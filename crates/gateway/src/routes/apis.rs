//! API checks and API usage (monitoring): register, change and remove checks, read their
//! health, and read the usage the gateway itself reported. Who may do what is monitoring's
//! decision; this module validates the shapes, translates and maps answers.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_proto::monitoring::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use super::common::{parse_time, time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// What a check is: create (`POST`) or replace (`PUT …/{id}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutApiCheck {
    /// Required on create; on replace it must be the check's project if given.
    pub project_id: Option<String>,
    /// Unique within the project.
    pub name: String,
    /// `http` (GET the target URL, healthy on 2xx) or `grpc` (standard grpc.health.v1 Check
    /// on `host:port`, healthy on SERVING).
    pub protocol: String,
    /// An http(s) URL, or `host:port` for gRPC.
    pub target: String,
    /// Seconds between probes, 5 to 3600 (default 60).
    pub interval_s: Option<u64>,
    /// Milliseconds a probe may take: at least 100 and shorter than the interval (default
    /// 5000, capped at half the interval).
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiCheck {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub protocol: String,
    pub target: String,
    pub interval_s: i64,
    pub timeout_ms: i64,
}

fn millis(d: Option<&prost_types::Duration>) -> Option<i64> {
    d.map(|d| d.seconds * 1000 + i64::from(d.nanos / 1_000_000))
}

impl From<pb::ApiCheck> for ApiCheck {
    fn from(c: pb::ApiCheck) -> ApiCheck {
        let protocol = match pb::CheckProtocol::try_from(c.protocol) {
            Ok(pb::CheckProtocol::Http) => "http",
            Ok(pb::CheckProtocol::Grpc) => "grpc",
            _ => "unknown",
        };
        ApiCheck {
            interval_s: millis(c.interval.as_ref()).unwrap_or(0) / 1000,
            timeout_ms: millis(c.timeout.as_ref()).unwrap_or(0),
            protocol: protocol.to_owned(),
            id: c.id,
            project_id: c.project_id,
            name: c.name,
            target: c.target,
        }
    }
}

/// A check and how it has been doing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiCheckStatus {
    #[serde(flatten)]
    pub check: ApiCheck,
    /// The latest probe passed (false until the first probe).
    pub healthy: bool,
    pub last_checked_at: Option<String>,
    pub last_latency_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Passed probes / all probes over the last 24 hours, 0–1.
    pub availability: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiHealth {
    pub items: Vec<ApiCheckStatus>,
}

/// One route's traffic over the window.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteUsage {
    /// The route template, e.g. `/api/v1/runs/{run_id}`; `unmatched` for unknown paths.
    pub route: String,
    pub method: String,
    pub requests: u64,
    /// Answers with status 400 or above.
    pub errors: u64,
    pub error_rate: f64,
    /// Latency percentiles read from fixed histogram buckets: accurate to within the bucket
    /// that holds them (e.g. a p95 of 180 means between 100 and 250 ms).
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiUsage {
    pub since: Option<String>,
    /// Busiest first.
    pub routes: Vec<RouteUsage>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// Only this project's checks (else every project the token may see).
    pub project_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// RFC 3339; whole minutes from this one on (default: the last hour).
    pub since: Option<String>,
}

fn to_proto(id: String, body: PutApiCheck) -> ApiResult<pb::ApiCheck> {
    let protocol = match body.protocol.to_ascii_lowercase().as_str() {
        "http" => pb::CheckProtocol::Http,
        "grpc" => pb::CheckProtocol::Grpc,
        _ => {
            return Err(ApiError::invalid(
                "protocol",
                "invalid_protocol",
                "protocol must be http or grpc",
            ));
        }
    };
    let seconds = |field: &str, s: u64| {
        i64::try_from(s)
            .map_err(|_| ApiError::invalid(field, "out_of_range", format!("{field} is too large")))
    };
    let interval = match body.interval_s {
        Some(s) => Some(prost_types::Duration {
            seconds: seconds("interval_s", s)?,
            nanos: 0,
        }),
        None => None,
    };
    let timeout = match body.timeout_ms {
        Some(ms) => Some(prost_types::Duration {
            seconds: seconds("timeout_ms", ms / 1000)?,
            nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
        }),
        None => None,
    };
    Ok(pb::ApiCheck {
        id,
        project_id: body.project_id.unwrap_or_default(),
        name: body.name,
        protocol: protocol as i32,
        target: body.target,
        interval,
        timeout,
    })
}

async fn put(state: &AppState, caller: &Caller, check: pb::ApiCheck) -> ApiResult<ApiCheck> {
    let request = state
        .upstreams
        .request(&caller.0, pb::PutApiCheckRequest { check: Some(check) });
    let saved = state
        .upstreams
        .api_checks()
        .put_api_check(request)
        .await?
        .into_inner()
        .check
        .ok_or_else(|| ApiError::not_found("api check"))?;
    Ok(saved.into())
}

/// Registers an API check. Needs `admin` on the project.
#[utoipa::path(post, path = "/api/v1/monitoring/apis/checks", tag = "monitoring",
    request_body = PutApiCheck,
    responses((status = 201, body = ApiCheck), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_check(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<PutApiCheck>,
) -> ApiResult<(StatusCode, axum::Json<ApiCheck>)> {
    if body.project_id.as_deref().unwrap_or_default().is_empty() {
        return Err(ApiError::invalid(
            "project_id",
            "required",
            "project_id is required",
        ));
    }
    let check = to_proto(String::new(), body)?;
    let saved = put(&state, &caller, check).await?;
    Ok((StatusCode::CREATED, axum::Json(saved)))
}

/// Replaces an API check's definition; it is probed again at once. Needs `admin` on the
/// project.
#[utoipa::path(put, path = "/api/v1/monitoring/apis/checks/{id}", tag = "monitoring",
    params(("id" = String, Path)), request_body = PutApiCheck,
    responses((status = 200, body = ApiCheck), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_check(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<PutApiCheck>,
) -> ApiResult<axum::Json<ApiCheck>> {
    let check = to_proto(id, body)?;
    Ok(axum::Json(put(&state, &caller, check).await?))
}

/// Removes an API check and its probe history. Needs `admin` on the project.
#[utoipa::path(delete, path = "/api/v1/monitoring/apis/checks/{id}", tag = "monitoring",
    params(("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_check(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let request = state
        .upstreams
        .request(&caller.0, pb::DeleteApiCheckRequest { check_id: id });
    state
        .upstreams
        .api_checks()
        .delete_api_check(request)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every API check the token may see, with its latest probe and 24-hour availability.
#[utoipa::path(get, path = "/api/v1/monitoring/apis/health", tag = "monitoring",
    params(HealthQuery),
    responses((status = 200, body = ApiHealth), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn health(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HealthQuery>,
) -> ApiResult<axum::Json<ApiHealth>> {
    let request = state.upstreams.request(
        &caller.0,
        pb::GetApiHealthRequest {
            project_id: query.project_id.unwrap_or_default(),
        },
    );
    let answer = state
        .upstreams
        .api_checks()
        .get_api_health(request)
        .await?
        .into_inner();
    let items = answer
        .checks
        .into_iter()
        .filter_map(|s| {
            Some(ApiCheckStatus {
                last_checked_at: time(s.last_checked_at.as_ref()),
                last_latency_ms: millis(s.last_latency.as_ref()),
                last_error: (!s.last_error.is_empty()).then_some(s.last_error),
                healthy: s.healthy,
                availability: s.availability,
                check: s.check?.into(),
            })
        })
        .collect();
    Ok(axum::Json(ApiHealth { items }))
}

/// Requests, errors and latency percentiles per route, as the gateway reported them. Platform
/// administrators only: the figures span every tenant.
#[utoipa::path(get, path = "/api/v1/monitoring/apis/usage", tag = "monitoring",
    params(UsageQuery),
    responses((status = 200, body = ApiUsage), (status = "4XX", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<UsageQuery>,
) -> ApiResult<axum::Json<ApiUsage>> {
    let since = match query.since.as_deref() {
        Some(text) => Some(parse_time("since", text)?),
        None => None,
    };
    let request = state
        .upstreams
        .request(&caller.0, pb::GetApiUsageRequest { since });
    let answer = state
        .upstreams
        .api_checks()
        .get_api_usage(request)
        .await?
        .into_inner();
    Ok(axum::Json(ApiUsage {
        since: query.since,
        routes: answer
            .routes
            .into_iter()
            .map(|r| RouteUsage {
                route: r.route,
                method: r.method,
                requests: r.requests,
                errors: r.errors,
                error_rate: r.error_rate,
                p50_ms: r.p50_ms,
                p95_ms: r.p95_ms,
                p99_ms: r.p99_ms,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(protocol: &str) -> PutApiCheck {
        PutApiCheck {
            project_id: Some("p".into()),
            name: "api".into(),
            protocol: protocol.into(),
            target: "http://10.0.0.1/".into(),
            interval_s: Some(30),
            timeout_ms: Some(1_500),
        }
    }

    #[test]
    fn api_check_bodies_become_proto_checks() {
        let check = to_proto("id".into(), body("GRPC")).expect("valid");
        assert_eq!(check.protocol, pb::CheckProtocol::Grpc as i32);
        assert_eq!(check.interval.map(|d| d.seconds), Some(30));
        assert_eq!(
            check.timeout,
            Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        let bad = to_proto(String::new(), body("ftp"))
            .err()
            .map(|e| e.details);
        assert!(bad.is_some_and(|d| d[0].field == "protocol"));
    }
}
