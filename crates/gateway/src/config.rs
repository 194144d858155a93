//! The gateway's configuration: where it listens, where the services are, and its limits.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_runtime::config::{RedisConfig, TelemetryConfig, Validate};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub http: HttpConfig,
    pub upstream: UpstreamConfig,
    pub rate_limit: RateLimitConfig,
    /// API usage reports to monitoring.
    pub usage: crate::usage::UsageConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Deadline for the response, forwarded to the services as the gRPC deadline. An event
    /// stream's deadline covers its first event; the stream then runs until the run is final.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// In-flight requests get this long to finish on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Run event streams one caller (token or user) may keep open on this gateway; past it,
    /// 429 with `retry-after`. The gateway keeps at most
    /// [`MAX_OPEN_STREAMS`](crate::event_streams::MAX_OPEN_STREAMS) open in all.
    pub event_streams_per_caller: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080)),
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
            event_streams_per_caller: 100,
        }
    }
}

/// gRPC endpoints of the services.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub control_plane: String,
    pub scheduler: String,
    pub monitoring: String,
    pub audit: String,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            control_plane: "http://127.0.0.1:7010".into(),
            scheduler: "http://127.0.0.1:7020".into(),
            monitoring: "http://127.0.0.1:7030".into(),
            audit: "http://127.0.0.1:7040".into(),
        }
    }
}

/// Per-token rate limit (GCRA). Counted per gateway replica: with N replicas behind a load
/// balancer a token gets up to N times this.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Sustained requests per second per token.
    pub per_second: u32,
    /// Requests a token may make at once above the sustained rate.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            per_second: 50,
            burst: 100,
        }
    }
}

impl Validate for GatewayConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = self.redis.validate();
        problems.extend(self.telemetry.validate());
        problems.extend(self.usage.problems());
        if self.http.max_body_bytes < 1024 {
            problems.push("http.max_body_bytes must be at least 1024".into());
        }
        if self.http.request_timeout < Duration::from_millis(100) {
            problems.push("http.request_timeout must be at least 100ms".into());
        }
        let most = crate::event_streams::MAX_OPEN_STREAMS;
        if !(1..=most).contains(&self.http.event_streams_per_caller) {
            problems.push(format!(
                "http.event_streams_per_caller must be between 1 and {most}"
            ));
        }
        for (key, url) in [
            ("upstream.control_plane", &self.upstream.control_plane),
            ("upstream.scheduler", &self.upstream.scheduler),
            ("upstream.monitoring", &self.upstream.monitoring),
            ("upstream.audit", &self.upstream.audit),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!(
                    "{key} must be an http:// or https:// URL, got {url:?}"
                ));
            }
        }
        if self.rate_limit.enabled
            && (self.rate_limit.per_second == 0 || self.rate_limit.burst == 0)
        {
            problems.push("rate_limit.per_second and rate_limit.burst must be at least 1".into());
        }
        problems
    }
}

impl switchyard_runtime::entry::BinaryConfig for GatewayConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
