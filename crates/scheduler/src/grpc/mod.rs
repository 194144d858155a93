//! gRPC handlers: translate and delegate to the [`Engine`]. The worker API and the event sink
//! are built; the operator RPCs (progress, tasks, dead letters, schedules, agents) answer
//! UNIMPLEMENTED until their slices land (generated default stubs).

mod agent_auth;
mod diagnosis;
mod leases;
mod limits;
mod operator;
mod schedules;
mod sink;
mod worker;

pub use agent_auth::AgentAuth;

use crate::engine::Engine;

/// The service's gRPC surface.
#[derive(Clone)]
pub struct SchedulerApi {
    pub(crate) engine: Engine,
    pub(crate) auth: AgentAuth,
    /// Completions go through group commit.
    pub(crate) completions: crate::engine::batcher::Batcher,
    /// The control plane's projects, read with the caller's credentials.
    pub(crate) tenancy:
        switchyard_proto::controlplane::v1::tenancy_service_client::TenancyServiceClient<
            switchyard_runtime::grpc::GrpcChannel,
        >,
}

impl SchedulerApi {
    pub fn new(
        engine: Engine,
        control_plane: switchyard_runtime::grpc::GrpcChannel,
    ) -> SchedulerApi {
        let completions = crate::engine::batcher::Batcher::spawn(engine.clone());
        SchedulerApi {
            engine,
            auth: AgentAuth::new(control_plane.clone()),
            completions,
            tenancy: switchyard_proto::controlplane::v1::tenancy_service_client::TenancyServiceClient::new(
                control_plane,
            ),
        }
    }
}

impl SchedulerApi {
    /// Records a refused call in the audit trail (its own transaction: nothing else changes)
    /// and returns the status to answer with. A failure to record is logged.
    pub(crate) async fn deny(
        &self,
        ctx: &switchyard_runtime::auth::CallContext,
        fact: switchyard_runtime::outbox::AuditFact<'_>,
        denial: switchyard_runtime::auth::Denial,
    ) -> tonic::Status {
        use switchyard_runtime::outbox;
        let details = serde_json::json!({ "reason": denial.reason() });
        let action = fact.action;
        let record = outbox::request_record(ctx, fact, &details);
        if let Err(error) = outbox::enqueue_audit(&self.engine.db, crate::SERVICE, record).await {
            tracing::error!(%error, action, "could not audit a denied call");
        }
        denial.code().status(denial.message(), Vec::new())
    }
}
