//! Retention of the execution history: attempts that ended longer ago than the configured age
//! are deleted in chunks, once across replicas (a transaction-scoped advisory lock per round;
//! a replica that finds it taken skips the round), and the count is logged. It goes by when
//! an attempt ended (running attempts never reach the history). Resolved alerts past the same
//! age go in the same round (`alerts::retention`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use switchyard_runtime::shutdown::Shutdown;

use crate::config::RetentionConfig;
use crate::error::Result;
use crate::store::executions;

/// Rows deleted per transaction, so one round never holds locks for long.
const CHUNK: u64 = 5_000;

/// Deletes history of attempts that ended before `cutoff`. Returns how many rows, or `None`
/// when another replica holds the job this round.
pub async fn apply(db: &DatabaseConnection, cutoff: DateTime<Utc>) -> Result<Option<u64>> {
    let mut deleted = 0;
    loop {
        let txn = switchyard_runtime::db::write_txn(db).await?;
        if !switchyard_runtime::db::try_job_lock(&txn, "monitoring.retention").await? {
            txn.rollback().await?;
            return Ok(None);
        }
        let done = executions::delete_ended_before(&txn, cutoff, CHUNK).await?;
        if done == 0 {
            txn.rollback().await?;
            break;
        }
        txn.commit().await?;
        deleted += done;
        if done < CHUNK {
            break;
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, cutoff = %cutoff.to_rfc3339(), "execution history past retention deleted");
    }
    Ok(Some(deleted))
}

/// Runs [`apply`] every `config.interval` until shutdown.
pub async fn run_periodically(db: DatabaseConnection, config: RetentionConfig, shutdown: Shutdown) {
    let max_age = chrono::Duration::from_std(config.max_age).unwrap_or(chrono::Duration::days(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.interval.max(Duration::from_secs(1))) => {}
            _ = shutdown.cancelled() => return,
        }
        match apply(&db, Utc::now() - max_age).await {
            Ok(Some(_)) => {}
            Ok(None) => tracing::debug!("history retention: another replica has this round"),
            Err(error) => {
                tracing::warn!(%error, "history retention failed; retrying next interval")
            }
        }
        match crate::alerts::retention::apply(&db, Utc::now() - max_age).await {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "alert retention failed; retrying next interval")
            }
        }
    }
}
