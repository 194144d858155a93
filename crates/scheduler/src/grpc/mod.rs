//! gRPC handlers: translate and delegate to the [`Engine`]. The worker API and the event sink
//! are built; the operator RPCs (progress, tasks, dead letters, schedules, agents) answer
//! UNIMPLEMENTED until their slices land (generated default stubs).

mod agent_auth;
mod operator;
mod sink;
mod worker;

pub use agent_auth::AgentAuth;

use switchyard_proto::scheduler::v1::schedule_service_server::ScheduleService;

use crate::engine::Engine;

/// The service's gRPC surface.
#[derive(Clone)]
pub struct SchedulerApi {
    pub(crate) engine: Engine,
    pub(crate) auth: AgentAuth,
    /// Completions go through group commit.
    pub(crate) completions: crate::engine::batcher::Batcher,
}

impl SchedulerApi {
    pub fn new(engine: Engine, auth: AgentAuth) -> SchedulerApi {
        let completions = crate::engine::batcher::Batcher::spawn(engine.clone());
        SchedulerApi {
            engine,
            auth,
            completions,
        }
    }
}

#[tonic::async_trait]
impl ScheduleService for SchedulerApi {}
