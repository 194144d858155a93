//! gRPC clients of the services, sharing one lazily connected channel each, and the helper
//! that dresses every forwarded call with the caller's context and the request deadline.
//! Long-lived streams (run watches) get a channel of their own, so they never take the HTTP/2
//! stream slots that every other call to control-plane needs.

use std::time::Duration;

use switchyard_proto::audit::v1::audit_service_client::AuditServiceClient;
use switchyard_proto::controlplane::v1::dataset_service_client::DatasetServiceClient;
use switchyard_proto::controlplane::v1::identity_service_client::IdentityServiceClient;
use switchyard_proto::controlplane::v1::run_service_client::RunServiceClient;
use switchyard_proto::controlplane::v1::suite_service_client::SuiteServiceClient;
use switchyard_proto::controlplane::v1::tenancy_service_client::TenancyServiceClient;
use switchyard_proto::controlplane::v1::workflow_service_client::WorkflowServiceClient;
use switchyard_proto::monitoring::v1::monitoring_service_client::MonitoringServiceClient;
use switchyard_proto::scheduler::v1::agent_registry_service_client::AgentRegistryServiceClient;
use switchyard_proto::scheduler::v1::dead_letter_service_client::DeadLetterServiceClient;
use switchyard_proto::scheduler::v1::project_limit_service_client::ProjectLimitServiceClient;
use switchyard_proto::scheduler::v1::schedule_service_client::ScheduleServiceClient;
use switchyard_proto::scheduler::v1::scheduler_service_client::SchedulerServiceClient;
use switchyard_runtime::auth::CallContext;
use switchyard_runtime::grpc::{GrpcChannel, channel};

use crate::config::UpstreamConfig;

#[derive(Clone)]
pub struct Upstreams {
    pub control_plane: GrpcChannel,
    pub scheduler: GrpcChannel,
    pub monitoring: GrpcChannel,
    pub audit: GrpcChannel,
    /// A second connection to control-plane, for `WatchRun` streams only.
    pub control_plane_streams: GrpcChannel,
    timeout: Duration,
}

impl Upstreams {
    pub fn connect(
        config: &UpstreamConfig,
        timeout: Duration,
    ) -> Result<Upstreams, tonic::transport::Error> {
        Ok(Upstreams {
            control_plane: channel(&config.control_plane)?,
            scheduler: channel(&config.scheduler)?,
            monitoring: channel(&config.monitoring)?,
            audit: channel(&config.audit)?,
            control_plane_streams: channel(&config.control_plane)?,
            timeout,
        })
    }

    pub fn tenancy(&self) -> TenancyServiceClient<GrpcChannel> {
        TenancyServiceClient::new(self.control_plane.clone())
    }
    pub fn identity(&self) -> IdentityServiceClient<GrpcChannel> {
        IdentityServiceClient::new(self.control_plane.clone())
    }
    pub fn workflows(&self) -> WorkflowServiceClient<GrpcChannel> {
        WorkflowServiceClient::new(self.control_plane.clone())
    }
    pub fn runs(&self) -> RunServiceClient<GrpcChannel> {
        RunServiceClient::new(self.control_plane.clone())
    }
    /// Runs, over the streams-only connection.
    pub fn run_watch(&self) -> RunServiceClient<GrpcChannel> {
        RunServiceClient::new(self.control_plane_streams.clone())
    }
    pub fn suites(&self) -> SuiteServiceClient<GrpcChannel> {
        SuiteServiceClient::new(self.control_plane.clone())
    }
    pub fn datasets(&self) -> DatasetServiceClient<GrpcChannel> {
        DatasetServiceClient::new(self.control_plane.clone())
    }
    pub fn scheduler(&self) -> SchedulerServiceClient<GrpcChannel> {
        SchedulerServiceClient::new(self.scheduler.clone())
    }
    pub fn dead_letters(&self) -> DeadLetterServiceClient<GrpcChannel> {
        DeadLetterServiceClient::new(self.scheduler.clone())
    }
    pub fn schedules(&self) -> ScheduleServiceClient<GrpcChannel> {
        ScheduleServiceClient::new(self.scheduler.clone())
    }
    pub fn limits(&self) -> ProjectLimitServiceClient<GrpcChannel> {
        ProjectLimitServiceClient::new(self.scheduler.clone())
    }
    pub fn agents(&self) -> AgentRegistryServiceClient<GrpcChannel> {
        AgentRegistryServiceClient::new(self.scheduler.clone())
    }
    pub fn monitoring(&self) -> MonitoringServiceClient<GrpcChannel> {
        MonitoringServiceClient::new(self.monitoring.clone())
    }
    pub fn api_checks(
        &self,
    ) -> switchyard_proto::monitoring::v1::api_check_service_client::ApiCheckServiceClient<
        GrpcChannel,
    > {
        switchyard_proto::monitoring::v1::api_check_service_client::ApiCheckServiceClient::new(
            self.monitoring.clone(),
        )
    }
    pub fn alerts(
        &self,
    ) -> switchyard_proto::monitoring::v1::alert_service_client::AlertServiceClient<GrpcChannel>
    {
        switchyard_proto::monitoring::v1::alert_service_client::AlertServiceClient::new(
            self.monitoring.clone(),
        )
    }
    pub fn audit(&self) -> AuditServiceClient<GrpcChannel> {
        AuditServiceClient::new(self.audit.clone())
    }

    /// A request carrying the caller's principal and origin, with the gateway's deadline.
    pub fn request<T>(&self, ctx: &CallContext, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        ctx.write_to(request.metadata_mut());
        request.set_timeout(self.timeout);
        request
    }

    /// A request for a stream that lasts as long as a run: the caller's context but no gRPC
    /// deadline, which would bound the whole stream. The gateway's request timeout still
    /// bounds the wait for the stream's first message (dropping the call cancels it).
    pub fn stream_request<T>(&self, ctx: &CallContext, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        ctx.write_to(request.metadata_mut());
        request
    }
}
