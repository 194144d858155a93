//! Retention of resolved alerts: alerts resolved before the cutoff are deleted with their
//! webhook notifications, in chunks, once across replicas (the job lock per chunk), and the
//! count is logged. Open alerts are never deleted, however old. Called by the service's
//! retention job (`crate::retention`) with the same `retention.max_age`.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use crate::error::Result;
use crate::store::alerts::open;

const JOB: &str = "monitoring.retention.alerts";
/// Alerts deleted per transaction.
const CHUNK: u64 = 1_000;

/// Deletes alerts resolved before `cutoff`. `None` when another replica holds the job.
pub async fn apply(db: &DatabaseConnection, cutoff: DateTime<Utc>) -> Result<Option<u64>> {
    let mut deleted = 0;
    loop {
        let txn = switchyard_runtime::db::write_txn(db).await?;
        if !switchyard_runtime::db::try_job_lock(&txn, JOB).await? {
            txn.rollback().await?;
            return Ok(None);
        }
        let done = open::delete_resolved_before(&txn, cutoff, CHUNK).await?;
        txn.commit().await?;
        deleted += done;
        if done < CHUNK {
            break;
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, cutoff = %cutoff.to_rfc3339(), "resolved alerts past retention deleted");
    }
    Ok(Some(deleted))
}
