//! What monitoring consumes: the scheduler's task lifecycle events. A batch is applied in one
//! transaction: its event ids recorded in the inbox in one statement (duplicates, in the batch
//! or from earlier deliveries, are skipped), then its executions folded per attempt, the
//! ended ones written to the history in one statement (on PostgreSQL a `COPY`, see
//! `store::history_copy`), the running ones (and the endings) applied to the
//! active-task view in one round trip after the commit. An event that cannot be read is logged and skipped rather than
//! refusing the batch, which would block every event behind it. The gateway's API usage
//! reports arrive here too and are added to their minutes in the same transaction; the inbox
//! makes a retried report count once. A dead letter's replay (a `QUEUED` step) marks the
//! dead-lettered attempts it supersedes, after the batch's rows are written. Task metrics are
//! recorded once the batch committed.

use std::collections::HashSet;

use switchyard_proto::events::v1::event_sink_server::EventSink;
use switchyard_proto::events::v1::{
    DeliverRequest, DeliverResponse, Event, TaskLifecycle, TaskPhase, event::Payload,
};
use switchyard_runtime::db::driver_error;
use switchyard_runtime::inbox;
use tonic::{Request, Response, Status};

use super::MonitoringApi;
use crate::domain::execution;
use crate::error::Error;
use crate::events;
use crate::metrics::Observation;
use crate::store::{executions, replays, usage};

/// The inbox's event id column.
const MAX_EVENT_ID: usize = 36;

/// What a batch's fresh events hold, read once its first deliveries are known.
#[derive(Default)]
struct Fresh {
    /// Executions folded per attempt.
    rows: Vec<execution::Execution>,
    /// Replays' requeues, applied after the rows (a dead letter and its replay may share a
    /// batch).
    requeued: Vec<execution::Requeued>,
    observations: Vec<Observation>,
    usage_reports: Vec<usage::UsageDelta>,
}

impl Fresh {
    /// Reads the events the inbox recorded now (`fresh`), by value so the steps' texts move
    /// into the rows. `remove` takes each fresh event once, also when the batch repeats it.
    fn read(events: Vec<Event>, mut fresh: HashSet<String>) -> Fresh {
        let mut out = Fresh::default();
        let now = chrono::Utc::now();
        for event in events {
            if !fresh.remove(&event.id) {
                continue;
            }
            let steps: Vec<TaskLifecycle> = match event.payload {
                Some(Payload::TaskLifecycle(step)) => vec![step],
                Some(Payload::TaskLifecycles(batch)) => batch.steps,
                Some(Payload::ApiUsage(report)) => {
                    match events::usage(&report) {
                        Ok(delta) => out.usage_reports.push(delta),
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
                let phase = step.phase;
                if phase == TaskPhase::Queued as i32 {
                    match events::requeued(step, now) {
                        Ok(requeue) => out.requeued.push(requeue),
                        Err(reason) => {
                            tracing::warn!(event_id = %event.id, source = %event.source, %reason, "requeue step skipped");
                        }
                    }
                    continue;
                }
                match events::execution(step) {
                    Ok(Some(row)) => {
                        out.observations.push(Observation::of(&row));
                        out.rows.push(row);
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
        out.rows = execution::fold(std::mem::take(&mut out.rows));
        out.usage_reports = usage::fold(std::mem::take(&mut out.usage_reports));
        out
    }

    /// The attempts in key order: rows are written in that order, so concurrent batches that
    /// share attempts lock them in the same order and cannot deadlock. Running attempts are
    /// among them, and the store leaves them out: they live in the active view only, and an
    /// ended one is written to the history once, when it ends (see `crate::active`). Sorted
    /// as references: an execution is a few hundred bytes, and a sort moves what it sorts.
    fn in_key_order(&self) -> Vec<&execution::Execution> {
        let mut rows: Vec<&execution::Execution> = self.rows.iter().collect();
        rows.sort_unstable_by(|a, b| {
            (&a.run_id, &a.task_id, a.attempt).cmp(&(&b.run_id, &b.task_id, b.attempt))
        });
        rows
    }
}

impl MonitoringApi {
    /// Records the batch's event ids in the inbox and applies the fresh events, in one
    /// transaction. Returns what the fresh events held and how many there were.
    async fn apply(
        &self,
        events: Vec<Event>,
        ids: &[(&str, &str)],
    ) -> Result<(Fresh, usize), Error> {
        // On PostgreSQL the history is written with COPY, which sea-orm cannot issue, so the
        // transaction is held on the driver's connection. API usage reports (the gateway's
        // batches, which carry no task steps) and replays' requeues (rare) are applied through
        // sea-orm.
        let rare = events
            .iter()
            .any(|e| matches!(e.payload, Some(Payload::ApiUsage(_))))
            || events::has_requeue(&events);
        if switchyard_runtime::db::is_postgres(&self.db) && !rare {
            let mut txn = self
                .db
                .get_postgres_connection_pool()
                .begin()
                .await
                .map_err(driver_error)?;
            let fresh = inbox::first_deliveries_postgres(&mut txn, ids).await?;
            let accepted = fresh.len();
            let read = Fresh::read(events, fresh);
            executions::upsert_postgres(&mut txn, &read.in_key_order()).await?;
            txn.commit().await.map_err(driver_error)?;
            return Ok((read, accepted));
        }
        let txn = switchyard_runtime::db::write_txn(&self.db).await?;
        let fresh = inbox::first_deliveries(&txn, ids).await?;
        let accepted = fresh.len();
        let read = Fresh::read(events, fresh);
        executions::upsert(&txn, &read.in_key_order()).await?;
        replays::mark(&txn, &read.requeued).await?;
        usage::add(&txn, &read.usage_reports).await?;
        txn.commit().await?;
        Ok((read, accepted))
    }
}

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
        let received = events.len();
        // Event ids in key order, for the same reason as the rows (see `Fresh::in_key_order`).
        let ids: Vec<(String, String)> = {
            let mut seen = HashSet::with_capacity(events.len());
            let mut ids: Vec<(String, String)> = events
                .iter()
                .filter(|e| seen.insert(e.id.as_str()))
                .map(|e| (e.id.clone(), e.source.clone()))
                .collect();
            ids.sort_unstable();
            ids
        };
        let borrowed: Vec<(&str, &str)> = ids
            .iter()
            .map(|(id, source)| (id.as_str(), source.as_str()))
            .collect();
        let (fresh, accepted) = self.apply(events, &borrowed).await?;
        // After the commit: a batch that fails is delivered again and must not count twice.
        Observation::record_all(&fresh.observations);
        self.update_active_view(&crate::active::ingest::ops(&fresh.rows))
            .await;
        Ok(Response::new(DeliverResponse {
            accepted: u32::try_from(accepted).unwrap_or(u32::MAX),
            duplicates: u32::try_from(received - accepted).unwrap_or(u32::MAX),
        }))
    }
}
