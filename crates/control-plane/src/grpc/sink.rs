//! What the control plane consumes: run status reports from the scheduler. A batch is applied
//! in one transaction, each event once (the inbox remembers its id); each applied change is
//! audited in that transaction, as the scheduler's doing. Once the batch commits, the changed
//! runs' ids go to [`crate::run_changes`] for the `WatchRun` streams.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use switchyard_proto::common::v1::{Actor, ActorType};
use switchyard_proto::controlplane::v1::{CreateRunRequest, Principal};
use switchyard_proto::events::v1::event_sink_server::EventSink;
use switchyard_proto::events::v1::{
    AuditRecord, DeliverRequest, DeliverResponse, Outcome, RunStatusChanged, ScheduleFired,
    event::Payload,
};
use switchyard_runtime::auth::CallContext;
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
        let mut fired_later = Vec::new();
        let mut changed = Vec::new();
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
                    if apply(&txn, change, &event.source).await? {
                        changed.push(change.run_id.as_str());
                    }
                }
                Some(Payload::ScheduleFired(fired)) => fired_later.push(fired.clone()),
                _ => {
                    tracing::warn!(event_id = %event.id, source = %event.source, "event not for the control plane ignored");
                }
            }
        }
        txn.commit().await.map_err(Error::from)?;
        for run_id in changed {
            self.state.run_changes.publish(run_id);
        }
        // Each fired schedule becomes a run in its own transaction (the run's idempotency key
        // is the fire key, so a redelivered event finds the run it made).
        for fired in fired_later {
            self.run_for_schedule(&fired).await?;
        }
        Ok(Response::new(DeliverResponse {
            accepted,
            duplicates,
        }))
    }
}

/// Moves the run through the state machine. A report the machine refuses (a run already
/// cancelled here, a report that arrives after the end) is logged and skipped: refusing the
/// batch would block every report behind it. Answers whether the run's status changed.
async fn apply<C: sea_orm::ConnectionTrait>(
    conn: &C,
    change: &RunStatusChanged,
    source: &str,
) -> Result<bool, Error> {
    let Some(current) = store::runs::find(conn, &change.run_id).await? else {
        tracing::warn!(run_id = %change.run_id, "status report for an unknown run ignored");
        return Ok(false);
    };
    let (Some(from), Some(to)) = (
        RunStatus::parse(&current.status),
        RunStatus::parse(&change.status),
    ) else {
        tracing::warn!(run_id = %change.run_id, status = %change.status, "unknown run status ignored");
        return Ok(false);
    };
    if from == to {
        return Ok(false);
    }
    if let Err(illegal) = from.transition(to) {
        tracing::info!(run_id = %change.run_id, %illegal, "status report skipped");
        return Ok(false);
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
    Ok(true)
}

impl ControlPlaneApi {
    /// Creates the run a cron schedule asked for, as the schedule (a service actor). A run the
    /// control plane refuses (workflow deleted, project gone) is logged and audited as failed;
    /// it must not block the reports queued behind it.
    async fn run_for_schedule(&self, fired: &ScheduleFired) -> Result<(), Error> {
        let project = match store::tenancy::get_project(&self.state.db, &fired.project_id).await {
            Ok(project) => project,
            Err(Error::NotFound(_)) => {
                tracing::warn!(schedule_id = %fired.schedule_id, project_id = %fired.project_id, "schedule fired for a missing project");
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        let ctx = CallContext {
            principal: Some(Principal {
                actor: Some(Actor {
                    r#type: ActorType::Service as i32,
                    id: format!("schedule:{}", fired.schedule_id),
                    display_name: "switchyard-scheduler (cron)".into(),
                }),
                org_id: project.org_id.clone(),
                project_id: project.id.clone(),
                ..Principal::default()
            }),
            ..CallContext::default()
        };
        let request = CreateRunRequest {
            project_id: project.id.clone(),
            workflow: fired.workflow.clone(),
            params_json: fired.params_json.clone(),
            idempotency_key: fired.fire_key.clone(),
            ..CreateRunRequest::default()
        };
        match self.create_run_in(&ctx, &project, request).await {
            Ok(run) => {
                tracing::info!(schedule_id = %fired.schedule_id, run_id = %run.id, "scheduled run created");
                Ok(())
            }
            Err(Error::Database(e)) => Err(Error::Database(e)),
            Err(refused) => {
                tracing::warn!(schedule_id = %fired.schedule_id, error = %refused, "scheduled run refused");
                let fact = switchyard_runtime::outbox::AuditFact {
                    action: "run.create",
                    resource_type: "schedule",
                    resource_id: &fired.schedule_id,
                    org_id: &project.org_id,
                    project_id: &project.id,
                    outcome: Outcome::Failed,
                };
                let details =
                    serde_json::json!({ "workflow": fired.workflow, "error": refused.to_string() });
                self.state.audit_alone(&ctx, fact, &details).await;
                Ok(())
            }
        }
    }
}
