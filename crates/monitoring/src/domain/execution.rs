//! One attempt of a task as the history records it, and the rule that merges what several
//! lifecycle events say about the same attempt.
//!
//! Events arrive at least once and in any order across batches, so the merge never moves an
//! attempt backwards: a record takes an event's status (and what belongs to it: exit code,
//! error, retry reason, finish time, next eligibility) only when the event's
//! [`Execution::precedence`] is higher — 0 while running, the finish time once ended. Fields an
//! event may lack (workflow, agent, queue and start times) are filled from whichever side has
//! them, the winner's first. The store applies the same rule in SQL (`store::executions`);
//! this is the reference its tests and the in-batch folding use.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// An attempt's status in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Leased to an agent; no ending heard yet.
    Running,
    Succeeded,
    /// Failed or timed out with attempts left; the next attempt is scheduled.
    Retrying,
    /// The agent lost the lease; the next attempt is scheduled.
    LeaseExpired,
    DeadLettered,
    Cancelled,
    /// Failed for good without a dead letter (the scheduler does not emit it today).
    Failed,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Running,
        Status::Succeeded,
        Status::Retrying,
        Status::LeaseExpired,
        Status::DeadLettered,
        Status::Cancelled,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Retrying => "retrying",
            Status::LeaseExpired => "lease_expired",
            Status::DeadLettered => "dead_lettered",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The statuses a filter may name, for error messages.
    pub fn names() -> String {
        Status::ALL.map(Status::as_str).join(", ")
    }
}

/// What the history knows about one attempt `(task_id, attempt)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub task_id: String,
    pub attempt: i32,
    pub run_id: String,
    pub project_id: String,
    /// Empty until an event that carries it arrives (LEASED may not).
    pub workflow: String,
    pub node: String,
    pub shard_index: i32,
    pub shard_count: i32,
    pub iteration: i32,
    pub status: Status,
    pub agent_id: String,
    pub exit_code: Option<i32>,
    pub error: String,
    pub retry_reason: String,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the next attempt becomes eligible (retries).
    pub not_before: Option<DateTime<Utc>>,
    /// Every step heard of the attempt is an ending whose `LEASED` the scheduler never sent
    /// (the attempt ended first), so it was never in the active view (see `active::ingest`).
    /// Not stored.
    pub leased_unsent: bool,
}

impl Execution {
    /// What orders statuses: 0 while running; once ended, the finish time in microseconds
    /// (at least 1, so an ending without a time still beats running). A later ending of the
    /// same attempt wins over an earlier one, whatever order they arrive in.
    pub fn precedence(&self) -> i64 {
        if self.status == Status::Running {
            return 0;
        }
        self.finished_at
            .map(|t| t.timestamp_micros())
            .unwrap_or(1)
            .max(1)
    }

    /// Time from eligible to leased.
    pub fn wait_ms(&self) -> Option<i64> {
        between(self.queued_at, self.started_at)
    }

    /// Time from leased to ended.
    pub fn run_ms(&self) -> Option<i64> {
        between(self.started_at, self.finished_at)
    }

    /// This record with `incoming` applied (see the module docs for the rule). Identity
    /// fields (run, project, node, shard, iteration) are the attempt's and stay as they are.
    pub fn merge(mut self, incoming: &Execution) -> Execution {
        self.absorb(incoming.clone());
        self
    }

    /// Applies `incoming` in place, as [`Execution::merge`] does, taking its texts instead
    /// of copying them (a batch's LEASED and ending of one attempt meet here).
    pub fn absorb(&mut self, incoming: Execution) {
        let wins = incoming.precedence() > self.precedence();
        let Execution {
            workflow,
            agent_id,
            queued_at,
            started_at,
            status,
            exit_code,
            error,
            retry_reason,
            finished_at,
            not_before,
            leased_unsent,
            ..
        } = incoming;
        self.leased_unsent &= leased_unsent;
        if wins {
            // The winner's values; texts and times it lacks are filled from this record.
            if !workflow.is_empty() {
                self.workflow = workflow;
            }
            if !agent_id.is_empty() {
                self.agent_id = agent_id;
            }
            self.queued_at = queued_at.or(self.queued_at);
            self.started_at = started_at.or(self.started_at);
            self.status = status;
            self.exit_code = exit_code;
            self.error = error;
            self.retry_reason = retry_reason;
            self.finished_at = finished_at;
            self.not_before = not_before;
        } else {
            // This record wins; only its gaps are filled.
            if self.workflow.is_empty() {
                self.workflow = workflow;
            }
            if self.agent_id.is_empty() {
                self.agent_id = agent_id;
            }
            self.queued_at = self.queued_at.or(queued_at);
            self.started_at = self.started_at.or(started_at);
        }
    }
}

/// A dead letter's replay queued its task again at `attempt`: every earlier dead-lettered
/// attempt of the task is superseded from `at` on (see `store::replays`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requeued {
    pub task_id: String,
    pub run_id: String,
    pub attempt: i32,
    pub at: DateTime<Utc>,
}

/// One record per attempt from a batch's executions, each merged in arrival order (a
/// statement may not upsert the same row twice). Each execution's place is found first, by
/// its borrowed key, so the batch's ids are not copied to index them.
pub fn fold(executions: Vec<Execution>) -> Vec<Execution> {
    let places: Vec<usize> = {
        let mut index: HashMap<(&str, i32), usize> = HashMap::with_capacity(executions.len());
        executions
            .iter()
            .map(|e| {
                let next = index.len();
                *index.entry((e.task_id.as_str(), e.attempt)).or_insert(next)
            })
            .collect()
    };
    let mut out: Vec<Execution> = Vec::with_capacity(executions.len());
    for (execution, place) in executions.into_iter().zip(places) {
        // Places are numbered in order of first arrival: a new one is the next to push.
        if place == out.len() {
            out.push(execution);
        } else {
            out[place].absorb(execution);
        }
    }
    out
}

/// Milliseconds from `from` to `to`, never negative (clocks of different hosts).
fn between(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Option<i64> {
    Some((to? - from?).num_milliseconds().max(0))
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(second: u32) -> Option<DateTime<Utc>> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, second).single()
    }

    /// A running attempt: queued at 0 s, started at 2 s (shared with other modules' tests).
    pub(crate) fn leased() -> Execution {
        Execution {
            task_id: "t".into(),
            attempt: 1,
            run_id: "r".into(),
            project_id: "p".into(),
            workflow: String::new(),
            node: "test".into(),
            shard_index: 1,
            shard_count: 2,
            iteration: 0,
            status: Status::Running,
            agent_id: "agent-1".into(),
            exit_code: None,
            error: String::new(),
            retry_reason: String::new(),
            queued_at: at(0),
            started_at: at(2),
            finished_at: None,
            not_before: None,
            leased_unsent: false,
        }
    }

    /// `leased()` ended with a retry at 7 s.
    pub(crate) fn retrying() -> Execution {
        Execution {
            workflow: "pipeline".into(),
            status: Status::Retrying,
            exit_code: Some(1),
            error: "exit code 1".into(),
            retry_reason: "exit_code_1".into(),
            finished_at: at(7),
            not_before: at(8),
            ..leased()
        }
    }

    #[test]
    fn monitoring_a_finish_after_its_lease_fills_what_it_carries() {
        let row = leased().merge(&retrying());
        assert_eq!(row.status, Status::Retrying);
        assert_eq!(row.workflow, "pipeline");
        assert_eq!(row.exit_code, Some(1));
        assert_eq!(row.retry_reason, "exit_code_1");
        assert_eq!(row.finished_at, at(7));
        assert_eq!(row.not_before, at(8));
        assert_eq!(row.wait_ms(), Some(2000));
        assert_eq!(row.run_ms(), Some(5000));
    }

    #[test]
    fn monitoring_a_lease_after_the_finish_never_reopens_the_attempt() {
        let finished = Execution {
            agent_id: String::new(),
            started_at: None,
            ..retrying()
        };
        let row = finished.clone().merge(&leased());
        assert_eq!(
            row.status,
            Status::Retrying,
            "a late LEASED must not reset it"
        );
        assert_eq!(row.error, "exit code 1");
        assert_eq!(row.finished_at, at(7));
        // ...but it fills what the finish lacked.
        assert_eq!(row.agent_id, "agent-1");
        assert_eq!(row.started_at, at(2));
        assert_eq!(
            row.workflow, "pipeline",
            "an empty workflow does not erase one"
        );
    }

    #[test]
    fn monitoring_any_arrival_order_gives_the_same_record() {
        let events = [leased(), retrying(), leased()];
        let forward = events
            .iter()
            .cloned()
            .reduce(|row, event| row.merge(&event))
            .expect("events");
        let backward = events
            .iter()
            .rev()
            .cloned()
            .reduce(|row, event| row.merge(&event))
            .expect("events");
        assert_eq!(forward, backward);
        assert_eq!(forward.status, Status::Retrying);
    }

    #[test]
    fn monitoring_the_later_ending_wins_and_duplicates_change_nothing() {
        let expired = Execution {
            status: Status::LeaseExpired,
            retry_reason: "lease_expired".into(),
            exit_code: None,
            error: "lease expired".into(),
            finished_at: at(30),
            ..retrying()
        };
        assert_eq!(retrying().merge(&expired).status, Status::LeaseExpired);
        assert_eq!(
            expired.clone().merge(&retrying()).status,
            Status::LeaseExpired
        );
        assert_eq!(expired.clone().merge(&expired), expired);
        assert_eq!(
            expired.clone().merge(&retrying()).exit_code,
            None,
            "the loser's exit code does not leak into the winner's ending"
        );
    }

    #[test]
    fn monitoring_an_ending_without_a_time_still_beats_running() {
        let cancelled = Execution {
            status: Status::Cancelled,
            finished_at: None,
            ..leased()
        };
        assert_eq!(leased().precedence(), 0);
        assert_eq!(cancelled.precedence(), 1);
        assert_eq!(leased().merge(&cancelled).status, Status::Cancelled);
        assert_eq!(cancelled.merge(&leased()).status, Status::Cancelled);
    }

    #[test]
    fn monitoring_a_batch_folds_to_one_record_per_attempt() {
        let second = Execution {
            attempt: 2,
            ..leased()
        };
        let rows = fold(vec![retrying(), second.clone(), leased(), retrying()]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], leased().merge(&retrying()));
        assert_eq!(rows[1], second);
    }

    #[test]
    fn monitoring_durations_are_never_negative() {
        let skewed = Execution {
            queued_at: at(5),
            started_at: at(3),
            ..leased()
        };
        assert_eq!(skewed.wait_ms(), Some(0));
        assert_eq!(leased().run_ms(), None);
    }

    #[test]
    fn monitoring_statuses_round_trip_through_text() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("leased"), None);
    }
}
