//! Tests of the diagnosis wording and logic, one per finding kind.

use chrono::TimeZone;
use switchyard_proto::scheduler::v1::{
    AgentPool, LabelSet, LimitHolder, NodeLoad, NodeState, ProjectLoad,
};
use switchyard_runtime::time::to_proto;

use super::text::{clock, labels_text, span};
use super::*;

const RUN: &str = "run-1";

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, h, m, s)
        .single()
        .expect("a valid time")
}

fn now() -> DateTime<Utc> {
    at(12, 0, 0)
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn task(id: &str, node: &str, shard: u32, shards: u32) -> WaitingTask {
    WaitingTask {
        task_id: id.into(),
        node: node.into(),
        shard_index: shard,
        shard_count: shards,
        attempt: 1,
        not_before: Some(to_proto(at(11, 59, 0))),
        queued_at: Some(to_proto(at(11, 59, 0))),
        start_deadline: Some(to_proto(at(12, 9, 0))),
        matching_agents: 1,
        ..WaitingTask::default()
    }
}

fn pool(sets: &[(&[(&str, &str)], u32)]) -> AgentPool {
    AgentPool {
        live: sets.iter().map(|(_, n)| n).sum(),
        label_sets: sets
            .iter()
            .map(|(l, n)| LabelSet {
                labels: labels(l),
                agents: *n,
            })
            .collect(),
    }
}

fn state(waiting: Vec<WaitingTask>) -> WaitState {
    WaitState {
        run_id: RUN.into(),
        project_id: "p".into(),
        status: "running".into(),
        as_of: Some(to_proto(now())),
        waiting_total: waiting.len() as u32,
        waiting,
        agents: Some(pool(&[(&[("os", "linux")], 1)])),
        project: Some(ProjectLoad::default()),
        schedule_to_start_seconds: 600,
        ..WaitState::default()
    }
}

fn codes(d: &Diagnosis) -> Vec<&str> {
    d.findings.iter().map(|f| f.code.as_str()).collect()
}

#[test]
fn diagnosis_names_the_labels_no_live_agent_offers() {
    let mut gpu = task("t1", "train", 0, 1);
    gpu.labels = labels(&[("os", "linux"), ("gpu", "true")]);
    gpu.unoffered_labels = labels(&[("gpu", "true")]);
    gpu.matching_agents = 0;
    let mut s = state(vec![gpu]);
    s.agents = Some(pool(&[(&[("os", "linux")], 1), (&[("os", "macos")], 1)]));
    let d = diagnose(&s, now());
    assert_eq!(codes(&d), [NO_MATCHING_AGENT]);
    assert_eq!(
        d.findings[0].message,
        "No agent with labels gpu=true, os=linux is polling for node train: 2 agents are live, \
         with os=linux (1); os=macos (1); no live agent offers gpu=true."
    );
    assert_eq!(d.findings[0].task_ids, ["t1"]);
    assert!(
        d.summary
            .starts_with("The run is running: 0 tasks running, 1 waiting. No agent")
    );
}

#[test]
fn diagnosis_says_when_no_agent_is_live_at_all() {
    let mut any = task("t1", "build", 0, 1);
    any.matching_agents = 0;
    let mut s = state(vec![any]);
    s.agents = Some(AgentPool::default());
    let d = diagnose(&s, now());
    assert_eq!(
        d.findings[0].message,
        "No agent is polling for node build: no agent is live at all."
    );
}

#[test]
fn diagnosis_warns_when_the_schedule_to_start_deadline_is_near() {
    let mut late = task("t1", "build", 0, 1);
    late.matching_agents = 0;
    late.labels = labels(&[("os", "windows")]);
    late.start_deadline = Some(to_proto(at(12, 1, 30)));
    let d = diagnose(&state(vec![late.clone()]), now());
    assert_eq!(codes(&d), [NO_MATCHING_AGENT, SCHEDULE_TO_START_NEAR]);
    assert_eq!(
        d.findings[1].message,
        "The schedule-to-start timeout (10m00s) is near for node build: unless an agent with \
         os=windows takes it by 12:01:30Z (in 1m30s), the run ends infra_failed."
    );
    // Far from it (a fifth of 10 minutes is 2 minutes): no warning.
    late.start_deadline = Some(to_proto(at(12, 5, 0)));
    assert_eq!(
        codes(&diagnose(&state(vec![late.clone()]), now())),
        [NO_MATCHING_AGENT]
    );
    // Already past.
    late.start_deadline = Some(to_proto(at(11, 59, 59)));
    let d = diagnose(&state(vec![late]), now());
    assert!(
        d.findings[1]
            .message
            .contains("its deadline passed at 11:59:59Z")
    );
}

#[test]
fn diagnosis_tells_the_backoff_end_and_its_cause() {
    let mut retry = task("t1", "test", 2, 4);
    retry.attempt = 3;
    retry.not_before = Some(to_proto(at(12, 4, 5)));
    retry.last_exit_code = Some(1);
    let d = diagnose(&state(vec![retry.clone()]), now());
    assert_eq!(codes(&d), [BACKING_OFF]);
    assert_eq!(
        d.findings[0].message,
        "Attempt 3 of node test shard 2 backs off until 12:04:05Z (in 4m05s) after exit code 1."
    );
    // A cause without an exit code is told by its error.
    retry.last_exit_code = None;
    retry.last_error = "timed out".into();
    assert!(
        diagnose(&state(vec![retry.clone()]), now()).findings[0]
            .message
            .ends_with("after timed out.")
    );
    // Several of one node are told together.
    let mut other = retry.clone();
    other.task_id = "t2".into();
    other.not_before = Some(to_proto(at(12, 6, 0)));
    let d = diagnose(&state(vec![retry, other]), now());
    assert_eq!(codes(&d), [BACKING_OFF]);
    assert!(
        d.findings[0].message.starts_with(
            "2 tasks of node test back off after failed attempts, the last until 12:06:00Z"
        ),
        "{}",
        d.findings[0].message
    );
    assert_eq!(d.findings[0].task_ids, ["t1", "t2"]);
}

#[test]
fn diagnosis_names_what_holds_a_full_project_limit() {
    let mut s = state(vec![task("t1", "build", 0, 1)]);
    s.project = Some(ProjectLoad {
        max_running_tasks: 4,
        running: 4,
        holders: vec![
            LimitHolder {
                run_id: "run-x".into(),
                node: "test".into(),
                running: 3,
            },
            LimitHolder {
                run_id: RUN.into(),
                node: "lint".into(),
                running: 1,
            },
        ],
    });
    let d = diagnose(&s, now());
    assert_eq!(codes(&d), [CONCURRENCY_LIMIT]);
    assert_eq!(
        d.findings[0].message,
        "Project limit 4 reached: 4 tasks of 2 runs are running [run run-1, this run: lint (1); \
         run run-x: test (3)]; node build waits for a free slot."
    );
}

#[test]
fn diagnosis_names_a_full_node_limit() {
    let mut s = state(vec![task("t1", "test", 3, 5), task("t2", "test", 4, 5)]);
    s.node_loads = vec![NodeLoad {
        node: "test".into(),
        limit: 2,
        running: 2,
        waiting: 2,
    }];
    s.running_tasks = 2;
    let d = diagnose(&s, now());
    assert_eq!(codes(&d), [CONCURRENCY_LIMIT]);
    assert_eq!(
        d.findings[0].message,
        "Node test's concurrency limit 2 reached: 2 of its tasks are running; 2 tasks of node \
         test wait for a free slot."
    );
    // A limit with room left is no finding.
    s.node_loads[0].running = 1;
    assert_eq!(codes(&diagnose(&s, now())), [QUEUED]);
}

#[test]
fn diagnosis_of_a_ready_task_with_an_agent_is_next_in_line() {
    let d = diagnose(&state(vec![task("t1", "build", 0, 1)]), now());
    assert_eq!(codes(&d), [QUEUED]);
    assert_eq!(
        d.findings[0].message,
        "Node build is ready and next in line: 1 live agent has the labels and takes it at the \
         next poll with free capacity."
    );
}

#[test]
fn diagnosis_names_the_upstream_nodes_a_node_waits_on() {
    let node = |id: &str, status: &str, shards, done, needs: &[&str]| NodeState {
        node: id.into(),
        status: status.into(),
        shards,
        succeeded: done,
        failed: 0,
        needs: needs.iter().map(|n| (*n).to_owned()).collect(),
    };
    let mut s = state(Vec::new());
    s.running_tasks = 5;
    s.nodes = vec![
        node("build", "succeeded", 1, 1, &[]),
        node("test", "running", 8, 3, &["build"]),
        node("lint", "running", 1, 0, &["build"]),
        node("report", "pending", 1, 0, &["test", "lint", "build"]),
    ];
    let d = diagnose(&s, now());
    assert_eq!(codes(&d), [WAITING_ON_UPSTREAM]);
    assert_eq!(
        d.findings[0].message,
        "Node report waits on test (running, 3/8 shards done), lint (running, 0/1 shards done)."
    );
    assert!(
        d.summary
            .starts_with("The run is running: 5 tasks running, 0 waiting.")
    );
}

#[test]
fn diagnosis_of_a_finished_run_says_nothing_waits() {
    let mut s = state(Vec::new());
    s.status = "completed".into();
    s.finished_at = Some(to_proto(at(11, 58, 3)));
    let d = diagnose(&s, now());
    assert!(d.findings.is_empty());
    assert_eq!(
        d.summary,
        "Nothing is waiting: the run completed at 11:58:03Z."
    );
    s.status = "infra_failed".into();
    s.reason = "no agent took task t (node build) within 600s".into();
    s.finished_at = Some(to_proto(at(9, 0, 0) - chrono::Duration::days(1)));
    assert_eq!(
        diagnose(&s, now()).summary,
        "Nothing is waiting: the run ended infra_failed at 2026-11-27T09:00:00Z (no agent took \
         task t (node build) within 600s)."
    );
}

#[test]
fn diagnosis_of_a_running_run_with_nothing_queued_says_so() {
    let mut s = state(Vec::new());
    s.running_tasks = 2;
    let d = diagnose(&s, now());
    assert!(d.findings.is_empty());
    assert_eq!(
        d.summary,
        "Nothing is waiting: the run is running with 2 tasks running."
    );
}

#[test]
fn diagnosis_of_a_stopping_run_says_it_stops_first() {
    let mut s = state(vec![task("t1", "build", 0, 1)]);
    s.cancel_requested = true;
    s.reason = "cancelled by ci".into();
    let d = diagnose(&s, now());
    assert_eq!(codes(&d), [STOPPING, QUEUED]);
    assert_eq!(
        d.findings[0].message,
        "The run is stopping (cancelled by ci): its queued tasks will not start."
    );
}

#[test]
fn diagnosis_orders_reasons_and_bounds_the_summary() {
    // One task per reason, in reverse order of importance.
    let mut ready = task("q", "a", 0, 1);
    ready.node = "z".into();
    let mut off = task("b", "b", 0, 1);
    off.not_before = Some(to_proto(at(12, 0, 30)));
    off.attempt = 2;
    let mut lost = task("n", "c", 0, 1);
    lost.matching_agents = 0;
    let mut s = state(vec![ready, off, lost]);
    s.nodes.push(NodeState {
        node: "z".into(),
        status: "running".into(),
        shards: 1,
        ..NodeState::default()
    });
    for i in 0..6 {
        s.nodes.push(NodeState {
            node: format!("after{i}"),
            status: "pending".into(),
            needs: vec!["z".into()],
            ..NodeState::default()
        });
    }
    let d = diagnose(&s, now());
    assert_eq!(&codes(&d)[..3], [NO_MATCHING_AGENT, BACKING_OFF, QUEUED]);
    assert_eq!(d.findings.len(), 9);
    assert!(
        d.summary.ends_with("(4 more findings below.)"),
        "{}",
        d.summary
    );
}

#[test]
fn diagnosis_spans_and_clocks_read_like_people_write_them() {
    assert_eq!(span(chrono::Duration::seconds(45)), "45s");
    assert_eq!(span(chrono::Duration::seconds(245)), "4m05s");
    assert_eq!(span(chrono::Duration::seconds(7_380)), "2h03m");
    assert_eq!(span(chrono::Duration::seconds(-5)), "0s");
    assert_eq!(clock(at(12, 4, 5), now()), "12:04:05Z");
    assert_eq!(labels_text(&labels(&[])), "no labels");
}
