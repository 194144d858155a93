//! Authentication of bearer tokens through control-plane, with a short cache, and the
//! per-token rate limit. [`Caller`] is the extractor every protected handler takes.
//!
//! Cache: key `auth:v1:<sha256(token)>`, value the principal as protobuf, for the TTL that
//! control-plane allows (default 5 s, never past the token's expiry). Revocation deletes the
//! key at once (control-plane derives the same key from the stored token hash); if that delete
//! is lost, the TTL bounds how long a revoked token keeps working. Failures are never cached.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;
use prost::Message;
use sha2::{Digest, Sha256};
use switchyard_proto::common::v1::RequestOrigin;
use switchyard_proto::controlplane::v1::{AuthenticateRequest, Principal};
use switchyard_runtime::ErrorCode;
use switchyard_runtime::auth::CallContext;

use crate::error::ApiError;
use crate::middleware::{ClientAddr, RequestId};
use crate::state::AppState;

/// An authenticated caller, within its rate limit.
pub struct Caller(pub CallContext);

impl Caller {
    pub fn principal(&self) -> &Principal {
        // `Caller` is only built with a principal.
        self.0.principal.as_ref().unwrap_or(&DEFAULT_PRINCIPAL)
    }

    /// Who the caller is for per-caller limits: the actor's type and id (one per token or
    /// user).
    pub fn key(&self) -> String {
        key_of(self.principal())
    }
}

fn key_of(principal: &Principal) -> String {
    principal
        .actor
        .as_ref()
        .map(|a| format!("{}:{}", a.r#type, a.id))
        .unwrap_or_default()
}

static DEFAULT_PRINCIPAL: Principal = Principal {
    actor: None,
    org_id: String::new(),
    project_id: String::new(),
    scopes: Vec::new(),
    platform_admin: false,
    role: 0,
    expires_at: None,
};

pub fn cache_key(credential: &str) -> String {
    format!(
        "auth:v1:{}",
        hex::encode(Sha256::digest(credential.as_bytes()))
    )
}

/// Where the request came from, for audit records.
pub fn origin(parts: &Parts) -> RequestOrigin {
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .chars()
            .take(512)
            .collect::<String>()
    };
    RequestOrigin {
        client_ip: parts
            .extensions
            .get::<ClientAddr>()
            .map(|a| a.0.ip().to_string())
            .unwrap_or_default(),
        user_agent: header(USER_AGENT),
        request_id: parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        trace_id: String::new(),
    }
}

fn bearer(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| unauthenticated("the Authorization header is not text"))?;
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(unauthenticated("use `Authorization: Bearer <token>`")),
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let origin = origin(parts);
        let credential = bearer(parts)?.unwrap_or_default();
        let principal = authenticate(state, &credential, &origin).await?;
        // Services' own principals are minted inside a service for its background calls;
        // one arriving through the front door is refused whatever produced it.
        if switchyard_runtime::auth::is_service_principal(&principal) {
            return Err(unauthenticated("a valid bearer token is required"));
        }
        if let Err(wait) = state.limiter.check(&key_of(&principal)) {
            metrics::counter!("gateway_rate_limited_total").increment(1);
            let mut error = ApiError::new(
                ErrorCode::ResourceExhausted,
                "rate limit exceeded for this token, retry later",
            );
            error.retry_after = Some(wait.as_secs().max(1));
            return Err(error);
        }
        Ok(Caller(CallContext {
            principal: Some(principal),
            origin,
        }))
    }
}

async fn authenticate(
    state: &AppState,
    credential: &str,
    origin: &RequestOrigin,
) -> Result<Principal, ApiError> {
    let key = cache_key(credential);
    if !credential.is_empty() {
        match state.cache.get(&key).await {
            Ok(Some(bytes)) => match Principal::decode(bytes.as_slice()) {
                Ok(principal) => {
                    metrics::counter!("gateway_auth_cache_total", "result" => "hit").increment(1);
                    return Ok(principal);
                }
                Err(error) => {
                    tracing::warn!(%error, "undecodable cached principal, asking control-plane")
                }
            },
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "auth cache unavailable, asking control-plane"),
        }
        metrics::counter!("gateway_auth_cache_total", "result" => "miss").increment(1);
    }
    // Empty credentials are sent too: control-plane audits every refused call.
    let ctx = CallContext {
        principal: None,
        origin: origin.clone(),
    };
    let request = state.upstreams.request(
        &ctx,
        AuthenticateRequest {
            credential: credential.to_owned(),
        },
    );
    let response = state
        .upstreams
        .identity()
        .authenticate(request)
        .await
        .map_err(ApiError::from)?
        .into_inner();
    let principal = response.principal.ok_or_else(|| {
        ApiError::new(ErrorCode::Internal, "authentication returned no principal")
    })?;
    if response.cache_ttl_seconds > 0 {
        let ttl = std::time::Duration::from_secs(u64::from(response.cache_ttl_seconds));
        if let Err(error) = state.cache.set(&key, &principal.encode_to_vec(), ttl).await {
            tracing::debug!(%error, "could not cache an authentication");
        }
    }
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_matches_control_planes_token_hash() {
        // control-plane stores hex(sha256(token)) and drops `auth:v1:<that>` on revocation.
        let token = "syt_abc";
        let expected = hex::encode(Sha256::digest(token.as_bytes()));
        assert_eq!(cache_key(token), format!("auth:v1:{expected}"));
    }
}
