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
//! `monitoring` runs the same with task lifecycle events on and off and prints the cost.

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
struct Figures {
    /// Tasks per second from the first lease to the last completion.
    lease_to_complete: f64,
    /// Create-to-start percentiles, milliseconds.
    p50_ms: f64,
    p99_ms: f64,
    /// CPU used while the throughput workload ran, by every process involved.
    cpu: Cpu,
    /// PostgreSQL's part of it, by the service its backends served (seconds).
    postgres_by_service: BTreeMap<String, f64>,
}

/// A cluster with task lifecycle events on or off, its project and workflows.
async fn cluster(task_events: bool) -> anyhow::Result<(TestDatabase, Api, Project)> {
    let db = TestDatabase::postgres().await;
    let api = spawn_api_tuned(
        &db,
        |c| c.rate_limit.enabled = false,
        |s| {
            s.engine.task_events = task_events;
            // The scheduler's relays at their shipped pace (tests poll ten times as often):
            // how often the task events go to monitoring decides what a delivery costs.
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

async fn pass(task_events: bool, report: bool) -> anyhow::Result<Figures> {
    let (db, api, p) = cluster(task_events).await?;
    checkpoint(&db).await?;
    let (lease_to_complete, cpu, postgres_by_service) = throughput(&db, &api, &p, report).await?;
    let (p50_ms, p99_ms) = create_to_start(&api, &p, report).await?;
    api.stop().await;
    Ok(Figures {
        lease_to_complete,
        p50_ms,
        p99_ms,
        cpu,
        postgres_by_service,
    })
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

/// Pairs of passes in the monitoring benchmark (one pass a side each):
/// `SWITCHYARD_BENCH_PAIRS`, five when unset. More pairs narrow the interval printed for the
/// median change, at about half a minute a pair.
fn pairs() -> usize {
    std::env::var("SWITCHYARD_BENCH_PAIRS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(5)
}

/// A distribution-free interval for the median of `values`: the k-th lowest and k-th
/// highest value, which cover the median with the probability that a fair coin tossed once
/// per value shows heads between k and n − k times (the sign test). k is the largest whose
/// interval still has at least 95% confidence; with too few values for that (under six), k
/// is 1 and the interval is the whole range. Returns (low, high, confidence).
fn median_interval(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0.0);
    }
    // below[j]: the chance of fewer than j heads in n tosses.
    let mut below = vec![0.0; n + 1];
    let mut term = 0.5f64.powi(i32::try_from(n).unwrap_or(i32::MAX));
    for j in 0..n {
        below[j + 1] = below[j] + term;
        term *= (n - j) as f64 / (j + 1) as f64;
    }
    // The interval misses the median when fewer than k values lie on one side of it.
    let k = (1..=n.div_ceil(2))
        .rev()
        .find(|&k| below[k] <= 0.025)
        .unwrap_or(1);
    let confidence = (1.0 - 2.0 * below[k]).max(0.0);
    (sorted[k - 1], sorted[n - k], confidence)
}

/// The median of `values` and their spread (lowest, highest).
fn median_and_range(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

/// Monitoring's cost: the same workload with task lifecycle events on (written with each
/// claim and completion, relayed, ingested by monitoring) and off, in pairs of passes (see
/// [`pairs`]);
/// each side's median is compared, and each figure's spread is printed beside it, so a
/// reader can see what one noisy moment on this shared machine would have made of the ratio.
/// The median of the pairs' own changes is printed too.
pub async fn monitoring_overhead() -> anyhow::Result<()> {
    println!("monitoring: the worker workload with task events on (monitoring ingesting) and off");
    let mut on: Vec<Figures> = Vec::new();
    let mut off: Vec<Figures> = Vec::new();
    // Pairs of passes, the order within a pair alternating, so that neither side always
    // runs first (after the previous pass's schema was dropped, say).
    let passes = pairs();
    for i in 0..passes {
        if i % 2 == 0 {
            off.push(pass(false, false).await?);
            on.push(pass(true, false).await?);
        } else {
            on.push(pass(true, false).await?);
            off.push(pass(false, false).await?);
        }
    }
    let figure = |side: &[Figures], of: &dyn Fn(&Figures) -> f64| {
        median_and_range(side.iter().map(of).collect())
    };
    let rate = |f: &Figures| f.lease_to_complete;
    let p50 = |f: &Figures| f.p50_ms;
    let cpu = |f: &Figures| f.cpu.total();
    for (name, side) in [("without", &off), ("with:  ", &on)] {
        let (r, r_lo, r_hi) = figure(side, &rate);
        let (p, p_lo, p_hi) = figure(side, &p50);
        let (p99, _, _) = figure(side, &|f: &Figures| f.p99_ms);
        println!(
            "     {name} {r:.0} tasks/s ({r_lo:.0}–{r_hi:.0}), create-to-start p50 {p:.2} ms ({p_lo:.2}–{p_hi:.2}), p99 {p99:.2} ms"
        );
        let (middle, _, _) = figure(side, &cpu);
        let median_cpu = side
            .iter()
            .map(|f| f.cpu)
            .min_by(|a, b| {
                (a.total() - middle)
                    .abs()
                    .total_cmp(&(b.total() - middle).abs())
            })
            .unwrap_or_default();
        println!(
            "              {} (median pass)",
            median_cpu.per_thousand(THROUGHPUT_TASKS)
        );
        println!(
            "              {} (medians)",
            by_service_per_thousand(&median_by_service(side), THROUGHPUT_TASKS)
        );
    }
    let cost = |of: &dyn Fn(&Figures) -> f64, higher_is_better: bool| {
        let (without, with) = (figure(&off, of).0, figure(&on, of).0);
        let change = (with - without) / without * 100.0;
        if higher_is_better { -change } else { change }
    };
    println!(
        "     cost of monitoring (medians of {passes} passes a side): throughput {:+.1}%, p50 {:+.1}%, CPU per task {:+.1}% (target: under 5% for throughput and p50)",
        cost(&rate, true),
        cost(&p50, false),
        cost(&cpu, false)
    );
    // The two passes of a pair ran back to back, so they share whatever the machine was
    // doing then; the median of the pairs' changes discounts noise that drifts over the run
    // more than comparing the sides' medians does. Beside it, an interval that covers the
    // true median change with the confidence printed, whatever the noise's distribution.
    let paired = |of: &dyn Fn(&Figures) -> f64, higher_is_better: bool| {
        let changes: Vec<f64> = off
            .iter()
            .zip(&on)
            .map(|(without, with)| {
                let change = (of(with) - of(without)) / of(without) * 100.0;
                if higher_is_better { -change } else { change }
            })
            .collect();
        let (low, high, confidence) = median_interval(&changes);
        let (median, _, _) = median_and_range(changes);
        format!(
            "{median:+.1}% ({:.0}% interval {low:+.1}…{high:+.1})",
            confidence * 100.0
        )
    };
    println!(
        "     paired (median of the {passes} pass pairs' changes): throughput {}, p50 {}, CPU per task {}",
        paired(&rate, true),
        paired(&p50, false),
        paired(&cpu, false)
    );
    Ok(())
}

/// Each service's median PostgreSQL CPU over the passes of one side.
fn median_by_service(side: &[Figures]) -> BTreeMap<String, f64> {
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for figures in side {
        for (service, seconds) in &figures.postgres_by_service {
            samples.entry(service.clone()).or_default().push(*seconds);
        }
    }
    samples
        .into_iter()
        .map(|(service, values)| (service, median_and_range(values).0))
        .collect()
}

/// Tasks in the throughput workload.
const THROUGHPUT_TASKS: u64 = 20_000;

/// The rate from the first lease to the last completion, and the CPU used from the first
/// create until every run is final and monitoring has been sent every task event (so work
/// monitoring defers is counted too).
async fn throughput(
    db: &TestDatabase,
    api: &Api,
    p: &Project,
    report: bool,
) -> anyhow::Result<(f64, Cpu, BTreeMap<String, f64>)> {
    const RUNS: usize = 20;
    const TASKS: u64 = THROUGHPUT_TASKS;
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
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(create(api, p, "wide").await?);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while workers.completed.load(Ordering::Relaxed) < TASKS {
        ensure!(
            Instant::now() < deadline,
            "tasks not drained in time: {} of {TASKS} completed",
            workers.completed.load(Ordering::Relaxed)
        );
        workers.check().await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = Instant::now();
    for run in &runs {
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
    let rate = TASKS as f64 / lease_to_done;
    if report {
        println!(
            "  1. throughput: {TASKS} no-op tasks ({RUNS} runs × 1,000 shards) over HTTP and gRPC"
        );
        println!(
            "     lease+complete {rate:.0} tasks/s   create-to-all-final {:.0} tasks/s ({:.2} s)",
            TASKS as f64 / finished.duration_since(begun).as_secs_f64(),
            finished.duration_since(begun).as_secs_f64()
        );
        println!("     {}", cpu.per_thousand(TASKS));
        println!(
            "     {}",
            by_service_per_thousand(&postgres_by_service, TASKS)
        );
        if lost > 0 {
            println!("     ({lost} completions arrived after their lease expired and ran again)");
        }
    }
    Ok((rate, cpu, postgres_by_service))
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

async fn create_to_start(api: &Api, p: &Project, report: bool) -> anyhow::Result<(f64, f64)> {
    const SAMPLES: usize = 200;
    let workers = Workers::spawn(api, &p.agents).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut created = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let id = create(api, p, "one").await?;
        created.push((id, Instant::now()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while workers.completed.load(Ordering::Relaxed) < SAMPLES as u64 {
        ensure!(
            Instant::now() < deadline,
            "single-task runs not started in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = workers.started.lock().await.clone();
    workers.stop().await?;
    let mut samples: Vec<Duration> = created
        .iter()
        .filter_map(|(id, at)| started.get(id).map(|s| s.saturating_duration_since(*at)))
        .collect();
    ensure!(
        samples.len() == SAMPLES,
        "only {} of {SAMPLES} runs started",
        samples.len()
    );
    samples.sort();
    let pct = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let (p50, p99) = (pct(0.5).as_secs_f64() * 1e3, pct(0.99).as_secs_f64() * 1e3);
    if report {
        println!(
            "  2. create-to-start: POST /runs answered → task leased to a waiting gRPC worker ({SAMPLES} runs)"
        );
        println!(
            "     p50 {p50:.2} ms   p99 {p99:.2} ms   max {:.2} ms",
            samples[samples.len() - 1].as_secs_f64() * 1e3
        );
    }
    Ok((p50, p99))
}

#[cfg(test)]
mod tests {
    use super::median_interval;

    #[test]
    fn median_interval_widens_to_the_range_for_few_values_and_narrows_with_more() {
        // Five values: only the whole range reaches past 90% (1 − 2/32).
        let (low, high, confidence) = median_interval(&[3.0, -1.0, 9.0, 4.0, 5.0]);
        assert_eq!((low, high), (-1.0, 9.0));
        assert!((confidence - 0.9375).abs() < 1e-9);
        // Nine values: the 2nd lowest and 2nd highest (1 − 2 × 10/512).
        let nine: Vec<f64> = (1..=9).map(f64::from).collect();
        let (low, high, confidence) = median_interval(&nine);
        assert_eq!((low, high), (2.0, 8.0));
        assert!((confidence - (1.0 - 20.0 / 512.0)).abs() < 1e-9);
        // One value says nothing about where the median lies.
        assert_eq!(median_interval(&[1.5]), (1.5, 1.5, 0.0));
    }
}
