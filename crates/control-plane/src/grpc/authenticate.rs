//! Resolving a bearer credential to a principal: the bootstrap token, a service token, or a
//! user's access token. Refusals say why in words the caller may see (expired, revoked, not a
//! token) without saying whether some other token exists.

use chrono::Utc;
use subtle::ConstantTimeEq;
use switchyard_proto::common::v1::{Actor, ActorType};
use switchyard_proto::controlplane::v1::Principal;
use switchyard_runtime::time;

use crate::domain::{access_token, service_token};
use crate::error::Error;
use crate::state::State;
use crate::store;

/// Why a credential was refused, and what the audit record may name.
pub struct Refusal {
    pub message: String,
    /// The token id when known, else empty (the secret itself is never recorded).
    pub subject: String,
    pub org_id: String,
}

fn refuse(message: &str) -> Refusal {
    Refusal {
        message: message.to_owned(),
        subject: String::new(),
        org_id: String::new(),
    }
}

pub async fn resolve(state: &State, credential: &str) -> Result<Principal, Refusal> {
    if credential.is_empty() {
        return Err(refuse("a bearer token is required"));
    }
    if let Some(bootstrap) = &state.bootstrap_token
        && bool::from(credential.as_bytes().ct_eq(bootstrap.as_bytes()))
    {
        return Ok(bootstrap_principal());
    }
    if service_token::looks_like_service_token(credential) {
        return service(state, credential).await;
    }
    if access_token::looks_like_jwt(credential) {
        return user(state, credential).await;
    }
    Err(refuse("unknown token"))
}

fn bootstrap_principal() -> Principal {
    Principal {
        actor: Some(Actor {
            r#type: ActorType::Bootstrap as i32,
            id: "bootstrap".into(),
            display_name: "bootstrap token".into(),
        }),
        platform_admin: true,
        ..Principal::default()
    }
}

async fn service(state: &State, credential: &str) -> Result<Principal, Refusal> {
    if !service_token::is_well_formed(credential) {
        // Caught without a lookup: a typo, a truncated paste, or a forged token.
        return Err(refuse("malformed service token (checksum mismatch)"));
    }
    let hash = service_token::hash(credential);
    let token = store::identity::find_token_by_hash(&state.db, &hash)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(|| refuse("unknown token"))?;
    // The lookup matched on the hash already; compare again in constant time so that the
    // decision never depends on a short-circuiting comparison of secret-derived bytes.
    if !bool::from(token.token_hash.as_bytes().ct_eq(hash.as_bytes())) {
        return Err(refuse("unknown token"));
    }
    let named = |message: &str| Refusal {
        message: message.to_owned(),
        subject: token.id.clone(),
        org_id: token.org_id.clone(),
    };
    if token.revoked_at.is_some() {
        return Err(named("token revoked"));
    }
    let now = Utc::now();
    if token.expires_at.is_some_and(|at| at <= now) {
        return Err(named("token expired"));
    }
    if let Err(error) = store::identity::touch_token(&state.db, &token.id, now).await {
        tracing::warn!(%error, token_id = %token.id, "could not record token use");
    }
    let scopes: Vec<String> = token.scopes.split_whitespace().map(str::to_owned).collect();
    let platform_admin = token.org_id.is_empty() && scopes.iter().any(|s| s == "admin");
    Ok(Principal {
        actor: Some(Actor {
            r#type: ActorType::ServiceToken as i32,
            id: token.id.clone(),
            display_name: token.name.clone(),
        }),
        org_id: token.org_id.clone(),
        project_id: token.project_id.clone(),
        scopes,
        platform_admin,
        role: 0,
        expires_at: token.expires_at.map(time::to_proto),
    })
}

async fn user(state: &State, credential: &str) -> Result<Principal, Refusal> {
    let verified = state
        .signer
        .verify(credential)
        .ok_or_else(|| refuse("invalid or expired access token"))?;
    // Re-read the user: a deleted user's tokens stop working, a new role applies at once.
    let user = store::identity::find_user(&state.db, &verified.user_id)
        .await
        .map_err(|e| internal(&e))?
        .filter(|u| u.org_id == verified.org_id)
        .ok_or_else(|| refuse("invalid or expired access token"))?;
    Ok(super::identity::user_principal(
        &user,
        Some(verified.expires_at),
    ))
}

fn internal(error: &Error) -> Refusal {
    tracing::error!(%error, "authentication lookup failed");
    refuse("authentication is unavailable, try again")
}

/// Seconds the gateway may cache this answer: the configured TTL, never past expiry.
pub fn cache_ttl(state: &State, principal: &Principal) -> u32 {
    let configured = state.auth_cache_ttl.as_secs();
    let until_expiry = principal
        .expires_at
        .as_ref()
        .and_then(time::from_proto)
        .map(|at| (at - Utc::now()).num_seconds().max(0) as u64)
        .unwrap_or(u64::MAX);
    u32::try_from(configured.min(until_expiry)).unwrap_or(u32::MAX)
}
