//! `make bench`: figures a reader can compare across commits. Runs the real services against
//! this machine's PostgreSQL and Redis (a fresh schema, dropped afterwards).
//!
//! `switchyard-bench [gateway|engine|worker|monitoring|history]...` runs the named benchmarks (all when none is named):
//! - gateway: authenticated `GET /api/v1/runs/{id}` rate and latency;
//! - engine: the scheduler's run engine: throughput, enqueue-to-start latency, a 40-step
//!   sequential workflow's overhead, and a 1,000-shard fan-out and fan-in;
//! - worker: the same engine behind every real hop (HTTP create, outbox, gRPC worker API):
//!   throughput and create-to-start latency;
//! - monitoring: that workload with monitoring's task events on and off, interleaved in
//!   short segments on two clusters (fresh ones every pair), and the cost, with create-to-start split into its hops
//!   (see `hops`; `SWITCHYARD_BENCH_LATENCY_IDLE_MS` pauses before the latency workloads);
//!   `worker-without-events` runs one pass of the worker workload with them off (to profile
//!   the side without monitoring); `monitoring-latency` interleaves create-to-start alone.
//! - history: what one ended attempt costs monitoring's execution history on PostgreSQL
//!   (the largest part of monitoring's database time), isolated from the rest.
//!
//! One part of the engine benchmark alone: `engine-throughput`, `engine-latency`,
//! `engine-sequential`, `engine-fan-out` (for profiling one workload).

#![allow(clippy::print_stdout)] // a benchmark's output is its report

mod cpu;
mod engine;
mod gateway;
mod history;
mod hops;
mod monitoring;
mod stats;
mod worker;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let all = wanted.is_empty();
    let runs = |name: &str| all || wanted.iter().any(|w| w == name);
    println!(
        "machine: {} cores; build debug={}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cfg!(debug_assertions)
    );
    let parts: Vec<&str> = engine::PARTS
        .iter()
        .copied()
        .filter(|part| runs("engine") || runs(&format!("engine-{part}")))
        .collect();
    if !parts.is_empty() {
        engine::run(&parts).await?;
    }
    if runs("worker") {
        Box::pin(worker::run(true)).await?;
    }
    if wanted.iter().any(|w| w == "worker-without-events") {
        Box::pin(worker::run(false)).await?;
    }
    if runs("monitoring") {
        Box::pin(monitoring::overhead()).await?;
    }
    if wanted.iter().any(|w| w == "monitoring-latency") {
        Box::pin(monitoring::latency()).await?;
    }
    if runs("history") {
        history::run().await?;
    }
    if runs("gateway") {
        Box::pin(gateway::run()).await?;
    }
    Ok(())
}
