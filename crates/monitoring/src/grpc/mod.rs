//! gRPC handlers. The contracts are complete; the domain RPCs are filled in by the issues that
//! build this service's domain and answer UNIMPLEMENTED until then (generated default stubs).

use switchyard_proto::events::v1::event_sink_server::EventSink;
use switchyard_proto::monitoring::v1::alert_service_server::AlertService;
use switchyard_proto::monitoring::v1::api_check_service_server::ApiCheckService;
use switchyard_proto::monitoring::v1::monitoring_service_server::MonitoringService;

/// The service's gRPC surface.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonitoringApi;

#[tonic::async_trait]
impl MonitoringService for MonitoringApi {}
#[tonic::async_trait]
impl AlertService for MonitoringApi {}
#[tonic::async_trait]
impl ApiCheckService for MonitoringApi {}
#[tonic::async_trait]
impl EventSink for MonitoringApi {}
