//! What goes with every alert change, inside its transaction: the audit record (the service
//! itself for the evaluator's changes, the caller for manual ones) and, for firing and
//! resolution, one queued webhook notification per URL of the rule.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use switchyard_proto::common::v1::{Actor, ActorType};
use switchyard_proto::events::v1::{AuditRecord, Outcome};
use switchyard_runtime::auth::CallContext;
use switchyard_runtime::outbox::{self, AuditFact};

use crate::domain::alert::{Payload, rfc3339};
use crate::error::Result;
use crate::store::alert_entity::{alert, alert_rule};
use crate::store::alerts::{notifications, rules};

/// `resolved_by` of an alert the evaluator resolved.
pub const AUTO: &str = "auto";

/// Who changes an alert: the evaluator, or a caller.
#[derive(Clone, Copy)]
pub enum By<'a> {
    Evaluator,
    Caller(&'a CallContext),
}

impl By<'_> {
    /// The id `resolved_by` / `acknowledged_by` records.
    pub fn id(&self) -> String {
        match self {
            By::Evaluator => AUTO.to_owned(),
            By::Caller(ctx) => ctx.actor().id,
        }
    }
}

fn record(
    by: By<'_>,
    action: &str,
    row: &alert::Model,
    details: &serde_json::Value,
) -> AuditRecord {
    let fact = AuditFact {
        action,
        resource_type: "alert",
        resource_id: &row.id,
        org_id: &row.org_id,
        project_id: &row.project_id,
        outcome: Outcome::Success,
    };
    match by {
        By::Caller(ctx) => outbox::request_record(ctx, fact, details),
        By::Evaluator => AuditRecord {
            actor: Some(Actor {
                r#type: ActorType::Service as i32,
                id: crate::SERVICE.to_owned(),
                display_name: format!("switchyard-{}", crate::SERVICE),
            }),
            action: action.to_owned(),
            resource_type: "alert".to_owned(),
            resource_id: row.id.clone(),
            org_id: row.org_id.clone(),
            project_id: row.project_id.clone(),
            outcome: Outcome::Success as i32,
            details_json: details.to_string(),
            origin: None,
        },
    }
}

/// Audits an alert change (`alert.fired`, `alert.acknowledged`, `alert.resolved`).
pub async fn audit<C: ConnectionTrait>(
    conn: &C,
    by: By<'_>,
    action: &str,
    row: &alert::Model,
) -> Result<()> {
    let details = serde_json::json!({
        "rule_id": row.rule_id,
        "kind": row.kind,
        "dedupe_key": row.dedupe_key,
        "state": row.state,
        "message": row.message,
        "resolved_by": row.resolved_by,
    });
    outbox::enqueue_audit(conn, crate::SERVICE, record(by, action, row, &details)).await?;
    Ok(())
}

/// The JSON a webhook receives about `row`.
pub fn payload(event: &str, rule: &alert_rule::Model, row: &alert::Model) -> Payload {
    Payload {
        event: event.to_owned(),
        alert_id: row.id.clone(),
        rule_id: rule.id.clone(),
        rule_name: rule.name.clone(),
        project_id: row.project_id.clone(),
        kind: row.kind.clone(),
        state: row.state.clone(),
        message: row.message.clone(),
        fired_at: rfc3339(row.fired_at),
        resolved_at: row.resolved_at.map(rfc3339),
        resolved_by: (!row.resolved_by.is_empty()).then(|| row.resolved_by.clone()),
    }
}

/// Audits and queues the notifications of a firing or a resolution (`event`: `firing` or
/// `resolved`). `rule` is `None` when the rule is gone (nothing to notify).
pub async fn changed<C: ConnectionTrait>(
    conn: &C,
    by: By<'_>,
    event: &str,
    rule: Option<&alert_rule::Model>,
    row: &alert::Model,
    now: DateTime<Utc>,
) -> Result<()> {
    let action = if event == "firing" {
        "alert.fired"
    } else {
        "alert.resolved"
    };
    audit(conn, by, action, row).await?;
    if let Some(rule) = rule {
        let body = serde_json::to_string(&payload(event, rule, row)).unwrap_or_default();
        notifications::queue(conn, &row.id, event, &rules::webhooks(rule), &body, now).await?;
    }
    Ok(())
}
