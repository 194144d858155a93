//! Client channels to other services. Every call carries the current trace context and, when
//! made while serving a call, the time left before that call's deadline.

use std::time::Duration;

use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::propagation::{MetadataInjector, remaining};

/// A channel whose calls propagate trace context and deadlines. Wrap it in a generated client:
/// `AuditServiceClient::new(channel)`.
pub type GrpcChannel = InterceptedService<Channel, ContextInterceptor>;

#[derive(Debug, Clone, Copy, Default)]
pub struct ContextInterceptor;

impl Interceptor for ContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
        });
        if let Some(left) = remaining() {
            if left.is_zero() {
                return Err(tonic::Status::deadline_exceeded(
                    "deadline of the incoming call passed before this call",
                ));
            }
            request.set_timeout(left);
        }
        Ok(request)
    }
}

/// A lazily connecting channel to `endpoint` (`http://host:port`). It reconnects by itself
/// when the peer restarts.
pub fn channel(endpoint: &str) -> Result<GrpcChannel, tonic::transport::Error> {
    let channel = Endpoint::from_shared(endpoint.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(InterceptedService::new(channel, ContextInterceptor))
}
