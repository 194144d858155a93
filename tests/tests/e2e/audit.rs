//! The audit service: idempotent ingestion, hash chain verification and tamper detection,
//! queries, export, retention, and concurrent replicas.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use switchyard_proto::audit::v1::{
    ApplyRetentionRequest, EventFilter, ExportEventsRequest, ListEventsRequest, VerifyChainRequest,
};
use switchyard_proto::common::v1::{Actor, ActorType, PageRequest};
use switchyard_proto::events::v1::event_sink_client::EventSinkClient;
use switchyard_proto::events::v1::{AuditRecord, DeliverRequest, Event, Outcome, event::Payload};
use switchyard_runtime::time::to_proto;
use switchyard_test_support::cluster::{audit_client, channel};
use switchyard_test_support::{TestDatabase, spawn_audit};
use tokio_stream::StreamExt;

fn record(actor: &str, action: &str, resource_id: &str, at: DateTime<Utc>) -> Event {
    let mut event = switchyard_runtime::outbox::event(
        "control-plane",
        Payload::Audit(AuditRecord {
            actor: Some(Actor {
                r#type: ActorType::User as i32,
                id: actor.into(),
                display_name: actor.into(),
            }),
            action: action.into(),
            resource_type: "run".into(),
            resource_id: resource_id.into(),
            org_id: "org-1".into(),
            project_id: "proj-1".into(),
            outcome: Outcome::Success as i32,
            details_json: format!(r#"{{"resource":"{resource_id}"}}"#),
            origin: None,
        }),
    );
    event.occurred_at = Some(to_proto(at));
    event
}

fn batch(n: usize, at: DateTime<Utc>) -> Vec<Event> {
    (0..n)
        .map(|i| {
            record(
                &format!("user-{}", i % 3),
                if i % 2 == 0 {
                    "run.created"
                } else {
                    "run.cancelled"
                },
                &format!("run-{i}"),
                at,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_events_are_recorded_once() {
    let db = TestDatabase::postgres().await;
    let audit = spawn_audit(&db).await;
    let mut sink = EventSinkClient::new(channel(&audit));
    let events = batch(5, Utc::now());
    let first = sink
        .deliver(DeliverRequest {
            events: events.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.accepted, first.duplicates), (5, 0));
    // A relay that crashed before marking delivered sends the same batch again, plus one new.
    let mut again = events.clone();
    again.push(record("user-9", "run.created", "run-new", Utc::now()));
    again.push(events[0].clone()); // and a repeat inside the batch
    let second = sink
        .deliver(DeliverRequest { events: again })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((second.accepted, second.duplicates), (1, 6));

    let verified = audit_client(&audit)
        .verify_chain(VerifyChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.checked, 1 + 5 + 1, "service.started + 5 + 1");
    audit.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_batch_is_refused_whole_and_changes_nothing() {
    let db = TestDatabase::postgres().await;
    let audit = spawn_audit(&db).await;
    let mut sink = EventSinkClient::new(channel(&audit));
    let mut events = batch(3, Utc::now());
    if let Some(Payload::Audit(record)) = &mut events[1].payload {
        record.action.clear();
        record.details_json = "not json".into();
    }
    let status = sink
        .deliver(DeliverRequest { events })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let details = switchyard_runtime::error::decode_details(&status).expect("details");
    let fields: Vec<&str> = details
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(
        fields,
        ["events[1].audit.action", "events[1].audit.details_json"]
    );

    let verified = audit_client(&audit)
        .verify_chain(VerifyChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.checked, 1, "only service.started is stored");
    audit.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altering_a_row_in_the_database_is_detected_at_that_row() {
    let db = TestDatabase::postgres().await;
    let audit = spawn_audit(&db).await;
    EventSinkClient::new(channel(&audit))
        .deliver(DeliverRequest {
            events: batch(9, Utc::now()),
        })
        .await
        .unwrap();
    let mut client = audit_client(&audit);
    assert!(
        client
            .verify_chain(VerifyChainRequest {})
            .await
            .unwrap()
            .into_inner()
            .ok
    );

    let conn = db.connect("audit").await;
    conn.execute_unprepared("UPDATE audit_events SET action = 'run.deleted' WHERE seq = 6")
        .await
        .unwrap();
    let verified = client
        .verify_chain(VerifyChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!verified.ok);
    assert_eq!(verified.first_bad_seq, Some(6));
    assert!(verified.problem.contains("altered"), "{}", verified.problem);
    assert_eq!(verified.checked, 5);
    audit.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_row_is_detected_as_a_gap() {
    let db = TestDatabase::postgres().await;
    let audit = spawn_audit(&db).await;
    EventSinkClient::new(channel(&audit))
        .deliver(DeliverRequest {
            events: batch(5, Utc::now()),
        })
        .await
        .unwrap();
    let conn = db.connect("audit").await;
    conn.execute_unprepared("DELETE FROM audit_events WHERE seq = 3")
        .await
        .unwrap();
    let verified = audit_client(&audit)
        .verify_chain(VerifyChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.first_bad_seq, Some(3), "{verified:?}");
    audit.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filter_and_paginate_newest_first() {
    let db = TestDatabase::postgres().await;
    let audit = spawn_audit(&db).await;
    let t0 = Utc::now() - chrono::Duration::hours(2);
    let t1 = Utc::now() - chrono::Duration::hours(1);
    let mut events = batch(6, t0);
    events.extend(batch(6, t1).into_iter().map(|mut e| {
        e.id = uuid::Uuid::now_v7().to_string();
        e
    }));
    EventSinkClient::new(channel(&audit))
        .deliver(DeliverRequest { events })
        .await
        .unwrap();
    let mut client = audit_client(&audit);

    let list = |filter: EventFilter, limit: u32, cursor: String| ListEventsRequest {
        filter: Some(filter),
        page: Some(PageRequest { limit, cursor }),
    };
    // by actor: user-0 did events 0 and 3 in each batch
    let by_actor = client
        .list_events(list(
            EventFilter {
                actor: "user-0".into(),
                ..Default::default()
            },
            0,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_actor.events.len(), 4);
    assert!(
        by_actor.events.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first"
    );

    // by action and time range
    let recent_cancels = client
        .list_events(list(
            EventFilter {
                action: "run.cancelled".into(),
                since: Some(to_proto(t1 - chrono::Duration::minutes(1))),
                ..Default::default()
            },
            0,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recent_cancels.events.len(), 3);

    // pagination over the 12 run events in pages of 5
    let filter = EventFilter {
        resource_type: "run".into(),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_events(list(filter.clone(), 5, cursor))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.events.iter().map(|e| e.seq));
        cursor = page.page.unwrap_or_default().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 12);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen, "no item twice across pages");

    let bad = client
        .list_events(list(EventFilter::default(), 5, "not-a-cursor".into()))
        .await
        .expect_err("foreign cursor");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    // export: one JSON line per matching record, oldest first
    let mut stream = client
        .export_events(ExportEventsRequest {
            filter: Some(filter),
        })
        .await
        .unwrap()
        .into_inner();
    let mut jsonl = Vec::new();
    while let Some(chunk) = stream.next().await {
        jsonl.extend(chunk.unwrap().jsonl);
    }
    let lines: Vec<serde_json::Value> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    assert_eq!(lines[0]["details"]["resource"], "run-0");
    assert_eq!(lines[0]["actor"]["type"], "user");
    audit.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_records_and_the_chain_still_verifies() {
    let db = TestDatabase::postgres().await;
    let audit = spawn_audit(&db).await;
    let old = Utc::now() - chrono::Duration::days(500);
    let mut sink = EventSinkClient::new(channel(&audit));
    // seq 1 is service.started (now); then 4 old and 3 recent records.
    sink.deliver(DeliverRequest {
        events: batch(4, old),
    })
    .await
    .unwrap();
    sink.deliver(DeliverRequest {
        events: batch(3, Utc::now())
            .into_iter()
            .map(|mut e| {
                e.id = uuid::Uuid::now_v7().to_string();
                e
            })
            .collect(),
    })
    .await
    .unwrap();
    let mut client = audit_client(&audit);
    let cutoff = Utc::now() - chrono::Duration::days(400);

    // seq 1 is recent, so nothing older forms a prefix: nothing may be deleted.
    let none = client
        .apply_retention(ApplyRetentionRequest {
            older_than: Some(to_proto(cutoff)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.deleted, 0);

    // A fresh chain whose oldest records are old: start the audit service on a new schema and
    // backdate its own start record so the prefix is old.
    let conn = db.connect("audit").await;
    conn.execute_unprepared(&format!(
        "UPDATE audit_events SET occurred_at = '{}' WHERE seq = 1",
        old.format("%Y-%m-%d %H:%M:%S%.6f+00")
    ))
    .await
    .unwrap();
    // That edit broke record 1's hash; retention deletes it, and the checkpoint carries its
    // stored hash, so the remaining chain verifies.
    let applied = client
        .apply_retention(ApplyRetentionRequest {
            older_than: Some(to_proto(cutoff)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.deleted, 5);
    assert_eq!(applied.checkpoint_seq, 5);

    let verified = client
        .verify_chain(VerifyChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.checkpoint_seq, 5);
    assert_eq!(
        verified.checked, 4,
        "3 recent + the retention record itself"
    );

    let retention_events = client
        .list_events(ListEventsRequest {
            filter: Some(EventFilter {
                action: "audit.retention_applied".into(),
                ..Default::default()
            }),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        retention_events.events.len(),
        1,
        "retention is itself audited"
    );

    let future = client
        .apply_retention(ApplyRetentionRequest {
            older_than: Some(to_proto(Utc::now() + chrono::Duration::days(1))),
        })
        .await
        .expect_err("future cutoff refused");
    assert_eq!(future.code(), tonic::Code::InvalidArgument);
    audit.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_audit_replicas_ingesting_at_once_build_one_gapless_chain() {
    let db = TestDatabase::postgres().await;
    let first = spawn_audit(&db).await;
    let second = spawn_audit(&db).await;
    let mut writers = Vec::new();
    for (i, replica) in [&first, &second, &first, &second].into_iter().enumerate() {
        let mut sink = EventSinkClient::new(channel(replica));
        writers.push(tokio::spawn(async move {
            for round in 0..10 {
                let events = (0..5)
                    .map(|k| {
                        record(
                            &format!("w{i}"),
                            "run.created",
                            &format!("{i}-{round}-{k}"),
                            Utc::now(),
                        )
                    })
                    .collect();
                sink.deliver(DeliverRequest { events }).await.unwrap();
            }
        }));
    }
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(60), writer)
            .await
            .unwrap()
            .unwrap();
    }
    let verified = audit_client(&first)
        .verify_chain(VerifyChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(
        verified.checked,
        2 + 4 * 10 * 5,
        "two starts + every delivered record"
    );
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}
