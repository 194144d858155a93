//! The scheduler's periodic maintenance: artifact objects older than the artifact retention
//! period are deleted from their stores ([`artifact_retention`]), then finished runs older than
//! the retention period are deleted with their tasks, node progress, dead letters and
//! artifact rows — a run whose artifact objects are not all gone yet waits for a later
//! round, so no object is ever forgotten while it still exists. Each job runs once across
//! replicas (a transaction-scoped PostgreSQL advisory lock; the loser skips this round) and
//! logs what it deleted.

mod artifacts;
pub mod objects;

pub use artifacts::{ArtifactsDeleted, artifact_retention};

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use switchyard_runtime::shutdown::Shutdown;

use super::Engine;
use crate::error::Result;
use crate::store::artifacts as artifact_rows;
use crate::store::entity::{dead_letter, node_run, run, task, task_attempt};
use objects::ObjectStores;

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
    let mut artifact_rows_deleted = 0u64;
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
            .filter(artifact_rows::no_live_artifacts())
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
        task_attempt::Entity::delete_many()
            .filter(task_attempt::Column::RunId.is_in(ids.iter().cloned()))
            .exec(&txn)
            .await?;
        let artifacts = artifact_rows::delete_of_runs(&txn, &ids).await?;
        let runs = run::Entity::delete_many()
            .filter(run::Column::Id.is_in(ids.iter().cloned()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        total.runs += runs.rows_affected;
        total.tasks += tasks.rows_affected;
        total.dead_letters += letters.rows_affected;
        artifact_rows_deleted += artifacts;
        if (ids.len() as u64) < CHUNK {
            break;
        }
    }
    if total != Deleted::default() {
        tracing::info!(
            runs = total.runs,
            tasks = total.tasks,
            dead_letters = total.dead_letters,
            artifact_rows = artifact_rows_deleted,
            retention_s = retention.as_secs(),
            "finished runs past retention deleted"
        );
    } else {
        tracing::debug!("retention: nothing to delete");
    }
    Ok(Some(total))
}

/// What the maintenance loop needs from the configuration.
pub struct Settings {
    /// Finished runs are deleted after this long.
    pub retention: Duration,
    /// Artifact objects are deleted after this long (at most `retention`).
    pub artifact_retention: Duration,
    /// Time between rounds.
    pub interval: Duration,
    pub stores: ObjectStores,
}

impl Settings {
    pub fn from_config(config: &crate::config::SchedulerConfig) -> Settings {
        Settings {
            retention: config.engine.retention,
            artifact_retention: config.engine.artifact_retention,
            interval: config.engine.retention_interval,
            stores: ObjectStores::new(&config.artifacts.object_store),
        }
    }
}

/// Artifact retention, then run retention, every `interval` until `shutdown`.
pub fn spawn(
    engine: Engine,
    settings: Settings,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            if let Err(error) =
                artifact_retention(&engine, &settings.stores, settings.artifact_retention).await
            {
                tracing::warn!(%error, "artifact retention round failed");
            }
            if let Err(error) = retention(&engine, settings.retention).await {
                tracing::warn!(%error, "retention round failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(settings.interval) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    })
}
