//! The message of each finding kind, from the tasks it is about and the facts they wait on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use switchyard_proto::monitoring::v1::Finding;
use switchyard_proto::scheduler::v1::{GetRunWaitStateResponse as WaitState, WaitingTask};
use switchyard_runtime::time::from_proto;

use super::text::{capitalized, clock, labels_text, plural, span, task_name, tasks_name};
use super::{SCHEDULE_TO_START_NEAR, finding};

pub(super) fn no_agent(state: &WaitState, tasks: &[&WaitingTask]) -> String {
    let first = tasks[0];
    let wanted = if first.labels.is_empty() {
        "No agent is polling".to_owned()
    } else {
        format!(
            "No agent with labels {} is polling",
            labels_text(&first.labels)
        )
    };
    let pool = state.agents.clone().unwrap_or_default();
    let live = if pool.live == 0 {
        "no agent is live at all".to_owned()
    } else {
        let sets: Vec<String> = pool
            .label_sets
            .iter()
            .map(|s| format!("{} ({})", labels_text(&s.labels), s.agents))
            .collect();
        let are = if pool.live == 1 { "is" } else { "are" };
        format!(
            "{} {are} live, with {}",
            plural(pool.live, "agent", "agents"),
            sets.join("; ")
        )
    };
    let missing = if pool.live > 0 && !first.unoffered_labels.is_empty() {
        format!(
            "; no live agent offers {}",
            labels_text(&first.unoffered_labels)
        )
    } else {
        String::new()
    };
    format!("{wanted} for {}: {live}{missing}.", tasks_name(tasks))
}

/// The schedule-to-start deadline of the earliest eligible task, when it is within a fifth of
/// the timeout or a minute (whichever is longer), or already passed.
pub(super) fn start_deadline_near(
    state: &WaitState,
    tasks: &[&WaitingTask],
    now: DateTime<Utc>,
) -> Option<Finding> {
    let limit = i64::try_from(state.schedule_to_start_seconds).unwrap_or(i64::MAX);
    let window = chrono::Duration::seconds((limit / 5).max(60));
    let (task, deadline) = tasks
        .iter()
        .filter_map(|t| Some((*t, t.start_deadline.as_ref().and_then(from_proto)?)))
        .min_by_key(|(_, d)| *d)?;
    let left = deadline - now;
    if left > window {
        return None;
    }
    let when = if left <= chrono::Duration::zero() {
        format!("its deadline passed at {}", clock(deadline, now))
    } else {
        format!("by {} (in {})", clock(deadline, now), span(left))
    };
    let message = format!(
        "The schedule-to-start timeout ({}) is near for {}: unless an agent with {} takes it {when}, the run ends infra_failed.",
        span(chrono::Duration::seconds(limit)),
        task_name(task),
        labels_text(&task.labels),
    );
    Some(finding(
        SCHEDULE_TO_START_NEAR,
        message,
        vec![task.task_id.clone()],
    ))
}

/// `after exit code 1`, `after timed out`, or nothing when the cause is unknown.
fn cause(task: &WaitingTask) -> String {
    match (task.last_exit_code, task.last_error.as_str()) {
        (Some(code), _) => format!(" after exit code {code}"),
        (None, "") => String::new(),
        (None, error) => format!(" after {error}"),
    }
}

pub(super) fn backing_off(tasks: &[&WaitingTask], now: DateTime<Utc>) -> String {
    let until = |t: &WaitingTask| t.not_before.as_ref().and_then(from_proto);
    if let [task] = tasks {
        let when = until(task)
            .map(|t| format!(" until {} (in {})", clock(t, now), span(t - now)))
            .unwrap_or_default();
        return format!(
            "Attempt {} of {} backs off{when}{}.",
            task.attempt,
            task_name(task),
            cause(task)
        );
    }
    let last = tasks.iter().filter_map(|t| until(t)).max();
    let when = last
        .map(|t| format!(", the last until {}", clock(t, now)))
        .unwrap_or_default();
    format!(
        "{} back off after failed attempts{when} (e.g. attempt {} of {}{}).",
        tasks_name(tasks),
        tasks[0].attempt,
        task_name(tasks[0]),
        cause(tasks[0])
    )
}

pub(super) fn project_limit(state: &WaitState, tasks: &[&WaitingTask]) -> String {
    let project = state.project.clone().unwrap_or_default();
    let mut by_run: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for h in &project.holders {
        by_run
            .entry(h.run_id.as_str())
            .or_default()
            .push(format!("{} ({})", h.node, h.running));
    }
    let holders: Vec<String> = by_run
        .iter()
        .map(|(run, nodes)| {
            let this = if *run == state.run_id {
                ", this run"
            } else {
                ""
            };
            format!("run {run}{this}: {}", nodes.join(", "))
        })
        .collect();
    let held = if holders.is_empty() {
        String::new()
    } else {
        format!(" [{}]", holders.join("; "))
    };
    let are = if project.running == 1 { "is" } else { "are" };
    format!(
        "Project limit {} reached: {} of {} {are} running{held}; {} wait{} for a free slot.",
        project.max_running_tasks,
        plural(project.running, "task", "tasks"),
        plural(by_run.len() as u32, "run", "runs"),
        tasks_name(tasks),
        if tasks.len() == 1 { "s" } else { "" },
    )
}

pub(super) fn node_limit(state: &WaitState, tasks: &[&WaitingTask]) -> String {
    let node = &tasks[0].node;
    let load = state
        .node_loads
        .iter()
        .find(|l| &l.node == node)
        .cloned()
        .unwrap_or_default();
    let are = if load.running == 1 { "is" } else { "are" };
    format!(
        "Node {node}'s concurrency limit {} reached: {} of its tasks {are} running; {} wait{} for a free slot.",
        load.limit,
        load.running,
        tasks_name(tasks),
        if tasks.len() == 1 { "s" } else { "" },
    )
}

pub(super) fn queued(tasks: &[&WaitingTask]) -> String {
    let agents = tasks.iter().map(|t| t.matching_agents).max().unwrap_or(0);
    let (is, it) = if tasks.len() == 1 {
        ("is", "it")
    } else {
        ("are", "them")
    };
    format!(
        "{} {is} ready and next in line: {} {} the labels and take{} {it} at the next poll with free capacity.",
        capitalized(&tasks_name(tasks)),
        plural(agents, "live agent", "live agents"),
        if agents == 1 { "has" } else { "have" },
        if agents == 1 { "s" } else { "" },
    )
}
