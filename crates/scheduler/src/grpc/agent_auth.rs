//! Agents call the scheduler directly with a service token carrying the `agents` scope. The
//! token is resolved by the control plane (`Authenticate`) and the answer kept for the TTL the
//! control plane allows (a few seconds), so a revoked token stops working within that TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use switchyard_proto::controlplane::v1::identity_service_client::IdentityServiceClient;
use switchyard_proto::controlplane::v1::{AuthenticateRequest, Principal};
use switchyard_runtime::auth::{Scope, held_scopes};
use switchyard_runtime::grpc::GrpcChannel;
use tokio::sync::Mutex;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Cached answers, by SHA-256 of the token (the token itself is never kept).
type Answers = HashMap<[u8; 32], (Principal, Instant)>;

#[derive(Clone)]
pub struct AgentAuth {
    identity: IdentityServiceClient<GrpcChannel>,
    answers: Arc<Mutex<Answers>>,
}

/// An authenticated agent token: who it is and what tenancy it may work for.
#[derive(Debug, Clone)]
pub struct AgentPrincipal {
    /// The token's id (the actor id), which registered agents are bound to.
    pub token_id: String,
    pub org_id: String,
    pub project_id: String,
}

impl AgentAuth {
    pub fn new(control_plane: GrpcChannel) -> AgentAuth {
        AgentAuth {
            identity: IdentityServiceClient::new(control_plane),
            answers: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The caller of a worker RPC, or UNAUTHENTICATED / PERMISSION_DENIED.
    pub async fn agent(&self, metadata: &MetadataMap) -> Result<AgentPrincipal, Status> {
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated("agents send `authorization: Bearer <token>`")
            })?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = {
            let answers = self.answers.lock().await;
            answers
                .get(&key)
                .filter(|(_, until)| *until > Instant::now())
                .map(|(p, _)| p.clone())
        };
        let principal = match cached {
            Some(principal) => principal,
            None => {
                let answer = self
                    .identity
                    .clone()
                    .authenticate(AuthenticateRequest {
                        credential: token.to_owned(),
                    })
                    .await?
                    .into_inner();
                let principal = answer
                    .principal
                    .ok_or_else(|| Status::unauthenticated("unknown token"))?;
                let ttl = Duration::from_secs(u64::from(answer.cache_ttl_seconds.min(60)));
                let mut answers = self.answers.lock().await;
                if answers.len() > 10_000 {
                    let now = Instant::now();
                    answers.retain(|_, (_, until)| *until > now);
                }
                answers.insert(key, (principal.clone(), Instant::now() + ttl));
                principal
            }
        };
        if !principal.platform_admin && !held_scopes(&principal).any(|s| s == Scope::Agents) {
            return Err(Status::permission_denied(
                "the token lacks the `agents` scope",
            ));
        }
        Ok(AgentPrincipal {
            token_id: principal.actor.map(|a| a.id).unwrap_or_default(),
            org_id: principal.org_id,
            project_id: principal.project_id,
        })
    }
}
