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

/// The control plane's answer to a question being asked now, shared by every caller with
/// the same token (see [`AgentAuth::principal`]).
type Asking = Arc<tokio::sync::OnceCell<Result<Principal, Status>>>;

#[derive(Clone)]
pub struct AgentAuth {
    identity: IdentityServiceClient<GrpcChannel>,
    answers: Arc<Mutex<Answers>>,
    asking: Arc<Mutex<HashMap<[u8; 32], Asking>>>,
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
            answers: Arc::default(),
            asking: Arc::default(),
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
        let principal = self.principal(token).await?;
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

    /// The token's principal: the cached answer while it lasts, else the control plane's.
    /// Callers that miss together share one question: an agent fleet's calls all miss when
    /// the answer expires, and each asking on its own sent hundreds of `Authenticate` calls
    /// down one connection at once, past the control plane's per-connection limit, which
    /// shed them (RESOURCE_EXHAUSTED reached the agents' completions).
    async fn principal(&self, token: &str) -> Result<Principal, Status> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.cached(&key).await {
            return Ok(principal);
        }
        let asking = self.asking.lock().await.entry(key).or_default().clone();
        let answer = asking.get_or_init(|| self.ask(token, key)).await.clone();
        // The first one back retires the question; later callers read the cache (or ask
        // again, if the answer was an error or may not be cached).
        let mut questions = self.asking.lock().await;
        if questions.get(&key).is_some_and(|q| Arc::ptr_eq(q, &asking)) {
            questions.remove(&key);
        }
        answer
    }

    async fn cached(&self, key: &[u8; 32]) -> Option<Principal> {
        let answers = self.answers.lock().await;
        answers
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(p, _)| p.clone())
    }

    /// Asks the control plane and caches the answer for the TTL it allows (at most a minute).
    async fn ask(&self, token: &str, key: [u8; 32]) -> Result<Principal, Status> {
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
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use switchyard_proto::controlplane::v1::identity_service_server::{
        IdentityService, IdentityServiceServer,
    };
    use switchyard_proto::controlplane::v1::*;
    use tonic::{Request, Response};

    use super::*;

    /// A control plane that counts `Authenticate` calls and answers each after a moment,
    /// so that callers who miss together are all waiting when it answers.
    struct Counting(Arc<AtomicUsize>);

    #[tonic::async_trait]
    impl IdentityService for Counting {
        async fn authenticate(
            &self,
            request: Request<AuthenticateRequest>,
        ) -> Result<Response<AuthenticateResponse>, Status> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            if request.into_inner().credential != "good" {
                return Err(Status::unauthenticated("unknown token"));
            }
            Ok(Response::new(AuthenticateResponse {
                principal: Some(Principal {
                    org_id: "o1".into(),
                    scopes: vec!["agents".into()],
                    ..Principal::default()
                }),
                cache_ttl_seconds: 30,
            }))
        }
        async fn create_user(
            &self,
            _: Request<CreateUserRequest>,
        ) -> Result<Response<CreateUserResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn login(&self, _: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn create_service_token(
            &self,
            _: Request<CreateServiceTokenRequest>,
        ) -> Result<Response<CreateServiceTokenResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn list_service_tokens(
            &self,
            _: Request<ListServiceTokensRequest>,
        ) -> Result<Response<ListServiceTokensResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn revoke_service_token(
            &self,
            _: Request<RevokeServiceTokenRequest>,
        ) -> Result<Response<RevokeServiceTokenResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    fn bearer(token: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        metadata
    }

    #[tokio::test]
    async fn callers_that_miss_together_ask_the_control_plane_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound"));
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(IdentityServiceServer::new(Counting(calls.clone())))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let auth = AgentAuth::new(switchyard_runtime::grpc::channel(&endpoint).expect("endpoint"));

        let callers: Vec<_> = (0..200)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.agent(&bearer("good")).await })
            })
            .collect();
        for caller in callers {
            let agent = caller.await.expect("joined").expect("authenticated");
            assert_eq!(agent.org_id, "o1");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one question for 200 callers"
        );
        auth.agent(&bearer("good")).await.expect("cached");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "then the cached answer");

        // A refused token: every caller waiting on the question gets the refusal, which is
        // not cached.
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.agent(&bearer("bad")).await })
            })
            .collect();
        for caller in callers {
            let refused = caller.await.expect("joined").expect_err("refused");
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(auth.asking.lock().await.is_empty(), "questions retired");
        server.abort();
    }
}
