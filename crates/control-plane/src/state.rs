//! What every handler shares: the database, the cache, the token signer, the identity
//! settings, the hub of run status changes and the shutdown token; plus the authorization gate
//! and the audit helper, so both live in one place.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use switchyard_proto::events::v1::Outcome;
use switchyard_runtime::auth::{self, CallContext, Denial, Scope, Tenant};
use switchyard_runtime::cache::Cache;
use switchyard_runtime::outbox::{self, AuditFact};
use switchyard_runtime::shutdown::Shutdown;

use crate::SERVICE;
use crate::data_source::DataSources;
use crate::domain::access_token::Signer;
use crate::error::{Error, Result};
use crate::run_changes::RunChanges;
use crate::store::{self, entity::project};

pub struct State {
    pub db: DatabaseConnection,
    pub cache: Cache,
    pub signer: Signer,
    pub bootstrap_token: Option<String>,
    /// How long the gateway may cache an authentication answer.
    pub auth_cache_ttl: Duration,
    /// Where dataset versions are read from.
    pub data: DataSources,
    /// Ids of runs whose status this replica changed, for `WatchRun` streams.
    pub run_changes: RunChanges,
    /// Cancelled when the service stops: long-lived streams end on it.
    pub shutdown: Shutdown,
}

/// What a caller tried to do, for the audit record of a refusal.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
}

impl<'a> Attempt<'a> {
    pub fn new(action: &'a str, resource_type: &'a str, resource_id: &'a str) -> Attempt<'a> {
        Attempt {
            action,
            resource_type,
            resource_id,
        }
    }
}

/// Cache key of an authentication answer: derived from the token hash, so control-plane can
/// drop it on revocation without ever knowing the token again.
pub fn auth_cache_key(token_hash: &str) -> String {
    format!("auth:v1:{token_hash}")
}

impl State {
    /// The one authorization gate: passes, or records the refusal in the audit trail and
    /// answers 401/403.
    /// `scope` `None` asks for membership only (reading a project's own record).
    pub async fn require(
        &self,
        ctx: &CallContext,
        scope: impl Into<Option<Scope>>,
        tenant: Tenant<'_>,
        attempt: Attempt<'_>,
    ) -> Result<()> {
        let principal = ctx.principal.as_ref();
        let decision = match scope.into() {
            Some(scope) => auth::authorize(principal, scope, tenant),
            None => auth::authorize_member(principal, tenant).map(|_| ()),
        };
        match decision {
            Ok(()) => Ok(()),
            Err(denial) => Err(self.deny(ctx, tenant, attempt, denial).await),
        }
    }

    pub async fn require_platform_admin(
        &self,
        ctx: &CallContext,
        attempt: Attempt<'_>,
    ) -> Result<()> {
        match auth::authorize_platform_admin(ctx.principal.as_ref()) {
            Ok(()) => Ok(()),
            Err(denial) => {
                let tenant = Tenant {
                    org_id: "",
                    project_id: None,
                };
                Err(self.deny(ctx, tenant, attempt, denial).await)
            }
        }
    }

    /// Loads a project and authorizes `scope` on it. A missing project is 404 (nothing to
    /// deny); a foreign one is 403 and audited.
    pub async fn project(
        &self,
        ctx: &CallContext,
        project_id: &str,
        scope: impl Into<Option<Scope>>,
        attempt: Attempt<'_>,
    ) -> Result<project::Model> {
        check_id("project_id", project_id)?;
        let project = store::tenancy::get_project(&self.db, project_id).await?;
        self.require(
            ctx,
            scope,
            Tenant {
                org_id: &project.org_id,
                project_id: Some(&project.id),
            },
            attempt,
        )
        .await?;
        Ok(project)
    }

    /// Audits a refusal in its own transaction (the refused change never happens) and returns
    /// the error to answer with.
    pub async fn deny(
        &self,
        ctx: &CallContext,
        tenant: Tenant<'_>,
        attempt: Attempt<'_>,
        denial: Denial,
    ) -> Error {
        let details = serde_json::json!({ "reason": denial.reason() });
        let fact = AuditFact {
            action: attempt.action,
            resource_type: attempt.resource_type,
            resource_id: attempt.resource_id,
            org_id: tenant.org_id,
            project_id: tenant.project_id.unwrap_or_default(),
            outcome: Outcome::Denied,
        };
        self.audit_alone(ctx, fact, &details).await;
        Error::Denied(denial)
    }

    /// Records a refused call (nothing else changes, so the record is its own transaction).
    /// A failure to record is logged: the caller still gets the refusal.
    pub async fn audit_alone(
        &self,
        ctx: &CallContext,
        fact: AuditFact<'_>,
        details: &serde_json::Value,
    ) {
        let action = fact.action;
        let recorded = async {
            let txn = switchyard_runtime::db::write_txn(&self.db).await?;
            audit(&txn, ctx, fact, details).await?;
            txn.commit().await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(error) = recorded {
            tracing::error!(%error, action, "could not audit a refused call");
        }
    }
}

/// The audit fact of a successful change.
pub fn success<'a>(
    action: &'a str,
    resource_type: &'a str,
    resource_id: &'a str,
    org_id: &'a str,
    project_id: &'a str,
) -> AuditFact<'a> {
    AuditFact {
        action,
        resource_type,
        resource_id,
        org_id,
        project_id,
        outcome: Outcome::Success,
    }
}

/// Writes the audit record of a change, inside the caller's transaction.
pub async fn audit<C: ConnectionTrait>(
    conn: &C,
    ctx: &CallContext,
    fact: AuditFact<'_>,
    details: &serde_json::Value,
) -> Result<()> {
    outbox::enqueue_audit(conn, SERVICE, outbox::request_record(ctx, fact, details)).await?;
    Ok(())
}

/// Ids are UUIDs; anything else is a malformed request, answered before any lookup.
pub fn check_id(field: &str, id: &str) -> Result<()> {
    if uuid::Uuid::parse_str(id).is_ok() {
        Ok(())
    } else if id.is_empty() {
        Err(Error::invalid(
            field,
            "required",
            format!("{field} is required"),
        ))
    } else {
        Err(Error::invalid(
            field,
            "invalid_id",
            format!("{field} `{id}` is not an id"),
        ))
    }
}
