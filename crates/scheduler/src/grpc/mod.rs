//! gRPC handlers. The contracts are complete; the domain RPCs are filled in by the issues that
//! build this service's domain and answer UNIMPLEMENTED until then (generated default stubs).

use switchyard_proto::events::v1::event_sink_server::EventSink;
use switchyard_proto::scheduler::v1::agent_registry_service_server::AgentRegistryService;
use switchyard_proto::scheduler::v1::dead_letter_service_server::DeadLetterService;
use switchyard_proto::scheduler::v1::schedule_service_server::ScheduleService;
use switchyard_proto::scheduler::v1::scheduler_service_server::SchedulerService;
use switchyard_proto::scheduler::v1::worker_service_server::WorkerService;

/// The service's gRPC surface.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedulerApi;

#[tonic::async_trait]
impl SchedulerService for SchedulerApi {}
#[tonic::async_trait]
impl DeadLetterService for SchedulerApi {}
#[tonic::async_trait]
impl ScheduleService for SchedulerApi {}
#[tonic::async_trait]
impl AgentRegistryService for SchedulerApi {}
#[tonic::async_trait]
impl WorkerService for SchedulerApi {}
#[tonic::async_trait]
impl EventSink for SchedulerApi {}
