//! gRPC handlers. The contracts are complete; the domain RPCs are filled in by the issues that
//! build this service's domain and answer UNIMPLEMENTED until then (generated default stubs).

use switchyard_proto::controlplane::v1::dataset_service_server::DatasetService;
use switchyard_proto::controlplane::v1::identity_service_server::IdentityService;
use switchyard_proto::controlplane::v1::run_service_server::RunService;
use switchyard_proto::controlplane::v1::suite_service_server::SuiteService;
use switchyard_proto::controlplane::v1::tenancy_service_server::TenancyService;
use switchyard_proto::controlplane::v1::workflow_service_server::WorkflowService;
use switchyard_proto::events::v1::event_sink_server::EventSink;

/// The service's gRPC surface.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControlPlaneApi;

#[tonic::async_trait]
impl TenancyService for ControlPlaneApi {}
#[tonic::async_trait]
impl IdentityService for ControlPlaneApi {}
#[tonic::async_trait]
impl WorkflowService for ControlPlaneApi {}
#[tonic::async_trait]
impl RunService for ControlPlaneApi {}
#[tonic::async_trait]
impl SuiteService for ControlPlaneApi {}
#[tonic::async_trait]
impl DatasetService for ControlPlaneApi {}
#[tonic::async_trait]
impl EventSink for ControlPlaneApi {}
