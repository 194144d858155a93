//! engine: the scheduler's run engine on this machine's PostgreSQL, driven by worker loops in
//! this process that lease and complete tasks through the same engine calls the worker API
//! makes (every enqueue, lease and completion durable, each in its own transaction).
//!
//! 1. throughput: 20,000 no-op tasks (20 runs × 1,000 shards) drained by worker loops;
//! 2. latency: enqueue-to-start p50/p99 with idle worker loops waiting in long-polls;
//! 3. a 40-step sequential workflow: wall time from accept to final (the steps take no time,
//!    so all of it is engine overhead), the median of five passes after a warm-up one;
//! 4. a fan-out of 1,000 shards and the fan-in after it: wall time from accept to final.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;
use switchyard_proto::events::v1::RunRequested;
use switchyard_scheduler::engine::{AgentScope, Completion, Engine, Settings};
use switchyard_scheduler::store::runs;
use switchyard_scheduler_migration::Migrator;
use switchyard_test_support::TestDatabase;
use tokio::sync::Mutex;

use crate::cpu::Cpu;

const WORKERS: usize = 8;
const BATCH: u32 = 100;

/// The parts, in the order they run.
pub const PARTS: [&str; 4] = ["throughput", "latency", "sequential", "fan-out"];

pub async fn run(parts: &[&str]) -> anyhow::Result<()> {
    let db = TestDatabase::postgres().await;
    let mut config = db.config("scheduler");
    config.max_connections = 24;
    let conn = switchyard_runtime::db::connect(&config).await?;
    switchyard_runtime::migrate::run::<Migrator>(&conn, &config).await?;
    let claims = switchyard_scheduler::store::claim::pool(&config, &conn).await?;
    let engine = Engine::new(conn, Settings::default()).with_claim_pool(claims);
    // The claims' LEASED steps written as the service writes them.
    let stop = switchyard_runtime::shutdown::Shutdown::new();
    let flush = switchyard_scheduler::engine::lifecycle::spawn_leased_flush(
        engine.clone(),
        switchyard_scheduler::config::EngineConfig::default().leased_flush_interval,
        stop.clone(),
    );
    println!(
        "engine: scheduler engine on PostgreSQL, {WORKERS} worker loops leasing up to {BATCH} tasks per poll"
    );
    for part in parts {
        match *part {
            "throughput" => throughput(&engine).await?,
            "latency" => latency(&engine).await?,
            "sequential" => sequential(&engine).await?,
            _ => fan_out(&engine).await?,
        }
    }
    stop.cancel();
    flush.await?;
    Ok(())
}

static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

fn run_id() -> String {
    format!(
        "00000000-0000-7000-8000-{:012}",
        NEXT_RUN.fetch_add(1, Ordering::Relaxed)
    )
}

/// Accepts a run (one transaction, as the event sink does) and wakes the pollers.
async fn submit(engine: &Engine, definition: &serde_json::Value) -> anyhow::Result<String> {
    let id = run_id();
    let request = RunRequested {
        run_id: id.clone(),
        project_id: "00000000-0000-7000-8000-00000000beef".into(),
        workflow: "bench".into(),
        workflow_version: 1,
        definition_json: definition.to_string(),
        ..RunRequested::default()
    };
    let txn = switchyard_runtime::db::write_txn(&engine.db).await?;
    Engine::accept(&txn, &request).await?;
    txn.commit().await?;
    engine.wake.notify_waiters();
    Ok(id)
}

/// Worker loops: long-poll, complete each task with exit 0. Records when each run's task was
/// leased (for the latency figure) and counts completions.
struct Workers {
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
    started: Arc<Mutex<HashMap<String, Instant>>>,
    handles: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Workers {
    fn spawn(engine: &Engine, count: usize) -> Workers {
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicU64::new(0));
        let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let handles = (0..count)
            .map(|n| {
                let (engine, stop, completed, started) = (
                    engine.clone(),
                    stop.clone(),
                    completed.clone(),
                    started.clone(),
                );
                tokio::spawn(async move {
                    let agent_id = format!("bench-{n}");
                    let labels = BTreeMap::new();
                    let scope = AgentScope {
                        agent_id: &agent_id,
                        org_id: "",
                        project_id: "",
                        labels: &labels,
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let tasks = engine
                            .poll(
                                &scope,
                                BATCH,
                                Duration::from_millis(500),
                                Duration::from_millis(250),
                            )
                            .await?;
                        let leased_at = Instant::now();
                        {
                            let mut started = started.lock().await;
                            for t in &tasks {
                                started.entry(t.run_id.clone()).or_insert(leased_at);
                            }
                        }
                        // The worker API gathers concurrent completions into one commit
                        // (group commit); a worker that finished a batch hands it over whole.
                        let count = tasks.len() as u64;
                        let batch = tasks
                            .into_iter()
                            .map(|t| Completion {
                                agent_id: agent_id.clone(),
                                task_id: t.uuid,
                                attempt: t.attempt as u32,
                                ..Completion::default()
                            })
                            .collect();
                        for result in engine.complete_many(batch).await? {
                            result?;
                        }
                        completed.fetch_add(count, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        Workers {
            stop,
            completed,
            started,
            handles,
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            handle.await??;
        }
        Ok(())
    }
}

async fn wait_final(engine: &Engine, run: &str, limit: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        let row = runs::find(&engine.db, run).await?.context("run vanished")?;
        if row.finished_at.is_some() {
            ensure!(row.status == "completed", "run {run} ended {}", row.status);
            return Ok(Instant::now());
        }
        ensure!(
            Instant::now() < deadline,
            "run {run} did not finish in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn throughput(engine: &Engine) -> anyhow::Result<()> {
    const RUNS: usize = 20;
    const SHARDS: u64 = 1_000;
    let definition = json!({"nodes": [{"id": "t", "run": "true", "shards": SHARDS}]});
    let began = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..RUNS {
        ids.push(submit(engine, &definition).await?);
    }
    let enqueued = began.elapsed();
    let workers = Workers::spawn(engine, WORKERS);
    let drain_began = Instant::now();
    let total = RUNS as u64 * SHARDS;
    while workers.completed.load(Ordering::Relaxed) < total {
        ensure!(
            drain_began.elapsed() < Duration::from_secs(600),
            "throughput run stuck"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = drain_began.elapsed();
    for id in &ids {
        wait_final(engine, id, Duration::from_secs(30)).await?;
    }
    workers.stop().await?;
    println!("  1. throughput: {total} tasks in {RUNS} runs");
    println!(
        "     enqueue {:.0} tasks/s ({:.2} s); lease+complete {:.0} tasks/s ({:.2} s); end to end {:.0} tasks/s",
        total as f64 / enqueued.as_secs_f64(),
        enqueued.as_secs_f64(),
        total as f64 / drained.as_secs_f64(),
        drained.as_secs_f64(),
        total as f64 / (enqueued + drained).as_secs_f64()
    );
    Ok(())
}

async fn latency(engine: &Engine) -> anyhow::Result<()> {
    const SAMPLES: usize = 300;
    let workers = Workers::spawn(engine, 4);
    // Let every worker reach its long-poll.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let definition = json!({"nodes": [{"id": "t", "run": "true"}]});
    let mut enqueued_at = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let id = submit(engine, &definition).await?;
        enqueued_at.push((id, Instant::now()));
        // Idle agents: each task finds them waiting.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = workers.started.lock().await.clone();
    workers.stop().await?;
    let mut samples: Vec<Duration> = enqueued_at
        .iter()
        .filter_map(|(id, at)| started.get(id).map(|s| s.saturating_duration_since(*at)))
        .collect();
    ensure!(
        samples.len() == SAMPLES,
        "only {} of {SAMPLES} tasks started",
        samples.len()
    );
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!("  2. enqueue-to-start with idle worker loops waiting ({SAMPLES} single-task runs)");
    println!(
        "     p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}

async fn sequential(engine: &Engine) -> anyhow::Result<()> {
    const STEPS: usize = 40;
    const PASSES: usize = 5;
    let nodes: Vec<serde_json::Value> = (0..STEPS)
        .map(|i| {
            let needs: Vec<String> = if i == 0 {
                vec![]
            } else {
                vec![format!("s{}", i - 1)]
            };
            json!({"id": format!("s{i}"), "run": "true", "needs": needs})
        })
        .collect();
    let definition = json!({"nodes": nodes});
    let workers = Workers::spawn(engine, 4);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // A scheduler that has been up a while has its connections open and its statements
    // prepared on them; the first pass pays for that and is not counted.
    let id = submit(engine, &definition).await?;
    wait_final(engine, &id, Duration::from_secs(60)).await?;
    let mut passes = Vec::new();
    for _ in 0..PASSES {
        let cpu_before = Cpu::now();
        let began = Instant::now();
        let id = submit(engine, &definition).await?;
        let done = wait_final(engine, &id, Duration::from_secs(60)).await?;
        passes.push((done - began, Cpu::now().since(cpu_before)));
    }
    workers.stop().await?;
    passes.sort_by_key(|(wall, _)| *wall);
    let (wall, cpu) = passes[PASSES / 2];
    println!(
        "  3. {STEPS}-step sequential workflow (steps take no time): engine overhead, median of {PASSES} after a warm-up"
    );
    println!(
        "     {:.0} ms in all, {:.2} ms per step   (passes: {})",
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e3 / STEPS as f64,
        passes
            .iter()
            .map(|(w, _)| format!("{:.0} ms", w.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Against the wall time, this tells whether a step waits on the CPU or on round trips.
    println!(
        "     CPU per step: {:.2} ms (engine and workers {:.2}, PostgreSQL {:.2})",
        cpu.total() * 1e3 / STEPS as f64,
        cpu.this_process * 1e3 / STEPS as f64,
        cpu.postgres * 1e3 / STEPS as f64
    );
    Ok(())
}

async fn fan_out(engine: &Engine) -> anyhow::Result<()> {
    let definition = json!({"nodes": [
        {"id": "fan", "run": "true", "shards": 1000},
        {"id": "join", "needs": ["fan"], "run": "true"}]});
    let workers = Workers::spawn(engine, WORKERS);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let began = Instant::now();
    let id = submit(engine, &definition).await?;
    let done = wait_final(engine, &id, Duration::from_secs(120)).await?;
    workers.stop().await?;
    println!("  4. fan-out of 1,000 shards and the fan-in after it");
    println!(
        "     {:.0} ms from accept to completed",
        (done - began).as_secs_f64() * 1e3
    );
    Ok(())
}
