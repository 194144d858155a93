//! What every handler shares.

use std::sync::Arc;

use switchyard_runtime::cache::Cache;
use switchyard_runtime::shutdown::Shutdown;

use crate::config::GatewayConfig;
use crate::rate_limit::Limiter;
use crate::upstream::Upstreams;

#[derive(Clone)]
pub struct AppState {
    pub upstreams: Upstreams,
    pub cache: Cache,
    pub limiter: Limiter,
    /// Request counts per route, reported to monitoring as API usage.
    pub usage: crate::usage::UsageRecorder,
    pub config: Arc<GatewayConfig>,
    /// Cancelled when the gateway stops: open event streams end on it, so the drain does not
    /// wait for runs to finish.
    pub shutdown: Shutdown,
    /// Places for open event streams (`GET /api/v1/runs/{id}/events`), in all and by caller.
    pub event_streams: crate::event_streams::EventStreams,
}
