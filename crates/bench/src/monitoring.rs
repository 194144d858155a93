//! monitoring: what monitoring costs the run engine. The worker workload (see
//! [`crate::worker`]) runs on two clusters side by side in this process, one with task
//! lifecycle events on (the scheduler writes them, relays them, monitoring ingests them) and
//! one with them off, and each figure with events on is compared with the one without.
//!
//! Method. This machine is shared, and its speed drifts by several percent over minutes:
//! two passes a minute apart differ more than monitoring costs. So the two sides are not
//! measured one after the other but interleaved in short pairs. Each pair builds two fresh
//! clusters, one a side (the side built first alternating), and warms each with a short
//! segment, not counted. Then the throughput workload runs in halves (30,000 tasks each) in
//! the order A B B A, each half after a vacuum of what had fallen due in its cluster and a
//! checkpoint (see `worker::settle`), so neither side is charged for upkeep that happened to
//! land in it; a side's rate is over its two halves together, and a drift in the machine's
//! speed over the pair is charged to both sides alike (with one burst a side, one after the
//! other, it went to the side that ran second). Each half's rate is printed too: a half can
//! differ from the same cluster's other by 15–20% on this machine. Then both clusters
//! settle again and the create-to-start workloads run in the
//! order A B B A, by default four times over (a quarter of a round's samples each time, A
//! being the side whose burst came first; see `latency_rounds`): both sides start measuring
//! at the same distance from the bursts on average, and a slope in whatever the bursts left
//! lingering (or in the machine) is charged to both alike. Waiting
//! for each side's own settle before its latency workload did not: the side with more to
//! vacuum started later after its burst and came out faster (5–20%). The upkeep itself
//! (vacuum, writing dirty pages back) is not counted on either side.
//!
//! Why fresh clusters every pair: with two clusters kept through the whole benchmark, one
//! of them (with events on or off alike) at times fell into a slower state after 1 to 11
//! pairs and stayed there (create-to-start +50–80%, mostly in the control plane → scheduler
//! delivery, and ~7% more scheduler database time per task), so which side it hit decided
//! the run: paired p50 +57.9% in one 30-pair run, −38.5% in another. A fresh pair of
//! clusters holds such a state for one pair at most, which the medians discount, and every
//! pair measures tables of the same size (those of a young deployment: ~75,000 tasks).
//! `SWITCHYARD_BENCH_KEEP_CLUSTERS=1` keeps two clusters through the whole run instead, for
//! studying that state and the cost on grown tables.
//!
//! The cost is then given two ways: the sides' medians compared, and the median of the
//! pairs' own changes, with a distribution-free interval around it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use switchyard_test_support::TestDatabase;
use switchyard_test_support::api::Api;

use crate::cpu::by_service_per_thousand;
use crate::hops::Hops;
use crate::stats::{median_and_range, median_interval};
use crate::worker::{
    Figures, LATENCY_SAMPLES, Project, TASKS_PER_RUN, Throughput, cluster, create_to_start,
    measure, percentiles, settle, throughput,
};

/// A positive count from the environment variable `name`, `default` when unset or not one.
fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(default)
}

/// Runs of 1,000 tasks in one side's throughput workload of a pair (two halves):
/// `SWITCHYARD_BENCH_SEGMENT_RUNS`, sixty when unset. A side's share must last long enough
/// that the machine's second-to-second jitter and one relay burst do not decide a pair. With
/// twenty (halves of 10,000 tasks, 2–3 s each) the pairs' throughput changes spread with a
/// standard deviation of 7.2% (60 pairs); with sixty (halves of 30,000, 5–6 s) 3.2% (8 pairs),
/// for a pair that takes ~90 s instead of ~70: half as wide an interval for the same time.
fn segment_runs() -> usize {
    count_from_env("SWITCHYARD_BENCH_SEGMENT_RUNS", 60)
}

/// Pairs of segments (one a side each): `SWITCHYARD_BENCH_PAIRS`, ten when unset. More pairs
/// narrow the interval printed for the median change, at under a minute a pair.
fn pairs() -> usize {
    count_from_env("SWITCHYARD_BENCH_PAIRS", 10)
}

/// A pause between the settle after both bursts and the latency workloads:
/// `SWITCHYARD_BENCH_LATENCY_IDLE_MS`, none when unset. A diagnostic: a latency cost that
/// shrinks with the pause is work the bursts left behind, not a cost per run.
fn latency_idle() -> Duration {
    let millis = std::env::var("SWITCHYARD_BENCH_LATENCY_IDLE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    Duration::from_millis(millis)
}

/// One side: a cluster with task events on or off.
struct Side {
    events: bool,
    /// Runs of one throughput half (see [`pair`]).
    runs: usize,
    db: TestDatabase,
    api: Api,
    project: Project,
}

impl Side {
    async fn new(task_events: bool, runs: usize) -> anyhow::Result<Side> {
        let (db, api, project) = cluster(task_events).await?;
        Ok(Side {
            events: task_events,
            runs: (runs / 2).max(1),
            db,
            api,
            project,
        })
    }

    /// Both workloads once, not counted (the warm-up), `runs` runs long.
    async fn warm_up(&self, runs: usize) -> anyhow::Result<Figures> {
        measure(&self.db, &self.api, &self.project, runs, false).await
    }

    async fn throughput(&self) -> anyhow::Result<Throughput> {
        throughput(&self.db, &self.api, &self.project, self.runs, false).await
    }

    async fn create_to_start(&self, samples: usize) -> anyhow::Result<Vec<Duration>> {
        create_to_start(&self.api, &self.project, samples).await
    }

    async fn figures(
        &self,
        throughput: Throughput,
        latency: Vec<Duration>,
        since: DateTime<Utc>,
    ) -> anyhow::Result<Figures> {
        let (p50_ms, p99_ms) = percentiles(latency, false);
        Ok(Figures {
            lease_to_complete: throughput.lease_to_complete,
            p50_ms,
            p99_ms,
            cpu: throughput.cpu,
            postgres_by_service: throughput.postgres_by_service,
            hops: Hops::since(&self.db, since).await?,
        })
    }

    /// Stops the services; dropping the side then drops its schemas. Boxed: the future
    /// holds the side, which is large.
    fn stop(self) -> std::pin::Pin<Box<impl Future<Output = ()>>> {
        Box::pin(async move { self.api.stop().await })
    }
}

/// Runs of the warm-up segment of a pair's fresh clusters: a quarter of a measured one, enough
/// to fill connection pools, prepare statements and load caches.
fn warm_up_runs(runs: usize) -> usize {
    runs.div_ceil(4)
}

/// Whether both clusters live through the whole benchmark instead
/// (`SWITCHYARD_BENCH_KEEP_CLUSTERS=1`): the method before fresh clusters every pair, kept
/// for studying the slower state some long-lived clusters fall into (see the module docs).
fn keep_clusters() -> bool {
    std::env::var("SWITCHYARD_BENCH_KEEP_CLUSTERS").is_ok_and(|v| v == "1")
}

/// Rounds of the create-to-start order A B B A in a pair: `SWITCHYARD_BENCH_LATENCY_ROUNDS`,
/// four when unset (a quarter is then 25 runs, under half a second). Create-to-start's hops
/// move between levels (the control plane → scheduler delivery at ~2.5 or ~4–5 ms) that last
/// seconds to minutes: with one round of 100-run quarters, one pair's p50 differed by 44%
/// between the sides. Shorter quarters spread what comes and goes with time over both
/// sides; a level that one cluster keeps through the pair (seen too, with four rounds:
/// 2.9 against 4.3 ms) is what fresh clusters every pair hold to one pair. Each quarter
/// starts its workers and waits 600 ms first (see `worker::create_to_start`), which also
/// lets the other side's relays deliver what its last quarter left, so that neither side is
/// charged for the other's work.
fn latency_rounds() -> usize {
    count_from_env("SWITCHYARD_BENCH_LATENCY_ROUNDS", 4).min(LATENCY_SAMPLES / 2)
}

/// Two clusters, the first with task events as `first_events` says and the second the
/// other way, each warmed by a short segment (the first first), then settled.
async fn clusters(first_events: bool, runs: usize) -> anyhow::Result<(Side, Side)> {
    let a = Side::new(first_events, runs).await?;
    let b = Side::new(!first_events, runs).await?;
    a.warm_up(warm_up_runs(runs)).await?;
    b.warm_up(warm_up_runs(runs)).await?;
    settle(&a.db).await?;
    settle(&b.db).await?;
    Ok((a, b))
}

/// One measured pair (see the module docs): the throughput workload in halves on `a`, `b`,
/// `b`, `a`; both settle; then create-to-start on `a`, `b`, `b`, `a`, [`latency_rounds`]
/// times over, a quarter of a round's samples each time. Returns `a`'s figures and `b`'s.
async fn pair(a: &Side, b: &Side) -> anyhow::Result<(Figures, Figures)> {
    let a_first = a.throughput().await?;
    let b_first = b.throughput().await?;
    let b_second = b.throughput().await?;
    let a_second = a.throughput().await?;
    println!(
        "               throughput A B B A (A {}): {:.0} {:.0} {:.0} {:.0} tasks/s",
        if a.events { "with" } else { "without" },
        a_first.lease_to_complete,
        b_first.lease_to_complete,
        b_second.lease_to_complete,
        a_second.lease_to_complete
    );
    let (a_throughput, b_throughput) = (a_first.and(a_second), b_first.and(b_second));
    settle(&a.db).await?;
    settle(&b.db).await?;
    tokio::time::sleep(latency_idle()).await;
    let since = Utc::now();
    let rounds = latency_rounds();
    let quarter = (LATENCY_SAMPLES / (2 * rounds)).max(1);
    let (mut a_latency, mut b_latency) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        a_latency.extend(a.create_to_start(quarter).await?);
        b_latency.extend(b.create_to_start(quarter).await?);
        b_latency.extend(b.create_to_start(quarter).await?);
        a_latency.extend(a.create_to_start(quarter).await?);
    }
    Ok((
        a.figures(a_throughput, a_latency, since).await?,
        b.figures(b_throughput, b_latency, since).await?,
    ))
}

pub async fn overhead() -> anyhow::Result<()> {
    let passes = pairs();
    let runs = segment_runs();
    // A side's tasks: two halves (see `pair`).
    let tasks = (runs / 2).max(1) as u64 * 2 * TASKS_PER_RUN;
    let kept = if keep_clusters() {
        Some(Box::pin(clusters(false, runs)).await?)
    } else {
        None
    };
    println!(
        "monitoring: the worker workload with task events on (monitoring ingesting) and off, \
         interleaved on two {} clusters: {passes} pairs of segments of {tasks} tasks a side",
        if kept.is_some() {
            "long-lived"
        } else {
            "fresh (every pair)"
        }
    );
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for i in 0..passes {
        // The side that goes first alternates.
        let events_first = i % 2 == 1;
        let (first, second) = match &kept {
            Some((without, with)) if events_first => pair(with, without).await?,
            Some((without, with)) => pair(without, with).await?,
            None => {
                let (a, b) = Box::pin(clusters(events_first, runs)).await?;
                let figures = pair(&a, &b).await?;
                a.stop().await;
                b.stop().await;
                figures
            }
        };
        let (without, with) = if events_first {
            (second, first)
        } else {
            (first, second)
        };
        println!(
            "     pair {}/{passes}: without {:.0} tasks/s, p50 {:.2} ms; with {:.0} tasks/s, p50 {:.2} ms",
            i + 1,
            without.lease_to_complete,
            without.p50_ms,
            with.lease_to_complete,
            with.p50_ms
        );
        println!(
            "               create-to-start hops: without {}; with {}",
            without.hops.describe(),
            with.hops.describe()
        );
        off.push(without);
        on.push(with);
    }
    report(&off, &on, passes, tasks);
    if let Some((without, with)) = kept {
        without.stop().await;
        with.stop().await;
    }
    Ok(())
}

/// Create-to-start alone, interleaved the same way: what monitoring adds to each run's start
/// on a quiet system, apart from what the throughput workload leaves behind (for telling the
/// two apart when the full benchmark shows a latency cost). `monitoring-latency`.
pub async fn latency() -> anyhow::Result<()> {
    let passes = pairs();
    println!(
        "monitoring-latency: create-to-start alone with task events on and off, interleaved on two clusters: {passes} pairs"
    );
    let off = Side::new(false, 1).await?;
    let on = Side::new(true, 1).await?;
    off.warm_up(1).await?;
    on.warm_up(1).await?;
    let p50 = async |side: &Side| {
        let samples = side.create_to_start(LATENCY_SAMPLES).await?;
        anyhow::Ok(percentiles(samples, false).0)
    };
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for i in 0..passes {
        let (off_p50, on_p50) = if i % 2 == 0 {
            let first = p50(&off).await?;
            (first, p50(&on).await?)
        } else {
            let first = p50(&on).await?;
            (p50(&off).await?, first)
        };
        without.push(off_p50);
        with.push(on_p50);
        println!(
            "     pair {}/{passes}: without p50 {:.2} ms; with p50 {:.2} ms",
            i + 1,
            without[i],
            with[i]
        );
    }
    let changes: Vec<f64> = without
        .iter()
        .zip(&with)
        .map(|(off, on)| (on - off) / off * 100.0)
        .collect();
    let (low, high, confidence) = median_interval(&changes);
    let (median, _, _) = median_and_range(changes);
    let (p50_off, _, _) = median_and_range(without);
    let (p50_on, _, _) = median_and_range(with);
    println!(
        "     without p50 {p50_off:.2} ms, with p50 {p50_on:.2} ms; paired change {median:+.1}% ({:.0}% interval {low:+.1}…{high:+.1})",
        confidence * 100.0
    );
    off.stop().await;
    on.stop().await;
    Ok(())
}

/// Prints each side's figures and the cost, by medians and paired.
fn report(off: &[Figures], on: &[Figures], passes: usize, tasks: u64) {
    let figure = |side: &[Figures], of: &dyn Fn(&Figures) -> f64| {
        median_and_range(side.iter().map(of).collect())
    };
    let rate = |f: &Figures| f.lease_to_complete;
    let p50 = |f: &Figures| f.p50_ms;
    let cpu = |f: &Figures| f.cpu.total();
    for (name, side) in [("without", off), ("with:  ", on)] {
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
            "              {} (median segment)",
            median_cpu.per_thousand(tasks)
        );
        println!(
            "              {} (medians)",
            by_service_per_thousand(&median_by_service(side), tasks)
        );
        let hop = |of: fn(&Hops) -> f64| figure(side, &|f: &Figures| of(&f.hops)).0;
        let hops = Hops {
            deliver_ms: hop(|h| h.deliver_ms),
            start_ms: hop(|h| h.start_ms),
            claim_ms: hop(|h| h.claim_ms),
        };
        println!(
            "              create-to-start hops: {} (medians)",
            hops.describe()
        );
    }
    let cost = |of: &dyn Fn(&Figures) -> f64, higher_is_better: bool| {
        let (without, with) = (figure(off, of).0, figure(on, of).0);
        let change = (with - without) / without * 100.0;
        if higher_is_better { -change } else { change }
    };
    println!(
        "     cost of monitoring (medians of {passes} segments a side): throughput {:+.1}%, p50 {:+.1}%, CPU per task {:+.1}% (target: under 5% for throughput and p50)",
        cost(&rate, true),
        cost(&p50, false),
        cost(&cpu, false)
    );
    // The two segments of a pair ran back to back, so they share whatever the machine was
    // doing then; the median of the pairs' changes discounts noise that drifts over the run
    // more than comparing the sides' medians does. Beside it, an interval that covers the
    // true median change with the confidence printed, whatever the noise's distribution.
    let paired = |of: &dyn Fn(&Figures) -> f64, higher_is_better: bool| {
        let changes: Vec<f64> = off
            .iter()
            .zip(on)
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
        "     paired (median of the {passes} segment pairs' changes): throughput {}, p50 {}, CPU per task {}",
        paired(&rate, true),
        paired(&p50, false),
        paired(&cpu, false)
    );
}

/// Each service's median PostgreSQL CPU over the segments of one side.
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
