//! worker: the run engine as agents and CI see it — every hop real. Runs are created through
//! the HTTP gateway, reach the scheduler through the control plane's outbox, and are drained
//! by worker loops speaking the gRPC worker API (authenticated `PollTasks`, one unary
//! `CompleteTask` per task, sent concurrently as an agent with free slots does).
//!
//! 1. throughput: 20,000 no-op tasks (20 runs × 1,000 shards) created over HTTP and drained by
//!    8 worker loops: tasks per second from the first lease to the last completion, and from
//!    the first create to the last run final;
//! 2. create-to-start: `POST /runs` answered → the task leased to a waiting worker, p50/p99.
//!
//! [`crate::monitoring`] runs the same with task lifecycle events on and off and prints the
//! cost.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;
use switchyard_proto::scheduler::v1::worker_service_client::WorkerServiceClient;
use switchyard_proto::scheduler::v1::{
    CompleteTaskRequest, LeaseRef, PollTasksRequest, RegisterAgentRequest,
};
use switchyard_runtime::config::OutboxConfig;
use switchyard_runtime::grpc::GrpcChannel;
use switchyard_test_support::api::{Api, spawn_api_tuned};
use switchyard_test_support::{BOOTSTRAP_TOKEN, TestDatabase};
use tokio::sync::Mutex;

use std::collections::BTreeMap;

use crate::cpu::{Backends, Cpu, by_service_per_thousand};
use crate::hops::Hops;

/// The services whose database work is told apart.
const SERVICES: [&str; 4] = ["control-plane", "scheduler", "monitoring", "audit"];

const WORKERS: usize = 8;
const SLOTS: u32 = 100;

/// A project with a CI token (`runs:write`, `workflows:write`) and an agent token.
pub(crate) struct Project {
    pub(crate) id: String,
    pub(crate) ci: String,
    agents: String,
}

pub(crate) async fn project(api: &Api) -> anyhow::Result<Project> {
    let admin = Some(BOOTSTRAP_TOKEN);
    let org = api
        .post("/api/v1/orgs", admin, json!({"name": "bench"}))
        .await;
    let org = org.body["id"].as_str().context("org")?.to_owned();
    let project = api
        .post(
            &format!("/api/v1/orgs/{org}/projects"),
            admin,
            json!({"name": "p"}),
        )
        .await;
    let id = project.body["id"].as_str().context("project")?.to_owned();
    let token = |scopes: serde_json::Value| {
        let id = id.clone();
        async move {
            let reply = api
                .post(
                    "/api/v1/auth/service-tokens",
                    admin,
                    json!({"name": "bench", "project_id": id, "scopes": scopes}),
                )
                .await;
            reply.body["token"]
                .as_str()
                .map(str::to_owned)
                .context("token")
        }
    };
    Ok(Project {
        ci: token(json!(["runs:write", "workflows:write"])).await?,
        agents: token(json!(["agents"])).await?,
        id,
    })
}

/// gRPC worker loops; each records when a run's first task reached it and counts completions.
struct Workers {
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
    /// Completions refused because the lease had expired.
    lost: Arc<AtomicU64>,
    first_lease: Arc<Mutex<Option<Instant>>>,
    started: Arc<Mutex<HashMap<String, Instant>>>,
    handles: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn request<T>(
    bearer: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    message: T,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    request
}

impl Workers {
    async fn spawn(api: &Api, token: &str) -> anyhow::Result<Workers> {
        let endpoint = format!("http://{}", api.cluster.scheduler.grpc_addr);
        let bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {token}").parse()?;
        let workers = Workers {
            stop: Arc::default(),
            completed: Arc::default(),
            lost: Arc::default(),
            first_lease: Arc::default(),
            started: Arc::default(),
            handles: Vec::new(),
        };
        let mut handles = Vec::new();
        for n in 0..WORKERS {
            // One connection per worker, as separate agents have.
            let channel: GrpcChannel = switchyard_runtime::grpc::channel(&endpoint)?;
            let client = WorkerServiceClient::new(channel);
            let agent_id = client
                .clone()
                .register_agent(request(
                    &bearer,
                    RegisterAgentRequest {
                        name: format!("bench-{n}"),
                        capacity: SLOTS,
                        version: "bench".into(),
                        ..RegisterAgentRequest::default()
                    },
                ))
                .await?
                .into_inner()
                .agent_id;
            let (stop, completed, lost, first, started, bearer) = (
                workers.stop.clone(),
                workers.completed.clone(),
                workers.lost.clone(),
                workers.first_lease.clone(),
                workers.started.clone(),
                bearer.clone(),
            );
            handles.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let poll = PollTasksRequest {
                        agent_id: agent_id.clone(),
                        max_tasks: SLOTS,
                        wait: Some(prost_types::Duration {
                            seconds: 0,
                            nanos: 500_000_000,
                        }),
                    };
                    let tasks = client
                        .clone()
                        .poll_tasks(request(&bearer, poll))
                        .await?
                        .into_inner()
                        .tasks;
                    let at = Instant::now();
                    if !tasks.is_empty() {
                        first.lock().await.get_or_insert(at);
                        let mut started = started.lock().await;
                        for t in &tasks {
                            started.entry(t.run_id.clone()).or_insert(at);
                        }
                    }
                    let mut calls = tokio::task::JoinSet::new();
                    for t in tasks {
                        let (client, bearer, agent_id) =
                            (client.clone(), bearer.clone(), agent_id.clone());
                        calls.spawn(async move {
                            let done = CompleteTaskRequest {
                                agent_id,
                                lease: Some(LeaseRef {
                                    task_id: t.task_id,
                                    attempt: t.attempt,
                                }),
                                ..CompleteTaskRequest::default()
                            };
                            client.clone().complete_task(request(&bearer, done)).await
                        });
                    }
                    for call in calls.join_all().await {
                        match call {
                            Ok(_) => {
                                completed.fetch_add(1, Ordering::Relaxed);
                            }
                            // The lease ran out first (these loops do not heartbeat): the
                            // task runs again at its next attempt, as with a real agent.
                            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                                lost.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(status) => return Err(status.into()),
                        }
                    }
                }
                Ok(())
            }));
        }
        Ok(Workers { handles, ..workers })
    }

    /// Fails at once, with its error, when a worker loop has stopped, instead of at a deadline.
    async fn check(&mut self) -> anyhow::Result<()> {
        if let Some(at) = self.handles.iter().position(|h| h.is_finished()) {
            let outcome = self.handles.swap_remove(at).await?;
            outcome.context("a worker loop stopped")?;
            anyhow::bail!("a worker loop stopped without an error");
        }
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            handle.await??;
        }
        Ok(())
    }
}

async fn create(api: &Api, p: &Project, workflow: &str) -> anyhow::Result<String> {
    let run = api
        .post(
            &format!("/api/v1/projects/{}/runs", p.id),
            Some(&p.ci),
            json!({"workflow": workflow}),
        )
        .await;
    ensure!(run.status == 201, "run not created: {:?}", run.body);
    run.body["id"].as_str().map(str::to_owned).context("run id")
}

/// What one pass over the whole path measured.
#[derive(Debug, Clone)]
pub(crate) struct Figures {
    /// Tasks per second from the first lease to the last completion.
    pub(crate) lease_to_complete: f64,
    /// Create-to-start percentiles, milliseconds.
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// CPU used while the throughput workload ran, by every process involved.
    pub(crate) cpu: Cpu,
    /// PostgreSQL's part of it, by the service its backends served (seconds).
    pub(crate) postgres_by_service: BTreeMap<String, f64>,
    /// Where create-to-start's time went.
    pub(crate) hops: Hops,
}

/// A cluster with task lifecycle events on or off, its project and workflows.
pub(crate) async fn cluster(task_events: bool) -> anyhow::Result<(TestDatabase, Api, Project)> {
    let db = TestDatabase::postgres().await;
    let api = spawn_api_tuned(
        &db,
        |c| c.rate_limit.enabled = false,
        |s| {
            s.engine.task_events = task_events;
            // Every service's relays at their shipped pace (tests poll ten times as often):
            // how often events go to monitoring decides what a delivery costs there.
            s.outbox.poll_interval = OutboxConfig::default().poll_interval;
        },
    )
    .await;
    let p = project(&api).await?;
    for (name, definition) in [
        (
            "wide",
            json!({"nodes": [{"id": "t", "run": "true", "shards": 1000}]}),
        ),
        ("one", json!({"nodes": [{"id": "t", "run": "true"}]})),
    ] {
        let put = api
            .put(
                &format!("/api/v1/projects/{}/workflows/{name}", p.id),
                Some(&p.ci),
                definition,
            )
            .await;
        ensure!(
            matches!(put.status, 200 | 201),
            "workflow refused: {:?}",
            put.body
        );
    }
    Ok((db, api, p))
}

/// Starts a checkpoint and waits for it. Every pass then starts right after one: PostgreSQL
/// writes whole pages to the WAL on their first change after a checkpoint, and one that a
/// busy earlier pass triggered (max_wal_size) would otherwise fall inside whichever pass came
/// next and charge it for those writes. Needs superuser or `pg_checkpoint`; without them
/// the pass goes on and says so.
async fn checkpoint(db: &TestDatabase) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let conn = switchyard_runtime::db::connect(&db.config("scheduler")).await?;
    if let Err(error) = conn.execute_unprepared("CHECKPOINT").await {
        println!("     (no checkpoint before the pass: {error})");
    }
    Ok(())
}

/// Vacuums (or analyzes) what autovacuum would take now in each service's schema (see
/// `switchyard_runtime::vacuum`). On a cluster that lives through many passes, a vacuum that
/// fell due (the services' own on a server with autovacuum off, else autovacuum's) would
/// otherwise land in whichever pass was running then and charge it alone; done here, every
/// pass starts from tables kept as a vacuumed deployment keeps them.
async fn vacuum(db: &TestDatabase) -> anyhow::Result<()> {
    for service in SERVICES {
        let conn = switchyard_runtime::db::connect(&db.config(service)).await?;
        switchyard_runtime::vacuum::vacuum_due_tables(&conn).await?;
    }
    Ok(())
}

/// A vacuum of what fell due in the cluster, then a checkpoint: what every workload starts
/// after (see [`vacuum`] and [`checkpoint`]).
pub(crate) async fn settle(db: &TestDatabase) -> anyhow::Result<()> {
    vacuum(db).await?;
    checkpoint(db).await
}

/// What the throughput workload measured.
pub(crate) struct Throughput {
    pub(crate) lease_to_complete: f64,
    pub(crate) cpu: Cpu,
    pub(crate) postgres_by_service: BTreeMap<String, f64>,
}

impl Throughput {
    /// Two measurements of equally many tasks as one: the rate over both (their times
    /// added), the CPU of both.
    pub(crate) fn and(self, other: Throughput) -> Throughput {
        let mut postgres_by_service = self.postgres_by_service;
        for (service, seconds) in other.postgres_by_service {
            *postgres_by_service.entry(service).or_insert(0.0) += seconds;
        }
        Throughput {
            lease_to_complete: 2.0 / (1.0 / self.lease_to_complete + 1.0 / other.lease_to_complete),
            cpu: self.cpu.plus(other.cpu),
            postgres_by_service,
        }
    }
}

/// Both workloads once on a cluster that lives as long as the caller wants: `runs` runs
/// of 1,000 tasks for throughput, then create-to-start, each after a settle. The latency
/// workload needs one too: the throughput workload leaves dead rows and dirty pages behind,
/// and their upkeep landing in the latency workload charged it to the first runs measured
/// after a burst.
pub(crate) async fn measure(
    db: &TestDatabase,
    api: &Api,
    p: &Project,
    runs: usize,
    report: bool,
) -> anyhow::Result<Figures> {
    let Throughput {
        lease_to_complete,
        cpu,
        postgres_by_service,
    } = throughput(db, api, p, runs, report).await?;
    settle(db).await?;
    let since = chrono::Utc::now();
    let samples = create_to_start(api, p, LATENCY_SAMPLES).await?;
    let (p50_ms, p99_ms) = percentiles(samples, report);
    let hops = Hops::since(db, since).await?;
    if report {
        println!("     hops (medians): {}", hops.describe());
    }
    Ok(Figures {
        lease_to_complete,
        p50_ms,
        p99_ms,
        cpu,
        postgres_by_service,
        hops,
    })
}

async fn pass(task_events: bool, report: bool) -> anyhow::Result<Figures> {
    let (db, api, p) = cluster(task_events).await?;
    let figures = measure(&db, &api, &p, THROUGHPUT_RUNS, report).await?;
    api.stop().await;
    Ok(figures)
}

/// One pass, with task lifecycle events (monitoring ingesting) or without.
pub async fn run(task_events: bool) -> anyhow::Result<()> {
    println!(
        "worker: HTTP gateway → control plane → outbox → scheduler, {WORKERS} gRPC worker loops with {SLOTS} slots each, task events {}",
        if task_events { "on" } else { "off" }
    );
    pass(task_events, true).await?;
    Ok(())
}

/// Runs of 1,000 tasks in one pass's throughput workload.
const THROUGHPUT_RUNS: usize = 20;

/// Tasks in a run of the `wide` workflow.
pub(crate) const TASKS_PER_RUN: u64 = 1_000;

/// The throughput workload (`runs` runs of 1,000 tasks), after a settle: the rate from the
/// first lease to the last completion, and the CPU used from the first create until every
/// run is final and monitoring has been sent every task event (so work monitoring defers is
/// counted too).
pub(crate) async fn throughput(
    db: &TestDatabase,
    api: &Api,
    p: &Project,
    runs: usize,
    report: bool,
) -> anyhow::Result<Throughput> {
    settle(db).await?;
    let tasks = runs as u64 * TASKS_PER_RUN;
    let mut workers = Workers::spawn(api, &p.agents).await?;
    // The bench's own connection names no service, so its queries count for none.
    let bench = switchyard_runtime::db::connect(&db.config("bench")).await?;
    let services: Vec<(&str, String)> = SERVICES
        .iter()
        .map(|service| (*service, db.config(service).schema))
        .collect();
    let backends_before = Backends::now(&bench, &services).await?;
    let cpu_before = Cpu::now();
    let begun = Instant::now();
    let mut created = Vec::new();
    for _ in 0..runs {
        created.push(create(api, p, "wide").await?);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while workers.completed.load(Ordering::Relaxed) < tasks {
        ensure!(
            Instant::now() < deadline,
            "tasks not drained in time: {} of {tasks} completed",
            workers.completed.load(Ordering::Relaxed)
        );
        workers.check().await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = Instant::now();
    for run in &created {
        loop {
            let reply = api.get(&format!("/api/v1/runs/{run}"), Some(&p.ci)).await;
            if reply.body["status"] == "completed" {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "run {run} not final: {:?}",
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let finished = Instant::now();
    monitoring_caught_up(&bench, &db.config("scheduler").schema, deadline).await?;
    let cpu = Cpu::now().since(cpu_before);
    let postgres_by_service = Backends::now(&bench, &services)
        .await?
        .since(&backends_before);
    let first = workers.first_lease.lock().await.context("nothing leased")?;
    let lost = workers.lost.load(Ordering::Relaxed);
    workers.stop().await?;
    let lease_to_done = drained.duration_since(first).as_secs_f64();
    let rate = tasks as f64 / lease_to_done;
    if report {
        println!(
            "  1. throughput: {tasks} no-op tasks ({runs} runs × 1,000 shards) over HTTP and gRPC"
        );
        println!(
            "     lease+complete {rate:.0} tasks/s   create-to-all-final {:.0} tasks/s ({:.2} s)",
            tasks as f64 / finished.duration_since(begun).as_secs_f64(),
            finished.duration_since(begun).as_secs_f64()
        );
        println!("     {}", cpu.per_thousand(tasks));
        println!(
            "     {}",
            by_service_per_thousand(&postgres_by_service, tasks)
        );
        if lost > 0 {
            println!("     ({lost} completions arrived after their lease expired and ran again)");
        }
    }
    Ok(Throughput {
        lease_to_complete: rate,
        cpu,
        postgres_by_service,
    })
}

/// Waits until the scheduler's outbox (in `schema`) holds no undelivered event for
/// monitoring.
async fn monitoring_caught_up(
    conn: &sea_orm::DatabaseConnection,
    schema: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, Statement};
    let pending = Statement::from_string(
        sea_orm::DatabaseBackend::Postgres,
        format!(
            "SELECT count(*) AS n FROM \"{schema}\".outbox_events \
             WHERE destination = 'monitoring' AND delivered_at IS NULL"
        ),
    );
    loop {
        let row = conn.query_one_raw(pending.clone()).await?;
        let n: i64 = row.context("a count")?.try_get("", "n")?;
        if n == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{n} events for monitoring still pending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs in one create-to-start workload.
pub(crate) const LATENCY_SAMPLES: usize = 200;

/// Create-to-start: `samples` single-task runs created one at a time over HTTP, 10 ms apart,
/// each timed from its `POST /runs` answered to its task leased to a waiting worker.
pub(crate) async fn create_to_start(
    api: &Api,
    p: &Project,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let workers = Workers::spawn(api, &p.agents).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut created = Vec::with_capacity(samples);
    for _ in 0..samples {
        let id = create(api, p, "one").await?;
        created.push((id, Instant::now()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while workers.completed.load(Ordering::Relaxed) < samples as u64 {
        ensure!(
            Instant::now() < deadline,
            "single-task runs not started in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = workers.started.lock().await.clone();
    workers.stop().await?;
    let timed: Vec<Duration> = created
        .iter()
        .filter_map(|(id, at)| started.get(id).map(|s| s.saturating_duration_since(*at)))
        .collect();
    ensure!(
        timed.len() == samples,
        "only {} of {samples} runs started",
        timed.len()
    );
    Ok(timed)
}

/// p50 and p99 of create-to-start samples, in milliseconds (zero for none).
pub(crate) fn percentiles(mut samples: Vec<Duration>, report: bool) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort();
    let pct = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let (p50, p99) = (pct(0.5).as_secs_f64() * 1e3, pct(0.99).as_secs_f64() * 1e3);
    if report {
        println!(
            "  2. create-to-start: POST /runs answered → task leased to a waiting gRPC worker ({} runs)",
            samples.len()
        );
        println!(
            "     p50 {p50:.2} ms   p99 {p99:.2} ms   max {:.2} ms",
            samples[samples.len() - 1].as_secs_f64() * 1e3
        );
    }
    (p50, p99)
}
