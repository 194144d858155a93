//! One-time initialisation of logs and traces: a `tracing` subscriber (pretty, compact or
//! JSON), W3C trace-context propagation, and OTLP span export when an endpoint is configured.
//!
//! Guarded against double initialisation: in embedded mode and in tests several services share
//! one process, and only the first call installs anything.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::RuntimeError;
use crate::config::{LogFormat, TelemetryConfig};

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Flushes and shuts down span export when the process ends. Hold it in `main`.
#[must_use = "dropping the guard at once would stop span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes pending spans, waiting at most `timeout` so a dead collector cannot hang exit.
    pub fn shutdown(mut self, timeout: Duration) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown_with_timeout(timeout)
        {
            tracing::warn!(%error, "span export did not flush before exit");
        }
    }
}

/// Installs the global subscriber and propagator. Later calls return an inert guard.
pub fn init(service: &str, config: &TelemetryConfig) -> Result<TelemetryGuard, RuntimeError> {
    if INSTALLED.set(()).is_err() {
        return Ok(TelemetryGuard { provider: None });
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    // RUST_LOG wins over the configured filter; noisy dependencies are quietened either way.
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log_filter.clone());
    let filter = EnvFilter::try_new(format!(
        "{directives},h2=warn,hyper=warn,tower=warn,sqlx=warn,sea_orm=warn,opentelemetry=warn"
    ))
    .map_err(|e| RuntimeError::Telemetry(format!("telemetry.log_filter: {e}")))?;

    // Colours only on a terminal: escape codes in CI logs and files are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .pretty()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Compact => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
    };

    let provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(otlp_provider(service, endpoint)?),
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("switchyard"))
            .boxed()
    });

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| RuntimeError::Telemetry(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

fn otlp_provider(service: &str, endpoint: &str) -> Result<SdkTracerProvider, RuntimeError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| RuntimeError::Telemetry(format!("telemetry.otlp_endpoint: {e}")))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(format!("switchyard-{service}"))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}

/// Installs only the W3C propagator (no subscriber): for tests that exercise propagation
/// without owning the process's logging.
pub fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}
