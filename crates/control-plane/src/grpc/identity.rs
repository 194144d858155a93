//! IdentityService: users, password login, service tokens, and `Authenticate` for the gateway.

use std::collections::BTreeSet;

use chrono::Utc;
use switchyard_proto::common::v1::{Actor, ActorType};
use switchyard_proto::controlplane::v1::identity_service_server::IdentityService;
use switchyard_proto::controlplane::v1::*;
use switchyard_runtime::auth::{Denial, Scope, Tenant};
use switchyard_runtime::time;
use tonic::{Request, Response, Status};

use super::{ControlPlaneApi, context};
use crate::domain::{names, password, service_token};
use crate::error::Error;
use crate::state::{Attempt, audit, auth_cache_key, check_id, success};
use crate::store::{self, identity::NewToken, page::Page};

#[tonic::async_trait]
impl IdentityService for ControlPlaneApi {
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<CreateUserResponse>, Status> {
        let (ctx, req) = context(request)?;
        check_id("org_id", &req.org_id)?;
        let state = &self.state;
        let org = store::tenancy::get_org(&state.db, &req.org_id).await?;
        let tenant = Tenant {
            org_id: &org.id,
            project_id: None,
        };
        state
            .require(
                &ctx,
                Scope::Admin,
                tenant,
                Attempt::new("user.create", "user", ""),
            )
            .await?;
        names::check("username", &req.username)
            .map_err(|m| Error::invalid("username", "invalid_name", m))?;
        password::check_policy(&req.password)
            .map_err(|m| Error::invalid("password", "weak_password", m))?;
        let role = Role::try_from(req.role).unwrap_or(Role::Unspecified);
        if role == Role::Unspecified {
            return Err(Error::invalid(
                "role",
                "invalid_role",
                "role must be one of admin, maintainer, viewer",
            )
            .into());
        }
        let plain = req.password;
        let hash = tokio::task::spawn_blocking(move || password::hash(&plain))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(Error::Internal)?;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let user = store::identity::create_user(
            &txn,
            &org.id,
            &req.username,
            hash,
            super::convert::role_name(role),
        )
        .await?;
        let fact = success("user.created", "user", &user.id, &org.id, "");
        let details = serde_json::json!({ "username": user.username, "role": user.role });
        audit(&txn, &ctx, fact, &details).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(CreateUserResponse {
            user: Some(super::convert::user(&user)),
        }))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let user = store::identity::find_user_by_name(&state.db, &req.username).await?;
        let stored = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| password::decoy_hash().to_owned());
        let plain = req.password;
        // Always verify (against a decoy for unknown users): equal timing either way.
        let verified = tokio::task::spawn_blocking(move || password::verify(&plain, &stored))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let user = match user {
            Some(user) if verified => user,
            _ => {
                let attempt = Attempt::new("auth.login", "user", &req.username);
                let tenant = Tenant {
                    org_id: "",
                    project_id: None,
                };
                state
                    .deny(&ctx, tenant, attempt, Denial::Unauthenticated)
                    .await;
                return Err(Error::Unauthenticated("wrong username or password".into()).into());
            }
        };
        let (access_token, expires_at) = state
            .signer
            .issue(&user.id, &user.org_id)
            .map_err(Error::Internal)?;
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let fact = success("auth.login", "user", &user.id, &user.org_id, "");
        let mut as_user = ctx.clone();
        as_user.principal = Some(user_principal(&user, None));
        audit(&txn, &as_user, fact, &serde_json::json!({})).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(LoginResponse {
            access_token,
            expires_at: Some(time::to_proto(expires_at)),
        }))
    }

    async fn create_service_token(
        &self,
        request: Request<CreateServiceTokenRequest>,
    ) -> Result<Response<CreateServiceTokenResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let (org_id, project_id) = token_scope(state, &req).await?;
        let attempt = Attempt::new("token.create", "service_token", "");
        match org_id.as_deref() {
            Some(org) => {
                let tenant = Tenant {
                    org_id: org,
                    project_id: project_id.as_deref(),
                };
                state.require(&ctx, Scope::Admin, tenant, attempt).await?;
            }
            None => state.require_platform_admin(&ctx, attempt).await?,
        }
        names::check_label("name", &req.name)
            .map_err(|m| Error::invalid("name", "invalid_name", m))?;
        let scopes = parse_scopes(&req.scopes)?;
        let expires_at = match &req.expires_at {
            None => None,
            Some(ts) => {
                let at = time::from_proto(ts).ok_or_else(|| {
                    Error::invalid(
                        "expires_at",
                        "invalid_time",
                        "expires_at is not a valid time",
                    )
                })?;
                if at <= Utc::now() {
                    return Err(Error::invalid(
                        "expires_at",
                        "in_the_past",
                        "expires_at must be in the future",
                    )
                    .into());
                }
                Some(at)
            }
        };
        let issued = service_token::issue();
        let org = org_id.unwrap_or_default();
        let project = project_id.unwrap_or_default();
        let creator = ctx.actor();
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let token = store::identity::create_token(
            &txn,
            NewToken {
                name: &req.name,
                org_id: &org,
                project_id: &project,
                scopes: &scopes,
                token_hash: issued.hash,
                created_by: &format!("{}:{}", actor_kind(&creator), creator.id),
                expires_at,
            },
        )
        .await?;
        let fact = success("token.created", "service_token", &token.id, &org, &project);
        let details =
            serde_json::json!({ "name": token.name, "scopes": scopes, "expires_at": expires_at });
        audit(&txn, &ctx, fact, &details).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(CreateServiceTokenResponse {
            token: Some(super::convert::service_token(&token)),
            secret: issued.secret,
        }))
    }

    async fn list_service_tokens(
        &self,
        request: Request<ListServiceTokensRequest>,
    ) -> Result<Response<ListServiceTokensResponse>, Status> {
        let (ctx, req) = context(request)?;
        let state = &self.state;
        let principal = ctx
            .principal
            .as_ref()
            .ok_or(Error::Denied(Denial::Unauthenticated))?;
        let (org_filter, project_filter) = if principal.platform_admin {
            if req.org_id.is_empty() {
                (None, None)
            } else {
                check_id("org_id", &req.org_id)?;
                (Some(req.org_id.clone()), None)
            }
        } else {
            // Others list their own organization's (or project's) tokens, with `admin`.
            let tenant = Tenant {
                org_id: &principal.org_id,
                project_id: (!principal.project_id.is_empty())
                    .then_some(principal.project_id.as_str()),
            };
            state
                .require(
                    &ctx,
                    Scope::Admin,
                    tenant,
                    Attempt::new("token.list", "service_token", ""),
                )
                .await?;
            if !req.org_id.is_empty() && req.org_id != principal.org_id {
                return Err(state
                    .deny(
                        &ctx,
                        tenant,
                        Attempt::new("token.list", "organization", &req.org_id),
                        Denial::OtherOrganization,
                    )
                    .await
                    .into());
            }
            (
                Some(principal.org_id.clone()),
                (!principal.project_id.is_empty()).then(|| principal.project_id.clone()),
            )
        };
        let page = Page::from_proto(req.page.as_ref())?;
        let mut tokens = store::identity::list_tokens(
            &state.db,
            org_filter.as_deref(),
            project_filter.as_deref(),
            &page,
        )
        .await?;
        let page = page.finish(&mut tokens, |t| &t.id);
        Ok(Response::new(ListServiceTokensResponse {
            tokens: tokens.iter().map(super::convert::service_token).collect(),
            page: Some(page),
        }))
    }

    async fn revoke_service_token(
        &self,
        request: Request<RevokeServiceTokenRequest>,
    ) -> Result<Response<RevokeServiceTokenResponse>, Status> {
        let (ctx, req) = context(request)?;
        check_id("token_id", &req.token_id)?;
        let state = &self.state;
        let token = store::identity::get_token(&state.db, &req.token_id).await?;
        let attempt = Attempt::new("token.revoke", "service_token", &token.id);
        if token.org_id.is_empty() {
            state.require_platform_admin(&ctx, attempt).await?;
        } else {
            let tenant = Tenant {
                org_id: &token.org_id,
                project_id: (!token.project_id.is_empty()).then_some(token.project_id.as_str()),
            };
            state.require(&ctx, Scope::Admin, tenant, attempt).await?;
        }
        let txn = switchyard_runtime::db::write_txn(&state.db)
            .await
            .map_err(Error::from)?;
        let revoked = store::identity::revoke_token(&txn, &token.id).await?;
        if revoked {
            let fact = success(
                "token.revoked",
                "service_token",
                &token.id,
                &token.org_id,
                &token.project_id,
            );
            audit(&txn, &ctx, fact, &serde_json::json!({ "name": token.name })).await?;
        }
        txn.commit().await.map_err(Error::from)?;
        // Revocation wins at once: drop the gateway's cached answer. Should the cache be
        // unreachable, the cached answer still expires within `auth.cache_ttl`.
        if let Err(error) = state.cache.delete(&auth_cache_key(&token.token_hash)).await {
            tracing::warn!(%error, token_id = %token.id, "could not drop the cached authentication of a revoked token");
        }
        Ok(Response::new(RevokeServiceTokenResponse {}))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let (ctx, req) = context(request)?;
        match super::authenticate::resolve(&self.state, &req.credential).await {
            Ok(principal) => {
                let ttl = super::authenticate::cache_ttl(&self.state, &principal);
                Ok(Response::new(AuthenticateResponse {
                    principal: Some(principal),
                    cache_ttl_seconds: ttl,
                }))
            }
            Err(refusal) => {
                let attempt = Attempt::new("auth.authenticate", "credential", &refusal.subject);
                let tenant = Tenant {
                    org_id: &refusal.org_id,
                    project_id: None,
                };
                self.state
                    .deny(&ctx, tenant, attempt, Denial::Unauthenticated)
                    .await;
                Err(Error::Unauthenticated(refusal.message).into())
            }
        }
    }
}

/// The organization and project a new token is scoped to; the project must be in the
/// organization (and implies it when the organization is left out).
async fn token_scope(
    state: &crate::state::State,
    req: &CreateServiceTokenRequest,
) -> Result<(Option<String>, Option<String>), Error> {
    if !req.project_id.is_empty() {
        check_id("project_id", &req.project_id)?;
        let project = store::tenancy::get_project(&state.db, &req.project_id).await?;
        if !req.org_id.is_empty() && req.org_id != project.org_id {
            return Err(Error::invalid(
                "project_id",
                "project_not_in_org",
                "project_id does not belong to org_id",
            ));
        }
        return Ok((Some(project.org_id), Some(project.id)));
    }
    if !req.org_id.is_empty() {
        check_id("org_id", &req.org_id)?;
        let org = store::tenancy::get_org(&state.db, &req.org_id).await?;
        return Ok((Some(org.id), None));
    }
    Ok((None, None))
}

fn parse_scopes(requested: &[String]) -> Result<Vec<String>, Error> {
    if requested.is_empty() {
        return Err(Error::invalid(
            "scopes",
            "required",
            "a token needs at least one scope",
        ));
    }
    let mut scopes = BTreeSet::new();
    let mut violations = Vec::new();
    for (i, text) in requested.iter().enumerate() {
        match Scope::parse(text) {
            Some(scope) => {
                scopes.insert(scope.as_str().to_owned());
            }
            None => violations.push(switchyard_runtime::error::violation(
                &format!("scopes[{i}]"),
                "unknown_scope",
                format!(
                    "`{text}` is not a scope; known: {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                ),
            )),
        }
    }
    if violations.is_empty() {
        Ok(scopes.into_iter().collect())
    } else {
        Err(Error::InvalidArgument {
            message: "unknown scopes".into(),
            violations,
        })
    }
}

pub(super) fn user_principal(
    user: &crate::store::entity::user::Model,
    expires_at: Option<chrono::DateTime<Utc>>,
) -> Principal {
    Principal {
        actor: Some(Actor {
            r#type: ActorType::User as i32,
            id: user.id.clone(),
            display_name: user.username.clone(),
        }),
        org_id: user.org_id.clone(),
        project_id: String::new(),
        scopes: Vec::new(),
        platform_admin: false,
        role: super::convert::role_from_name(&user.role) as i32,
        expires_at: expires_at.map(time::to_proto),
    }
}

fn actor_kind(actor: &Actor) -> &'static str {
    match ActorType::try_from(actor.r#type).unwrap_or(ActorType::Unspecified) {
        ActorType::User => "user",
        ActorType::ServiceToken => "token",
        ActorType::Service => "service",
        ActorType::Bootstrap => "bootstrap",
        ActorType::Anonymous | ActorType::Unspecified => "anonymous",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        let ok = parse_scopes(&["runs:write".into(), "runs:write".into(), "agents".into()])
            .expect("valid scopes");
        assert_eq!(ok, vec!["agents".to_owned(), "runs:write".to_owned()]);
        let err = parse_scopes(&["runs:write".into(), "root".into()]).expect_err("unknown");
        assert!(
            matches!(err, Error::InvalidArgument { violations, .. } if violations[0].field == "scopes[1]")
        );
        assert!(parse_scopes(&[]).is_err());
    }

    #[test]
    fn access_tokens_are_told_apart_from_service_tokens() {
        use crate::domain::access_token;
        assert!(!access_token::looks_like_jwt(
            &service_token::issue().secret
        ));
    }
}
