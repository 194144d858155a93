//! Liveness, readiness, status and metrics: no token needed.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceHealth {
    pub name: String,
    /// `serving`, `not_serving` or `unreachable`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub version: String,
    pub ready: bool,
    pub services: Vec<ServiceHealth>,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Liveness)))]
pub async fn healthz() -> axum::Json<Liveness> {
    axum::Json(Liveness {
        status: "ok".into(),
    })
}

async fn check(channel: switchyard_runtime::grpc::GrpcChannel, name: &str) -> ServiceHealth {
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(Duration::from_secs(2));
    let status = match tokio::time::timeout(Duration::from_secs(2), client.check(request)).await {
        Ok(Ok(response)) if response.get_ref().status == 1 => "serving",
        Ok(Ok(_)) => "not_serving",
        _ => "unreachable",
    };
    ServiceHealth {
        name: name.to_owned(),
        status: status.to_owned(),
    }
}

async fn services(state: &AppState) -> Vec<ServiceHealth> {
    let u = &state.upstreams;
    let (a, b, c, d) = tokio::join!(
        check(u.control_plane.clone(), "control-plane"),
        check(u.scheduler.clone(), "scheduler"),
        check(u.monitoring.clone(), "monitoring"),
        check(u.audit.clone(), "audit"),
    );
    vec![a, b, c, d]
}

/// Ready when every service answers its health check with SERVING.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Status), (status = 503, body = Status)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<Status>) {
    let status = status_of(&state).await;
    let code = if status.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(status))
}

async fn status_of(state: &AppState) -> Status {
    let services = services(state).await;
    Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ready: services.iter().all(|s| s.status == "serving"),
        services,
    }
}

/// Versions and every service's health.
#[utoipa::path(get, path = "/api/v1/status", tag = "health", responses((status = 200, body = Status)))]
pub async fn status(State(state): State<AppState>) -> axum::Json<Status> {
    axum::Json(status_of(&state).await)
}

/// Prometheus exposition.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        switchyard_runtime::metrics::handle().render(),
    )
}
