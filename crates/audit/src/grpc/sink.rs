//! `EventSink`: audit records delivered by every service's outbox relay.

use chrono::Utc;
use switchyard_proto::events::v1::event_sink_server::EventSink;
use switchyard_proto::events::v1::{DeliverRequest, DeliverResponse};
use tonic::{Request, Response, Status};

use crate::domain::record;
use crate::error::AuditError;
use crate::store::AuditStore;

pub struct Sink {
    store: AuditStore,
}

impl Sink {
    pub fn new(store: AuditStore) -> Self {
        Sink { store }
    }
}

#[tonic::async_trait]
impl EventSink for Sink {
    /// All or nothing: one invalid event refuses the batch with every problem listed.
    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let events = request.into_inner().events;
        let now = Utc::now();
        let mut records = Vec::with_capacity(events.len());
        let mut problems = Vec::new();
        for (index, event) in events.iter().enumerate() {
            match record::from_event(index, event, now) {
                Ok(record) => records.push(record),
                Err(mut found) => problems.append(&mut found),
            }
        }
        if !problems.is_empty() {
            return Err(AuditError::Invalid(problems).into());
        }
        let outcome = self.store.append(records).await?;
        tracing::debug!(
            accepted = outcome.accepted,
            duplicates = outcome.duplicates,
            "audit events ingested"
        );
        Ok(Response::new(DeliverResponse {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
        }))
    }
}
