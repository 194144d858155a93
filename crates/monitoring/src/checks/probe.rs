//! One probe of one check. HTTP: `GET target`, healthy on 2xx. gRPC: the standard
//! `grpc.health.v1.Health/Check` for the whole server (plaintext HTTP/2), healthy on SERVING.
//!
//! The address policy is applied where the connection is made, not only at registration: HTTP
//! host names resolve through [`PolicyResolver`] (every answer checked, so a name re-pointed at
//! a metadata address is refused), literal addresses and every redirect target are checked
//! before they are followed, proxies are off; gRPC targets are resolved and checked here and
//! the connection goes to the checked address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::domain::checks::Protocol;
use crate::domain::url_policy::UrlPolicy;
use crate::store::checks::{Check, ProbeResult};

pub const CHECK_PROBES: &str = "switchyard_api_check_probes_total";
pub const CHECK_HEALTHY: &str = "switchyard_api_check_healthy";

/// Error texts are stored and shown; a server's long error page is not.
const MAX_ERROR: usize = 300;

/// Probes checks; one per replica, shared by the probe tasks.
pub struct Prober {
    http: reqwest::Client,
    policy: UrlPolicy,
}

/// Resolves host names for HTTP probes and refuses names with an address the policy forbids.
struct PolicyResolver(UrlPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve(&policy, &host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// `host:port`'s addresses, every one allowed by `policy`.
async fn resolve(policy: &UrlPolicy, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("could not resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} resolved to no address"));
    }
    let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    policy
        .check_resolved(&ips)
        .map_err(|rejection| format!("{host}: {rejection}"))?;
    Ok(addrs)
}

impl Prober {
    pub fn new(policy: UrlPolicy) -> Result<Prober, reqwest::Error> {
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("too many redirects");
            }
            match policy.check_url(attempt.url().as_str()) {
                Ok(_) => attempt.follow(),
                Err(rejection) => attempt.error(format!("redirect refused: {rejection}")),
            }
        });
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver(policy)))
            .redirect(redirects)
            .no_proxy()
            .user_agent(concat!("switchyard-monitoring/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Prober { http, policy })
    }

    /// Probes `check` once; never fails (a failure is a result).
    pub async fn probe(&self, check: &Check) -> ProbeResult {
        let timeout = Duration::from_millis(u64::try_from(check.timeout_ms).unwrap_or(5_000));
        let started = Instant::now();
        let outcome = match Protocol::parse(&check.protocol) {
            Some(Protocol::Http) => self.http_probe(&check.target, timeout).await,
            Some(Protocol::Grpc) => {
                match tokio::time::timeout(timeout, self.grpc_probe(&check.target, timeout)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("no answer within {}ms", timeout.as_millis())),
                }
            }
            None => Err(format!("unknown protocol {:?}", check.protocol)),
        };
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let error = match outcome {
            Ok(()) => String::new(),
            Err(error) => truncate(error),
        };
        ProbeResult {
            at: Utc::now(),
            ok: error.is_empty(),
            latency_ms,
            error,
        }
    }

    async fn http_probe(&self, target: &str, timeout: Duration) -> Result<(), String> {
        // Literal addresses never reach the resolver: check them (and metadata names) here.
        self.policy
            .check_url(target)
            .map_err(|rejection| rejection.to_string())?;
        let response = self
            .http
            .get(target)
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| describe_http_error(&error, timeout))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("http status {}", status.as_u16()))
        }
    }

    async fn grpc_probe(&self, target: &str, timeout: Duration) -> Result<(), String> {
        let (host, port) = target
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .ok_or_else(|| "target is not host:port".to_owned())?;
        let addrs = resolve(&self.policy, host, port).await?;
        let addr = addrs[0];
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("could not connect to {addr}: {}", root_cause(&e)))?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|status| format!("health check failed: {}", status.message()))?
            .into_inner();
        match ServingStatus::try_from(answer.status) {
            Ok(ServingStatus::Serving) => Ok(()),
            Ok(other) => Err(format!("health status {}", other.as_str_name())),
            Err(_) => Err(format!("health status {}", answer.status)),
        }
    }
}

fn describe_http_error(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {}ms", timeout.as_millis());
    }
    let cause = root_cause(error);
    if error.is_connect() {
        format!("could not connect: {cause}")
    } else {
        cause
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Prometheus: the probe counter and the check's current health.
pub fn observe(check: &Check, result: &ProbeResult) {
    let outcome = if result.ok { "ok" } else { "failed" };
    metrics::counter!(CHECK_PROBES, "service" => crate::SERVICE, "result" => outcome).increment(1);
    metrics::gauge!(CHECK_HEALTHY, "service" => crate::SERVICE, "project" => check.project_id.clone(), "check" => check.name.clone())
        .set(if result.ok { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_errors_are_cut_at_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_ERROR);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[tokio::test]
    async fn probes_refuse_addresses_the_policy_forbids() {
        let strict = UrlPolicy::default();
        let error = resolve(&strict, "127.0.0.1", 80).await.err();
        assert!(error.is_some_and(|e| e.contains("loopback")));
        let prober = Prober::new(strict).expect("valid");
        let check = Check {
            id: "c".into(),
            org_id: "o".into(),
            project_id: "p".into(),
            name: "meta".into(),
            protocol: "http".into(),
            target: "http://169.254.169.254/latest/meta-data/".into(),
            interval_ms: 60_000,
            timeout_ms: 1_000,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            next_probe_at: Utc::now(),
            last_checked_at: None,
            last_ok: false,
            last_latency_ms: None,
            last_error: String::new(),
        };
        let result = prober.probe(&check).await;
        assert!(!result.ok);
        assert!(result.error.contains("metadata"), "{}", result.error);
    }
}
