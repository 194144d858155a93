//! gRPC handlers: translate requests, authorize through [`crate::state::State`], delegate to the
//! store inside one transaction with the audit event. `sink` applies the scheduler's run
//! status reports; `watch` streams a run's status changes.

mod authenticate;
mod convert;
mod datasets;
mod identity;
mod runs;
mod sink;
mod suites;
mod tenancy;
mod watch;
mod workflows;

use std::sync::Arc;

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
