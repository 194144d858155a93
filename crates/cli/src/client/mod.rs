//! Client commands over the HTTP API, for CI scripts and people.

pub mod alerts;
pub mod apis;
pub mod diagnosis;
pub mod dlq;
pub mod http;
pub mod run;
pub mod sse;
pub mod tasks;
pub mod token;
pub mod watch;
pub mod workflow;

use std::process::ExitCode;

/// Prints a JSON value the way every command does.
pub fn print(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Exit code of an API refusal: 10 for a client error, 11 for the server's.
pub fn api_failure(error: &anyhow::Error) -> Option<ExitCode> {
    let api = error.downcast_ref::<http::ApiError>()?;
    eprintln!("switchyard: {} ({}): {}", api.status, api.code, api.message);
    for detail in &api.details {
        eprintln!("  - {detail}");
    }
    Some(ExitCode::from(if api.status >= 500 { 11 } else { 10 }))
}

/// Whether an error is worth retrying while only waiting (gateway restarting, 5xx).
pub fn http_transient(error: &anyhow::Error) -> bool {
    match error.downcast_ref::<http::ApiError>() {
        Some(api) => api.status >= 500,
        None => true,
    }
}
