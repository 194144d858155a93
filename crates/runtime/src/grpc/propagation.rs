//! W3C trace context and deadlines across gRPC hops.
//!
//! The server's observe layer extracts `traceparent` into the call's span and records the
//! caller's `grpc-timeout` as a task-local deadline; the client interceptor injects the current
//! span's context and forwards the remaining time, so a chain of calls shares one trace and
//! one deadline.

use std::time::{Duration, Instant};

use opentelemetry::propagation::{Extractor, Injector};

tokio::task_local! {
    /// The deadline of the gRPC call being served, when the caller sent one.
    pub static DEADLINE: Option<Instant>;
}

/// Time left before the current call's deadline; `None` when there is no deadline.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|d| *d)
        .ok()
        .flatten()
        .map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

/// Parses a `grpc-timeout` header value (`<digits><unit>`, unit one of `HMSmun`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Reads trace headers from an HTTP request's headers.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes trace headers into outgoing gRPC metadata.
pub struct MetadataInjector<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("1234567890S"), None);
    }

    #[tokio::test]
    async fn remaining_reads_the_scoped_deadline() {
        assert_eq!(remaining(), None);
        let deadline = Instant::now() + Duration::from_secs(10);
        let left = DEADLINE.scope(Some(deadline), async { remaining() }).await;
        assert!(left.is_some_and(|d| d > Duration::from_secs(9)));
    }
}
