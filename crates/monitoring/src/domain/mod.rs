//! Pure monitoring logic: no I/O, no SQL, no gRPC.

pub mod alert;
pub mod checks;
pub mod diagnosis;
pub mod execution;
pub mod retry_stats;
pub mod url_policy;
pub mod usage;
pub mod visibility;
