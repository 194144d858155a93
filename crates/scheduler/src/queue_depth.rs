//! The queue depth gauge: tasks waiting per project, refreshed every
//! `engine.queue_depth_interval` by one grouped count (see `store::queue_depth`). Kept off the
//! claim path on purpose: claims must not pay for metrics. Every replica exports the same
//! numbers; dashboards take the `max` across instances. A project whose queue emptied is set
//! to 0 rather than left at its last value.

use std::collections::HashSet;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use switchyard_runtime::shutdown::Shutdown;

pub const QUEUE_DEPTH: &str = "switchyard_queue_depth";

/// Every metric this module exports (the Grafana dashboard's test reads it).
pub const NAMES: [&str; 1] = [QUEUE_DEPTH];

pub fn describe() {
    let _ = switchyard_runtime::metrics::handle();
    metrics::describe_gauge!(
        QUEUE_DEPTH,
        "tasks queued (ready or backing off) per project"
    );
}

/// Refreshes the gauge every `interval` until shutdown.
pub async fn run(db: DatabaseConnection, interval: Duration, shutdown: Shutdown) {
    describe();
    let mut reported: HashSet<String> = HashSet::new();
    loop {
        match crate::store::queue_depth::per_project(&db).await {
            Ok(depths) => {
                let now: HashSet<String> = depths.iter().map(|(p, _)| p.clone()).collect();
                for (project, queued) in depths {
                    metrics::gauge!(QUEUE_DEPTH, "service" => crate::SERVICE, "project" => project)
                        .set(queued as f64);
                }
                for gone in reported.difference(&now) {
                    metrics::gauge!(QUEUE_DEPTH, "service" => crate::SERVICE, "project" => gone.clone())
                        .set(0.0);
                }
                reported = now;
            }
            Err(error) => tracing::warn!(%error, "queue depth count failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
