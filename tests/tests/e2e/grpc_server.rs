//! The shared gRPC server: readiness gating, deadline propagation, load shedding and drain.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_proto::events::v1::event_sink_client::EventSinkClient;
use switchyard_proto::events::v1::event_sink_server::{EventSink, EventSinkServer};
use switchyard_proto::events::v1::{DeliverRequest, DeliverResponse};
use switchyard_runtime::config::GrpcConfig;
use switchyard_runtime::grpc::propagation;
use switchyard_runtime::grpc::server::StartedServer;
use switchyard_runtime::grpc::{GrpcServer, channel};
use switchyard_runtime::shutdown::Shutdown;
use tonic::service::Routes;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A sink that takes its time and remembers the deadline it saw.
#[derive(Clone, Default)]
struct SlowSink {
    deadline_seen: Arc<Mutex<Option<Duration>>>,
}

#[tonic::async_trait]
impl EventSink for SlowSink {
    async fn deliver(
        &self,
        _r: tonic::Request<DeliverRequest>,
    ) -> Result<tonic::Response<DeliverResponse>, tonic::Status> {
        *self.deadline_seen.lock().unwrap() = propagation::remaining();
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok(tonic::Response::new(DeliverResponse {
            accepted: 0,
            duplicates: 0,
        }))
    }
}

async fn start(config: GrpcConfig, shutdown: Shutdown) -> StartedServer {
    switchyard_test_support::init();
    GrpcServer::bind(config.listen)
        .await
        .unwrap()
        .start("test", &config, shutdown)
        .await
        .unwrap()
}

async fn health_status(addr: std::net::SocketAddr) -> i32 {
    let mut client = HealthClient::new(channel(&format!("http://{addr}")).unwrap());
    client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_and_calls_unavailable_until_ready() {
    let server = start(GrpcConfig::default(), Shutdown::new()).await;
    let endpoint = format!("http://{}", server.addr);
    assert_eq!(
        health_status(server.addr).await,
        2,
        "NOT_SERVING before the service is built"
    );
    let mut sink = EventSinkClient::new(channel(&endpoint).unwrap());
    let early = sink
        .deliver(DeliverRequest::default())
        .await
        .expect_err("not ready");
    assert_eq!(early.code(), tonic::Code::Unavailable);

    let slow = SlowSink::default();
    server
        .routes
        .install(Routes::new(EventSinkServer::new(slow.clone())));
    server
        .readiness
        .set_serving(&["switchyard.events.v1.EventSink"])
        .await;
    assert_eq!(health_status(server.addr).await, 1, "SERVING once ready");

    let mut request = tonic::Request::new(DeliverRequest::default());
    request.set_timeout(Duration::from_secs(3));
    sink.deliver(request).await.unwrap();
    let seen = slow
        .deadline_seen
        .lock()
        .unwrap()
        .expect("the caller's deadline reached the handler");
    assert!(
        seen <= Duration::from_secs(3) && seen > Duration::from_secs(2),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_calls_are_shed_with_resource_exhausted() {
    let config = GrpcConfig {
        concurrency_limit_per_connection: 1,
        ..GrpcConfig::default()
    };
    let server = start(config, Shutdown::new()).await;
    server
        .routes
        .install(Routes::new(EventSinkServer::new(SlowSink::default())));
    // Clones share one connection, so the per-connection limit applies to both calls.
    let client = EventSinkClient::new(channel(&format!("http://{}", server.addr)).unwrap());
    let (mut a, mut b) = (client.clone(), client);
    let (first, second) = tokio::join!(a.deliver(DeliverRequest::default()), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.deliver(DeliverRequest::default()).await
    });
    assert!(first.is_ok());
    assert_eq!(
        second.expect_err("shed").code(),
        tonic::Code::ResourceExhausted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_calls_finish_then_stops() {
    let shutdown = Shutdown::new();
    let server = start(GrpcConfig::default(), shutdown.clone()).await;
    server
        .routes
        .install(Routes::new(EventSinkServer::new(SlowSink::default())));
    server.readiness.set_serving(&[]).await;
    let mut sink = EventSinkClient::new(channel(&format!("http://{}", server.addr)).unwrap());
    let in_flight = tokio::spawn(async move { sink.deliver(DeliverRequest::default()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    assert!(
        in_flight.await.unwrap().is_ok(),
        "the in-flight call completed during the drain"
    );
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("drained within the grace period")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "no longer accepting"
    );
}
