//! The whole pipeline: every service records `service.started` through its outbox, the relays
//! deliver to audit, and the chain verifies.

use std::time::Duration;

use switchyard_proto::audit::v1::{EventFilter, ListEventsRequest, VerifyChainRequest};
use switchyard_test_support::cluster::{audit_client, health};
use switchyard_test_support::{TestDatabase, eventually, spawn_cluster};

async fn lifecycle_reaches_audit(db: TestDatabase) {
    let cluster = spawn_cluster(&db).await;
    for service in [
        &cluster.audit,
        &cluster.control_plane,
        &cluster.scheduler,
        &cluster.monitoring,
    ] {
        assert_eq!(health(service).await, tonic_health::ServingStatus::Serving);
    }
    let mut audit = audit_client(&cluster.audit);
    let sources = eventually(
        "a service.started event from each service",
        Duration::from_secs(20),
        || {
            let mut audit = audit.clone();
            async move {
                let events = audit
                    .list_events(ListEventsRequest {
                        filter: Some(EventFilter {
                            action: "service.started".into(),
                            ..Default::default()
                        }),
                        page: None,
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .events;
                let mut sources: Vec<String> = events.into_iter().map(|e| e.source).collect();
                sources.sort();
                (sources.len() == 4).then_some(sources)
            }
        },
    )
    .await;
    assert_eq!(
        sources,
        ["audit", "control-plane", "monitoring", "scheduler"]
    );

    let verified = audit
        .verify_chain(VerifyChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.checked, 4);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_from_every_service_reach_audit_on_postgres() {
    lifecycle_reaches_audit(TestDatabase::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_from_every_service_reach_audit_on_sqlite() {
    lifecycle_reaches_audit(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_exposes_rpc_and_outbox_series_with_help() {
    let db = TestDatabase::postgres().await;
    let cluster = spawn_cluster(&db).await;
    // One call so the RPC counters exist.
    let mut audit = audit_client(&cluster.audit);
    audit.verify_chain(VerifyChainRequest {}).await.unwrap();
    let url = format!("http://{}/metrics", cluster.audit.metrics_addr);
    let body = eventually(
        "metrics with the outbox backlog",
        Duration::from_secs(20),
        || {
            let url = url.clone();
            async move {
                let body = http_get(&url).await?;
                (body.contains("switchyard_outbox_backlog") && body.contains("VerifyChain"))
                    .then_some(body)
            }
        },
    )
    .await;
    assert!(
        body.contains("# HELP switchyard_grpc_server_requests_total"),
        "{body}"
    );
    assert!(
        body.contains("switchyard_grpc_server_request_duration_seconds_bucket"),
        "{body}"
    );
    assert!(
        body.contains("switchyard_service_ready{service=\"audit\"} 1"),
        "{body}"
    );
    cluster.stop().await;
}

/// A minimal HTTP/1.1 GET over a TCP stream (no client library needed for one test).
async fn http_get(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.starts_with("HTTP/1.1 200").then_some(response)
}
