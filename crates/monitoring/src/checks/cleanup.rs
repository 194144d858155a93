//! Deletes what API checks and API usage leave behind: probe rows older than the 24 hours
//! availability looks at, and usage buckets older than `api_usage.max_age`. Runs every
//! `retention.interval`, once across replicas (a transaction-scoped job lock, like the
//! history retention), and logs the counts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use switchyard_runtime::shutdown::Shutdown;

use crate::error::Result;
use crate::store::{checks, usage};

/// How far back availability looks; probes older than this are deleted.
pub const PROBE_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Deletes probes before `probes_cutoff` and usage before `usage_cutoff`. `None` when another
/// replica has this round.
pub async fn apply(
    db: &DatabaseConnection,
    probes_cutoff: DateTime<Utc>,
    usage_cutoff: DateTime<Utc>,
) -> Result<Option<(u64, u64)>> {
    let txn = switchyard_runtime::db::write_txn(db).await?;
    if !switchyard_runtime::db::try_job_lock(&txn, "monitoring.api-checks.retention").await? {
        txn.rollback().await?;
        return Ok(None);
    }
    let probes = checks::delete_probes_before(&txn, probes_cutoff).await?;
    let buckets = usage::delete_before(&txn, usage_cutoff).await?;
    txn.commit().await?;
    if probes + buckets > 0 {
        tracing::info!(
            probes,
            buckets,
            "api check probes and usage past retention deleted"
        );
    }
    Ok(Some((probes, buckets)))
}

/// Runs [`apply`] every `interval` until shutdown.
pub async fn run_periodically(
    db: DatabaseConnection,
    interval: Duration,
    usage_max_age: Duration,
    shutdown: Shutdown,
) {
    let usage_age = chrono::Duration::from_std(usage_max_age).unwrap_or(chrono::Duration::days(7));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval.max(Duration::from_secs(1))) => {}
            _ = shutdown.cancelled() => return,
        }
        let now = Utc::now();
        if let Err(error) = apply(&db, now - PROBE_WINDOW, now - usage_age).await {
            tracing::warn!(%error, "api check retention failed; retrying next interval");
        }
    }
}
