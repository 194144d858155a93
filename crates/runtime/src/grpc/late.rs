//! A service whose domain routes arrive after the server has started: health and reflection
//! answer at once (health says NOT_SERVING), every other call gets UNAVAILABLE until the
//! service has connected to its database, migrated and built its handlers.
//!
//! This lets a replica that waits minutes on a migration lock still answer probes honestly.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::service::Routes;
use tower::{Service, ServiceExt};

#[derive(Clone)]
pub struct LateRoutes {
    always: Routes,
    domain: Arc<OnceLock<Routes>>,
}

impl LateRoutes {
    /// `always` serves health and reflection from the start.
    pub fn new(always: Routes) -> Self {
        LateRoutes {
            always,
            domain: Arc::new(OnceLock::new()),
        }
    }

    /// Installs the domain routes. Later calls are ignored.
    pub fn install(&self, routes: Routes) {
        let _ = self.domain.set(routes);
    }

    fn is_always_available(path: &str) -> bool {
        path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
    }
}

impl Service<http::Request<Body>> for LateRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let routes = if Self::is_always_available(request.uri().path()) {
            Some(self.always.clone())
        } else {
            self.domain.get().cloned()
        };
        Box::pin(async move {
            match routes {
                Some(routes) => routes.oneshot(request).await,
                None => Ok(tonic::Status::unavailable(
                    "service is starting (database or migrations not ready yet)",
                )
                .into_http()),
            }
        })
    }
}
