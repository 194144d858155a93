//! What the scheduler consumes: runs to start and cancellations from the control plane. A
//! batch is applied in one transaction, each event once (the inbox remembers its id).

use switchyard_proto::events::v1::event_sink_server::EventSink;
use switchyard_proto::events::v1::{
    DeliverRequest, DeliverResponse, RunStatusChanged, event::Payload,
};
use switchyard_runtime::inbox;
use switchyard_runtime::outbox::{self, destination};
use tonic::{Request, Response, Status};

use super::SchedulerApi;
use crate::SERVICE;
use crate::engine::Engine;
use crate::error::Error;

#[tonic::async_trait]
impl EventSink for SchedulerApi {
    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let events = request.into_inner().events;
        let txn = switchyard_runtime::db::write_txn(&self.engine.db)
            .await
            .map_err(Error::from)?;
        let (mut accepted, mut duplicates) = (0, 0);
        for event in &events {
            if event.id.is_empty() {
                return Err(Status::invalid_argument("an event has no id"));
            }
            if !inbox::first_delivery(&txn, &event.id, &event.source)
                .await
                .map_err(Error::from)?
            {
                duplicates += 1;
                continue;
            }
            accepted += 1;
            match &event.payload {
                Some(Payload::RunRequested(run)) => match Engine::accept(&txn, run).await {
                    Ok(()) => {}
                    // A run the engine cannot read can never run: say so to the control
                    // plane rather than refuse the batch (which would block every run after
                    // it).
                    Err(Error::InvalidArgument(reason)) => {
                        tracing::error!(run_id = %run.run_id, %reason, "run refused");
                        let refusal = outbox::event(
                            SERVICE,
                            Payload::RunStatusChanged(RunStatusChanged {
                                run_id: run.run_id.clone(),
                                project_id: run.project_id.clone(),
                                status: "infra_failed".into(),
                                reason,
                                ..RunStatusChanged::default()
                            }),
                        );
                        outbox::enqueue(&txn, destination::CONTROL_PLANE, &[refusal])
                            .await
                            .map_err(Error::from)?;
                    }
                    Err(other) => return Err(other.into()),
                },
                Some(Payload::RunCancelRequested(cancel)) => {
                    Engine::cancel(&txn, &cancel.run_id, &cancel.reason).await?;
                }
                other => {
                    tracing::warn!(event_id = %event.id, source = %event.source, kind = ?other.as_ref().map(std::mem::discriminant), "event not for the scheduler ignored");
                }
            }
        }
        txn.commit().await.map_err(Error::from)?;
        if accepted > 0 {
            self.engine.wake.notify_waiters();
        }
        Ok(Response::new(DeliverResponse {
            accepted,
            duplicates,
        }))
    }
}
