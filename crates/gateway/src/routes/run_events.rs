//! `GET /api/v1/runs/{run_id}/events`: a run's status changes as Server-Sent Events, relayed
//! from control-plane's `RunService/WatchRun` stream.
//!
//! Refusals come before the stream, as the usual JSON errors with their status (401, 403,
//! 404, ...; 429 past the caller's share of open streams and 503 when the gateway has all it
//! keeps, see [`crate::event_streams`]): the handler answers 200 only once the run's first
//! message has arrived. Then:
//! one `status` event per status change (the first is the current status), `id` a counter and
//! `data` the run as `GET /api/v1/runs/{id}` shows it *without `tasks`* (the task counts live
//! in the scheduler and would cost a call per event; read them from `GET /api/v1/runs/{id}`);
//! an `end` event after the final status, and the stream closes. If the stream breaks first
//! (a service or the gateway stopping) an `error` event carries the JSON error and the stream
//! closes: reconnect to resume, the first event is the status at that moment. A comment every
//! [`KEEP_ALIVE`] keeps proxies from closing a quiet stream.
//!
//! The gateway's request timeout bounds only the wait for the first event. Owns the SSE
//! framing; the run body is [`super::runs::Run`].

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use switchyard_proto::controlplane::v1 as pb;
use switchyard_runtime::ErrorCode;
use switchyard_runtime::shutdown::Shutdown;
use tonic::codec::Streaming;

use super::runs::{Run, status_name};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::event_streams::{Refusal, StreamPermit};
use crate::extract::Path;
use crate::state::AppState;

/// How often a quiet stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Server-Sent Events of the run's status changes until it is final.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/events", tag = "runs",
    params(("run_id" = String, Path)),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
         description = "`event: status` per status change (data: the run without `tasks`), then `event: end` (data: `{id, status}`); `event: error` (data: an error body) if the stream breaks first"),
        (status = "4XX", body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn run_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let permit = state
        .event_streams
        .try_open(&caller.key())
        .map_err(refusal)?;
    let request = state
        .upstreams
        .stream_request(&caller.0, pb::WatchRunRequest { run_id });
    let mut upstream = state
        .upstreams
        .run_watch()
        .watch_run(request)
        .await?
        .into_inner();
    let first = loop {
        match upstream.message().await? {
            Some(pb::WatchRunResponse { run: Some(run) }) => break run,
            Some(_) => {}
            None => {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    "the run's event stream ended before it began",
                ));
            }
        }
    };
    let relay = Relay {
        upstream,
        pending: Some(first),
        run_id: String::new(),
        status: String::new(),
        next_id: 1,
        state: RelayState::Streaming,
        shutdown: state.shutdown.clone(),
        _permit: permit,
    };
    let events = futures::stream::unfold(relay, |mut relay| async move {
        let event = relay.next().await?;
        Some((Ok::<_, Infallible>(event), relay))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    // Proxies such as nginx buffer responses unless told not to.
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse))
}

/// A stream not opened, as its error: the gateway full is 503, the caller's own share 429;
/// both say when to try again.
fn refusal(refusal: Refusal) -> ApiError {
    let mut error = match refusal {
        Refusal::GatewayFull => ApiError::new(
            ErrorCode::Unavailable,
            "too many open event streams on this gateway, try again shortly",
        ),
        Refusal::CallerFull { limit } => ApiError::new(
            ErrorCode::ResourceExhausted,
            format!(
                "this token already has {limit} open event streams on this gateway, close one first"
            ),
        ),
    };
    error.retry_after = Some(5);
    error
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelayState {
    Streaming,
    /// The final status went out; `end` is next.
    Final,
    Closed,
}

/// One stream's relay from the upstream messages to events.
struct Relay {
    upstream: Streaming<pb::WatchRunResponse>,
    /// A run received but not yet sent.
    pending: Option<pb::Run>,
    /// The run's id and status as last sent.
    run_id: String,
    status: String,
    next_id: u64,
    state: RelayState,
    shutdown: Shutdown,
    /// Held for the stream's life.
    _permit: StreamPermit,
}

impl Relay {
    /// The next event, or `None` once the stream is over.
    async fn next(&mut self) -> Option<Event> {
        match self.state {
            RelayState::Closed => return None,
            RelayState::Final => {
                self.state = RelayState::Closed;
                let data = serde_json::json!({"id": self.run_id, "status": self.status});
                return Some(self.event("end", &data));
            }
            RelayState::Streaming => {}
        }
        let run = match self.pending.take() {
            Some(run) => run,
            None => match self.receive().await {
                Ok(run) => run,
                Err(error) => {
                    self.state = RelayState::Closed;
                    tracing::info!(run_id = %self.run_id, code = %error.code, "run event stream broken");
                    let body = serde_json::to_value(error.body()).unwrap_or_default();
                    return Some(self.event("error", &body));
                }
            },
        };
        let status = pb::RunStatus::try_from(run.status).unwrap_or(pb::RunStatus::Unspecified);
        if is_final(status) {
            self.state = RelayState::Final;
        }
        self.run_id.clone_from(&run.id);
        self.status = status_name(run.status);
        let data = status_data(run);
        Some(self.event("status", &data))
    }

    /// The next run from upstream; the error to report when the stream cannot go on.
    async fn receive(&mut self) -> Result<pb::Run, ApiError> {
        loop {
            let message = tokio::select! {
                () = self.shutdown.cancelled() => {
                    return Err(ApiError::new(ErrorCode::Unavailable, "the gateway is shutting down"));
                }
                message = self.upstream.message() => message,
            };
            match message {
                Ok(Some(pb::WatchRunResponse { run: Some(run) })) => return Ok(run),
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(ApiError::new(
                        ErrorCode::Unavailable,
                        "the run's event stream ended before the run did",
                    ));
                }
                Err(status) => return Err(status.into()),
            }
        }
    }

    fn event(&mut self, name: &str, data: &serde_json::Value) -> Event {
        let id = self.next_id;
        self.next_id += 1;
        Event::default()
            .event(name)
            .id(id.to_string())
            .data(data.to_string())
    }
}

/// A final status: the stream ends after it.
fn is_final(status: pb::RunStatus) -> bool {
    matches!(
        status,
        pb::RunStatus::Completed
            | pb::RunStatus::Failed
            | pb::RunStatus::PartialFailed
            | pb::RunStatus::TimedOut
            | pb::RunStatus::InfraFailed
            | pb::RunStatus::Cancelled
    )
}

/// The run as `GET /api/v1/runs/{id}` shows it, without `tasks` (see the module docs).
fn status_data(run: pb::Run) -> serde_json::Value {
    let run = Run::from(run);
    let mut data = serde_json::to_value(&run)
        .unwrap_or_else(|_| serde_json::json!({"id": run.id, "status": run.status}));
    if let Some(fields) = data.as_object_mut() {
        fields.remove("tasks");
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_data_is_the_run_body_without_tasks() {
        let run = pb::Run {
            id: "r".into(),
            status: pb::RunStatus::Running as i32,
            params_json: r#"{"branch":"main"}"#.into(),
            tasks: Some(pb::TaskCounts::default()),
            ..pb::Run::default()
        };
        let data = status_data(run);
        assert_eq!(data["id"], "r");
        assert_eq!(data["status"], "running");
        assert_eq!(data["params"]["branch"], "main");
        assert!(data.get("tasks").is_none(), "{data}");
        assert!(data.get("finished_at").is_some(), "{data}");
    }

    #[test]
    fn only_final_statuses_end_the_stream() {
        assert!(is_final(pb::RunStatus::Completed));
        assert!(is_final(pb::RunStatus::InfraFailed));
        assert!(!is_final(pb::RunStatus::Reporting));
        assert!(!is_final(pb::RunStatus::Unspecified));
    }
}
