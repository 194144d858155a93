//! Pure control-plane logic: names, credentials, the run state machine, Gherkin
//! mapping, dataset expectations. No I/O.

pub mod access_token;
pub mod expectations;
pub mod gherkin;
pub mod names;
pub mod password;
pub mod run_status;
pub mod service_token;
