//! "Why is this run not running?" in plain words: turns the scheduler's live facts about one
//! run (`GetRunWaitState`) into findings and a one-paragraph summary. Pure: no I/O, the clock
//! is the scheduler's (`as_of`), so the words match the facts they were built from.
//!
//! Each queued task gets one reason, the first that holds: no live agent has its labels
//! (`no_matching_agent`, and `schedule_to_start_near` when the run is about to end for it),
//! it backs off after a failed attempt (`backing_off`), the project's or its node's
//! concurrency limit is full (`concurrency_limit`), or it is simply next in line (`queued`).
//! Nodes not yet started name the upstream nodes they wait on (`waiting_on_upstream`).
//! Tasks with the same reason are told together, per label set or node.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use switchyard_proto::monitoring::v1::Finding;
use switchyard_proto::scheduler::v1::{GetRunWaitStateResponse as WaitState, WaitingTask};
use switchyard_runtime::time::from_proto;

use messages::{backing_off, no_agent, node_limit, project_limit, queued, start_deadline_near};
use text::{clock, labels_text, plural};

mod messages;
mod text;

pub const NO_MATCHING_AGENT: &str = "no_matching_agent";
pub const SCHEDULE_TO_START_NEAR: &str = "schedule_to_start_near";
pub const CONCURRENCY_LIMIT: &str = "concurrency_limit";
pub const BACKING_OFF: &str = "backing_off";
pub const QUEUED: &str = "queued";
pub const WAITING_ON_UPSTREAM: &str = "waiting_on_upstream";
pub const STOPPING: &str = "stopping";

/// Findings after which the summary only counts the rest.
const SUMMARY_FINDINGS: usize = 5;

const FINAL: [&str; 6] = [
    "completed",
    "failed",
    "partial_failed",
    "timed_out",
    "infra_failed",
    "cancelled",
];

/// The answer for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    pub status: String,
    pub summary: String,
    pub findings: Vec<Finding>,
}

/// Why one queued task is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    NoAgent,
    BackingOff,
    ProjectFull,
    NodeFull,
    Queued,
}

/// Builds the diagnosis of `state`; `fallback_now` is used only when the facts carry no clock.
pub fn diagnose(state: &WaitState, fallback_now: DateTime<Utc>) -> Diagnosis {
    let now = state
        .as_of
        .as_ref()
        .and_then(from_proto)
        .unwrap_or(fallback_now);
    let status = state.status.clone();
    if FINAL.contains(&status.as_str()) {
        let when = state
            .finished_at
            .as_ref()
            .and_then(from_proto)
            .map(|t| format!(" at {}", clock(t, now)))
            .unwrap_or_default();
        let how = if status == "completed" {
            format!("the run completed{when}")
        } else {
            format!("the run ended {status}{when}")
        };
        let why = if state.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", state.reason)
        };
        return Diagnosis {
            status,
            summary: format!("Nothing is waiting: {how}{why}."),
            findings: Vec::new(),
        };
    }
    let mut findings = Vec::new();
    if state.cancel_requested {
        let why = if state.reason.is_empty() {
            "cancel requested".to_owned()
        } else {
            state.reason.clone()
        };
        findings.push(finding(
            STOPPING,
            format!("The run is stopping ({why}): its queued tasks will not start."),
            Vec::new(),
        ));
    }
    findings.extend(task_findings(state, now));
    findings.extend(upstream_findings(state));
    let summary = summary(state, &findings);
    Diagnosis {
        status,
        summary,
        findings,
    }
}

fn finding(code: &str, message: String, task_ids: Vec<String>) -> Finding {
    Finding {
        code: code.to_owned(),
        message,
        task_ids,
    }
}

fn project_full(state: &WaitState) -> bool {
    state
        .project
        .as_ref()
        .is_some_and(|p| p.max_running_tasks > 0 && p.running >= p.max_running_tasks)
}

fn node_full(state: &WaitState, node: &str) -> bool {
    state
        .node_loads
        .iter()
        .any(|l| l.node == node && l.limit > 0 && l.running >= l.limit)
}

fn reason(state: &WaitState, task: &WaitingTask, now: DateTime<Utc>) -> Reason {
    let eligible = task
        .not_before
        .as_ref()
        .and_then(from_proto)
        .is_none_or(|t| t <= now);
    if task.matching_agents == 0 {
        Reason::NoAgent
    } else if !eligible {
        Reason::BackingOff
    } else if project_full(state) {
        Reason::ProjectFull
    } else if node_full(state, &task.node) {
        Reason::NodeFull
    } else {
        Reason::Queued
    }
}

fn task_findings(state: &WaitState, now: DateTime<Utc>) -> Vec<Finding> {
    // Grouped by reason, then by label set (no agent) or node (the others).
    let mut groups: BTreeMap<(Reason, String), Vec<&WaitingTask>> = BTreeMap::new();
    for task in &state.waiting {
        let why = reason(state, task, now);
        let key = match why {
            Reason::NoAgent => labels_text(&task.labels),
            Reason::ProjectFull => String::new(),
            _ => task.node.clone(),
        };
        groups.entry((why, key)).or_default().push(task);
    }
    let mut out = Vec::new();
    for ((why, _), tasks) in &groups {
        let ids = tasks.iter().map(|t| t.task_id.clone()).collect();
        match why {
            Reason::NoAgent => {
                out.push(finding(NO_MATCHING_AGENT, no_agent(state, tasks), ids));
                if let Some(near) = start_deadline_near(state, tasks, now) {
                    out.push(near);
                }
            }
            Reason::BackingOff => out.push(finding(BACKING_OFF, backing_off(tasks, now), ids)),
            Reason::ProjectFull => {
                out.push(finding(CONCURRENCY_LIMIT, project_limit(state, tasks), ids))
            }
            Reason::NodeFull => out.push(finding(CONCURRENCY_LIMIT, node_limit(state, tasks), ids)),
            Reason::Queued => out.push(finding(QUEUED, queued(tasks), ids)),
        }
    }
    out
}

/// Pending nodes with what they wait on: each upstream node that has not let them run yet.
fn upstream_findings(state: &WaitState) -> Vec<Finding> {
    let by_id: BTreeMap<&str, _> = state.nodes.iter().map(|n| (n.node.as_str(), n)).collect();
    let mut out = Vec::new();
    for node in state.nodes.iter().filter(|n| n.status == "pending") {
        let blocking: Vec<String> = node
            .needs
            .iter()
            .filter_map(|need| {
                let up = by_id.get(need.as_str())?;
                let how = match up.status.as_str() {
                    "succeeded" | "partial" => return None,
                    "pending" => "not started".to_owned(),
                    "running" => format!(
                        "running, {}/{} shards done",
                        up.succeeded + up.failed,
                        up.shards
                    ),
                    other => other.to_owned(),
                };
                Some(format!("{need} ({how})"))
            })
            .collect();
        if blocking.is_empty() {
            continue;
        }
        out.push(finding(
            WAITING_ON_UPSTREAM,
            format!("Node {} waits on {}.", node.node, blocking.join(", ")),
            Vec::new(),
        ));
    }
    out
}

fn summary(state: &WaitState, findings: &[Finding]) -> String {
    let running = state.running_tasks;
    let waiting = state.waiting_total.max(state.waiting.len() as u32);
    let head = match (state.status.as_str(), running, waiting) {
        ("reporting", _, _) => {
            "Nothing is waiting: every task has ended and the run is being reported.".to_owned()
        }
        (_, 0, 0) if findings.is_empty() => format!(
            "Nothing is waiting: the run is {} with no task running or queued.",
            state.status
        ),
        (_, running, 0) if findings.is_empty() => format!(
            "Nothing is waiting: the run is {} with {} running.",
            state.status,
            plural(running, "task", "tasks")
        ),
        ("provisioning", 0, waiting) => format!(
            "The run is provisioning: no task has started yet and {} waiting.",
            plural(waiting, "task is", "tasks are")
        ),
        (status, running, waiting) => format!(
            "The run is {status}: {} running, {} waiting.",
            plural(running, "task", "tasks"),
            waiting
        ),
    };
    let mut parts = vec![head];
    parts.extend(
        findings
            .iter()
            .take(SUMMARY_FINDINGS)
            .map(|f| f.message.clone()),
    );
    if findings.len() > SUMMARY_FINDINGS {
        parts.push(format!(
            "({} more findings below.)",
            findings.len() - SUMMARY_FINDINGS
        ));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests;
