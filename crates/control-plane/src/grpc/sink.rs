//! What the control plane consumes: run status reports from the scheduler. A batch is applied
//! in one transaction, each event once (the inbox remembers its id); each applied change is
//! audited in that transaction, as the scheduler's doing.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use switchyard_proto::common::v1::{Actor, ActorType};
use switchyard_proto::events::v1::event_sink_server::EventSink;
use switchyard_proto::events::v1::{
    AuditRecord, DeliverRequest, DeliverResponse, Outcome, RunStatusChanged, event::Payload,
};
use switchyard_runtime::inbox;
use switchyard_runtime::outbox;
use tonic::{Request, Response, Status};

use super::ControlPlaneApi;
use crate::SERVICE;
use crate::domain::run_status::RunStatus;
use crate::error::Error;
use crate::store::{self, entity::run};

#[tonic::async_trait]
impl EventSink for ControlPlaneApi {
    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let events = request.into_inner().events;
        let txn = switchyard_runtime::db::write_txn(&self.state.db)
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
                Some(Payload::RunStatusChanged(change)) => {
                    apply(&txn, change, &event.source).await?;
                }
                _ => {
                    tracing::warn!(event_id = %event.id, source = %event.source, "event not for the control plane ignored");
                }
            }
        }
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(DeliverResponse {
            accepted,
            duplicates,
        }))
    }
}

/// Moves the run through the state machine. A report the machine refuses (a run already
/// cancelled here, a report that arrives after the end) is logged and skipped: refusing the
/// batch would block every report behind it.
async fn apply<C: sea_orm::ConnectionTrait>(
    conn: &C,
    change: &RunStatusChanged,
    source: &str,
) -> Result<(), Error> {
    let Some(current) = store::runs::find(conn, &change.run_id).await? else {
        tracing::warn!(run_id = %change.run_id, "status report for an unknown run ignored");
        return Ok(());
    };
    let (Some(from), Some(to)) = (
        RunStatus::parse(&current.status),
        RunStatus::parse(&change.status),
    ) else {
        tracing::warn!(run_id = %change.run_id, status = %change.status, "unknown run status ignored");
        return Ok(());
    };
    if from == to {
        return Ok(());
    }
    if let Err(illegal) = from.transition(to) {
        tracing::info!(run_id = %change.run_id, %illegal, "status report skipped");
        return Ok(());
    }
    let now = Utc::now();
    let mut active: run::ActiveModel = current.clone().into();
    active.status = Set(to.as_str().to_owned());
    active.updated_at = Set(now);
    if !change.current_state_json.is_empty() {
        active.current_state_json = Set(change.current_state_json.clone());
    }
    if to == RunStatus::Running && current.started_at.is_none() {
        active.started_at = Set(Some(now));
    }
    if !change.shards_json.is_empty() {
        active.shards_json = Set(change.shards_json.clone());
    }
    if !change.coverage_json.is_empty() {
        active.coverage_json = Set(change.coverage_json.clone());
    }
    if from.is_final() {
        // Resumed by a dead-letter replay: the run is open again.
        active.finished_at = Set(None);
        active.final_state_json = Set(String::new());
        active.reason = Set(String::new());
    }
    if to.is_final() {
        active.finished_at = Set(Some(now));
        active.final_state_json = Set(if change.final_state_json.is_empty() {
            current.current_state_json.clone()
        } else {
            change.final_state_json.clone()
        });
        if !change.reason.is_empty() {
            active.reason = Set(change.reason.clone());
        }
    }
    let run = store::runs::update(conn, active).await?;
    let record = AuditRecord {
        actor: Some(Actor {
            r#type: ActorType::Service as i32,
            id: source.to_owned(),
            display_name: format!("switchyard-{source}"),
        }),
        action: "run.status_changed".into(),
        resource_type: "run".into(),
        resource_id: run.id.clone(),
        org_id: run.org_id.clone(),
        project_id: run.project_id.clone(),
        outcome: Outcome::Success as i32,
        details_json: serde_json::json!({
            "from": from.as_str(),
            "to": to.as_str(),
            "reason": change.reason,
        })
        .to_string(),
        origin: None,
    };
    outbox::enqueue_audit(conn, SERVICE, record).await?;
    Ok(())
}
