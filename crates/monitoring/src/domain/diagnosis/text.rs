//! How the diagnosis writes things: label sets, task names, counts, clock times and spans.

use chrono::{DateTime, Utc};
use switchyard_proto::scheduler::v1::WaitingTask;

/// `os=linux, gpu=true` in label order; `no labels` when empty.
pub(super) fn labels_text<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "no labels".to_owned()
    } else {
        pairs.join(", ")
    }
}

/// `node test shard 2` (the shard only when the node has several).
pub(super) fn task_name(task: &WaitingTask) -> String {
    if task.shard_count > 1 {
        format!("node {} shard {}", task.node, task.shard_index)
    } else {
        format!("node {}", task.node)
    }
}

/// `node test shard 2`, or `3 tasks of node test`, or `3 tasks of nodes a, b`.
pub(super) fn tasks_name(tasks: &[&WaitingTask]) -> String {
    if let [one] = tasks {
        return task_name(one);
    }
    let mut nodes: Vec<&str> = tasks.iter().map(|t| t.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let kind = if nodes.len() == 1 { "node" } else { "nodes" };
    format!("{} tasks of {kind} {}", tasks.len(), nodes.join(", "))
}

pub(super) fn plural(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

pub(super) fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

/// `12:04:05Z` on the same day as `now`, else the full date and time.
pub(super) fn clock(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if t.date_naive() == now.date_naive() {
        t.format("%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// `45s`, `4m05s`, `2h03m`, `3d04h`.
pub(super) fn span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        ..60 => format!("{s}s"),
        60..3_600 => format!("{}m{:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}
