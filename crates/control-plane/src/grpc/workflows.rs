//! WorkflowService: versioned definitions, validated with every problem listed.

use switchyard_proto::controlplane::v1::workflow_service_server::WorkflowService;
use switchyard_proto::controlplane::v1::*;
use switchyard_runtime::auth::Scope;
use switchyard_runtime::error::violation;
use switchyard_workflow::{Format, ParseError};
use tonic::{Request, Response, Status};

use super::{ControlPlaneApi, context};
use crate::domain::names;
use crate::error::Error;
use crate::state::{Attempt, audit, success};
use crate::store::{self, page::Page};

/// Largest definition accepted, in bytes.
const MAX_DEFINITION_BYTES: usize = 1024 * 1024;

#[tonic::async_trait]
impl WorkflowService for ControlPlaneApi {
    async fn put_workflow(
        &self,
        request: Request<PutWorkflowRequest>,
    ) -> Result<Response<PutWorkflowResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let project = state
            .project(
                &ctx,
                &req.project_id,
                Scope::WorkflowsWrite,
                Attempt::new("workflow.put", "workflow", &req.name),
            )
            .await?;
        names::check("workflow name", &req.name)
            .map_err(|m| Error::invalid("name", "invalid_name", m))?;
        let parsed = parse_definition(&req)?;
        let digest = parsed.definition.digest();
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let (versioned, created) = store::workflows::put(
            &txn,
            &project.id,
            &req.name,
            &parsed.canonical_json,
            &digest,
        )
        .await?;
        if created {
            let fact = success(
                "workflow.version_created",
                "workflow",
                &versioned.workflow.id,
                &project.org_id,
                &project.id,
            );
            let details = serde_json::json!({
                "name": req.name,
                "version": versioned.version.version,
                "digest": digest,
            });
            audit(&txn, &ctx, fact, &details).await?;
        }
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(PutWorkflowResponse {
            workflow: Some(super::convert::workflow(&versioned)),
            created,
        }))
    }

    async fn get_workflow(
        &self,
        request: Request<GetWorkflowRequest>,
    ) -> Result<Response<GetWorkflowResponse>, Status> {
        let (ctx, req) = context(request)?;
        let project = self
            .state
            .project(
                &ctx,
                &req.project_id,
                Scope::WorkflowsRead,
                Attempt::new("workflow.get", "workflow", &req.name),
            )
            .await?;
        let version = match req.version {
            0 => None,
            v => Some(i32::try_from(v).map_err(|_| {
                Error::invalid("version", "invalid_version", "version is out of range")
            })?),
        };
        let versioned =
            store::workflows::get(&self.state.db, &project.id, &req.name, version).await?;
        Ok(Response::new(GetWorkflowResponse {
            workflow: Some(super::convert::workflow(&versioned)),
        }))
    }

    async fn list_workflows(
        &self,
        request: Request<ListWorkflowsRequest>,
    ) -> Result<Response<ListWorkflowsResponse>, Status> {
        let (ctx, req) = context(request)?;
        let project = self
            .state
            .project(
                &ctx,
                &req.project_id,
                Scope::WorkflowsRead,
                Attempt::new("workflow.list", "project", &req.project_id),
            )
            .await?;
        let page = Page::from_proto(req.page.as_ref())?;
        let mut workflows = store::workflows::list(&self.state.db, &project.id, &page).await?;
        let page = page.finish(&mut workflows, |w| &w.workflow.id);
        Ok(Response::new(ListWorkflowsResponse {
            workflows: workflows.iter().map(super::convert::workflow).collect(),
            page: Some(page),
        }))
    }

    async fn delete_workflow(
        &self,
        request: Request<DeleteWorkflowRequest>,
    ) -> Result<Response<DeleteWorkflowResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let project = state
            .project(
                &ctx,
                &req.project_id,
                Scope::WorkflowsWrite,
                Attempt::new("workflow.delete", "workflow", &req.name),
            )
            .await?;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let workflow = store::workflows::delete(&txn, &project.id, &req.name).await?;
        let fact = success(
            "workflow.deleted",
            "workflow",
            &workflow.id,
            &project.org_id,
            &project.id,
        );
        audit(&txn, &ctx, fact, &serde_json::json!({ "name": req.name })).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(DeleteWorkflowResponse {}))
    }
}

/// Parses and validates; every problem becomes one violation of a 422.
fn parse_definition(req: &PutWorkflowRequest) -> Result<switchyard_workflow::Parsed, Error> {
    if req.definition.len() > MAX_DEFINITION_BYTES {
        return Err(Error::invalid(
            "definition",
            "too_large",
            format!("a definition may be at most {MAX_DEFINITION_BYTES} bytes"),
        ));
    }
    let format = match DefinitionFormat::try_from(req.format).unwrap_or_default() {
        DefinitionFormat::Yaml => Format::Yaml,
        DefinitionFormat::Json | DefinitionFormat::Unspecified => Format::Json,
    };
    let parsed = switchyard_workflow::parse(&req.definition, format).map_err(|error| {
        let (field, reason) = match &error {
            ParseError::Syntax { .. } => ("definition".to_owned(), "syntax"),
            ParseError::Shape { path, .. } => (path.clone(), "invalid_shape"),
        };
        Error::Unprocessable {
            message: format!("the workflow definition is invalid: {error}"),
            violations: vec![violation(&field, reason, error.to_string())],
        }
    })?;
    let problems = switchyard_workflow::validate(&parsed.definition);
    if problems.is_empty() {
        return Ok(parsed);
    }
    Err(Error::Unprocessable {
        message: format!(
            "the workflow definition has {} problem{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        ),
        violations: problems
            .into_iter()
            .map(|p| violation(&p.field, p.reason, p.message))
            .collect(),
    })
}
