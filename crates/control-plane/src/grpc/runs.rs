//! RunService: creating runs (stored `queued`, handed to the scheduler through the outbox),
//! reading, listing, cancelling and watching them (the stream itself is `watch`).

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use switchyard_proto::controlplane::v1::run_service_server::RunService;
use switchyard_proto::controlplane::v1::*;
use switchyard_proto::events::v1::{RunCancelRequested, RunRequested, event::Payload};
use switchyard_runtime::auth::{CallContext, Scope, Tenant};
use switchyard_runtime::outbox::{self, destination};
use tonic::{Request, Response, Status};

use super::{ControlPlaneApi, context};
use crate::SERVICE;
use crate::domain::{names, run_status::RunStatus};
use crate::error::Error;
use crate::state::{Attempt, audit, check_id, success};
use crate::store::{self, entity::run, page::Page};

const MAX_PARAMS_BYTES: usize = 256 * 1024;
const MAX_IDEMPOTENCY_KEY: usize = 200;
/// Run priorities span this either side of 0, so node priorities still order within a run.
const MAX_PRIORITY: i32 = 1000;

#[tonic::async_trait]
impl RunService for ControlPlaneApi {
    async fn create_run(
        &self,
        request: Request<CreateRunRequest>,
    ) -> Result<Response<CreateRunResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let project = state
            .project(
                &ctx,
                &req.project_id,
                Scope::RunsWrite,
                Attempt::new("run.create", "run", ""),
            )
            .await?;
        let run = self.create_run_in(&ctx, &project, req).await?;
        Ok(Response::new(CreateRunResponse {
            run: Some(super::convert::run(&run)),
        }))
    }

    async fn get_run(
        &self,
        request: Request<GetRunRequest>,
    ) -> Result<Response<GetRunResponse>, Status> {
        let (ctx, req) = context(request)?;
        let run = self
            .authorized_run(&ctx, &req.run_id, Scope::RunsRead, "run.get")
            .await?;
        Ok(Response::new(GetRunResponse {
            run: Some(super::convert::run(&run)),
        }))
    }

    async fn list_runs(
        &self,
        request: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        let (ctx, req) = context(request)?;
        let project = self
            .state
            .project(
                &ctx,
                &req.project_id,
                Scope::RunsRead,
                Attempt::new("run.list", "project", &req.project_id),
            )
            .await?;
        let status = match RunStatus_::try_from(req.status) {
            Ok(RunStatus_::Unspecified) => None,
            Ok(s) => RunStatus::from_proto(s),
            Err(_) => {
                return Err(
                    Error::invalid("status", "invalid_status", "unknown run status").into(),
                );
            }
        };
        let filter = store::runs::Filter {
            project_id: &project.id,
            status,
            workflow: (!req.workflow.is_empty()).then_some(req.workflow.as_str()),
        };
        let page = Page::from_proto(req.page.as_ref())?;
        let mut runs = store::runs::list(&self.state.db, &filter, &page).await?;
        let page = page.finish(&mut runs, |r| &r.id);
        Ok(Response::new(ListRunsResponse {
            runs: runs.iter().map(super::convert::run).collect(),
            page: Some(page),
        }))
    }

    async fn watch_run(
        &self,
        request: Request<WatchRunRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<WatchRunResponse>>, Status> {
        let (ctx, req) = context(request)?;
        // Subscribed before the first read, so a change landing in between is not missed.
        let changes = self.state.run_changes.subscribe();
        let run = self
            .authorized_run(&ctx, &req.run_id, Scope::RunsRead, "run.watch")
            .await?;
        Ok(Response::new(super::watch::stream(
            self.state.clone(),
            changes,
            run,
        )))
    }

    async fn cancel_run(
        &self,
        request: Request<CancelRunRequest>,
    ) -> Result<Response<CancelRunResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let current = self
            .authorized_run(&ctx, &req.run_id, Scope::RunsWrite, "run.cancel")
            .await?;
        let status = RunStatus::parse(&current.status)
            .ok_or_else(|| Error::Internal(format!("run has unknown status {}", current.status)))?;
        if status.is_final() {
            return Err(
                Error::FailedPrecondition(format!("run is already {}", status.as_str())).into(),
            );
        }
        let actor = ctx.actor();
        let reason = format!(
            "cancelled by {}",
            if actor.display_name.is_empty() {
                &actor.id
            } else {
                &actor.display_name
            }
        );
        let now = Utc::now();
        let mut active: run::ActiveModel = current.clone().into();
        active.cancel_requested_at = Set(Some(now));
        active.updated_at = Set(now);
        // The scheduler stops the tasks and reports `cancelled` through the state machine.
        // Even a run still `queued` here may already be running there (its reports travel
        // through the outbox), so the control plane never ends a run on its own.
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let run = store::runs::update(&txn, active).await?;
        let fact = success(
            "run.cancel_requested",
            "run",
            &run.id,
            &run.org_id,
            &run.project_id,
        );
        audit(
            &txn,
            &ctx,
            fact,
            &serde_json::json!({ "status_before": status.as_str() }),
        )
        .await?;
        let event = outbox::event(
            SERVICE,
            Payload::RunCancelRequested(RunCancelRequested {
                run_id: run.id.clone(),
                project_id: run.project_id.clone(),
                reason,
            }),
        );
        outbox::enqueue(&txn, destination::SCHEDULER, &[event])
            .await
            .map_err(Error::from)?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(CancelRunResponse {
            run: Some(super::convert::run(&run)),
        }))
    }
}

use switchyard_proto::controlplane::v1::RunStatus as RunStatus_;

impl ControlPlaneApi {
    /// Creates a run in `project` for an already authorized caller: validation, the dataset
    /// gate, the record `queued`, its audit event and the scheduler's RunRequested, in one
    /// transaction. A repeated idempotency key answers with the run it created.
    pub(crate) async fn create_run_in(
        &self,
        ctx: &CallContext,
        project: &crate::store::entity::project::Model,
        req: CreateRunRequest,
    ) -> Result<run::Model, Error> {
        let ctx = ctx.clone();
        let state = &self.state;
        names::check("workflow", &req.workflow)
            .map_err(|m| Error::invalid("workflow", "invalid_name", m))?;
        let params = parse_params(&req.params_json)?;
        if req.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(Error::invalid(
                "idempotency_key",
                "too_long",
                format!("idempotency_key may be at most {MAX_IDEMPOTENCY_KEY} bytes"),
            ));
        }
        if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&req.priority) {
            return Err(Error::invalid(
                "priority",
                "out_of_range",
                format!("priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"),
            ));
        }
        let key = (!req.idempotency_key.is_empty()).then_some(req.idempotency_key.as_str());
        if let Some(key) = key
            && let Some(existing) =
                store::runs::find_by_idempotency_key(&state.db, &project.id, key).await?
        {
            return Ok(existing);
        }
        let version = match req.version {
            0 => None,
            v => Some(i32::try_from(v).map_err(|_| {
                Error::invalid("version", "invalid_version", "version is out of range")
            })?),
        };
        let workflow =
            store::workflows::get(&state.db, &project.id, &req.workflow, version).await?;
        let environment = if req.environment.is_empty() {
            None
        } else {
            Some(
                store::tenancy::find_environment(&state.db, &project.id, &req.environment)
                    .await?
                    .ok_or_else(|| Error::not_found("environment", &req.environment))?,
            )
        };
        if !req.suite.is_empty() {
            let suite = store::suites::get_suite(&state.db, &project.id, &req.suite).await?;
            if suite.require_dataset_health {
                self.dataset_gate(&ctx, project, &suite, environment.as_ref())
                    .await?;
            }
        }
        let now = Utc::now();
        let params_json = params.to_string();
        let model = run::ActiveModel {
            id: Set(store::new_id()),
            org_id: Set(project.org_id.clone()),
            project_id: Set(project.id.clone()),
            workflow: Set(workflow.workflow.name.clone()),
            workflow_id: Set(workflow.workflow.id.clone()),
            version: Set(workflow.version.version),
            status: Set(RunStatus::Queued.as_str().to_owned()),
            environment: Set(req.environment.clone()),
            suite: Set(req.suite.clone()),
            params_json: Set(params_json.clone()),
            initial_state_json: Set(params_json.clone()),
            current_state_json: Set(params_json.clone()),
            final_state_json: Set(String::new()),
            shards_json: Set(String::new()),
            coverage_json: Set(String::new()),
            reason: Set(String::new()),
            idempotency_key: Set(key.map(str::to_owned)),
            created_by: Set(ctx.actor().id),
            created_at: Set(now),
            updated_at: Set(now),
            started_at: Set(None),
            finished_at: Set(None),
            cancel_requested_at: Set(None),
        };
        let variables: HashMap<String, String> = environment
            .as_ref()
            .and_then(|e| serde_json::from_str(&e.variables_json).ok())
            .unwrap_or_default();
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let run = match store::runs::insert(&txn, model).await {
            Ok(run) => run,
            Err(Error::Database(e))
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                // The same idempotency key won a race: answer with that run.
                drop(txn);
                let existing = store::runs::find_by_idempotency_key(
                    &state.db,
                    &project.id,
                    key.unwrap_or_default(),
                )
                .await?
                .ok_or_else(|| Error::Internal("idempotent run vanished".into()))?;
                return Ok(existing);
            }
            Err(other) => return Err(other),
        };
        let fact = success("run.created", "run", &run.id, &run.org_id, &run.project_id);
        let details = serde_json::json!({
            "workflow": run.workflow,
            "version": run.version,
            "environment": run.environment,
            "priority": req.priority,
        });
        audit(&txn, &ctx, fact, &details).await?;
        let requested = RunRequested {
            run_id: run.id.clone(),
            project_id: run.project_id.clone(),
            workflow: run.workflow.clone(),
            workflow_version: u32::try_from(run.version).unwrap_or_default(),
            definition_json: workflow.version.definition_json.clone(),
            params_json,
            environment: variables,
            priority: req.priority,
            deadline: None,
            org_id: run.org_id.clone(),
        };
        let event = outbox::event(SERVICE, Payload::RunRequested(requested));
        outbox::enqueue(&txn, destination::SCHEDULER, &[event])
            .await
            .map_err(Error::from)?;
        txn.commit().await.map_err(Error::from)?;
        Ok(run)
    }
    /// Loads a run and authorizes `scope` on its project (404 when missing, 403 audited when
    /// foreign).
    async fn authorized_run(
        &self,
        ctx: &CallContext,
        run_id: &str,
        scope: Scope,
        action: &str,
    ) -> Result<run::Model, Error> {
        check_id("run_id", run_id)?;
        let run = store::runs::get(&self.state.db, run_id).await?;
        let tenant = Tenant {
            org_id: &run.org_id,
            project_id: Some(&run.project_id),
        };
        self.state
            .require(ctx, scope, tenant, Attempt::new(action, "run", &run.id))
            .await?;
        Ok(run)
    }
}

/// Params are a JSON object (the run's initial state); empty means `{}`.
fn parse_params(text: &str) -> Result<serde_json::Value, Error> {
    if text.trim().is_empty() {
        return Ok(serde_json::json!({}));
    }
    if text.len() > MAX_PARAMS_BYTES {
        return Err(Error::invalid(
            "params",
            "too_large",
            format!("params may be at most {MAX_PARAMS_BYTES} bytes"),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(_) => Err(Error::invalid(
            "params",
            "not_an_object",
            "params must be a JSON object",
        )),
        Err(e) => Err(Error::invalid(
            "params",
            "invalid_json",
            format!("params is not JSON: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_must_be_an_object() {
        assert_eq!(parse_params("").ok(), Some(serde_json::json!({})));
        assert_eq!(
            parse_params(r#"{"a": 1}"#).ok(),
            Some(serde_json::json!({"a": 1}))
        );
        assert!(parse_params("[1]").is_err());
        assert!(parse_params("{").is_err());
    }
}
