//! Artifact retention: objects of artifacts older than `engine.artifact_retention` are
//! deleted from their stores and their rows marked deleted, in chunks, once across replicas
//! (the job's advisory lock is held while a chunk's objects are deleted). An object already
//! gone counts as deleted; one whose store fails keeps its row for the next round.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt as _;

use super::objects::ObjectStores;
use crate::engine::Engine;
use crate::error::Result;
use crate::store::artifacts;

/// Artifacts handled per transaction.
const CHUNK: u64 = 200;
/// Objects deleted at once.
const CONCURRENCY: usize = 8;
/// Failures logged one by one per round; the rest are only counted.
const LOGGED_FAILURES: u64 = 20;

/// What one round did; `None` from [`artifact_retention`] when another replica holds the job.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactsDeleted {
    /// Objects deleted (or already gone), their rows marked deleted.
    pub deleted: u64,
    /// Objects whose store failed; their rows wait for the next round.
    pub failed: u64,
}

/// Deletes the objects of artifacts created before `now - retention`.
pub async fn artifact_retention(
    engine: &Engine,
    stores: &ObjectStores,
    retention: Duration,
) -> Result<Option<ArtifactsDeleted>> {
    let cutoff = Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
    let mut total = ArtifactsDeleted::default();
    let mut after = 0i64;
    loop {
        let txn = switchyard_runtime::db::write_txn(&engine.db).await?;
        if !switchyard_runtime::db::try_job_lock(&txn, "scheduler.artifact_retention").await? {
            txn.rollback().await?;
            return Ok(None);
        }
        let due = artifacts::due(&txn, cutoff, after, CHUNK).await?;
        let Some(last) = due.last() else {
            txn.rollback().await?;
            break;
        };
        after = last.id;
        // Owned items: a stream of borrowing closures is not `Send` enough for the spawned job.
        let items: Vec<(i64, String)> = due.iter().map(|r| (r.id, r.location.clone())).collect();
        let outcomes: Vec<_> = futures::stream::iter(items)
            .map(|(id, location)| async move {
                let outcome = stores.delete(&location).await;
                (id, location, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut gone = Vec::with_capacity(outcomes.len());
        for (id, location, outcome) in outcomes {
            match outcome {
                Ok(()) => gone.push(id),
                Err(error) => {
                    total.failed += 1;
                    if total.failed <= LOGGED_FAILURES {
                        tracing::warn!(%error, %location, artifact_id = id, "artifact delete failed");
                    }
                }
            }
        }
        total.deleted += artifacts::mark_deleted(&txn, &gone, Utc::now()).await?;
        txn.commit().await?;
        if (due.len() as u64) < CHUNK {
            break;
        }
    }
    if total.failed > 0 {
        tracing::warn!(
            deleted = total.deleted,
            failed = total.failed,
            "artifacts past retention: some objects not deleted; retried next round"
        );
    } else if total.deleted > 0 {
        tracing::info!(
            deleted = total.deleted,
            retention_s = retention.as_secs(),
            "artifacts past retention deleted"
        );
    } else {
        tracing::debug!("artifact retention: nothing to delete");
    }
    Ok(Some(total))
}
