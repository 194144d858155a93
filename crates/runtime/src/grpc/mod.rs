//! gRPC plumbing shared by every service: the server (limits, load shedding, health,
//! reflection, drain), the per-call observe layer (trace context, deadline, metrics), and
//! client channels that propagate trace context and deadlines.

pub mod client;
pub mod late;
pub mod observe;
pub mod propagation;
pub mod server;

pub use client::{GrpcChannel, channel};
pub use server::{GrpcServer, Readiness};
