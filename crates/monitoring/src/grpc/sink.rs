//! What monitoring consumes: the scheduler's task lifecycle events. A batch is applied in one
//! transaction: its event ids recorded in the inbox in one statement (duplicates, in the batch
//! or from earlier deliveries, are skipped), then its executions folded per attempt, the
//! ended ones upserted in one statement, the running ones (and the endings) applied to the
//! active-task view in one round trip after the commit. An event that cannot be read is logged and skipped rather than
//! refusing the batch, which would block every event behind it. The gateway's API usage
//! reports arrive here too and are added to their minutes in the same transaction; the inbox
//! makes a retried report count once. Task metrics are recorded once the batch committed.

use std::collections::HashSet;

use switchyard_proto::events::v1::TaskLifecycle;
use switchyard_proto::events::v1::event_sink_server::EventSink;
use switchyard_proto::events::v1::{DeliverRequest, DeliverResponse, event::Payload};
use switchyard_runtime::inbox;
use tonic::{Request, Response, Status};

use super::MonitoringApi;
use crate::domain::execution;
use crate::error::Error;
use crate::events;
use crate::metrics::Observation;
use crate::store::{executions, usage};

/// The inbox's event id column.
const MAX_EVENT_ID: usize = 36;

#[tonic::async_trait]
impl EventSink for MonitoringApi {
    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let events = request.into_inner().events;
        if events
            .iter()
            .any(|e| e.id.is_empty() || e.id.len() > MAX_EVENT_ID)
        {
            return Err(Status::invalid_argument(
                "every event needs an id of at most 36 characters",
            ));
        }
        let mut seen = HashSet::with_capacity(events.len());
        let unique: Vec<_> = events
            .iter()
            .filter(|e| seen.insert(e.id.as_str()))
            .collect();
        // Rows are written in key order, so concurrent batches that share events or attempts
        // lock them in the same order and cannot deadlock.
        let mut ids: Vec<(&str, &str)> = unique
            .iter()
            .map(|e| (e.id.as_str(), e.source.as_str()))
            .collect();
        ids.sort_unstable();
        let txn = switchyard_runtime::db::write_txn(&self.db)
            .await
            .map_err(Error::from)?;
        let mut fresh = inbox::first_deliveries(&txn, &ids)
            .await
            .map_err(Error::from)?;
        let (accepted, received) = (fresh.len(), events.len());
        let mut rows = Vec::new();
        let mut observations = Vec::new();
        let mut usage_reports = Vec::new();
        // By value, so the steps' texts move into the rows. `remove` takes each fresh event
        // once, also when the batch repeats it.
        for event in events {
            if !fresh.remove(&event.id) {
                continue;
            }
            let steps: Vec<TaskLifecycle> = match event.payload {
                Some(Payload::TaskLifecycle(step)) => vec![step],
                Some(Payload::TaskLifecycles(batch)) => batch.steps,
                Some(Payload::ApiUsage(report)) => {
                    match events::usage(&report) {
                        Ok(delta) => usage_reports.push(delta),
                        Err(reason) => {
                            tracing::warn!(event_id = %event.id, source = %event.source, %reason, "api usage report skipped");
                        }
                    }
                    continue;
                }
                _ => {
                    tracing::debug!(event_id = %event.id, source = %event.source, "event not for monitoring ignored");
                    continue;
                }
            };
            for step in steps {
                let (phase, leased_unsent) = (step.phase, step.leased_unsent);
                match events::execution(step) {
                    Ok(Some(row)) => {
                        observations.push(Observation::of(&row, leased_unsent));
                        rows.push(row);
                    }
                    Ok(None) => {
                        tracing::debug!(event_id = %event.id, phase, "task phase not recorded");
                    }
                    Err(reason) => {
                        tracing::warn!(event_id = %event.id, source = %event.source, %reason, "task lifecycle step skipped");
                    }
                }
            }
        }
        let rows = execution::fold(rows);
        // Running attempts live in the active view only; an ended one is written to the
        // history once, when it ends (see `crate::active`).
        let view_ops = crate::active::ingest::ops(&rows);
        // Sorted as references: an execution is a few hundred bytes, and a sort moves what
        // it sorts.
        let mut ended: Vec<&execution::Execution> = rows
            .iter()
            .filter(|e| e.status != execution::Status::Running)
            .collect();
        ended.sort_unstable_by(|a, b| {
            (&a.run_id, &a.task_id, a.attempt).cmp(&(&b.run_id, &b.task_id, b.attempt))
        });
        executions::upsert(&txn, &ended).await?;
        usage::add(&txn, &usage::fold(usage_reports)).await?;
        txn.commit().await.map_err(Error::from)?;
        // After the commit: a batch that fails is delivered again and must not count twice.
        Observation::record_all(&observations);
        self.update_active_view(&view_ops).await;
        Ok(Response::new(DeliverResponse {
            accepted: u32::try_from(accepted).unwrap_or(u32::MAX),
            duplicates: u32::try_from(received - accepted).unwrap_or(u32::MAX),
        }))
    }
}
