//! `switchyard run watch`: follows a run's event stream (`GET /api/v1/runs/{id}/events`),
//! printing a line per status change, and exits with the final status's code (as
//! `run start --wait` does). A stream that breaks — gateway restarting, a dropped connection
//! — is reopened; its first event is the status at that moment, printed only if it is new.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::http::Client;
use super::http_transient;
use super::run::exit_code;
use super::sse::{SseEvent, SseParser};

/// Reconnections in a row without a status event before giving up.
const MAX_RECONNECTS: u32 = 30;

/// Prints each status change until the run is final; the exit code says how it ended.
pub async fn watch(client: &Client, run_id: &str) -> anyhow::Result<ExitCode> {
    let mut follower = Follower {
        run_id,
        last: String::new(),
    };
    let mut failures = 0u32;
    loop {
        let heard = follower.last.clone();
        let broke = match follower.follow(client).await {
            Ok(Some(code)) => return Ok(ExitCode::from(code)),
            Ok(None) => anyhow::anyhow!("the event stream of run {run_id} keeps breaking"),
            Err(error) if http_transient(&error) => error,
            Err(error) => return Err(error),
        };
        // Only reconnections that brought no news count against the limit.
        failures = if follower.last == heard {
            failures + 1
        } else {
            0
        };
        if failures >= MAX_RECONNECTS {
            return Err(broke);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Follower<'a> {
    run_id: &'a str,
    /// The last status printed.
    last: String,
}

impl Follower<'_> {
    /// Reads one stream: `Some(code)` once the run is final, `None` when the stream ended
    /// early (worth reopening).
    async fn follow(&mut self, client: &Client) -> anyhow::Result<Option<u8>> {
        let path = format!("/api/v1/runs/{}/events", self.run_id);
        let mut response = client.stream(&path).await?;
        let mut parser = SseParser::default();
        while let Some(chunk) = response.chunk().await.context("the event stream broke")? {
            for event in parser.feed(&chunk) {
                if let Some(outcome) = self.on_event(&event)? {
                    return Ok(outcome);
                }
            }
        }
        Ok(None)
    }

    /// `Some(Some(code))` at the end, `Some(None)` when the stream reported it broke.
    fn on_event(&mut self, event: &SseEvent) -> anyhow::Result<Option<Option<u8>>> {
        let data: Value = serde_json::from_str(&event.data)
            .with_context(|| format!("the `{}` event is not JSON", event.name))?;
        match event.name.as_str() {
            "status" => {
                let status = data["status"].as_str().unwrap_or("?");
                if status != self.last {
                    println!("run {} {status}", self.run_id);
                    status.clone_into(&mut self.last);
                    if exit_code(status).is_some()
                        && let Some(reason) = data["reason"].as_str()
                    {
                        println!("reason: {reason}");
                    }
                }
                Ok(None)
            }
            "end" => {
                let status = data["status"].as_str().unwrap_or(&self.last);
                let code = exit_code(status)
                    .with_context(|| format!("the run ended in an unknown status `{status}`"))?;
                Ok(Some(Some(code)))
            }
            "error" => {
                let message = data["error"]["message"].as_str().unwrap_or("unknown error");
                eprintln!("switchyard: the event stream broke ({message}), reconnecting");
                Ok(Some(None))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn statuses_then_the_end_give_the_exit_code() {
        let mut follower = Follower {
            run_id: "r",
            last: String::new(),
        };
        let status = event("status", r#"{"id":"r","status":"running"}"#);
        assert_eq!(follower.on_event(&status).ok(), Some(None));
        assert_eq!(follower.last, "running");
        let failed = event("status", r#"{"id":"r","status":"failed","reason":"x"}"#);
        assert_eq!(follower.on_event(&failed).ok(), Some(None));
        let end = event("end", r#"{"id":"r","status":"failed"}"#);
        assert_eq!(follower.on_event(&end).ok(), Some(Some(Some(1))));
        let broke = event("error", r#"{"error":{"code":"unavailable","message":"m"}}"#);
        assert_eq!(follower.on_event(&broke).ok(), Some(Some(None)));
        assert!(follower.on_event(&event("status", "not json")).is_err());
    }
}
