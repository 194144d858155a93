//! API usage: every request is counted in memory per (route template, method) — requests,
//! errors (status 400 and above) and a latency histogram with fixed bounds — and every
//! `usage.interval` the counts are swapped out and reported to monitoring as `ApiUsage` events
//! through its EventSink.
//!
//! Why the EventSink: monitoring's inbox already makes a delivery idempotent by event id, so a
//! window that is retried after a timeout counts once, and a batch is applied in one
//! transaction; a dedicated RPC would have to rebuild both. The gateway has no database:
//! windows not yet delivered wait in a bounded queue (oldest dropped and logged when full) and
//! are lost if the gateway crashes, which the usage figures tolerate.
//!
//! The request path never waits on reporting: recording is a read lock on the route table and
//! a few relaxed atomic adds (a write lock only the first time a route and method is seen, and
//! routes are the router's templates, capped at `usage.max_routes`, beyond which requests count
//! under `other`). A request that lands while its window is swapped out may have its count in
//! one window and its latency in the next; totals over time are exact.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_proto::events::v1::event_sink_client::EventSinkClient;
use switchyard_proto::events::v1::{ApiUsage, DeliverRequest, Event, event::Payload};
use switchyard_runtime::grpc::GrpcChannel;
use switchyard_runtime::shutdown::Shutdown;
use switchyard_runtime::time::to_proto;

/// Upper bounds of the latency buckets in milliseconds (monitoring stores the same ones; it
/// maps other bounds onto its own, so the two may drift without corrupting data).
pub const BOUNDS_MS: [f64; 14] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];
const BUCKETS: usize = BOUNDS_MS.len() + 1;
/// Events per Deliver call.
const BATCH: usize = 500;
const OTHER_ROUTE: &str = "other";

/// `usage.*`: how the gateway reports API usage to monitoring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    pub enabled: bool,
    /// Length of a reporting window.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Distinct (route, method) pairs counted separately; the rest count as `other`.
    pub max_routes: usize,
    /// Route reports kept while monitoring is unreachable; the oldest go first.
    pub max_pending: usize,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            enabled: true,
            interval: Duration::from_secs(10),
            max_routes: 500,
            max_pending: 20_000,
        }
    }
}

impl UsageConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.interval < Duration::from_secs(1) || self.interval > Duration::from_secs(60) {
            problems.push("usage.interval must be between 1s and 60s".into());
        }
        if self.max_routes == 0 || self.max_pending == 0 {
            problems.push("usage.max_routes and usage.max_pending must be at least 1".into());
        }
        problems
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

/// One (route, method)'s counts over a window.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    route: String,
    method: String,
    requests: u64,
    errors: u64,
    buckets: [u64; BUCKETS],
}

type Table = HashMap<String, HashMap<String, Arc<Counters>>>;

/// The in-memory counts, shared by every request.
#[derive(Clone)]
pub struct UsageRecorder {
    table: Arc<RwLock<Table>>,
    max_routes: usize,
}

fn bucket_of(elapsed: Duration) -> usize {
    let ms = elapsed.as_secs_f64() * 1000.0;
    BOUNDS_MS
        .iter()
        .position(|bound| ms <= *bound)
        .unwrap_or(BUCKETS - 1)
}

impl UsageRecorder {
    pub fn new(max_routes: usize) -> UsageRecorder {
        UsageRecorder {
            table: Arc::new(RwLock::new(HashMap::new())),
            max_routes,
        }
    }

    fn counters(&self, route: &str, method: &str) -> Arc<Counters> {
        {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            if let Some(found) = table.get(route).and_then(|m| m.get(method)) {
                return found.clone();
            }
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        let known: usize = table.values().map(HashMap::len).sum();
        let route = if known >= self.max_routes && !table.contains_key(route) {
            OTHER_ROUTE
        } else {
            route
        };
        table
            .entry(route.to_owned())
            .or_default()
            .entry(method.to_owned())
            .or_default()
            .clone()
    }

    /// Counts one request.
    pub fn record(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let counters = self.counters(route, method);
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 400 {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        counters.buckets[bucket_of(elapsed)].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the counts since the last call, leaving zeros; routes without requests are left
    /// out.
    fn take(&self) -> Vec<Window> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (route, methods) in table.iter() {
            for (method, c) in methods {
                let requests = c.requests.swap(0, Ordering::Relaxed);
                let errors = c.errors.swap(0, Ordering::Relaxed);
                let buckets = std::array::from_fn(|i| c.buckets[i].swap(0, Ordering::Relaxed));
                if requests == 0 && buckets.iter().all(|b| *b == 0) {
                    continue;
                }
                out.push(Window {
                    route: route.clone(),
                    method: method.clone(),
                    requests,
                    errors: errors.min(requests),
                    buckets,
                });
            }
        }
        out
    }
}

/// The `q` quantile of a window's histogram, interpolated inside its bucket (the same reading
/// monitoring applies to merged buckets).
fn quantile(buckets: &[u64; BUCKETS], q: f64) -> f64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut below = 0;
    for (at, count) in buckets.iter().enumerate() {
        if *count == 0 || below + count < rank {
            below += count;
            continue;
        }
        let lower = if at == 0 { 0.0 } else { BOUNDS_MS[at - 1] };
        let Some(upper) = BOUNDS_MS.get(at) else {
            return lower;
        };
        return lower + (upper - lower) * ((rank - below) as f64 / *count as f64);
    }
    0.0
}

fn report(window: Window, start: DateTime<Utc>, end: DateTime<Utc>) -> Event {
    let usage = ApiUsage {
        p50_ms: quantile(&window.buckets, 0.5),
        p95_ms: quantile(&window.buckets, 0.95),
        p99_ms: quantile(&window.buckets, 0.99),
        route: window.route,
        method: window.method,
        requests: window.requests,
        errors: window.errors,
        window_start: Some(to_proto(start)),
        window_end: Some(to_proto(end)),
        latency_bounds_ms: BOUNDS_MS.to_vec(),
        latency_counts: window.buckets.to_vec(),
    };
    switchyard_runtime::outbox::event(crate::SERVICE, Payload::ApiUsage(usage))
}

/// Reports windows to monitoring every `config.interval` until shutdown, then once more.
pub async fn report_periodically(
    recorder: UsageRecorder,
    monitoring: GrpcChannel,
    config: UsageConfig,
    shutdown: Shutdown,
) {
    let mut sink = EventSinkClient::new(monitoring);
    let mut pending: VecDeque<Event> = VecDeque::new();
    let mut start = Utc::now();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(config.interval) => false,
            _ = shutdown.cancelled() => true,
        };
        let end = Utc::now();
        for window in recorder.take() {
            pending.push_back(report(window, start, end));
        }
        start = end;
        let excess = pending.len().saturating_sub(config.max_pending);
        if excess > 0 {
            pending.drain(..excess);
            tracing::warn!(
                dropped = excess,
                "api usage reports dropped: monitoring unreachable for too long"
            );
        }
        deliver(&mut sink, &mut pending, config.interval).await;
        if stopping {
            return;
        }
    }
}

/// Delivers what is pending, oldest first, until done or a call fails (kept for next time).
async fn deliver(
    sink: &mut EventSinkClient<GrpcChannel>,
    pending: &mut VecDeque<Event>,
    deadline: Duration,
) {
    while !pending.is_empty() {
        let n = pending.len().min(BATCH);
        let events: Vec<Event> = pending.iter().take(n).cloned().collect();
        let mut request = tonic::Request::new(DeliverRequest { events });
        request.set_timeout(deadline);
        match sink.deliver(request).await {
            Ok(_) => {
                pending.drain(..n);
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), pending = pending.len(), "api usage report not delivered; retrying next window");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_requests_errors_and_latency_per_route() {
        let recorder = UsageRecorder::new(10);
        let route = "/api/v1/runs/{run_id}";
        recorder.record(route, "GET", 200, Duration::from_millis(3));
        recorder.record(route, "GET", 404, Duration::from_millis(40));
        recorder.record(route, "DELETE", 500, Duration::from_secs(90));
        let mut windows = recorder.take();
        windows.sort_by(|a, b| a.method.cmp(&b.method));
        assert_eq!(windows.len(), 2);
        let get = &windows[1];
        assert_eq!((get.requests, get.errors), (2, 1));
        assert_eq!(get.buckets[2], 1, "3ms is in (2.5, 5]");
        assert_eq!(get.buckets[5], 1, "40ms is in (25, 50]");
        assert_eq!(windows[0].buckets[BUCKETS - 1], 1, "90s overflows");
        // Taken windows start again from zero.
        assert!(recorder.take().is_empty());
    }

    #[test]
    fn usage_config_bounds_its_window() {
        assert!(UsageConfig::default().problems().is_empty());
        let fast = UsageConfig {
            interval: Duration::from_millis(10),
            ..UsageConfig::default()
        };
        assert_eq!(
            fast.problems(),
            ["usage.interval must be between 1s and 60s"]
        );
    }

    #[test]
    fn usage_routes_beyond_the_cap_count_as_other() {
        let recorder = UsageRecorder::new(1);
        recorder.record("/a", "GET", 200, Duration::from_millis(1));
        recorder.record("/b", "GET", 200, Duration::from_millis(1));
        let mut routes: Vec<String> = recorder.take().into_iter().map(|w| w.route).collect();
        routes.sort();
        assert_eq!(routes, ["/a", "other"]);
    }

    #[test]
    fn usage_reports_carry_the_histogram_and_its_percentiles() {
        let mut buckets = [0u64; BUCKETS];
        buckets[6] = 10;
        assert_eq!(quantile(&buckets, 0.5), 75.0);
        let now = Utc::now();
        let event = report(
            Window {
                route: "/x".into(),
                method: "GET".into(),
                requests: 10,
                errors: 0,
                buckets,
            },
            now,
            now,
        );
        let Some(Payload::ApiUsage(usage)) = event.payload else {
            panic!("not a usage report");
        };
        assert_eq!(
            usage.latency_counts.len(),
            usage.latency_bounds_ms.len() + 1
        );
        assert_eq!(usage.p99_ms, 100.0);
        assert!(!event.id.is_empty());
    }
}
