//! TenancyService: organizations, projects, environments.

use std::collections::BTreeMap;

use switchyard_proto::controlplane::v1::tenancy_service_server::TenancyService;
use switchyard_proto::controlplane::v1::*;
use switchyard_runtime::auth::{Denial, Scope, Tenant};
use tonic::{Request, Response, Status};

use super::{ControlPlaneApi, context};
use crate::domain::names;
use crate::error::Error;
use crate::state::{Attempt, audit, check_id, success};
use crate::store::{self, page::Page};

#[tonic::async_trait]
impl TenancyService for ControlPlaneApi {
    async fn create_organization(
        &self,
        request: Request<CreateOrganizationRequest>,
    ) -> Result<Response<CreateOrganizationResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        state
            .require_platform_admin(
                &ctx,
                Attempt::new("organization.create", "organization", ""),
            )
            .await?;
        names::check("organization name", &req.name)
            .map_err(|m| Error::invalid("name", "invalid_name", m))?;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let org = store::tenancy::create_org(&txn, &req.name).await?;
        let fact = success("organization.created", "organization", &org.id, &org.id, "");
        audit(&txn, &ctx, fact, &serde_json::json!({ "name": org.name })).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(CreateOrganizationResponse {
            organization: Some(super::convert::organization(&org)),
        }))
    }

    async fn get_organization(
        &self,
        request: Request<GetOrganizationRequest>,
    ) -> Result<Response<GetOrganizationResponse>, Status> {
        let (ctx, req) = context(request)?;
        check_id("org_id", &req.org_id)?;
        let org = store::tenancy::get_org(&self.state.db, &req.org_id).await?;
        self.state
            .require(
                &ctx,
                None,
                org_tenant(&org.id),
                Attempt::new("organization.get", "organization", &org.id),
            )
            .await?;
        Ok(Response::new(GetOrganizationResponse {
            organization: Some(super::convert::organization(&org)),
        }))
    }

    async fn list_organizations(
        &self,
        request: Request<ListOrganizationsRequest>,
    ) -> Result<Response<ListOrganizationsResponse>, Status> {
        let (ctx, req) = context(request)?;
        let principal = ctx
            .principal
            .as_ref()
            .ok_or(Error::Denied(Denial::Unauthenticated))?;
        let page = Page::from_proto(req.page.as_ref())?;
        // Platform admins see every organization; everyone else sees their own.
        let only = (!principal.platform_admin).then_some(principal.org_id.as_str());
        let mut orgs = store::tenancy::list_orgs(&self.state.db, only, &page).await?;
        let page = page.finish(&mut orgs, |o| &o.id);
        Ok(Response::new(ListOrganizationsResponse {
            organizations: orgs.iter().map(super::convert::organization).collect(),
            page: Some(page),
        }))
    }

    async fn create_project(
        &self,
        request: Request<CreateProjectRequest>,
    ) -> Result<Response<CreateProjectResponse>, Status> {
        let (ctx, req) = context(request)?;
        check_id("org_id", &req.org_id)?;
        let state = &self.state;
        let org = store::tenancy::get_org(&state.db, &req.org_id).await?;
        state
            .require(
                &ctx,
                Scope::Admin,
                org_tenant(&org.id),
                Attempt::new("project.create", "project", ""),
            )
            .await?;
        names::check("project name", &req.name)
            .map_err(|m| Error::invalid("name", "invalid_name", m))?;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let project = store::tenancy::create_project(&txn, &org.id, &req.name).await?;
        let fact = success(
            "project.created",
            "project",
            &project.id,
            &org.id,
            &project.id,
        );
        audit(
            &txn,
            &ctx,
            fact,
            &serde_json::json!({ "name": project.name }),
        )
        .await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(CreateProjectResponse {
            project: Some(super::convert::project(&project)),
        }))
    }

    async fn get_project(
        &self,
        request: Request<GetProjectRequest>,
    ) -> Result<Response<GetProjectResponse>, Status> {
        let (ctx, req) = context(request)?;
        // Any member who can reach the project may see it, whatever their scopes.
        let project = self
            .state
            .project(
                &ctx,
                &req.project_id,
                None,
                Attempt::new("project.get", "project", &req.project_id),
            )
            .await?;
        Ok(Response::new(GetProjectResponse {
            project: Some(super::convert::project(&project)),
        }))
    }

    async fn list_projects(
        &self,
        request: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        let (ctx, req) = context(request)?;
        check_id("org_id", &req.org_id)?;
        let org = store::tenancy::get_org(&self.state.db, &req.org_id).await?;
        let principal = ctx.principal.as_ref();
        let same_org = principal.is_some_and(|p| p.platform_admin || p.org_id == org.id);
        if !same_org {
            return Err(self
                .state
                .deny(
                    &ctx,
                    org_tenant(&org.id),
                    Attempt::new("project.list", "organization", &org.id),
                    match principal {
                        None => Denial::Unauthenticated,
                        Some(_) => Denial::OtherOrganization,
                    },
                )
                .await
                .into());
        }
        // A project-scoped token sees only its project.
        let only = principal
            .filter(|p| !p.platform_admin && !p.project_id.is_empty())
            .map(|p| p.project_id.as_str());
        let page = Page::from_proto(req.page.as_ref())?;
        let mut projects =
            store::tenancy::list_projects(&self.state.db, &org.id, only, &page).await?;
        let page = page.finish(&mut projects, |p| &p.id);
        Ok(Response::new(ListProjectsResponse {
            projects: projects.iter().map(super::convert::project).collect(),
            page: Some(page),
        }))
    }

    async fn put_environment(
        &self,
        request: Request<PutEnvironmentRequest>,
    ) -> Result<Response<PutEnvironmentResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let project = state
            .project(
                &ctx,
                &req.project_id,
                Scope::WorkflowsWrite,
                Attempt::new("environment.put", "environment", &req.name),
            )
            .await?;
        names::check("environment name", &req.name)
            .map_err(|m| Error::invalid("name", "invalid_name", m))?;
        if !req.dataset_version_id.is_empty() {
            check_id("dataset_version_id", &req.dataset_version_id)?;
            // A version of another project's dataset is as unknown as a missing one.
            store::datasets::find_version_in_project(
                &state.db,
                &project.id,
                &req.dataset_version_id,
            )
            .await?
            .ok_or_else(|| Error::not_found("dataset version", &req.dataset_version_id))?;
        }
        let variables: BTreeMap<_, _> = req.variables.into_iter().collect();
        let variables_json =
            serde_json::to_string(&variables).map_err(|e| Error::Internal(e.to_string()))?;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let (environment, created) = store::tenancy::put_environment(
            &txn,
            &project.id,
            &req.name,
            variables_json,
            &req.dataset_version_id,
        )
        .await?;
        let fact = success(
            if created {
                "environment.created"
            } else {
                "environment.updated"
            },
            "environment",
            &environment.id,
            &project.org_id,
            &project.id,
        );
        // Variable names only: values may be secrets.
        let details = serde_json::json!({ "name": environment.name, "variables": variables.keys().collect::<Vec<_>>() });
        audit(&txn, &ctx, fact, &details).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(PutEnvironmentResponse {
            environment: Some(super::convert::environment(&environment)),
            created,
        }))
    }

    async fn list_environments(
        &self,
        request: Request<ListEnvironmentsRequest>,
    ) -> Result<Response<ListEnvironmentsResponse>, Status> {
        let (ctx, req) = context(request)?;
        let project = self
            .state
            .project(
                &ctx,
                &req.project_id,
                Scope::WorkflowsRead,
                Attempt::new("environment.list", "project", &req.project_id),
            )
            .await?;
        let environments = store::tenancy::list_environments(&self.state.db, &project.id).await?;
        Ok(Response::new(ListEnvironmentsResponse {
            environments: environments
                .iter()
                .map(super::convert::environment)
                .collect(),
        }))
    }
}

fn org_tenant(org_id: &str) -> Tenant<'_> {
    Tenant {
        org_id,
        project_id: None,
    }
}
