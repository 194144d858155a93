//! history: what one ended attempt costs monitoring's execution history on PostgreSQL, the
//! largest part of what monitoring adds to the run engine's database time. Batches of ended
//! attempts, as one delivery of the scheduler's events brings them, are written each in a
//! transaction of its own, as the event sink writes them, into a history that grows through
//! the run, in the two forms the store has (see [`Form`]), passes of each alternating.
//! Reported per attempt: wall time, the CPU of monitoring's own PostgreSQL backend, and this
//! process's CPU (encoding the batch, the driver).
//!
//! The monitoring benchmark measures the whole cost, with noise of a few percent; this one
//! isolates the history write, so that a change to it (the statement's form, the indexes)
//! can be compared in minutes.

use std::time::{Duration, Instant};

use chrono::Utc;
use switchyard_monitoring::domain::execution::{Execution, Status};
use switchyard_monitoring::store::executions;
use switchyard_test_support::TestDatabase;

use crate::cpu::{Backends, Cpu};
use crate::stats::median_and_range;

/// Attempts per batch: about what one delivery brings at full throughput (the relay polls
/// every 200 ms; a few hundred attempts end in that time).
const BATCH: usize = 400;

/// Batches per measured pass, after a warm-up pass that is not counted.
const BATCHES: usize = 50;

/// Measured passes; the report gives their median and range.
const PASSES: usize = 5;

/// Tasks per run, as in the worker benchmark's wide workflow.
const TASKS_PER_RUN: usize = 1_000;

/// One pass's figures, per attempt.
struct Pass {
    wall_us: f64,
    backend_us: f64,
    client_us: f64,
}

/// How a batch is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `COPY` on the driver's connection: the event sink's path on PostgreSQL.
    Copy,
    /// The `INSERT ... SELECT FROM unnest(...)` through sea-orm: the path of a batch that
    /// also carries API usage reports (and, with parameters in chunks, SQLite's).
    Insert,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Form::Copy => "COPY (the event sink's path)",
            Form::Insert => "INSERT ... unnest (sea-orm)",
        }
    }

    async fn write(
        self,
        conn: &sea_orm::DatabaseConnection,
        rows: &[Execution],
    ) -> anyhow::Result<()> {
        match self {
            Form::Copy => {
                let mut txn = conn.get_postgres_connection_pool().begin().await?;
                executions::upsert_postgres(&mut txn, rows).await?;
                txn.commit().await?;
            }
            Form::Insert => {
                let txn = switchyard_runtime::db::write_txn(conn).await?;
                executions::upsert(&txn, rows).await?;
                txn.commit().await?;
            }
        }
        Ok(())
    }
}

pub async fn run() -> anyhow::Result<()> {
    println!(
        "history: ended attempts written to monitoring's execution history, {BATCH} a transaction, \
         {BATCHES} transactions a pass; each form's median of {PASSES} passes (interleaved) after a warm-up"
    );
    let db = TestDatabase::postgres().await;
    let conn = db
        .migrated::<switchyard_monitoring_migration::Migrator>("monitoring")
        .await;
    let bench = switchyard_runtime::db::connect(&db.config("bench")).await?;
    let services = [("monitoring", db.config("monitoring").schema)];
    let project = uuid::Uuid::now_v7().to_string();
    let forms = [Form::Copy, Form::Insert];
    let total_passes = (PASSES + 1) * forms.len();
    let runs: Vec<String> = (0..total_passes * BATCHES * BATCH / TASKS_PER_RUN + 1)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let mut written = 0usize;
    let mut passes: Vec<(Form, Pass)> = Vec::new();
    for pass in 0..total_passes {
        // Alternating, so both forms meet a history of about the same size.
        let form = forms[pass % forms.len()];
        let batches: Vec<Vec<Execution>> = (0..BATCHES)
            .map(|b| batch(&project, &runs, (pass * BATCHES + b) * BATCH))
            .collect();
        let backends_before = Backends::now(&bench, &services).await?;
        let cpu_before = Cpu::now();
        let began = Instant::now();
        for rows in &batches {
            form.write(&conn, rows).await?;
        }
        let wall = began.elapsed();
        let cpu = Cpu::now().since(cpu_before);
        let backend = Backends::now(&bench, &services)
            .await?
            .since(&backends_before)
            .get("monitoring")
            .copied()
            .unwrap_or(0.0);
        written += BATCH * BATCHES;
        if pass >= forms.len() {
            passes.push((form, per_attempt(wall, backend, cpu.this_process)));
        }
    }
    let stored = count(&conn).await?;
    anyhow::ensure!(
        stored == written,
        "the history holds {stored} attempts, {written} were written"
    );
    for form in forms {
        let figure = |of: &dyn Fn(&Pass) -> f64| {
            median_and_range(
                passes
                    .iter()
                    .filter(|(f, _)| *f == form)
                    .map(|(_, p)| of(p))
                    .collect(),
            )
        };
        let (wall, _, _) = figure(&|p| p.wall_us);
        let (backend, b_lo, b_hi) = figure(&|p| p.backend_us);
        let (client, c_lo, c_hi) = figure(&|p| p.client_us);
        println!(
            "     {}: {wall:.1} µs an attempt; CPU of monitoring's PostgreSQL backend {backend:.1} \
             ({b_lo:.1}–{b_hi:.1}), of this process (encoding, driver) {client:.1} ({c_lo:.1}–{c_hi:.1})",
            form.name()
        );
    }
    println!("     the history held {stored} attempts at the end");
    Ok(())
}

fn per_attempt(wall: Duration, backend: f64, client: f64) -> Pass {
    let attempts = (BATCH * BATCHES) as f64;
    Pass {
        wall_us: wall.as_secs_f64() * 1e6 / attempts,
        backend_us: backend * 1e6 / attempts,
        client_us: client * 1e6 / attempts,
    }
}

/// `BATCH` succeeded attempts, the first numbered `first`, attempt `n` of run
/// `runs[n / TASKS_PER_RUN]`. Ids are UUIDv7 as the scheduler makes them, so they grow as
/// real ones do.
fn batch(project: &str, runs: &[String], first: usize) -> Vec<Execution> {
    let now = Utc::now();
    (first..first + BATCH)
        .map(|n| Execution {
            task_id: uuid::Uuid::now_v7().to_string(),
            attempt: 1,
            run_id: runs[n / TASKS_PER_RUN].clone(),
            project_id: project.to_owned(),
            workflow: "wide".into(),
            node: "t".into(),
            shard_index: i32::try_from(n % TASKS_PER_RUN).unwrap_or(0),
            shard_count: TASKS_PER_RUN as i32,
            iteration: 0,
            status: Status::Succeeded,
            agent_id: "0190a0b0-0000-7000-8000-00000000abcd".into(),
            exit_code: Some(0),
            error: String::new(),
            retry_reason: String::new(),
            queued_at: Some(now - chrono::Duration::milliseconds(30)),
            started_at: Some(now - chrono::Duration::milliseconds(10)),
            finished_at: Some(now),
            not_before: None,
            leased_unsent: false,
        })
        .collect()
}

async fn count(conn: &sea_orm::DatabaseConnection) -> anyhow::Result<usize> {
    use sea_orm::{EntityTrait, PaginatorTrait};
    use switchyard_monitoring::store::entity::task_execution::Entity;
    Ok(usize::try_from(Entity::find().count(conn).await?)?)
}
