//! gRPC handlers: translate and delegate to the [`Engine`]. The worker API and the event sink
//! are built; the operator RPCs (progress, tasks, dead letters, schedules, agents) answer
//! UNIMPLEMENTED until their slices land (generated default stubs).

mod agent_auth;
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
