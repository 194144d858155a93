//! The transactional outbox under failure: events written while the consumer is down arrive
//! once it returns, and an emitter restart neither loses nor doubles them.

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_proto::audit::v1::{EventFilter, ListEventsRequest, VerifyChainRequest};
use switchyard_runtime::config::{GrpcConfig, MetricsConfig};
use switchyard_runtime::host::Running;
use switchyard_runtime::shutdown::Shutdown;
use switchyard_test_support::cluster::audit_client;
use switchyard_test_support::{TestDatabase, eventually};

async fn start_control_plane(db: &TestDatabase, audit_addr: SocketAddr) -> Running {
    switchyard_control_plane::start(
        switchyard_control_plane::ControlPlaneConfig {
            metrics: MetricsConfig::default(),
            grpc: GrpcConfig::default(),
            database: db.config("control-plane"),
            outbox: switchyard_runtime::config::OutboxConfig {
                audit_endpoint: format!("http://{audit_addr}"),
                poll_interval: Duration::from_millis(20),
                max_backoff: Duration::from_millis(300),
                ..Default::default()
            },
            ..Default::default()
        },
        Shutdown::new(),
    )
    .await
    .unwrap()
}

async fn starts_from(audit: &Running, source: &'static str) -> usize {
    audit_client(audit)
        .list_events(ListEventsRequest {
            filter: Some(EventFilter {
                action: "service.started".into(),
                ..Default::default()
            }),
            page: None,
        })
        .await
        .map(|r| {
            r.into_inner()
                .events
                .iter()
                .filter(|e| e.source == source)
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_a_down_consumer_and_arrive_once() {
    let db = TestDatabase::postgres().await;
    let audit_addr = switchyard_test_support::reserve_port();
    // The emitter starts while audit is down: its start record waits in the outbox.
    let control_plane = start_control_plane(&db, audit_addr).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // a few failed deliveries

    let mut config = switchyard_audit::AuditConfig {
        grpc: GrpcConfig {
            listen: audit_addr,
            ..GrpcConfig::default()
        },
        metrics: MetricsConfig::default(),
        database: db.config("audit"),
        ..Default::default()
    };
    config.retention.enabled = false;
    let audit = switchyard_audit::start(config, Shutdown::new())
        .await
        .unwrap();
    eventually(
        "the start record after audit came up",
        Duration::from_secs(20),
        || async { (starts_from(&audit, "control-plane").await == 1).then_some(()) },
    )
    .await;

    // The emitter restarts: a second start record, and the first is not delivered again.
    control_plane.stop().await.unwrap();
    let control_plane = start_control_plane(&db, audit_addr).await;
    eventually(
        "the second start record",
        Duration::from_secs(20),
        || async { (starts_from(&audit, "control-plane").await == 2).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // would-be duplicates have time to land
    assert_eq!(starts_from(&audit, "control-plane").await, 2);
    let verified = audit_client(&audit)
        .verify_chain(VerifyChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok);
    assert_eq!(
        verified.checked, 3,
        "audit's own start + two control-plane starts"
    );
    control_plane.stop().await.unwrap();
    audit.stop().await.unwrap();
}

/// A consumer that hands every delivered event to the test.
struct Collector(tokio::sync::mpsc::UnboundedSender<String>);

#[tonic::async_trait]
impl switchyard_proto::events::v1::event_sink_server::EventSink for Collector {
    async fn deliver(
        &self,
        request: tonic::Request<switchyard_proto::events::v1::DeliverRequest>,
    ) -> Result<tonic::Response<switchyard_proto::events::v1::DeliverResponse>, tonic::Status> {
        let events = request.into_inner().events;
        for event in &events {
            let _ = self.0.send(event.id.clone());
        }
        Ok(tonic::Response::new(
            switchyard_proto::events::v1::DeliverResponse {
                accepted: events.len() as u32,
                duplicates: 0,
            },
        ))
    }
}

/// A `Collector` serving on a free port until `stop`, and a relay from `conn`'s outbox for
/// the scheduler destination to it, polling once a minute and keeping delivered events for
/// `keep_delivered`.
async fn relay_to_collector(
    conn: &sea_orm::DatabaseConnection,
    stop: &Shutdown,
    keep_delivered: Duration,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    relay_polling_to_collector(conn, stop, keep_delivered, Duration::from_secs(60)).await
}

/// [`relay_to_collector`] with the relay polling every `poll_interval`.
async fn relay_polling_to_collector(
    conn: &sea_orm::DatabaseConnection,
    stop: &Shutdown,
    keep_delivered: Duration,
    poll_interval: Duration,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use switchyard_proto::events::v1::event_sink_server::EventSinkServer;
    use switchyard_runtime::outbox::{self, destination};

    let (sender, received) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_stop = stop.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(EventSinkServer::new(Collector(sender)))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                server_stop.cancelled_owned(),
            )
            .await
            .unwrap();
    });
    let sink = outbox::wire::SinkClient::new(
        switchyard_runtime::grpc::channel(&format!("http://{addr}")).unwrap(),
    );
    let relay_config = switchyard_runtime::config::OutboxConfig {
        poll_interval,
        keep_delivered,
        ..Default::default()
    };
    outbox::relay::spawn_relay(
        "test",
        conn.clone(),
        destination::SCHEDULER,
        sink,
        relay_config,
        stop.clone(),
    );
    received
}

/// A test event (a cancel request with no run) with a fresh id.
fn test_event() -> switchyard_proto::events::v1::Event {
    use switchyard_proto::events::v1::{RunCancelRequested, event::Payload};
    switchyard_runtime::outbox::event(
        "test",
        Payload::RunCancelRequested(RunCancelRequested::default()),
    )
}

/// `n` test events for the scheduler's relay, enqueued and committed in one transaction.
async fn enqueue_committed(
    conn: &sea_orm::DatabaseConnection,
    n: usize,
) -> Vec<switchyard_proto::events::v1::Event> {
    let txn = switchyard_runtime::db::write_txn(conn).await.unwrap();
    let events: Vec<_> = (0..n).map(|_| test_event()).collect();
    switchyard_runtime::outbox::enqueue(
        &txn,
        switchyard_runtime::outbox::destination::SCHEDULER,
        &events,
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    events
}

/// A test event for the scheduler's relay, enqueued in `txn`.
async fn enqueue_test_event(
    txn: &sea_orm::DatabaseTransaction,
) -> switchyard_proto::events::v1::Event {
    use switchyard_runtime::outbox::{self, destination};
    let event = test_event();
    outbox::enqueue(txn, destination::SCHEDULER, std::slice::from_ref(&event))
        .await
        .unwrap();
    event
}

/// A relay whose poll interval is a minute still delivers an event within moments of the
/// commit that wrote it: the commit's notification wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_its_relay_before_the_next_poll() {
    let db = TestDatabase::postgres().await;
    let conn = db
        .migrated::<switchyard_scheduler_migration::Migrator>("scheduler")
        .await;
    let stop = Shutdown::new();
    let mut received = relay_to_collector(&conn, &stop, Duration::ZERO).await;
    // The relay's first pass finds nothing; it then sleeps for its minute.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let txn = switchyard_runtime::db::write_txn(&conn).await.unwrap();
    let event = enqueue_test_event(&txn).await;
    txn.commit().await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(15), received.recv())
        .await
        .expect("delivered long before the relay's next poll")
        .unwrap();
    assert_eq!(delivered, event.id);
    stop.cancel();
}

/// The relay sends the stored bytes as they are; a row that does not decode as an event
/// (altered by hand) makes the consumer refuse the batch, and the relay then sends the batch
/// without it instead of retrying the same refusal forever. Both rows leave the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_is_not_an_event_does_not_block_the_ones_behind_it() {
    use sea_orm::{ConnectionTrait, Statement};

    let db = TestDatabase::postgres().await;
    let conn = db
        .migrated::<switchyard_scheduler_migration::Migrator>("scheduler")
        .await;
    let txn = switchyard_runtime::db::write_txn(&conn).await.unwrap();
    let event = enqueue_test_event(&txn).await;
    // Field 1 (the event id) claims 100 bytes and has 2: not an event.
    txn.execute_raw(Statement::from_string(
        sea_orm::DatabaseBackend::Postgres,
        "INSERT INTO outbox_events (event_id, destination, payload, created_at, attempts) \
         VALUES ('broken', 'scheduler', '\\x0a64ffff', now(), 0)",
    ))
    .await
    .unwrap();
    txn.commit().await.unwrap();

    let stop = Shutdown::new();
    let mut received = relay_to_collector(&conn, &stop, Duration::ZERO).await;
    let delivered = tokio::time::timeout(Duration::from_secs(15), received.recv())
        .await
        .expect("the good event delivered")
        .unwrap();
    assert_eq!(delivered, event.id);
    wait_for_count(
        &conn,
        "SELECT count(*) AS n FROM outbox_events WHERE delivered_at IS NULL",
        0,
    )
    .await;
    assert!(received.try_recv().is_err(), "nothing else was delivered");
    stop.cancel();
}

/// Waits until `sql` (a count named `n`) reads `expected`, or fails after 15 s.
async fn wait_for_count(conn: &sea_orm::DatabaseConnection, sql: &str, expected: i64) {
    use sea_orm::{ConnectionTrait, Statement};
    let statement = Statement::from_string(conn.get_database_backend(), sql);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let row = conn
            .query_one_raw(statement.clone())
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        if n == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql}: {n}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events enqueued together are delivered in the order given, on both databases. By default
/// a delivered batch leaves the table in the transaction that settles it; with
/// `keep_delivered` set the rows stay, marked delivered, for housekeeping to delete later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_events_arrive_in_order_and_leave_the_table() {
    for db in [TestDatabase::postgres().await, TestDatabase::sqlite()] {
        for (n, keep) in [Duration::ZERO, Duration::from_secs(3600)]
            .into_iter()
            .enumerate()
        {
            let conn = db
                .migrated::<switchyard_scheduler_migration::Migrator>(&format!("scheduler{n}"))
                .await;
            let events = enqueue_committed(&conn, 3).await;

            let stop = Shutdown::new();
            let mut received = relay_to_collector(&conn, &stop, keep).await;
            for event in &events {
                let delivered = tokio::time::timeout(Duration::from_secs(15), received.recv())
                    .await
                    .expect("delivered")
                    .unwrap();
                assert_eq!(delivered, event.id, "{:?}, keep {keep:?}", db.backend);
            }
            // Kept rows are the marked ones: all three, or none.
            let kept = if keep.is_zero() { 0 } else { 3 };
            wait_for_count(
                &conn,
                "SELECT count(*) AS n FROM outbox_events WHERE delivered_at IS NOT NULL",
                kept,
            )
            .await;
            wait_for_count(&conn, "SELECT count(*) AS n FROM outbox_events", kept).await;
            stop.cancel();
        }
    }
}

/// Outbox payloads (tens of kilobytes for a claim's lifecycle steps) are compressed with lz4
/// where the server has it, as this machine's PostgreSQL does, and read back whole.
#[tokio::test]
async fn outbox_payloads_are_compressed_with_lz4_and_read_back_whole() {
    use sea_orm::{ConnectionTrait, Statement};
    let db = TestDatabase::postgres().await;
    let conn = db
        .migrated::<switchyard_scheduler_migration::Migrator>("scheduler")
        .await;
    let query = |sql: &'static str| Statement::from_string(sea_orm::DatabaseBackend::Postgres, sql);
    let column = conn
        .query_one_raw(query(
            "SELECT attcompression::text AS method FROM pg_attribute \
             WHERE attrelid = 'outbox_events'::regclass AND attname = 'payload'",
        ))
        .await
        .unwrap()
        .unwrap();
    let method: String = column.try_get("", "method").unwrap();
    assert_eq!(method, "l", "lz4 (l), not the server's default");

    // Ids that differ, as a claim's steps do: big enough to be compressed, not trivially.
    let steps: Vec<_> = (0..200)
        .map(|n| switchyard_proto::events::v1::TaskLifecycle {
            task_id: uuid::Uuid::new_v4().to_string(),
            run_id: "00000000-0000-7000-8000-000000000001".into(),
            node: format!("shard-{n}"),
            ..Default::default()
        })
        .collect();
    let event = switchyard_runtime::outbox::event(
        "scheduler",
        switchyard_proto::events::v1::event::Payload::TaskLifecycles(
            switchyard_proto::events::v1::TaskLifecycleBatch { steps },
        ),
    );
    let txn = switchyard_runtime::db::write_txn(&conn).await.unwrap();
    switchyard_runtime::outbox::enqueue(&txn, "monitoring", std::slice::from_ref(&event))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let row = conn
        .query_one_raw(query(
            "SELECT payload, pg_column_compression(payload) AS method FROM outbox_events",
        ))
        .await
        .unwrap()
        .unwrap();
    let stored: Vec<u8> = row.try_get("", "payload").unwrap();
    let method: String = row.try_get("", "method").unwrap();
    assert_eq!(method, "lz4");
    assert_eq!(stored, prost::Message::encode_to_vec(&event));
}

/// A transaction that commits without waiting for the WAL flush (the scheduler's batches of
/// leased steps) does so alone: the pooled connection goes back to synchronous commits for
/// whoever takes it next (a plain `SET` would have left every later commit on it unflushed).
#[tokio::test]
async fn a_commit_that_skips_the_flush_wait_leaves_the_connection_as_it_was() {
    let db = TestDatabase::postgres().await;
    let mut config = db.config("relay");
    config.max_connections = 1; // the second transaction gets the same connection
    let conn = switchyard_runtime::db::connect(&config).await.unwrap();
    let txn = switchyard_runtime::db::write_txn(&conn).await.unwrap();
    assert_eq!(synchronous_commit(&txn).await, "on");
    switchyard_runtime::db::without_flush_wait(&txn)
        .await
        .unwrap();
    assert_eq!(synchronous_commit(&txn).await, "off");
    txn.commit().await.unwrap();
    let txn = switchyard_runtime::db::write_txn(&conn).await.unwrap();
    assert_eq!(synchronous_commit(&txn).await, "on");
    txn.commit().await.unwrap();
}

async fn synchronous_commit<C: sea_orm::ConnectionTrait>(conn: &C) -> String {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT current_setting('synchronous_commit') AS value",
        ))
        .await
        .unwrap()
        .expect("one row");
    row.try_get("", "value").unwrap()
}

/// Replicas of an emitter each run a relay for the destination, and one delivers at a time:
/// every event arrives once, in order, through the relay that leads. When it stops, the other
/// takes over at its next poll and delivers what came after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_of_several_delivers_and_another_takes_over_when_it_stops() {
    let db = TestDatabase::postgres().await;
    let conn = db
        .migrated::<switchyard_scheduler_migration::Migrator>("scheduler")
        .await;
    let enqueue = async |n: usize| {
        let events = enqueue_committed(&conn, n).await;
        events.into_iter().map(|e| e.id).collect::<Vec<_>>()
    };
    let first = enqueue(20).await;
    let poll = Duration::from_millis(100);
    let (stop_a, stop_b) = (Shutdown::new(), Shutdown::new());
    let mut a = relay_polling_to_collector(&conn, &stop_a, Duration::ZERO, poll).await;
    let mut b = relay_polling_to_collector(&conn, &stop_b, Duration::ZERO, poll).await;
    wait_for_count(&conn, "SELECT count(*) AS n FROM outbox_events", 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a second delivery would land
    let (from_a, from_b) = (drain(&mut a), drain(&mut b));
    let (leader, stop_leader, mut standby, stop_standby) =
        match (from_a.is_empty(), from_b.is_empty()) {
            (false, true) => (from_a, stop_a, b, stop_b),
            (true, false) => (from_b, stop_b, a, stop_a),
            _ => panic!("both relays delivered, or neither: {from_a:?} and {from_b:?}"),
        };
    assert_eq!(leader, first, "each event once, in order");

    stop_leader.cancel();
    let second = enqueue(3).await;
    let mut taken_over = Vec::new();
    while taken_over.len() < second.len() {
        let id = tokio::time::timeout(Duration::from_secs(15), standby.recv())
            .await
            .expect("the other relay took over")
            .unwrap();
        taken_over.push(id);
    }
    assert_eq!(taken_over, second);
    stop_standby.cancel();
}

/// What a collector has received so far.
fn drain(received: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Vec<String> {
    std::iter::from_fn(|| received.try_recv().ok()).collect()
}
