//! gateway: authenticated `GET /api/v1/runs/{id}` from concurrent keep-alive clients for a
//! fixed time after a warm-up; prints requests per second and latency percentiles.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;
use switchyard_test_support::TestDatabase;
use switchyard_test_support::api::spawn_api_with;

const CONCURRENCY: usize = 32;
const WARMUP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(10);

pub async fn run() -> anyhow::Result<()> {
    let db = TestDatabase::postgres().await;
    // The rate limit would measure itself; the bench token gets none.
    let api = spawn_api_with(&db, |c| c.rate_limit.enabled = false).await;
    let bench = crate::worker::project(&api).await?;
    let (project, token) = (bench.id, bench.ci);
    let workflow = json!({"nodes": [{"id": "a", "run": "true"}]});
    api.put(
        &format!("/api/v1/projects/{project}/workflows/w"),
        Some(&token),
        workflow,
    )
    .await;
    let run = api
        .post(
            &format!("/api/v1/projects/{project}/runs"),
            Some(&token),
            json!({"workflow": "w"}),
        )
        .await;
    ensure!(run.status == 201, "run not created: {:?}", run.body);
    let url = format!(
        "{}/api/v1/runs/{}",
        api.base,
        run.body["id"].as_str().context("run id")?
    );

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0u64;
            loop {
                let sent = Instant::now();
                if sent - started >= WARMUP + MEASURE {
                    return (samples, errors);
                }
                let ok = matches!(client.get(&url).bearer_auth(&token).send().await, Ok(r) if r.status().as_u16() == 200);
                if sent - started >= WARMUP {
                    if ok {
                        samples.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (s, e) = worker.await?;
        samples.extend(s);
        errors += e;
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    ensure!(!samples.is_empty(), "no successful requests");
    println!(
        "gateway: GET /api/v1/runs/{{id}} with a service token (cached auth, PostgreSQL + Redis)"
    );
    println!(
        "  concurrency {CONCURRENCY}, {}s measured after {}s warm-up, debug={}",
        MEASURE.as_secs(),
        WARMUP.as_secs(),
        cfg!(debug_assertions)
    );
    println!(
        "  requests/s  {:.0}",
        samples.len() as f64 / MEASURE.as_secs_f64()
    );
    println!(
        "  p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms   errors {errors}",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.90).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
    api.stop().await;
    Ok(())
}
