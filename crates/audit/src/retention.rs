//! Retention: deleting old records while keeping the chain verifiable, on request and on a
//! schedule. Replicas may all run the schedule: the chain-head lock serialises them and the
//! later ones find nothing left to delete.

use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_proto::events::v1::event::Payload;
use switchyard_runtime::outbox;
use switchyard_runtime::shutdown::Shutdown;

use crate::SERVICE;
use crate::config::RetentionConfig;
use crate::domain::record::{self, Record};
use crate::error::Result;
use crate::store::{AuditStore, RetentionOutcome};

/// Applies retention and records it in the chain, in the same transaction.
pub async fn apply(
    store: &AuditStore,
    cutoff: DateTime<Utc>,
    trigger: &str,
) -> Result<RetentionOutcome> {
    let outcome = store
        .apply_retention(cutoff, |outcome| retention_record(cutoff, outcome, trigger))
        .await?;
    if outcome.deleted > 0 {
        tracing::info!(deleted = outcome.deleted, checkpoint_seq = outcome.checkpoint_seq, %cutoff, trigger, "audit retention applied");
    }
    Ok(outcome)
}

fn retention_record(cutoff: DateTime<Utc>, outcome: RetentionOutcome, trigger: &str) -> Record {
    let details = serde_json::json!({
        "cutoff": cutoff.to_rfc3339(),
        "deleted": outcome.deleted,
        "checkpoint_seq": outcome.checkpoint_seq,
        "trigger": trigger,
    });
    let audit =
        outbox::service_record(SERVICE, "audit.retention_applied", "audit_events", &details);
    let event = outbox::event(SERVICE, Payload::Audit(audit));
    // Built from constants and valid JSON: validation cannot fail; fall back to a bare record
    // rather than lose the deletion's trace.
    record::from_event(0, &event, Utc::now()).unwrap_or_else(|_| Record {
        event_id: event.id.clone(),
        source: SERVICE.into(),
        actor_type: "service".into(),
        actor_id: SERVICE.into(),
        actor_display_name: String::new(),
        action: "audit.retention_applied".into(),
        resource_type: "audit_events".into(),
        resource_id: String::new(),
        org_id: String::new(),
        project_id: String::new(),
        outcome: "success".into(),
        details_json: "{}".into(),
        client_ip: String::new(),
        user_agent: String::new(),
        request_id: String::new(),
        trace_id: String::new(),
        occurred_at: Utc::now(),
        recorded_at: Utc::now(),
    })
}

/// Runs retention every `config.interval` until shutdown.
pub async fn run_periodically(store: AuditStore, config: RetentionConfig, shutdown: Shutdown) {
    let max_age = chrono::Duration::from_std(config.max_age).unwrap_or(chrono::Duration::days(400));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.interval.max(Duration::from_secs(1))) => {}
            _ = shutdown.cancelled() => return,
        }
        let cutoff = Utc::now() - max_age;
        match apply(&store, cutoff, "schedule").await {
            Ok(outcome) if outcome.deleted == 0 => {
                tracing::debug!("audit retention: nothing to delete")
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "audit retention failed, will retry next interval")
            }
        }
    }
}
