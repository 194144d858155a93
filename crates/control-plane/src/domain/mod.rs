//! Pure control-plane logic: names, credentials, the run state machine. No I/O.

pub mod access_token;
pub mod names;
pub mod password;
pub mod run_status;
pub mod service_token;
