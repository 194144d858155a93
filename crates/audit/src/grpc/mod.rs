//! gRPC handlers: translate, validate at the boundary, delegate to the store.

mod audit_api;
mod convert;
mod sink;

pub use audit_api::AuditApi;
pub use sink::Sink;
