//! What every handler shares.

use std::sync::Arc;

use switchyard_runtime::cache::Cache;

use crate::config::GatewayConfig;
use crate::rate_limit::Limiter;
use crate::upstream::Upstreams;

#[derive(Clone)]
pub struct AppState {
    pub upstreams: Upstreams,
    pub cache: Cache,
    pub limiter: Limiter,
    pub config: Arc<GatewayConfig>,
}
