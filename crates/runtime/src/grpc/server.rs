//! The gRPC server every service runs: bound early, limits from config, load shedding that
//! answers RESOURCE_EXHAUSTED, health (NOT_SERVING until the service says it is ready),
//! reflection v1 and v1alpha, and a drain bounded by the grace period.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::late::LateRoutes;
use super::observe::ObserveLayer;
use crate::RuntimeError;
use crate::config::GrpcConfig;
use crate::shutdown::{Shutdown, drain_within};

/// A bound, not yet serving, gRPC listener.
pub struct GrpcServer {
    listener: TcpListener,
    addr: SocketAddr,
}

/// Serving status reported through `grpc.health.v1.Health`.
#[derive(Clone)]
pub struct Readiness {
    reporter: HealthReporter,
    services: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    service: &'static str,
}

impl Readiness {
    /// Reports SERVING for the server as a whole and for each named gRPC service.
    pub async fn set_serving(&self, services: &[&str]) {
        if let Ok(mut known) = self.services.lock() {
            known.extend(services.iter().map(|s| (*s).to_owned()));
        }
        for name in services.iter().copied().chain([""]) {
            self.reporter
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        metrics::gauge!(crate::metrics::SERVICE_UP, "service" => self.service).set(1.0);
    }

    /// Reports NOT_SERVING everywhere (dependency lost, or draining).
    pub async fn set_not_serving(&self) {
        let names: Vec<String> = self.services.lock().map(|s| s.clone()).unwrap_or_default();
        for name in names.iter().map(String::as_str).chain([""]) {
            self.reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        metrics::gauge!(crate::metrics::SERVICE_UP, "service" => self.service).set(0.0);
    }
}

/// A started server: install the domain routes once they exist, then flip readiness.
pub struct StartedServer {
    pub addr: SocketAddr,
    pub routes: LateRoutes,
    pub readiness: Readiness,
    pub task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

impl GrpcServer {
    pub async fn bind(addr: SocketAddr) -> Result<Self, RuntimeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| RuntimeError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| RuntimeError::Bind { addr, source })?;
        Ok(GrpcServer { listener, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts serving health and reflection at once; domain calls answer UNAVAILABLE until
    /// routes are installed. Stops accepting on `shutdown` and drains within the grace period.
    pub async fn start(
        self,
        service: &'static str,
        config: &GrpcConfig,
        shutdown: Shutdown,
    ) -> Result<StartedServer, RuntimeError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let readiness = Readiness {
            reporter,
            services: Default::default(),
            service,
        };
        metrics::gauge!(crate::metrics::SERVICE_UP, "service" => service).set(0.0);
        let reflection_v1 = reflection().build_v1().map_err(|e| reflection_error(&e))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| reflection_error(&e))?;
        let always = Routes::new(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let routes = LateRoutes::new(always);

        let server = Server::builder()
            .timeout(config.request_timeout)
            .concurrency_limit_per_connection(config.concurrency_limit_per_connection)
            .load_shed(true)
            .max_concurrent_streams(config.max_concurrent_streams)
            .http2_keepalive_interval(Some(config.keepalive_interval))
            .http2_keepalive_timeout(Some(config.keepalive_timeout))
            .tcp_nodelay(true)
            .layer(ObserveLayer::new(service));
        let incoming = TcpListenerStream::new(self.listener);
        let grace = config.shutdown_grace;
        let serving = {
            let routes = routes.clone();
            let signal = {
                let shutdown = shutdown.clone();
                let readiness = readiness.clone();
                async move {
                    shutdown.cancelled().await;
                    // Probes see NOT_SERVING before the listener closes.
                    readiness.set_not_serving().await;
                }
            };
            server.serve_with_incoming_shutdown(routes, incoming, signal)
        };
        let addr = self.addr;
        let task = tokio::spawn(async move {
            match drain_within("grpc server", serving, &shutdown, grace).await {
                Some(result) => result.map_err(RuntimeError::from),
                None => Ok(()),
            }
        });
        tracing::info!(service, %addr, "grpc listening");
        Ok(StartedServer {
            addr,
            routes,
            readiness,
            task,
        })
    }
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(switchyard_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

fn reflection_error(error: &tonic_reflection::server::Error) -> RuntimeError {
    RuntimeError::Config(format!("gRPC reflection descriptors are invalid: {error}"))
}

/// Applies the configured message size limits to a generated server.
#[macro_export]
macro_rules! limit_messages {
    ($server:expr, $config:expr) => {
        $server
            .max_decoding_message_size($config.max_message_bytes)
            .max_encoding_message_size($config.max_message_bytes)
    };
}

/// Routes from one generated server, for `Built::routes`.
pub fn routes<S>(service: S) -> Routes
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    Routes::new(service)
}
