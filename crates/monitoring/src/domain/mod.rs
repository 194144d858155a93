//! Pure monitoring logic: no I/O, no SQL, no gRPC.

pub mod execution;
pub mod visibility;
