//! The scheduler's periodic maintenance: finished runs older than the retention period are
//! deleted with their tasks, node progress and dead letters. The job runs once across
//! replicas (a transaction-scoped PostgreSQL advisory lock; the loser skips this round) and
//! logs what it deleted.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use switchyard_runtime::shutdown::Shutdown;

use super::Engine;
use crate::error::Result;
use crate::store::entity::{dead_letter, node_run, run, task};

/// Runs deleted per transaction, so one round never holds locks for long.
const CHUNK: u64 = 500;

/// What one round deleted; `None` when another replica holds the job this round.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub runs: u64,
    pub tasks: u64,
    pub dead_letters: u64,
}

/// Deletes runs that finished before `now - retention`, with everything that hangs off them.
pub async fn retention(engine: &Engine, retention: Duration) -> Result<Option<Deleted>> {
    let cutoff = Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
    let mut total = Deleted::default();
    loop {
        let txn = switchyard_runtime::db::write_txn(&engine.db).await?;
        if !switchyard_runtime::db::try_job_lock(&txn, "scheduler.retention").await? {
            txn.rollback().await?;
            return Ok(None);
        }
        let ids: Vec<String> = run::Entity::find()
            .select_only()
            .column(run::Column::Id)
            .filter(run::Column::FinishedAt.lt(cutoff))
            .limit(CHUNK)
            .into_tuple()
            .all(&txn)
            .await?;
        if ids.is_empty() {
            txn.rollback().await?;
            break;
        }
        let letters = dead_letter::Entity::delete_many()
            .filter(dead_letter::Column::RunId.is_in(ids.iter().cloned()))
            .exec(&txn)
            .await?;
        let tasks = task::Entity::delete_many()
            .filter(task::Column::RunId.is_in(ids.iter().cloned()))
            .exec(&txn)
            .await?;
        node_run::Entity::delete_many()
            .filter(node_run::Column::RunId.is_in(ids.iter().cloned()))
            .exec(&txn)
            .await?;
        let runs = run::Entity::delete_many()
            .filter(run::Column::Id.is_in(ids.iter().cloned()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        total.runs += runs.rows_affected;
        total.tasks += tasks.rows_affected;
        total.dead_letters += letters.rows_affected;
        if (ids.len() as u64) < CHUNK {
            break;
        }
    }
    if total != Deleted::default() {
        tracing::info!(
            runs = total.runs,
            tasks = total.tasks,
            dead_letters = total.dead_letters,
            retention_s = retention.as_secs(),
            "finished runs past retention deleted"
        );
    } else {
        tracing::debug!("retention: nothing to delete");
    }
    Ok(Some(total))
}

pub fn spawn(
    engine: Engine,
    retention_period: Duration,
    interval: Duration,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            if let Err(error) = retention(&engine, retention_period).await {
                tracing::warn!(%error, "retention round failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    })
}
