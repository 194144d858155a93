//! The server-side layer around every gRPC call: a span parented on the caller's trace
//! context, the caller's deadline made available to outgoing calls, and per-method request
//! counts and latencies.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::propagation::{DEADLINE, HeaderExtractor, parse_grpc_timeout};
use crate::metrics::{GRPC_DURATION, GRPC_REQUESTS};

#[derive(Debug, Clone)]
pub struct ObserveLayer {
    service: &'static str,
}

impl ObserveLayer {
    pub fn new(service: &'static str) -> Self {
        ObserveLayer { service }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            service: self.service,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    service: &'static str,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl<S, B, R> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(request.headers()))
        });
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|timeout| Instant::now() + timeout);
        let span = tracing::info_span!(
            "grpc.request",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = self.service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let _ = span.set_parent(parent);

        // The clone that was driven to readiness serves this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let service = self.service;
        Box::pin(async move {
            let started = Instant::now();
            let response = DEADLINE
                .scope(deadline, inner.call(request))
                .instrument(span.clone())
                .await;
            let code = match &response {
                Ok(response) => status_code(response.headers()),
                Err(_) => "2",
            };
            span.record("rpc.grpc.status_code", code);
            // Unknown paths (code 12, UNIMPLEMENTED) would let a caller mint label values.
            let method = if code == "12" {
                "unknown".to_owned()
            } else {
                method
            };
            metrics::counter!(GRPC_REQUESTS, "service" => service, "method" => method.clone(), "code" => code)
                .increment(1);
            metrics::histogram!(GRPC_DURATION, "service" => service, "method" => method)
                .record(started.elapsed().as_secs_f64());
            response
        })
    }
}

/// The call's status code as seen in the response headers: errors are sent "trailers-only"
/// with `grpc-status` in the headers; a success carries it in trailers, so absence means OK.
fn status_code(headers: &http::HeaderMap) -> &'static str {
    match headers.get("grpc-status").and_then(|v| v.to_str().ok()) {
        None | Some("0") => "0",
        Some(code) => match code.parse::<i32>().map(tonic::Code::from_i32) {
            Ok(code) => code_label(code),
            Err(_) => "2",
        },
    }
}

fn code_label(code: tonic::Code) -> &'static str {
    const LABELS: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    LABELS.get(code as usize).copied().unwrap_or("2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_come_from_headers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_code(&headers), "0");
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(status_code(&headers), "5");
        headers.insert("grpc-status", http::HeaderValue::from_static("garbage"));
        assert_eq!(status_code(&headers), "2");
    }
}
