//! AlertService: rules (put, list, delete) in `rules`, alerts (list, acknowledge, resolve) in
//! `lifecycle`. Reads are authorized like the other monitoring listings (`access`); changes
//! need `runs:write` on the alert's or rule's project — what operating a project's runs takes
//! (maintainers and admins hold it, viewers do not) — and each change commits with its audit
//! record.

mod convert;
mod lifecycle;
mod rules;

use switchyard_proto::controlplane::v1::Project;
use switchyard_proto::events::v1::Outcome;
use switchyard_proto::monitoring::v1::alert_service_server::AlertService;
use switchyard_proto::monitoring::v1::*;
use switchyard_runtime::auth::{self, CallContext, Scope, Tenant};
use switchyard_runtime::outbox::AuditFact;
use tonic::{Request, Response, Status};

use super::MonitoringApi;

/// What changing alerts and rules takes.
const WRITE: Scope = Scope::RunsWrite;

fn context<T>(request: Request<T>) -> Result<(CallContext, T), Status> {
    let ctx = CallContext::from_metadata(request.metadata())?;
    Ok((ctx, request.into_inner()))
}

fn id_of(text: &str, field: &str) -> Result<String, Status> {
    uuid::Uuid::parse_str(text)
        .map(|_| text.to_owned())
        .map_err(|_| Status::invalid_argument(format!("{field} is not an id")))
}

impl MonitoringApi {
    /// The project, once `ctx` may change its alerting (refusals audited as `denied`).
    async fn authorize_alerting(
        &self,
        ctx: &CallContext,
        project_id: &str,
        action: &str,
    ) -> Result<Project, Status> {
        let project = auth::project_as_caller(&self.tenancy, ctx, project_id).await?;
        let tenant = Tenant {
            org_id: &project.org_id,
            project_id: Some(&project.id),
        };
        if let Err(denial) = auth::authorize(ctx.principal.as_ref(), WRITE, tenant) {
            let fact = AuditFact {
                action,
                resource_type: "project",
                resource_id: &project.id,
                org_id: &project.org_id,
                project_id: &project.id,
                outcome: Outcome::Denied,
            };
            return Err(self.deny(ctx, fact, denial).await);
        }
        Ok(project)
    }
}

#[tonic::async_trait]
impl AlertService for MonitoringApi {
    async fn put_alert_rule(
        &self,
        request: Request<PutAlertRuleRequest>,
    ) -> Result<Response<PutAlertRuleResponse>, Status> {
        let (ctx, req) = context(request)?;
        let rule = self.put_rule(&ctx, req).await?;
        Ok(Response::new(PutAlertRuleResponse { rule: Some(rule) }))
    }

    async fn list_alert_rules(
        &self,
        request: Request<ListAlertRulesRequest>,
    ) -> Result<Response<ListAlertRulesResponse>, Status> {
        let (ctx, req) = context(request)?;
        let rules = self.list_rules(&ctx, &req.project_id).await?;
        Ok(Response::new(ListAlertRulesResponse { rules }))
    }

    async fn delete_alert_rule(
        &self,
        request: Request<DeleteAlertRuleRequest>,
    ) -> Result<Response<DeleteAlertRuleResponse>, Status> {
        let (ctx, req) = context(request)?;
        self.delete_rule(&ctx, &id_of(&req.rule_id, "rule_id")?, &req.project_id)
            .await?;
        Ok(Response::new(DeleteAlertRuleResponse {}))
    }

    async fn list_alerts(
        &self,
        request: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        let (ctx, req) = context(request)?;
        Ok(Response::new(self.alerts_page(&ctx, req).await?))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<AcknowledgeAlertRequest>,
    ) -> Result<Response<AcknowledgeAlertResponse>, Status> {
        let (ctx, req) = context(request)?;
        let alert = self
            .acknowledge(&ctx, &id_of(&req.alert_id, "alert_id")?)
            .await?;
        Ok(Response::new(AcknowledgeAlertResponse {
            alert: Some(alert),
        }))
    }

    async fn resolve_alert(
        &self,
        request: Request<ResolveAlertRequest>,
    ) -> Result<Response<ResolveAlertResponse>, Status> {
        let (ctx, req) = context(request)?;
        let alert = self
            .resolve(&ctx, &id_of(&req.alert_id, "alert_id")?)
            .await?;
        Ok(Response::new(ResolveAlertResponse { alert: Some(alert) }))
    }
}
