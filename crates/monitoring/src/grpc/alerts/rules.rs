//! Alert rules over gRPC: validated at the boundary (`domain::alert::rule_spec`, webhook URLs
//! through the URL policy), authorized on the rule's project, saved with their audit record.
//! Disabling or deleting a rule resolves its open alerts (by the caller), since nothing would
//! evaluate them any more.

use chrono::Utc;
use sea_orm::ConnectionTrait;
use switchyard_proto::events::v1::Outcome;
use switchyard_proto::monitoring::v1::{AlertRule, PutAlertRuleRequest};
use switchyard_runtime::auth::CallContext;
use switchyard_runtime::outbox::{self, AuditFact};
use tonic::Status;

use super::convert::rule_message;
use crate::alerts::conditions;
use crate::alerts::notify::{self, By};
use crate::domain::alert::rule_spec;
use crate::domain::visibility::Visible;
use crate::error::Error;
use crate::grpc::MonitoringApi;
use crate::store::alert_entity::alert_rule;
use crate::store::alerts::{open, rules};
use crate::store::is_unique_violation;

fn db_status(error: sea_orm::DbErr) -> Status {
    Error::from(error).into()
}

/// The audit record of a rule change; webhook URLs are counted, not copied (they often carry
/// a secret).
async fn audit_rule<C: ConnectionTrait>(
    conn: &C,
    ctx: &CallContext,
    action: &str,
    row: &alert_rule::Model,
) -> Result<(), Status> {
    let fact = AuditFact {
        action,
        resource_type: "alert_rule",
        resource_id: &row.id,
        org_id: &row.org_id,
        project_id: &row.project_id,
        outcome: Outcome::Success,
    };
    let details = serde_json::json!({
        "name": row.name,
        "kind": row.kind,
        "threshold": row.threshold,
        "window_ms": row.window_ms,
        "webhooks": rules::webhooks(row).len(),
        "enabled": row.enabled,
    });
    outbox::enqueue_audit(
        conn,
        crate::SERVICE,
        outbox::request_record(ctx, fact, &details),
    )
    .await
    .map_err(db_status)?;
    Ok(())
}

/// Resolves a rule's open alerts on behalf of `ctx` (the rule is going away or quiet).
async fn resolve_open<C: ConnectionTrait>(
    conn: &C,
    ctx: &CallContext,
    rule: &alert_rule::Model,
) -> Result<(), Status> {
    let now = Utc::now();
    let by = By::Caller(ctx);
    for alert in open::open_for_rule(conn, &rule.id).await? {
        if let Some(row) = open::resolve(conn, &alert.id, &by.id(), now).await? {
            notify::changed(conn, by, "resolved", Some(rule), &row, now).await?;
        }
    }
    Ok(())
}

impl MonitoringApi {
    pub(super) async fn put_rule(
        &self,
        ctx: &CallContext,
        req: PutAlertRuleRequest,
    ) -> Result<AlertRule, Status> {
        let rule = req
            .rule
            .ok_or_else(|| Status::invalid_argument("rule is required"))?;
        let spec = rule_spec(&rule, &self.webhook_policy).map_err(Status::invalid_argument)?;
        if !conditions::supported(spec.kind) {
            return Err(Status::invalid_argument(format!(
                "rule.kind {} is not evaluated by this monitoring version yet",
                spec.kind.as_str()
            )));
        }
        let project = self
            .authorize_alerting(ctx, &spec.project_id, "alert_rule.put")
            .await?;
        let now = Utc::now();
        let txn = switchyard_runtime::db::write_txn(&self.db)
            .await
            .map_err(db_status)?;
        let saved = match &spec.id {
            None => rules::insert(&txn, &spec, &project.org_id, now).await,
            Some(id) => match rules::get(&txn, id).await? {
                Some(row) if row.project_id == spec.project_id => {
                    rules::update(&txn, row, &spec, now).await
                }
                _ => return Err(Status::not_found("alert rule not found in this project")),
            },
        };
        let saved = match saved {
            Ok(saved) => saved,
            Err(Error::Database(error)) if is_unique_violation(&error) => {
                return Err(Status::already_exists(format!(
                    "an alert rule named {:?} exists in this project",
                    spec.name
                )));
            }
            Err(error) => return Err(error.into()),
        };
        if !saved.enabled {
            resolve_open(&txn, ctx, &saved).await?;
        }
        let action = if spec.id.is_some() {
            "alert_rule.updated"
        } else {
            "alert_rule.created"
        };
        audit_rule(&txn, ctx, action, &saved).await?;
        txn.commit().await.map_err(db_status)?;
        Ok(rule_message(&saved))
    }

    pub(super) async fn list_rules(
        &self,
        ctx: &CallContext,
        project_id: &str,
    ) -> Result<Vec<AlertRule>, Status> {
        if project_id.is_empty() {
            return Err(Status::invalid_argument("project_id is required"));
        }
        match self.visible(ctx, project_id, "alert_rule.list").await? {
            Visible::Projects(ids) if ids.iter().any(|p| p == project_id) => {}
            Visible::All => {}
            Visible::Projects(_) => return Ok(Vec::new()),
        }
        Ok(rules::list(&self.db, project_id)
            .await?
            .iter()
            .map(rule_message)
            .collect())
    }

    /// Deletes a rule; `project_id` (when not empty) must be the rule's.
    pub(super) async fn delete_rule(
        &self,
        ctx: &CallContext,
        rule_id: &str,
        project_id: &str,
    ) -> Result<(), Status> {
        let rule = rules::get(&self.db, rule_id)
            .await?
            .filter(|r| project_id.is_empty() || r.project_id == project_id)
            .ok_or_else(|| Status::not_found("alert rule not found"))?;
        self.authorize_alerting(ctx, &rule.project_id, "alert_rule.delete")
            .await?;
        let txn = switchyard_runtime::db::write_txn(&self.db)
            .await
            .map_err(db_status)?;
        resolve_open(&txn, ctx, &rule).await?;
        if rules::delete(&txn, &rule.id).await? == 0 {
            return Err(Status::not_found("alert rule not found"));
        }
        audit_rule(&txn, ctx, "alert_rule.deleted", &rule).await?;
        txn.commit().await.map_err(db_status)?;
        Ok(())
    }
}
