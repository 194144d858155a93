//! Monitoring's Prometheus metrics about tasks, recorded at ingest from the scheduler's
//! lifecycle events (first deliveries only, after their batch committed), so the scheduler's
//! hot path pays nothing for them. Labels are bounded: `project` and `node` (a workflow's
//! node ids), never task, run or agent ids.
//!
//! Every metric name is listed in [`NAMES`] and described in [`describe`]; the Grafana
//! dashboard's test checks its queries against these lists.

use crate::checks::probe::{CHECK_HEALTHY, CHECK_PROBES};
use crate::domain::execution::{Execution, Status};

pub const TASK_WAIT: &str = "switchyard_task_wait_seconds";
pub const TASK_RUN: &str = "switchyard_task_run_seconds";
pub const TASK_ATTEMPTS: &str = "switchyard_task_attempts_finished_total";
pub const TASK_RETRIES: &str = "switchyard_task_retries_total";
pub const TASK_DEAD_LETTERS: &str = "switchyard_task_dead_letters_total";
pub const TASK_LEASES_EXPIRED: &str = "switchyard_task_leases_expired_total";
pub const ACTIVE_RECONCILES: &str = "switchyard_active_view_reconciles_total";

/// Every metric this crate exports.
pub const NAMES: [&str; 9] = [
    TASK_WAIT,
    TASK_RUN,
    TASK_ATTEMPTS,
    TASK_RETRIES,
    TASK_DEAD_LETTERS,
    TASK_LEASES_EXPIRED,
    CHECK_PROBES,
    CHECK_HEALTHY,
    ACTIVE_RECONCILES,
];

/// `# HELP` lines (installs the process's recorder first if nothing has yet).
pub fn describe() {
    let _ = switchyard_runtime::metrics::handle();
    metrics::describe_histogram!(
        TASK_WAIT,
        metrics::Unit::Seconds,
        "time from a task becoming eligible to its lease, by project and node"
    );
    metrics::describe_histogram!(
        TASK_RUN,
        metrics::Unit::Seconds,
        "time from lease to the end of an attempt, by project and node"
    );
    metrics::describe_counter!(TASK_ATTEMPTS, "attempts that ended, by project and status");
    metrics::describe_counter!(
        TASK_RETRIES,
        "attempts that ended with another attempt scheduled (failure or lost lease), by project and node"
    );
    metrics::describe_counter!(
        TASK_DEAD_LETTERS,
        "tasks dead-lettered, by project and node"
    );
    metrics::describe_counter!(
        TASK_LEASES_EXPIRED,
        "attempts whose agent lost the lease, by project and node"
    );
    metrics::describe_counter!(CHECK_PROBES, "api check probes, by result");
    metrics::describe_counter!(
        ACTIVE_RECONCILES,
        "times the active-task view was reconciled with the scheduler's leases"
    );
    metrics::describe_gauge!(
        CHECK_HEALTHY,
        "1 when the api check's latest probe passed, else 0, by project and check"
    );
}

/// What one lifecycle step contributes, taken before the batch is folded per attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    project: String,
    node: String,
    status: Status,
    wait_seconds: Option<f64>,
    run_seconds: Option<f64>,
}

impl Observation {
    /// What step `e` (one step, before folding) contributes.
    pub fn of(e: &Execution) -> Observation {
        let seconds = |ms: Option<i64>| ms.map(|ms| ms as f64 / 1000.0);
        Observation {
            project: e.project_id.clone(),
            node: e.node.clone(),
            status: e.status,
            // The lease is where waiting ends: counted once per attempt, on LEASED, or on
            // the ending of an attempt whose LEASED was never sent.
            wait_seconds: (e.status == Status::Running || e.leased_unsent)
                .then(|| seconds(e.wait_ms()))
                .flatten(),
            run_seconds: (e.status != Status::Running)
                .then(|| seconds(e.run_ms()))
                .flatten(),
        }
    }

    /// Records a batch's observations, looking each series up once per batch (by project,
    /// node and status) rather than once per step: a lookup builds and hashes its labels,
    /// which cost more than the recording itself.
    pub fn record_all(observations: &[Observation]) {
        let mut groups: std::collections::HashMap<(&str, &str, Status), Vec<&Observation>> =
            std::collections::HashMap::new();
        for o in observations {
            groups
                .entry((o.project.as_str(), o.node.as_str(), o.status))
                .or_default()
                .push(o);
        }
        for ((project, node, status), group) in groups {
            let (service, project, node) = (crate::SERVICE, project.to_owned(), node.to_owned());
            let waits: Vec<f64> = group.iter().filter_map(|o| o.wait_seconds).collect();
            if !waits.is_empty() {
                let wait = metrics::histogram!(TASK_WAIT, "service" => service, "project" => project.clone(), "node" => node.clone());
                waits.into_iter().for_each(|w| wait.record(w));
            }
            if status == Status::Running {
                continue;
            }
            let runs: Vec<f64> = group.iter().filter_map(|o| o.run_seconds).collect();
            if !runs.is_empty() {
                let run = metrics::histogram!(TASK_RUN, "service" => service, "project" => project.clone(), "node" => node.clone());
                runs.into_iter().for_each(|r| run.record(r));
            }
            let n = group.len() as u64;
            metrics::counter!(TASK_ATTEMPTS, "service" => service, "project" => project.clone(), "status" => status.as_str())
                .increment(n);
            let named = |name: &'static str| {
                metrics::counter!(name, "service" => service, "project" => project.clone(), "node" => node.clone())
                    .increment(n);
            };
            match status {
                Status::Retrying => named(TASK_RETRIES),
                Status::LeaseExpired => {
                    named(TASK_RETRIES);
                    named(TASK_LEASES_EXPIRED);
                }
                Status::DeadLettered => named(TASK_DEAD_LETTERS),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::execution::tests::{leased, retrying};

    fn ended(status: Status) -> Execution {
        Execution {
            status,
            ..retrying()
        }
    }

    #[test]
    fn the_wait_is_counted_on_the_lease_or_else_on_an_ending_whose_lease_was_never_sent() {
        let lease = Observation::of(&leased());
        assert_eq!((lease.wait_seconds, lease.run_seconds), (Some(2.0), None));
        // Its LEASED was sent (and counted the wait): the ending counts only the run.
        let after_lease = Observation::of(&ended(Status::Succeeded));
        assert_eq!(
            (after_lease.wait_seconds, after_lease.run_seconds),
            (None, Some(5.0))
        );
        // Its LEASED was never sent: the ending counts both.
        let alone = Observation::of(&Execution {
            leased_unsent: true,
            ..ended(Status::Retrying)
        });
        assert_eq!(
            (alone.wait_seconds, alone.run_seconds),
            (Some(2.0), Some(5.0))
        );
    }
}
