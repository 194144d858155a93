//! The run engine: accepting runs, leasing tasks, heartbeats, completions with retries and
//! dead letters, the lease sweeper and cancellation. Each operation is one transaction that
//! locks the run it changes, applies what `domain` decides, and writes the events it causes
//! to the outbox in the same transaction (save the `LEASED` steps for monitoring, which
//! follow their claim: see `lifecycle`).

pub mod batcher;
pub mod cron_job;
pub mod leased;
pub mod lifecycle;
pub mod maintenance;
pub mod progress;
pub mod report;
pub mod wake;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, Set};
use switchyard_proto::events::v1::RunRequested;

use crate::domain::graph::Graph;
use crate::domain::retry::{self, Budget, Decision, Failure};
use crate::domain::task_status::TaskStatus;
use crate::error::{Error, Result};
use crate::store::attempts::Outcome;
use crate::store::entity::{dead_letter, run, task};
use crate::store::{self, claim, queue, runs};
use switchyard_proto::events::v1::{TaskLifecycle, TaskPhase};

/// The engine's tunables.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a poll's lease lasts before a heartbeat must extend it.
    pub lease: Duration,
    pub budget: Budget,
    /// How long a ready task may wait for an agent before its run ends `infra_failed` (no
    /// agent with the labels, or none at all).
    pub schedule_to_start: Duration,
    /// Whether task lifecycle events go to monitoring (through the outbox).
    pub task_events: bool,
    /// How long an attempt runs before its `LEASED` step is written (see `leased`).
    pub leased_delay: Duration,
    /// How often waiting `LEASED` steps are looked at to be written.
    pub leased_flush_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lease: Duration::from_secs(30),
            budget: Budget::default(),
            schedule_to_start: Duration::from_secs(600),
            task_events: true,
            leased_delay: Duration::from_secs(1),
            leased_flush_interval: Duration::from_millis(100),
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    pub db: DatabaseConnection,
    /// Where claims run (`store::claim::pool`); the main pool until `with_claim_pool`.
    claims: DatabaseConnection,
    pub settings: Settings,
    /// Woken after every commit that may have made tasks ready, so long-polling agents (on
    /// this replica at once, on others through PostgreSQL notifications) claim at once
    /// instead of at their next poll.
    pub wake: wake::Wake,
    /// `LEASED` steps of committed claims, waiting for the periodic flush (`lifecycle`).
    pub leased: leased::LeasedSteps,
}

/// How long past its timeout (and a lease) an attempt may stay leased before the sweeper fails
/// it: the agent stops the command at the timeout, then uploads artifacts and reports, and
/// may take a while doing so. This catches agents that never report, not slow reports.
const OVERRUN_GRACE: Duration = Duration::from_secs(15 * 60);

/// How an attempt ended, as the agent reports it.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub agent_id: String,
    pub task_id: String,
    pub attempt: u32,
    pub exit_code: i32,
    pub timed_out: bool,
    pub cancelled: bool,
    pub outputs_json: String,
    pub result: report::TaskResult,
    pub log_tail: String,
}

/// An agent asking for work: its id, labels, and the tenancy its token allows (empty org
/// and project: a platform agent, which takes any task).
#[derive(Debug, Clone, Copy)]
pub struct AgentScope<'a> {
    pub agent_id: &'a str,
    pub org_id: &'a str,
    pub project_id: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// What a heartbeat found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Beat {
    /// Leases extended.
    pub held: Vec<(String, u32)>,
    /// Leases whose run was cancelled: stop them.
    pub cancelled: Vec<(String, u32)>,
    /// Leases the agent no longer holds (expired, fenced, finished).
    pub lost: Vec<(String, u32)>,
}

impl Engine {
    pub fn new(db: DatabaseConnection, settings: Settings) -> Engine {
        Engine {
            claims: db.clone(),
            db,
            settings,
            wake: wake::Wake::default(),
            leased: leased::LeasedSteps::default(),
        }
    }

    /// Claims go through `claims` (see `store::claim::pool` for why they have their own).
    pub fn with_claim_pool(self, claims: DatabaseConnection) -> Engine {
        Engine { claims, ..self }
    }

    /// Takes a run from the control plane inside the caller's transaction (the one that
    /// records the event as delivered): stores it `provisioning`, starts its root nodes.
    pub async fn accept<C: ConnectionTrait>(conn: &C, request: &RunRequested) -> Result<()> {
        if runs::find(conn, &request.run_id).await?.is_some() {
            return Ok(());
        }
        let definition: switchyard_workflow::Definition =
            serde_json::from_str(&request.definition_json).map_err(|e| {
                Error::InvalidArgument(format!(
                    "run {} has an unreadable definition: {e}",
                    request.run_id
                ))
            })?;
        let now = Utc::now();
        let params = if request.params_json.trim().is_empty() {
            "{}".to_owned()
        } else {
            request.params_json.clone()
        };
        let mut run = runs::insert(
            conn,
            run::ActiveModel {
                id: Set(request.run_id.clone()),
                org_id: Set(request.org_id.clone()),
                project_id: Set(request.project_id.clone()),
                workflow: Set(request.workflow.clone()),
                version: Set(request.workflow_version as i32),
                definition_json: Set(request.definition_json.clone()),
                state_json: Set(params),
                env_json: Set(
                    serde_json::to_string(&request.environment).unwrap_or_else(|_| "{}".into())
                ),
                status: Set("provisioning".into()),
                priority: Set(request.priority),
                reason: Set(String::new()),
                cancel_requested: Set(false),
                stop_status: Set(String::new()),
                // The caller's deadline, else the definition's whole-run timeout.
                deadline_at: Set(request
                    .deadline
                    .as_ref()
                    .and_then(switchyard_runtime::time::from_proto)
                    .or_else(|| {
                        definition.timeout_s.map(|s| {
                            let s = s.min(switchyard_workflow::MAX_TIMEOUT_S);
                            now + chrono::Duration::seconds(i64::try_from(s).unwrap_or(0))
                        })
                    })),
                created_at: Set(now),
                updated_at: Set(now),
                started_at: Set(None),
                finished_at: Set(None),
            },
        )
        .await?;
        runs::insert_nodes(
            conn,
            &run.id,
            definition
                .nodes
                .iter()
                .map(|n| (n.id.as_str(), n.shards.max(1))),
            now,
        )
        .await?;
        progress::emit(conn, &run, "provisioning", "", "", "").await?;
        let graph = Graph::new(&definition);
        let mut nodes = runs::nodes(conn, &run.id).await?;
        progress::advance(conn, &mut run, &graph, &mut nodes).await?;
        tracing::info!(run_id = %run.id, nodes = definition.nodes.len(), "run accepted");
        Ok(())
    }

    /// Leases up to `max` tasks of the agent's tenancy to it. Runs whose first task this is
    /// become `running`.
    pub async fn claim(&self, agent: &AgentScope<'_>, max: u32) -> Result<Vec<task::Model>> {
        let txn = switchyard_runtime::db::write_txn(&self.claims).await?;
        let now = Utc::now();
        let who = claim::Claimant {
            agent_id: agent.agent_id,
            org_id: agent.org_id,
            project_id: agent.project_id,
            labels: agent.labels,
            max,
            lease: self.settings.lease,
        };
        let claim::Claimed { tasks, started } = claim::claim(&txn, &who, now).await?;
        if tasks.is_empty() {
            txn.rollback().await?;
            return Ok(tasks);
        }
        // Only runs that were `provisioning` changed (and were locked); running ones are left
        // alone, so claims do not queue behind completions on the run row.
        for run in started {
            progress::emit(&txn, &run, "running", "", "", "").await?;
        }
        txn.commit().await?;
        if self.settings.task_events {
            self.leased.add(tasks.iter().map(lifecycle::leased));
        }
        Ok(tasks)
    }

    /// Long-poll: leases up to `max` tasks, waiting up to `wait` for some to become ready.
    /// Woken at once by commits on this replica that may have made tasks ready; re-checks
    /// every `recheck` for commits elsewhere.
    pub async fn poll(
        &self,
        agent: &AgentScope<'_>,
        max: u32,
        wait: Duration,
        recheck: Duration,
    ) -> Result<Vec<task::Model>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for the wake-up before claiming, so a commit in between is not missed.
            let woken = self.wake.notified();
            let tasks = self.claim(agent, max).await?;
            let now = tokio::time::Instant::now();
            if !tasks.is_empty() || now >= deadline || max == 0 {
                return Ok(tasks);
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(recheck.min(deadline - now)) => {}
            }
        }
    }

    /// Extends the agent's leases and tells it which to stop.
    pub async fn heartbeat(&self, agent_id: &str, leases: &[(String, u32)]) -> Result<Beat> {
        let txn = switchyard_runtime::db::write_txn(&self.db).await?;
        let expires =
            Utc::now() + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
        let wanted: Vec<(String, i32)> = leases
            .iter()
            .map(|(id, attempt)| (id.clone(), *attempt as i32))
            .collect();
        let held = queue::extend(&txn, agent_id, &wanted, expires).await?;
        // Which of the held tasks belong to runs being stopped: two queries for the whole beat.
        let held_ids: Vec<String> = held.iter().map(|(id, _)| id.clone()).collect();
        let stopping = queue::of_stopping_runs(&txn, &held_ids).await?;
        let mut beat = Beat::default();
        for (id, attempt) in leases {
            if !held.iter().any(|(h, a)| h == id && *a == *attempt as i32) {
                beat.lost.push((id.clone(), *attempt));
                continue;
            }
            if stopping.contains(id) {
                beat.cancelled.push((id.clone(), *attempt));
            } else {
                beat.held.push((id.clone(), *attempt));
            }
        }
        txn.commit().await?;
        Ok(beat)
    }

    /// Applies a completion. A stale fencing token, or a task not leased to this agent, is
    /// refused with `FailedPrecondition` and changes nothing.
    pub async fn complete(&self, done: Completion) -> Result<()> {
        self.complete_many(vec![done])
            .await?
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no completion result".into())))
    }

    /// Applies many completions in one transaction (one commit for all: group commit). Each
    /// is fenced on its own; a refused one changes nothing and does not hold the others back.
    /// Returns one result per completion, in order.
    pub async fn complete_many(&self, batch: Vec<Completion>) -> Result<Vec<Result<()>>> {
        let txn = switchyard_runtime::db::write_txn(&self.db).await?;
        let ids: Vec<String> = batch.iter().map(|d| d.task_id.clone()).collect();
        let mut tasks: HashMap<String, task::Model> = queue::lock_many(&txn, &ids)
            .await?
            .into_iter()
            .map(|t| (t.uuid.clone(), t))
            .collect();
        let mut results = Vec::with_capacity(batch.len());
        let mut by_run: BTreeMap<String, Vec<(task::Model, Completion, Option<Failure>)>> =
            BTreeMap::new();
        for done in batch {
            let Some(task) = tasks.remove(&done.task_id) else {
                results.push(Err(Error::NotFound(format!(
                    "task {} not found",
                    done.task_id
                ))));
                continue;
            };
            if task.status != TaskStatus::Leased.as_str()
                || task.attempt != done.attempt as i32
                || task.agent_id.as_deref() != Some(done.agent_id.as_str())
            {
                tracing::warn!(task_id = %done.task_id, attempt = done.attempt, agent_id = %done.agent_id, status = %task.status, current_attempt = task.attempt, "stale completion refused");
                results.push(Err(Error::FailedPrecondition(format!(
                    "task {} attempt {} is not leased to agent {} (it is {} at attempt {})",
                    done.task_id, done.attempt, done.agent_id, task.status, task.attempt
                ))));
                continue;
            }
            let failure = if done.cancelled {
                None
            } else if done.timed_out {
                Some(Failure::TimedOut)
            } else if done.exit_code != 0 {
                Some(Failure::Exit(done.exit_code))
            } else {
                None
            };
            results.push(Ok(()));
            by_run
                .entry(task.run_id.clone())
                .or_default()
                .push((task, done, failure));
        }
        if by_run.is_empty() {
            // Nothing to apply: roll back now, so the row locks go with it at once (a dropped
            // transaction releases them only when its connection is next used).
            txn.rollback().await?;
            return Ok(results);
        }
        let mut steps = Vec::new();
        for (run_id, items) in by_run {
            self.settle_run(&txn, &run_id, items, &mut steps).await?;
        }
        self.commit_with_steps(txn, steps).await?;
        self.wake.notify_waiters();
        Ok(results)
    }

    /// Stops runs past their deadline (they end `timed_out` once their tasks have stopped).
    /// Returns how many were stopped.
    pub async fn expire_runs(&self) -> Result<u32> {
        let now = Utc::now();
        let overdue = runs::overdue(&self.db, now, 100).await?;
        let mut stopped = 0;
        for run in overdue {
            let txn = switchyard_runtime::db::write_txn(&self.db).await?;
            let reason = format!(
                "run deadline passed at {}",
                run.deadline_at.map(|d| d.to_rfc3339()).unwrap_or_default()
            );
            Self::stop(&txn, &run.id, &reason, "timed_out").await?;
            txn.commit().await?;
            tracing::warn!(run_id = %run.id, "run deadline passed; stopping its tasks");
            stopped += 1;
        }
        Ok(stopped)
    }

    /// Ends runs with a task that no agent took within the schedule-to-start timeout: they
    /// stop like a cancel and end `infra_failed`. Returns how many were stopped.
    pub async fn expire_unstarted(&self) -> Result<u32> {
        let limit = chrono::Duration::from_std(self.settings.schedule_to_start).unwrap_or_default();
        let now = Utc::now();
        let waiting = queue::waiting_since(&self.db, now - limit, 100).await?;
        if waiting.is_empty() {
            return Ok(0);
        }
        // A busy pool is not a missing one: a task that a live agent could run keeps waiting.
        let alive_since =
            now - chrono::Duration::from_std(self.settings.lease * 3).unwrap_or_default();
        let live: Vec<BTreeMap<String, String>> =
            crate::store::agents::alive_since(&self.db, alive_since)
                .await?
                .iter()
                .map(crate::store::agents::labels)
                .collect();
        let mut stopped = 0;
        let mut seen = std::collections::HashSet::new();
        for task in waiting {
            if live
                .iter()
                .any(|labels| queue::labels_match(&task.labels_json, labels))
            {
                continue;
            }
            if !seen.insert(task.run_id.clone()) {
                continue;
            }
            let txn = switchyard_runtime::db::write_txn(&self.db).await?;
            let reason = format!(
                "no agent took task {} (node {}, labels {}) within {}s",
                task.uuid,
                task.node,
                task.labels_json,
                self.settings.schedule_to_start.as_secs()
            );
            Self::stop(&txn, &task.run_id, &reason, "infra_failed").await?;
            txn.commit().await?;
            tracing::warn!(run_id = %task.run_id, %reason, "run stopped: schedule-to-start timeout");
            stopped += 1;
        }
        Ok(stopped)
    }

    /// Returns expired leases to the queue (or the dead-letter queue past the platform
    /// budget), and fails attempts that ran past their start-to-close timeout by more than a
    /// lease (their agent heartbeats but neither stops them nor reports). Each row is re-read
    /// under its lock and changed only if still leased at the attempt the sweep saw: a
    /// completion that won the race is never undone.
    pub async fn sweep(&self) -> Result<u32> {
        let now = Utc::now();
        let mut swept = 0;
        for seen in queue::expired(&self.db, now, 500).await? {
            let still = |t: &task::Model| t.lease_expires_at.is_some_and(|at| at < now);
            if self
                .fail_leased(&seen, Failure::LeaseExpired, still)
                .await?
            {
                tracing::warn!(task_id = %seen.uuid, attempt = seen.attempt, agent_id = ?seen.agent_id, "lease expired");
                swept += 1;
            }
        }
        let grace = self.settings.lease + OVERRUN_GRACE;
        for seen in queue::overran(&self.db, now, grace, 500).await? {
            // The same lease: a task handed back and leased again at the same attempt has a
            // new start and holder.
            let same =
                |t: &task::Model| t.started_at == seen.started_at && t.agent_id == seen.agent_id;
            if self.fail_leased(&seen, Failure::TimedOut, same).await? {
                tracing::warn!(task_id = %seen.uuid, attempt = seen.attempt, agent_id = ?seen.agent_id, timeout_s = seen.timeout_s, "attempt ran past its timeout; failed by the scheduler");
                swept += 1;
            }
        }
        if swept > 0 {
            self.wake.notify_waiters();
        }
        Ok(swept)
    }

    /// Ends the attempt `seen` with `failure` if, under its row lock, it is still leased at
    /// that attempt and `still` holds. Returns whether it was changed.
    async fn fail_leased(
        &self,
        seen: &task::Model,
        failure: Failure,
        still: impl Fn(&task::Model) -> bool,
    ) -> Result<bool> {
        let txn = switchyard_runtime::db::write_txn(&self.db).await?;
        let task = queue::lock(&txn, &seen.uuid).await?;
        if task.status != TaskStatus::Leased.as_str()
            || task.attempt != seen.attempt
            || !still(&task)
        {
            txn.rollback().await?;
            return Ok(false);
        }
        let done = Completion {
            agent_id: task.agent_id.clone().unwrap_or_default(),
            task_id: task.uuid.clone(),
            attempt: task.attempt as u32,
            timed_out: failure == Failure::TimedOut,
            ..Completion::default()
        };
        let run_id = task.run_id.clone();
        let mut steps = Vec::new();
        self.settle_run(&txn, &run_id, vec![(task, done, Some(failure))], &mut steps)
            .await?;
        self.commit_with_steps(txn, steps).await?;
        Ok(true)
    }

    /// Hands leases back unrun (the agent is shutting down): the tasks are queued again at
    /// once, at the same attempt, without counting against any budget. Returns how many.
    pub async fn release(&self, agent_id: &str, leases: &[(String, u32)]) -> Result<u32> {
        let txn = switchyard_runtime::db::write_txn(&self.db).await?;
        let mut released = 0;
        for (id, attempt) in leases {
            let task = queue::lock(&txn, id).await?;
            if task.status != TaskStatus::Leased.as_str()
                || task.attempt != *attempt as i32
                || task.agent_id.as_deref() != Some(agent_id)
            {
                continue;
            }
            let mut active: task::ActiveModel = task.into();
            active.status = Set(TaskStatus::Queued.as_str().to_owned());
            active.agent_id = Set(None);
            active.lease_expires_at = Set(None);
            active.started_at = Set(None);
            active.not_before = Set(Utc::now());
            queue::update(&txn, active).await?;
            released += 1;
        }
        txn.commit().await?;
        if released > 0 {
            self.wake.notify_waiters();
        }
        Ok(released)
    }

    /// Replays dead letters: each task goes back to the queue with a fresh attempt budget,
    /// its node counts it as unfinished again, nodes skipped behind it wait again, and a run
    /// that had ended because of it resumes (`running`). Each replay is audited in its
    /// transaction. Returns how many were replayed.
    pub async fn replay(
        &self,
        ctx: &switchyard_runtime::auth::CallContext,
        letters: &[dead_letter::Model],
    ) -> Result<u32> {
        use crate::domain::graph::NodeStatus;
        let mut replayed = 0;
        for letter in letters {
            let txn = switchyard_runtime::db::write_txn(&self.db).await?;
            let mut run = runs::lock(&txn, &letter.run_id).await?;
            if run.cancel_requested {
                txn.rollback().await?;
                return Err(Error::FailedPrecondition(format!(
                    "run {} was cancelled; its dead letters cannot be replayed",
                    run.id
                )));
            }
            let task = queue::lock_by_id(&txn, letter.task_id).await?;
            if task.status != TaskStatus::Dead.as_str() {
                txn.rollback().await?;
                continue;
            }
            let now = Utc::now();
            let next = task.attempt + 1;
            let mut active: task::ActiveModel = task.clone().into();
            active.status = Set(TaskStatus::Queued.as_str().to_owned());
            active.attempt = Set(next);
            active.attempt_base = Set(task.attempt);
            active.infra_losses = Set(0);
            active.agent_id = Set(None);
            active.lease_expires_at = Set(None);
            active.started_at = Set(None);
            active.finished_at = Set(None);
            active.not_before = Set(now);
            let queued = queue::update(&txn, active).await?;
            // Monitoring learns of the replay with it, so the dead letter stops counting now
            // rather than once the replay's attempt has ended.
            lifecycle::emit(
                &txn,
                self.settings.task_events,
                vec![lifecycle::requeued(&queued)],
            )
            .await?;
            let mut letter_row: dead_letter::ActiveModel = letter.clone().into();
            letter_row.replayed_at = Set(Some(now));
            sea_orm::ActiveModelTrait::update(letter_row, &txn).await?;
            let mut nodes = runs::nodes(&txn, &run.id).await?;
            for (id, node) in std::mem::take(&mut nodes) {
                let row = if id == task.node {
                    let failed = (node.failed - 1).max(0);
                    runs::save_node(&txn, node, |n| {
                        n.failed = Set(failed);
                        n.status = Set(NodeStatus::Running.as_str().to_owned());
                    })
                    .await?
                } else if node.status == NodeStatus::Skipped.as_str() {
                    runs::save_node(&txn, node, |n| {
                        n.status = Set(NodeStatus::Pending.as_str().to_owned());
                    })
                    .await?
                } else {
                    node
                };
                nodes.insert(id, row);
            }
            if run.finished_at.is_some() {
                let mut r: run::ActiveModel = run.clone().into();
                r.status = Set("running".into());
                r.finished_at = Set(None);
                r.reason = Set(String::new());
                r.updated_at = Set(now);
                run = runs::update(&txn, r).await?;
                progress::emit(
                    &txn,
                    &run,
                    "running",
                    "resumed by dead-letter replay",
                    "",
                    "",
                )
                .await?;
            }
            let fact = switchyard_runtime::outbox::AuditFact {
                action: "dead_letter.retried",
                resource_type: "task",
                resource_id: &task.uuid,
                org_id: &run.org_id,
                project_id: &run.project_id,
                outcome: switchyard_proto::events::v1::Outcome::Success,
            };
            let details = serde_json::json!({
                "dead_letter_id": letter.id,
                "run_id": run.id,
                "node": task.node,
                "attempt": next,
            });
            switchyard_runtime::outbox::enqueue_audit(
                &txn,
                crate::SERVICE,
                switchyard_runtime::outbox::request_record(ctx, fact, &details),
            )
            .await?;
            txn.commit().await?;
            replayed += 1;
            tracing::info!(task_id = %task.uuid, run_id = %run.id, "dead letter replayed");
        }
        if replayed > 0 {
            self.wake.notify_waiters();
        }
        Ok(replayed)
    }

    /// The end of attempts of one run: success, retry, dead letter or cancellation for each,
    /// then the run moves on once. The run is locked, its definition read and its nodes
    /// loaded once for the whole group. The attempts' lifecycle steps are added to `steps`,
    /// for the caller to write with its commit (`commit_with_steps`).
    async fn settle_run<C: ConnectionTrait>(
        &self,
        conn: &C,
        run_id: &str,
        items: Vec<(task::Model, Completion, Option<Failure>)>,
        steps: &mut Vec<TaskLifecycle>,
    ) -> Result<()> {
        // The tasks are locked already; the run row is the lock every completion of the run
        // queues on, so the per-task writes happen before it is taken, from an unlocked read
        // (the definition never changes; a cancel that lands in between is caught up with
        // below), and the lock is held only for the run's own changes.
        // A single completion (a sequential step) has no one to queue behind it on the run:
        // it locks at once and saves the second read.
        let locked_early = items.len() == 1;
        let seen = if locked_early {
            runs::lock(conn, run_id).await?
        } else {
            runs::find(conn, run_id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("run {run_id} not found")))?
        };
        let definition = progress::definition(&seen)?;
        let graph = Graph::new(&definition);
        let now = Utc::now();
        // Outputs of succeeded tasks, merged into the run's state under its lock.
        let mut outputs: Vec<(String, serde_json::Value)> = Vec::new();
        // Tasks queued again for another attempt, in case the run turns out to be stopping.
        let mut requeued: Vec<i64> = Vec::new();
        let mut succeeded: Vec<queue::Success> = Vec::new();
        // Node → (shards succeeded, shards failed) in this group.
        let mut tallies: BTreeMap<String, (i32, i32)> = BTreeMap::new();
        let mut any_cancelled = false;
        let mut endings = lifecycle::Endings::with_capacity(items.len());
        for (task, done, failure) in items {
            // Every attempt's stored objects, whatever its outcome, so retention deletes them.
            store::artifacts::record(conn, &task, &done.result.artifacts, now).await?;
            let node_id = task.node.clone();
            let result_json = serde_json::to_string(&done.result).unwrap_or_default();
            // The row as a failure or cancellation rewrites it (successes go set-based).
            let reported = |task: &task::Model| {
                let mut active: task::ActiveModel = task.clone().into();
                active.log_tail = Set(done.log_tail.clone());
                active.result_json = Set(result_json.clone());
                active
            };
            if done.cancelled || seen.cancel_requested {
                let mut active = reported(&task);
                active.status = Set(TaskStatus::Cancelled.as_str().to_owned());
                active.finished_at = Set(Some(now));
                active.exit_code = Set(Some(done.exit_code));
                queue::update(conn, active).await?;
                let ending = lifecycle::Ending {
                    exit_code: Some(done.exit_code),
                    error: failure.map(|f| f.describe()).unwrap_or_default(),
                    ..Default::default()
                };
                let what = (Outcome::Cancelled, TaskPhase::Cancelled);
                endings.push(&task, &seen.workflow, what, ending, now);
                any_cancelled = true;
                continue;
            }
            let Some(failure) = failure else {
                // Written with the group's other successes in one statement, below.
                succeeded.push(queue::Success {
                    id: task.id,
                    exit_code: done.exit_code,
                    outputs_json: done.outputs_json.clone(),
                    log_tail: done.log_tail.clone(),
                    result_json,
                });
                let ending = lifecycle::Ending {
                    exit_code: Some(done.exit_code),
                    ..Default::default()
                };
                let what = (Outcome::Succeeded, TaskPhase::Succeeded);
                endings.push(&task, &seen.workflow, what, ending, now);
                if !done.outputs_json.trim().is_empty()
                    && let Ok(produced) = serde_json::from_str(&done.outputs_json)
                {
                    outputs.push((node_id.clone(), produced));
                }
                tallies.entry(node_id).or_default().0 += 1;
                continue;
            };
            let mut active = reported(&task);
            let node = graph.node(&node_id);
            // Attempts since the last replay count against the budget.
            let decision = retry::decide(
                node.and_then(|n| n.retry.as_ref()),
                self.settings.budget,
                (task.attempt - task.attempt_base).max(1) as u32,
                task.infra_losses as u32,
                failure,
                rand::random::<f64>(),
            );
            if failure == Failure::LeaseExpired {
                active.infra_losses = Set(task.infra_losses + 1);
            }
            if let Failure::Exit(code) = failure {
                active.exit_code = Set(Some(code));
            }
            let error = failure.describe();
            active.error = Set(error.clone());
            let exit_code = match failure {
                Failure::Exit(code) => Some(code),
                _ => None,
            };
            match decision {
                Decision::Retry { backoff, .. } => {
                    let attempt = task.attempt + 1;
                    active.status = Set(TaskStatus::Queued.as_str().to_owned());
                    active.attempt = Set(attempt);
                    active.agent_id = Set(None);
                    active.lease_expires_at = Set(None);
                    active.not_before =
                        Set(now + chrono::Duration::from_std(backoff).unwrap_or_default());
                    queue::update(conn, active).await?;
                    let phase = if failure == Failure::LeaseExpired {
                        TaskPhase::LeaseExpired
                    } else {
                        TaskPhase::RetryScheduled
                    };
                    let ending = lifecycle::Ending {
                        exit_code,
                        error: error.clone(),
                        retry_reason: lifecycle::retry_reason(failure),
                        not_before: Some(
                            now + chrono::Duration::from_std(backoff).unwrap_or_default(),
                        ),
                    };
                    requeued.push(task.id);
                    endings.push(
                        &task,
                        &seen.workflow,
                        (Outcome::Retrying, phase),
                        ending,
                        now,
                    );
                    tracing::info!(task_id = %task.uuid, attempt, backoff_ms = backoff.as_millis() as u64, %error, "retry scheduled");
                }
                Decision::Dead { reason } => {
                    active.status = Set(TaskStatus::Dead.as_str().to_owned());
                    active.finished_at = Set(Some(now));
                    active.lease_expires_at = Set(None);
                    queue::update(conn, active).await?;
                    let ending = lifecycle::Ending {
                        exit_code,
                        error: reason.clone(),
                        ..Default::default()
                    };
                    let what = (Outcome::Dead, TaskPhase::DeadLettered);
                    endings.push(&task, &seen.workflow, what, ending, now);
                    sea_orm::ActiveModelTrait::insert(
                        dead_letter::ActiveModel {
                            id: Set(store::new_id()),
                            task_id: Set(task.id),
                            run_id: Set(task.run_id.clone()),
                            project_id: Set(task.project_id.clone()),
                            node: Set(node_id.clone()),
                            last_error: Set(reason.clone()),
                            log_tail: Set(done.log_tail.clone()),
                            dead_at: Set(now),
                            replayed_at: Set(None),
                        },
                        conn,
                    )
                    .await?;
                    tracing::warn!(task_id = %task.uuid, %reason, "task dead-lettered");
                    tallies.entry(node_id).or_default().1 += 1;
                }
            }
        }
        queue::mark_succeeded(conn, &succeeded, now).await?;
        endings.write(conn, steps).await?;
        let mut run = if locked_early {
            seen.clone()
        } else {
            runs::lock(conn, run_id).await?
        };
        if run.cancel_requested && !seen.cancel_requested && !requeued.is_empty() {
            // The run began stopping after the read above: attempts queued again must not run.
            queue::cancel_queued(conn, &requeued, now).await?;
            any_cancelled = true;
        }
        if !outputs.is_empty() {
            let mut state: serde_json::Value =
                serde_json::from_str(&run.state_json).unwrap_or(serde_json::json!({}));
            for (node_id, produced) in outputs {
                crate::domain::graph::merge_outputs(&mut state, &node_id, produced);
            }
            let mut r: run::ActiveModel = run.clone().into();
            r.state_json = Set(state.to_string());
            r.updated_at = Set(now);
            run = runs::update(conn, r).await?;
        }
        let mut nodes = runs::nodes(conn, &run.id).await?;
        if any_cancelled || run.cancel_requested {
            return Self::cancel_if_idle(conn, &mut run).await;
        }
        for (node_id, (ok, bad)) in tallies {
            progress::count_shards(conn, &mut run, &graph, &mut nodes, &node_id, ok, bad).await?;
        }
        if run.status == "provisioning" || run.status == "running" {
            progress::advance(conn, &mut run, &graph, &mut nodes).await?;
        }
        Ok(())
    }

    /// Cancels a run: queued tasks at once, leased ones when their agents learn it through
    /// heartbeats (or their leases expire). Inside the caller's transaction.
    pub async fn cancel<C: ConnectionTrait>(conn: &C, run_id: &str, reason: &str) -> Result<()> {
        Self::stop(conn, run_id, reason, "cancelled").await
    }

    /// Stops a run the way a cancel does, ending it as `status` (`cancelled` or `timed_out`)
    /// once its last task has stopped.
    pub async fn stop<C: ConnectionTrait>(
        conn: &C,
        run_id: &str,
        reason: &str,
        status: &str,
    ) -> Result<()> {
        // A run the scheduler never took has nothing to stop.
        let run = match runs::lock(conn, run_id).await {
            Ok(run) => run,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(other) => return Err(other),
        };
        if run.finished_at.is_some() || run.cancel_requested {
            return Ok(());
        }
        let mut active: run::ActiveModel = run.into();
        active.cancel_requested = Set(true);
        active.stop_status = Set(status.to_owned());
        active.reason = Set(reason.to_owned());
        active.updated_at = Set(Utc::now());
        let mut run = runs::update(conn, active).await?;
        let now = Utc::now();
        for task in queue::open_for_run(conn, run_id).await? {
            if task.status == TaskStatus::Queued.as_str() {
                let mut t: task::ActiveModel = task.into();
                t.status = Set(TaskStatus::Cancelled.as_str().to_owned());
                t.finished_at = Set(Some(now));
                queue::update(conn, t).await?;
            }
        }
        Self::cancel_if_idle(conn, &mut run).await
    }

    /// A cancel-requested run whose tasks have all stopped is `cancelled`.
    async fn cancel_if_idle<C: ConnectionTrait>(conn: &C, run: &mut run::Model) -> Result<()> {
        if !run.cancel_requested || run.finished_at.is_some() {
            return Ok(());
        }
        if queue::open_for_run(conn, &run.id).await?.is_empty() {
            let reason = run.reason.clone();
            let status = if run.stop_status.is_empty() {
                "cancelled".to_owned()
            } else {
                run.stop_status.clone()
            };
            progress::finish(conn, run, &status, &reason).await?;
        }
        Ok(())
    }
}

/// Sweeps expired leases every `interval` until shutdown. Every replica runs one: the sweep
/// re-checks each row under its lock, so two sweepers never apply the same expiry twice.
pub fn spawn_sweeper(
    engine: Engine,
    interval: Duration,
    shutdown: switchyard_runtime::shutdown::Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            match engine.sweep().await {
                Ok(0) => {}
                Ok(swept) => tracing::info!(swept, "expired leases returned"),
                Err(error) => tracing::warn!(%error, "lease sweep failed"),
            }
            if let Err(error) = engine.expire_runs().await {
                tracing::warn!(%error, "run deadline check failed");
            }
            if let Err(error) = engine.expire_unstarted().await {
                tracing::warn!(%error, "schedule-to-start check failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    })
}
