//! Infrastructure shared by every Switchyard service: configuration, telemetry, signals and
//! drain, database connection and migration lock, cache, gRPC server and client plumbing,
//! Prometheus metrics and the transactional outbox.
//!
//! Nothing here knows about runs, tasks or audit records: domain types live in the service
//! crates, contracts in `switchyard-proto`.

pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod entry;
pub mod error;
pub mod grpc;
pub mod host;
pub mod inbox;
pub mod metrics;
pub mod migrate;
pub mod outbox;
pub mod shutdown;
pub mod telemetry;
pub mod time;
pub mod vacuum;

pub use error::{ErrorCode, RuntimeError};
