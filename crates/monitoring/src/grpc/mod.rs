//! gRPC handlers: translate and delegate. Built: the event sink (task lifecycle events into
//! the execution history) and the task listings (history, active tasks). Stuck tasks,
//! diagnosis, retry statistics, alerts and API checks answer UNIMPLEMENTED until their slices
//! land (generated default stubs).

mod access;
mod sink;
mod tasks;

use sea_orm::DatabaseConnection;
use switchyard_proto::controlplane::v1::tenancy_service_client::TenancyServiceClient;
use switchyard_proto::monitoring::v1::alert_service_server::AlertService;
use switchyard_proto::monitoring::v1::api_check_service_server::ApiCheckService;
use switchyard_runtime::auth::{CallContext, Denial};
use switchyard_runtime::grpc::GrpcChannel;
use switchyard_runtime::outbox::{self, AuditFact};

/// The service's gRPC surface.
#[derive(Clone)]
pub struct MonitoringApi {
    pub(crate) db: DatabaseConnection,
    /// The control plane's projects, read with the caller's credentials.
    pub(crate) tenancy: TenancyServiceClient<GrpcChannel>,
    /// The scheduler, asked about live queue state (dialled lazily: it may start later).
    pub(crate) scheduler: GrpcChannel,
}

impl MonitoringApi {
    pub fn new(
        db: DatabaseConnection,
        control_plane: GrpcChannel,
        scheduler: GrpcChannel,
    ) -> MonitoringApi {
        MonitoringApi {
            db,
            tenancy: TenancyServiceClient::new(control_plane),
            scheduler,
        }
    }

    /// Records a refused call in the audit trail (its own transaction: nothing else changes)
    /// and returns the status to answer with. A failure to record is logged.
    pub(crate) async fn deny(
        &self,
        ctx: &CallContext,
        fact: AuditFact<'_>,
        denial: Denial,
    ) -> tonic::Status {
        let details = serde_json::json!({ "reason": denial.reason() });
        let action = fact.action;
        let record = outbox::request_record(ctx, fact, &details);
        if let Err(error) = outbox::enqueue_audit(&self.db, crate::SERVICE, record).await {
            tracing::error!(%error, action, "could not audit a denied call");
        }
        denial.code().status(denial.message(), Vec::new())
    }
}

#[tonic::async_trait]
impl AlertService for MonitoringApi {}
#[tonic::async_trait]
impl ApiCheckService for MonitoringApi {}
