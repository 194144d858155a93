//! Which projects' executions a caller may read. [`access`] decides from the principal; the
//! control plane supplies what monitoring does not own — a named project's organization
//! (asked with the caller's own credentials, which also proves membership) and an
//! organization's projects. Refusals are audited as `denied`.

use switchyard_proto::common::v1::PageRequest;
use switchyard_proto::controlplane::v1::ListProjectsRequest;
use switchyard_proto::events::v1::Outcome;
use switchyard_runtime::auth::{self, CallContext, Tenant};
use switchyard_runtime::outbox::AuditFact;
use tonic::{Request, Status};

use super::MonitoringApi;
use crate::domain::visibility::{Access, READ, Visible, access};

/// An organization with more projects than this must name one: the project list becomes a
/// query parameter each, and both databases bound those.
const MAX_ORG_PROJECTS: usize = 5_000;

impl MonitoringApi {
    /// The projects whose executions `ctx` may read, for a listing naming `project_id`
    /// (empty: none).
    pub(super) async fn visible(
        &self,
        ctx: &CallContext,
        project_id: &str,
        action: &str,
    ) -> Result<Visible, Status> {
        match access(ctx.principal.as_ref(), project_id) {
            Ok(Access::Named(project)) => {
                self.authorize_project(ctx, &project, action).await?;
                Ok(Visible::Projects(vec![project]))
            }
            Ok(Access::All) => Ok(Visible::All),
            Ok(Access::OwnProject(project)) => Ok(Visible::Projects(vec![project])),
            Ok(Access::Organization(org)) => {
                Ok(Visible::Projects(self.org_projects(ctx, &org).await?))
            }
            Err(denial) => {
                let principal = ctx.principal.clone().unwrap_or_default();
                let (resource_type, resource_id) = if principal.project_id.is_empty() {
                    ("organization", principal.org_id.as_str())
                } else {
                    ("project", principal.project_id.as_str())
                };
                let fact = AuditFact {
                    action,
                    resource_type,
                    resource_id,
                    org_id: &principal.org_id,
                    project_id: &principal.project_id,
                    outcome: Outcome::Denied,
                };
                Err(self.deny(ctx, fact, denial).await)
            }
        }
    }

    /// Checks that `ctx` may read `project_id`'s executions (the control plane refuses, and
    /// audits, callers outside the project's organization or project).
    async fn authorize_project(
        &self,
        ctx: &CallContext,
        project_id: &str,
        action: &str,
    ) -> Result<(), Status> {
        let project = auth::project_as_caller(&self.tenancy, ctx, project_id).await?;
        let tenant = Tenant {
            org_id: &project.org_id,
            project_id: Some(&project.id),
        };
        if let Err(denial) = auth::authorize(ctx.principal.as_ref(), READ, tenant) {
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
        Ok(())
    }

    /// Every project id of an organization, as the caller may list them.
    async fn org_projects(&self, ctx: &CallContext, org_id: &str) -> Result<Vec<String>, Status> {
        let mut ids = Vec::new();
        let mut cursor = String::new();
        loop {
            let mut request = Request::new(ListProjectsRequest {
                org_id: org_id.to_owned(),
                page: Some(PageRequest { limit: 500, cursor }),
            });
            ctx.write_to(request.metadata_mut());
            let answer = self
                .tenancy
                .clone()
                .list_projects(request)
                .await?
                .into_inner();
            ids.extend(answer.projects.into_iter().map(|p| p.id));
            if ids.len() > MAX_ORG_PROJECTS {
                return Err(Status::invalid_argument(
                    "the organization has too many projects to list together: name a project_id",
                ));
            }
            match answer.page.map(|p| p.next_cursor).filter(|c| !c.is_empty()) {
                Some(next) => cursor = next,
                None => return Ok(ids),
            }
        }
    }
}
