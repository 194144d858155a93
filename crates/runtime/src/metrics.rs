//! Prometheus metrics: one process-wide recorder (several services may share a process in
//! embedded mode, so every series carries a `service` label) and the `/metrics` endpoint.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

pub const GRPC_REQUESTS: &str = "switchyard_grpc_server_requests_total";
pub const GRPC_DURATION: &str = "switchyard_grpc_server_request_duration_seconds";
pub const OUTBOX_BACKLOG: &str = "switchyard_outbox_backlog";
pub const OUTBOX_DELIVERED: &str = "switchyard_outbox_delivered_total";
pub const OUTBOX_FAILURES: &str = "switchyard_outbox_delivery_failures_total";
pub const SERVICE_UP: &str = "switchyard_service_ready";

/// The process's recorder handle, installing the recorder on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder was installed first (a test harness); the
            // handle then renders nothing, which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// `# HELP` lines, so strict exposition checkers accept the output.
fn describe() {
    metrics::describe_counter!(
        GRPC_REQUESTS,
        "gRPC calls served, by service, method and status code"
    );
    metrics::describe_histogram!(
        GRPC_DURATION,
        metrics::Unit::Seconds,
        "gRPC call latency, by service and method"
    );
    metrics::describe_gauge!(
        OUTBOX_BACKLOG,
        "outbox events not yet delivered, by destination"
    );
    metrics::describe_counter!(OUTBOX_DELIVERED, "outbox events delivered, by destination");
    metrics::describe_counter!(
        OUTBOX_FAILURES,
        "failed outbox batch deliveries, by destination"
    );
    metrics::describe_gauge!(SERVICE_UP, "1 when the service reports SERVING, else 0");
}

/// Binds the metrics listener. Done early at startup so a taken port fails before real work.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, crate::RuntimeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::RuntimeError::Bind { addr, source })
}

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
    let handle = handle();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
