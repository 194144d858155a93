//! `RunService/WatchRun`: one run's status changes, streamed until the run is final.
//!
//! The first message is the run as it stands; after that a message goes out only when the
//! status (or `finished_at`) differs from the last one sent, and the stream ends after the
//! final status. The watcher re-reads the run when [`crate::run_changes`] hints that it
//! changed on this replica, and at least every [`POLL_INTERVAL`] regardless: another replica
//! may have applied the change, and a lagging subscriber loses hints. A status that lasted
//! less than one re-read may be skipped; the final one never is, since it does not change
//! again.
//!
//! No task is spawned: the stream is driven by the server and dropped with the call, which
//! also drops its subscription, so a client that goes away leaves nothing behind. Service
//! shutdown ends open streams with `UNAVAILABLE`, so the drain does not wait on them. Owns no
//! SQL: it reads through `store::runs`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_proto::controlplane::v1::WatchRunResponse;
use switchyard_runtime::shutdown::Shutdown;
use tokio::sync::broadcast::{self, error::RecvError};
use tonic::Status;
use tonic::codegen::BoxStream;

use crate::domain::run_status::RunStatus;
use crate::error::Error;
use crate::state::State;
use crate::store::{self, entity::run};

/// The fallback re-read cadence.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Consecutive failed re-reads (about this many seconds of database trouble) before the
/// stream gives up with `UNAVAILABLE`.
const MAX_FAILED_READS: u32 = 30;

/// What the client last heard about the run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: String,
    finished_at: Option<DateTime<Utc>>,
}

impl Seen {
    fn of(run: &run::Model) -> Seen {
        Seen {
            status: run.status.clone(),
            finished_at: run.finished_at,
        }
    }
}

/// Whether the run is in a final status (an unknown status is not final: keep watching).
fn is_final(run: &run::Model) -> bool {
    RunStatus::parse(&run.status).is_some_and(RunStatus::is_final)
}

/// One call's watcher: the state behind the stream.
struct Watcher {
    state: Arc<State>,
    run_id: String,
    /// `None` once the hub is gone: the timer alone drives re-reads then.
    changes: Option<broadcast::Receiver<Arc<str>>>,
    shutdown: Shutdown,
    /// The authorized first read, sent as the first message.
    first: Option<run::Model>,
    seen: Option<Seen>,
    failed_reads: u32,
    done: bool,
}

/// The stream of one call. `changes` must have been subscribed before `first` was read.
pub fn stream(
    state: Arc<State>,
    changes: broadcast::Receiver<Arc<str>>,
    first: run::Model,
) -> BoxStream<WatchRunResponse> {
    let watcher = Watcher {
        run_id: first.id.clone(),
        shutdown: state.shutdown.clone(),
        state,
        changes: Some(changes),
        first: Some(first),
        seen: None,
        failed_reads: 0,
        done: false,
    };
    Box::pin(futures::stream::unfold(watcher, |mut watcher| async move {
        let item = watcher.next().await?;
        Some((item, watcher))
    }))
}

impl Watcher {
    /// The next message, or `None` when the stream is over.
    async fn next(&mut self) -> Option<Result<WatchRunResponse, Status>> {
        if self.done {
            return None;
        }
        if let Some(run) = self.first.take() {
            return Some(Ok(self.send(&run)));
        }
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    self.done = true;
                    return Some(Err(Status::unavailable("the control plane is shutting down")));
                }
                () = hinted(&mut self.changes, &self.run_id) => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            match store::runs::get(&self.state.db, &self.run_id).await {
                Ok(run) => {
                    self.failed_reads = 0;
                    if self.seen.as_ref() != Some(&Seen::of(&run)) {
                        return Some(Ok(self.send(&run)));
                    }
                }
                Err(Error::NotFound(message)) => {
                    // Deleted under the watcher (retention): nothing more will come.
                    self.done = true;
                    return Some(Err(Status::not_found(message)));
                }
                Err(error) => {
                    self.failed_reads += 1;
                    tracing::warn!(%error, run_id = %self.run_id, failed_reads = self.failed_reads, "watched run could not be read");
                    if self.failed_reads >= MAX_FAILED_READS {
                        self.done = true;
                        return Some(Err(Status::unavailable("the run cannot be read now")));
                    }
                }
            }
        }
    }

    /// Records what the client is told and ends the stream after a final status.
    fn send(&mut self, run: &run::Model) -> WatchRunResponse {
        self.seen = Some(Seen::of(run));
        self.done = is_final(run);
        WatchRunResponse {
            run: Some(super::convert::run(run)),
        }
    }
}

/// Resolves when `run_id` may have changed: its id was published, or hints were lost to lag.
/// Pending forever once the hub is gone (the caller's timer takes over).
async fn hinted(changes: &mut Option<broadcast::Receiver<Arc<str>>>, run_id: &str) {
    let Some(receiver) = changes.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match receiver.recv().await {
            Ok(id) if *id == *run_id => return,
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(run_id, missed, "run watcher lagged, re-reading");
                return;
            }
            Err(RecvError::Closed) => break,
        }
    }
    *changes = None;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_changes::RunChanges;

    fn model(status: &str, finished_at: Option<DateTime<Utc>>) -> run::Model {
        let now = Utc::now();
        run::Model {
            id: "r".into(),
            org_id: String::new(),
            project_id: String::new(),
            workflow: "w".into(),
            workflow_id: String::new(),
            version: 1,
            status: status.into(),
            environment: String::new(),
            suite: String::new(),
            params_json: String::new(),
            initial_state_json: String::new(),
            current_state_json: String::new(),
            final_state_json: String::new(),
            shards_json: String::new(),
            coverage_json: String::new(),
            reason: String::new(),
            idempotency_key: None,
            created_by: String::new(),
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at,
            cancel_requested_at: None,
        }
    }

    #[test]
    fn only_status_and_finish_time_count_as_changes() {
        let running = model("running", None);
        let mut touched = running.clone();
        touched.current_state_json = "{\"a\":1}".into();
        touched.updated_at = Utc::now() + chrono::Duration::seconds(1);
        assert_eq!(Seen::of(&running), Seen::of(&touched));
        assert_ne!(Seen::of(&running), Seen::of(&model("reporting", None)));
        let now = Some(Utc::now());
        assert_ne!(
            Seen::of(&model("failed", now)),
            Seen::of(&model("failed", None))
        );
    }

    #[test]
    fn final_statuses_end_the_stream() {
        assert!(is_final(&model("completed", None)));
        assert!(is_final(&model("cancelled", None)));
        assert!(!is_final(&model("reporting", None)));
        assert!(!is_final(&model("bogus", None)));
    }

    #[tokio::test]
    async fn hints_wake_only_for_the_watched_run_or_on_lag() {
        let changes = RunChanges::new();
        let mut receiver = Some(changes.subscribe());
        changes.publish("other");
        changes.publish("mine");
        tokio::time::timeout(Duration::from_secs(1), hinted(&mut receiver, "mine"))
            .await
            .expect("woken by its own id");
        changes.publish("other");
        let quiet =
            tokio::time::timeout(Duration::from_millis(50), hinted(&mut receiver, "mine")).await;
        assert!(quiet.is_err(), "another run's change must not wake it");
        for _ in 0..2000 {
            changes.publish("other");
        }
        tokio::time::timeout(Duration::from_secs(1), hinted(&mut receiver, "mine"))
            .await
            .expect("woken by lag");
        drop(changes);
        let closed =
            tokio::time::timeout(Duration::from_millis(50), hinted(&mut receiver, "mine")).await;
        assert!(closed.is_err(), "a closed hub leaves the timer in charge");
        assert!(receiver.is_none());
    }
}
