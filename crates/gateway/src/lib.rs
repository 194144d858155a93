//! The HTTP/JSON gateway: authenticates bearer tokens through control-plane (cached briefly),
//! applies per-token rate limits, body and time limits, forwards the caller's identity and
//! origin to the services over gRPC, and maps their statuses onto API.md's JSON errors.

pub mod auth;
pub mod config;
pub mod error;
pub mod event_streams;
pub mod extract;
pub mod middleware;
pub mod rate_limit;
pub mod routes;
pub mod state;
pub mod upstream;
pub mod usage;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard_runtime::RuntimeError;
use switchyard_runtime::cache::Cache;
use switchyard_runtime::shutdown::Shutdown;
use tokio::task::JoinHandle;

pub use config::GatewayConfig;
use rate_limit::Limiter;
use state::AppState;
use upstream::Upstreams;

pub const SERVICE: &str = "gateway";

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    server: JoinHandle<std::io::Result<()>>,
    /// The API usage reporter; told to stop only once the server has drained, so that its
    /// last report counts every request served.
    reporter: Option<(JoinHandle<()>, Shutdown)>,
    grace: Duration,
}

impl Gateway {
    /// Waits for shutdown and the drain of in-flight requests (bounded by the grace period).
    pub async fn wait(self) -> Result<(), RuntimeError> {
        let mut server = self.server;
        tokio::select! {
            result = &mut server => {
                stop_reporter(self.reporter, self.grace).await;
                return result
                    .map_err(|e| RuntimeError::Config(format!("gateway task failed: {e}")))?
                    .map_err(|source| RuntimeError::Bind { addr: self.addr, source });
            }
            _ = self.shutdown.cancelled() => {}
        }
        let drained = tokio::time::timeout(self.grace, server).await.is_ok();
        stop_reporter(self.reporter, self.grace).await;
        if drained {
            tracing::info!(service = SERVICE, "stopped");
        } else {
            tracing::warn!(
                service = SERVICE,
                "requests still running after the grace period, stopping anyway"
            );
        }
        Ok(())
    }

    pub async fn stop(self) -> Result<(), RuntimeError> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Binds the listener and starts serving; returns once the port is bound.
pub async fn start(config: GatewayConfig, shutdown: Shutdown) -> Result<Gateway, RuntimeError> {
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| RuntimeError::Bind {
            addr: config.http.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RuntimeError::Bind {
        addr: config.http.listen,
        source,
    })?;
    middleware::describe_metrics();
    let cache =
        Cache::from_config(&config.redis).map_err(|e| RuntimeError::Redis(e.to_string()))?;
    if let Err(error) = cache.ping().await {
        tracing::warn!(%error, "redis is not answering, authenticating every request with control-plane");
    }
    let upstreams = Upstreams::connect(&config.upstream, config.http.request_timeout)?;
    let limiter = Limiter::new(&config.rate_limit);
    let usage = usage::UsageRecorder::new(config.usage.max_routes);
    let grace = config.http.shutdown_grace;
    let shutdown = shutdown.child_token();
    let reporter = config.usage.enabled.then(|| {
        let stop = Shutdown::new();
        let task = tokio::spawn(usage::report_periodically(
            usage.clone(),
            upstreams.monitoring.clone(),
            config.usage.clone(),
            stop.clone(),
        ));
        (task, stop)
    });
    let event_streams = event_streams::EventStreams::new(config.http.event_streams_per_caller);
    let state = AppState {
        upstreams,
        cache,
        limiter: limiter.clone(),
        usage,
        config: Arc::new(config),
        shutdown: shutdown.clone(),
        event_streams,
    };
    tokio::spawn(prune_limiter(limiter, shutdown.clone()));
    let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    tracing::info!(service = SERVICE, %addr, "listening");
    Ok(Gateway {
        addr,
        shutdown,
        server,
        reporter,
        grace,
    })
}

/// Stops the usage reporter and waits (at most `grace`) for its last report.
async fn stop_reporter(reporter: Option<(JoinHandle<()>, Shutdown)>, grace: Duration) {
    let Some((task, stop)) = reporter else {
        return;
    };
    stop.cancel();
    if tokio::time::timeout(grace, task).await.is_err() {
        tracing::warn!(
            service = SERVICE,
            "the last api usage report did not go within the grace period"
        );
    }
}

async fn prune_limiter(limiter: Limiter, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => limiter.prune(),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Runs the gateway until shutdown.
pub async fn serve(config: GatewayConfig, shutdown: Shutdown) -> Result<(), RuntimeError> {
    start(config, shutdown).await?.wait().await
}
