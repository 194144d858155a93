//! ScheduleService: cron schedules per project. The scheduler does not own projects: it asks
//! the control plane for the project with the caller's own credentials (which also proves
//! membership), then applies the one authorization rule on that project's tenancy.

use chrono::Utc;
use sea_orm::Set;
use switchyard_proto::events::v1::Outcome;
use switchyard_proto::scheduler::v1::schedule_service_server::ScheduleService;
use switchyard_proto::scheduler::v1::*;
use switchyard_runtime::auth::{self, CallContext, Scope, Tenant};
use switchyard_runtime::outbox::{self, AuditFact};
use switchyard_runtime::time::to_proto;
use tonic::{Request, Response, Status};

use super::SchedulerApi;
use crate::SERVICE;
use crate::domain::cron;
use crate::error::Error;
use crate::store::entity::schedule;
use crate::store::{new_id, schedules};

const MAX_PARAMS_BYTES: usize = 64 * 1024;

fn message(s: &schedule::Model) -> Schedule {
    Schedule {
        id: s.id.clone(),
        project_id: s.project_id.clone(),
        workflow: s.workflow.clone(),
        cron: s.cron.clone(),
        params_json: s.params_json.clone(),
        paused: s.paused,
        next_fire_at: Some(to_proto(s.next_fire_at)),
        last_fired_at: s.last_fired_at.map(to_proto),
        created_at: Some(to_proto(s.created_at)),
    }
}

fn check_params(params: &str) -> Result<String, Status> {
    if params.trim().is_empty() {
        return Ok("{}".into());
    }
    if params.len() > MAX_PARAMS_BYTES {
        return Err(Status::invalid_argument("params are too large"));
    }
    match serde_json::from_str::<serde_json::Value>(params) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v.to_string()),
        _ => Err(Status::invalid_argument("params must be a JSON object")),
    }
}

impl SchedulerApi {
    /// The project's org, after the caller's `scope` on it is checked (refusals audited).
    pub(super) async fn authorize_project(
        &self,
        ctx: &CallContext,
        project_id: &str,
        scope: Scope,
        action: &str,
    ) -> Result<String, Status> {
        let project = auth::project_as_caller(&self.tenancy, ctx, project_id).await?;
        let tenant = Tenant {
            org_id: &project.org_id,
            project_id: Some(&project.id),
        };
        if let Err(denial) = auth::authorize(ctx.principal.as_ref(), scope, tenant) {
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
        Ok(project.org_id)
    }

    async fn audited(
        &self,
        ctx: &CallContext,
        row: schedule::Model,
        org_id: &str,
        action: &str,
        change: impl FnOnce(schedule::Model) -> Option<schedule::ActiveModel>,
    ) -> Result<schedule::Model, Status> {
        let txn = switchyard_runtime::db::write_txn(&self.engine.db)
            .await
            .map_err(Error::from)?;
        let saved = match change(row.clone()) {
            Some(active) => schedules::update(&txn, active).await?,
            None => {
                schedules::delete(&txn, &row.id).await?;
                row
            }
        };
        let fact = AuditFact {
            action,
            resource_type: "schedule",
            resource_id: &saved.id,
            org_id,
            project_id: &saved.project_id,
            outcome: Outcome::Success,
        };
        let details = serde_json::json!({
            "workflow": saved.workflow, "cron": saved.cron, "paused": saved.paused,
        });
        outbox::enqueue_audit(&txn, SERVICE, outbox::request_record(ctx, fact, &details))
            .await
            .map_err(Error::from)?;
        txn.commit().await.map_err(Error::from)?;
        Ok(saved)
    }
}

fn context<T>(request: Request<T>) -> Result<(CallContext, T), Status> {
    let ctx = CallContext::from_metadata(request.metadata())?;
    Ok((ctx, request.into_inner()))
}

#[tonic::async_trait]
impl ScheduleService for SchedulerApi {
    async fn create_schedule(
        &self,
        request: Request<CreateScheduleRequest>,
    ) -> Result<Response<CreateScheduleResponse>, Status> {
        let (ctx, req) = context(request)?;
        let org_id = self
            .authorize_project(&ctx, &req.project_id, Scope::RunsWrite, "schedule.create")
            .await?;
        if req.workflow.trim().is_empty() || req.workflow.len() > 100 {
            return Err(Status::invalid_argument("workflow must name a workflow"));
        }
        let cron = cron::parse(&req.cron).map_err(Status::invalid_argument)?;
        let now = Utc::now();
        let next = cron::next_after(&cron, now)
            .ok_or_else(|| Status::invalid_argument("the cron expression never fires"))?;
        let params = check_params(&req.params_json)?;
        let txn = switchyard_runtime::db::write_txn(&self.engine.db)
            .await
            .map_err(Error::from)?;
        let row = schedules::insert(
            &txn,
            schedule::ActiveModel {
                id: Set(new_id()),
                project_id: Set(req.project_id.clone()),
                workflow: Set(req.workflow.clone()),
                cron: Set(req.cron.trim().to_owned()),
                params_json: Set(params),
                paused: Set(req.paused),
                next_fire_at: Set(next),
                last_fired_at: Set(None),
                created_by: Set(ctx.actor().id),
                created_at: Set(now),
            },
        )
        .await?;
        let fact = AuditFact {
            action: "schedule.created",
            resource_type: "schedule",
            resource_id: &row.id,
            org_id: &org_id,
            project_id: &row.project_id,
            outcome: Outcome::Success,
        };
        let details = serde_json::json!({ "workflow": row.workflow, "cron": row.cron });
        outbox::enqueue_audit(&txn, SERVICE, outbox::request_record(&ctx, fact, &details))
            .await
            .map_err(Error::from)?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(CreateScheduleResponse {
            schedule: Some(message(&row)),
        }))
    }

    async fn list_schedules(
        &self,
        request: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        let (ctx, req) = context(request)?;
        self.authorize_project(&ctx, &req.project_id, Scope::RunsRead, "schedule.list")
            .await?;
        let (limit, cursor) = super::operator::page(req.page.as_ref());
        let mut rows = schedules::list(
            &self.engine.db,
            &req.project_id,
            cursor.as_deref(),
            limit + 1,
        )
        .await?;
        let next_cursor = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListSchedulesResponse {
            schedules: rows.iter().map(message).collect(),
            page: Some(switchyard_proto::common::v1::PageResponse { next_cursor }),
        }))
    }

    async fn update_schedule(
        &self,
        request: Request<UpdateScheduleRequest>,
    ) -> Result<Response<UpdateScheduleResponse>, Status> {
        let (ctx, req) = context(request)?;
        let row = schedules::get(&self.engine.db, &req.schedule_id).await?;
        let org_id = self
            .authorize_project(&ctx, &row.project_id, Scope::RunsWrite, "schedule.update")
            .await?;
        let next = match &req.cron {
            Some(expression) => {
                let cron = cron::parse(expression).map_err(Status::invalid_argument)?;
                Some((
                    expression.trim().to_owned(),
                    cron::next_after(&cron, Utc::now()).ok_or_else(|| {
                        Status::invalid_argument("the cron expression never fires")
                    })?,
                ))
            }
            None => None,
        };
        let params = match &req.params_json {
            Some(p) => Some(check_params(p)?),
            None => None,
        };
        let saved = self
            .audited(&ctx, row, &org_id, "schedule.updated", |row| {
                let mut active: schedule::ActiveModel = row.into();
                if let Some(paused) = req.paused {
                    active.paused = Set(paused);
                }
                if let Some((expression, next)) = next {
                    active.cron = Set(expression);
                    active.next_fire_at = Set(next);
                }
                if let Some(params) = params {
                    active.params_json = Set(params);
                }
                Some(active)
            })
            .await?;
        Ok(Response::new(UpdateScheduleResponse {
            schedule: Some(message(&saved)),
        }))
    }

    async fn delete_schedule(
        &self,
        request: Request<DeleteScheduleRequest>,
    ) -> Result<Response<DeleteScheduleResponse>, Status> {
        let (ctx, req) = context(request)?;
        let row = schedules::get(&self.engine.db, &req.schedule_id).await?;
        let org_id = self
            .authorize_project(&ctx, &row.project_id, Scope::RunsWrite, "schedule.delete")
            .await?;
        self.audited(&ctx, row, &org_id, "schedule.deleted", |_| None)
            .await?;
        Ok(Response::new(DeleteScheduleResponse {}))
    }
}
