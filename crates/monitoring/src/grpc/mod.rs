//! gRPC handlers: translate and delegate. Built: the event sink (task lifecycle events into
//! the execution history), the task listings (history, active tasks), the run diagnosis (from
//! the scheduler's live state), retry statistics, the dead-letter analysis and API checks
//! with API usage (`checks`), the active tasks (from the view in `crate::active`) and the
//! stuck tasks (`stuck`), and alert rules and alerts (`alerts`).

mod access;
mod active;
mod alerts;
mod checks;
mod diagnosis;
mod sink;
mod statistics;
mod stuck;
mod tasks;

use sea_orm::DatabaseConnection;
use switchyard_proto::controlplane::v1::tenancy_service_client::TenancyServiceClient;
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
    /// Which addresses API checks may target (`checks.target_policy`).
    pub(crate) check_policy: crate::domain::url_policy::UrlPolicy,
    /// Which addresses alert webhooks may target (`alerts.webhook_urls`).
    pub(crate) webhook_policy: crate::domain::url_policy::UrlPolicy,
    /// The attempts running now (Redis, or memory in embedded mode) and its tuning.
    pub(crate) active: crate::active::ActiveView,
    pub(crate) active_config: crate::active::config::ActiveConfig,
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
            check_policy: Default::default(),
            webhook_policy: Default::default(),
            active: crate::active::ActiveView::memory(
                crate::active::config::ActiveConfig::default().tombstone_ttl,
            ),
            active_config: Default::default(),
        }
    }

    /// The same API on this active-task view, with its configuration.
    pub fn with_active(
        mut self,
        view: crate::active::ActiveView,
        config: crate::active::config::ActiveConfig,
    ) -> Self {
        self.active = view;
        self.active_config = config;
        self
    }

    /// The same API with the address policy API check targets are validated against.
    pub fn with_check_policy(mut self, policy: crate::domain::url_policy::UrlPolicy) -> Self {
        self.check_policy = policy;
        self
    }

    /// The same API with the address policy alert webhooks are validated against.
    pub fn with_webhook_policy(mut self, policy: crate::domain::url_policy::UrlPolicy) -> Self {
        self.webhook_policy = policy;
        self
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
