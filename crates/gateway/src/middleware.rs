//! The layer every request passes: request id, client address, deadline, metrics, and a JSON
//! body for anything the router itself refuses (unknown route, wrong method).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchyard_runtime::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

pub const REQUEST_ID: &str = "x-request-id";
pub const HTTP_REQUESTS: &str = "gateway_http_requests_total";
pub const HTTP_DURATION: &str = "gateway_http_request_duration_seconds";
/// Every metric the gateway exports (the Grafana dashboard's test reads it).
pub const METRICS: [&str; 4] = [
    HTTP_REQUESTS,
    HTTP_DURATION,
    "gateway_auth_cache_total",
    "gateway_rate_limited_total",
];

/// The request's id: the caller's `x-request-id` when it is sane, else a new UUIDv7.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The peer address of the connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    request.extensions_mut().insert(RequestId(id.clone()));
    if let Some(ConnectInfo(addr)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        request.extensions_mut().insert(ClientAddr(addr));
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    // Bounds the time to the response head. A streamed body (Server-Sent Events) is sent
    // after this returns, so the timeout never cuts a stream off.
    let timeout: Duration = state.config.http.request_timeout;
    let mut response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::new(ErrorCode::DeadlineExceeded, "the request took too long").into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let elapsed = started.elapsed();
    state
        .usage
        .record(&route, &method, response.status().as_u16(), elapsed);
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method.clone(), "status" => status).increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method)
        .record(elapsed.as_secs_f64());
    response
}

/// 404 for unknown paths, in the API's error shape.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// Turns the router's bare 405 into the API's error shape.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_none()
    {
        let mut error = ApiError::new(
            ErrorCode::InvalidArgument,
            "method not allowed on this endpoint",
        );
        error.status = StatusCode::METHOD_NOT_ALLOWED;
        error.code = "method_not_allowed".into();
        let mut replaced = error.into_response();
        if let Some(allow) = response.headers().get(axum::http::header::ALLOW) {
            replaced
                .headers_mut()
                .insert(axum::http::header::ALLOW, allow.clone());
        }
        return replaced;
    }
    response
}

pub fn describe_metrics() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status");
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency by route and method"
    );
    metrics::describe_counter!(
        "gateway_auth_cache_total",
        "Bearer token authentications by cache result"
    );
    metrics::describe_counter!(
        "gateway_rate_limited_total",
        "Requests refused by the per-token rate limit"
    );
}
