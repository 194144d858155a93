//! gRPC handlers: translate requests, authorize through [`crate::state::State`], delegate to the
//! store inside one transaction with the audit event. Suites, datasets and the run-status
//! event sink answer UNIMPLEMENTED until their slices land (generated default stubs).

mod authenticate;
mod convert;
mod identity;
mod runs;
mod tenancy;
mod workflows;

use std::sync::Arc;

use switchyard_proto::controlplane::v1::dataset_service_server::DatasetService;
use switchyard_proto::controlplane::v1::suite_service_server::SuiteService;
use switchyard_proto::events::v1::event_sink_server::EventSink;
use switchyard_runtime::auth::CallContext;
use tonic::{Request, Status};

use crate::state::State;

/// The service's gRPC surface.
#[derive(Clone)]
pub struct ControlPlaneApi {
    pub(crate) state: Arc<State>,
}

impl ControlPlaneApi {
    pub fn new(state: Arc<State>) -> ControlPlaneApi {
        ControlPlaneApi { state }
    }
}

/// The caller's context and the request message.
fn context<T>(request: Request<T>) -> Result<(CallContext, T), Status> {
    let ctx = CallContext::from_metadata(request.metadata())?;
    Ok((ctx, request.into_inner()))
}

#[tonic::async_trait]
impl SuiteService for ControlPlaneApi {}
#[tonic::async_trait]
impl DatasetService for ControlPlaneApi {}
#[tonic::async_trait]
impl EventSink for ControlPlaneApi {}
