//! The transactional outbox: a service writes its domain change and the events describing it
//! in one database transaction; a [`relay`] delivers pending events in batches over gRPC to
//! their consumer, retrying with backoff while the consumer is down, and retires them once
//! delivered.
//! Consumers de-duplicate by event id, so at-least-once delivery loses and doubles nothing.

pub mod entity;
mod lead;
pub mod migration;
pub mod relay;
mod rows;
mod wake;
pub mod wire;

use chrono::Utc;
use prost::Message;
use sea_orm::{ActiveValue::NotSet, ConnectionTrait, DatabaseBackend, EntityTrait, Set, Statement};
use switchyard_proto::common::v1::{Actor, ActorType};
use switchyard_proto::events::v1::{AuditRecord, Event, Outcome, event::Payload};

pub use relay::{Relay, spawn_relay};

/// Consumer names: the relay for a destination delivers to that consumer's EventSink.
pub mod destination {
    pub const AUDIT: &str = "audit";
    pub const SCHEDULER: &str = "scheduler";
    pub const MONITORING: &str = "monitoring";
    pub const CONTROL_PLANE: &str = "control-plane";
}

/// A new event envelope with a time-ordered id.
pub fn event(source: &str, payload: Payload) -> Event {
    Event {
        id: uuid::Uuid::now_v7().to_string(),
        source: source.to_owned(),
        occurred_at: Some(crate::time::to_proto(Utc::now())),
        payload: Some(payload),
    }
}

/// The audit record a service writes about itself (startup, maintenance).
pub fn service_record(
    service: &str,
    action: &str,
    resource_id: &str,
    details: &serde_json::Value,
) -> AuditRecord {
    AuditRecord {
        actor: Some(Actor {
            r#type: ActorType::Service as i32,
            id: service.to_owned(),
            display_name: format!("switchyard-{service}"),
        }),
        action: action.to_owned(),
        resource_type: "service".to_owned(),
        resource_id: resource_id.to_owned(),
        org_id: String::new(),
        project_id: String::new(),
        outcome: Outcome::Success as i32,
        details_json: details.to_string(),
        origin: None,
    }
}

/// What a caller did to which resource, for the audit record of a request.
#[derive(Debug, Clone, Copy)]
pub struct AuditFact<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub org_id: &'a str,
    pub project_id: &'a str,
    pub outcome: Outcome,
}

/// The audit record of a caller's request: actor and origin from the call context.
pub fn request_record(
    context: &crate::auth::CallContext,
    fact: AuditFact<'_>,
    details: &serde_json::Value,
) -> AuditRecord {
    AuditRecord {
        actor: Some(context.actor()),
        action: fact.action.to_owned(),
        resource_type: fact.resource_type.to_owned(),
        resource_id: fact.resource_id.to_owned(),
        org_id: fact.org_id.to_owned(),
        project_id: fact.project_id.to_owned(),
        outcome: fact.outcome as i32,
        details_json: details.to_string(),
        origin: Some(context.origin.clone()),
    }
}

/// Adds events for `destination` inside the caller's transaction.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    destination: &str,
    events: &[Event],
) -> Result<(), sea_orm::DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    if crate::db::is_postgres(conn) {
        conn.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            POSTGRES_INSERT,
            [
                events
                    .iter()
                    .map(|event| event.id.clone())
                    .collect::<Vec<_>>()
                    .into(),
                destination.into(),
                events
                    .iter()
                    .map(Message::encode_to_vec)
                    .collect::<Vec<_>>()
                    .into(),
                now.into(),
            ],
        ))
        .await?;
    } else {
        let rows = events.iter().map(|event| entity::ActiveModel {
            id: NotSet,
            event_id: Set(event.id.clone()),
            destination: Set(destination.to_owned()),
            payload: Set(event.encode_to_vec()),
            created_at: Set(now),
            attempts: Set(0),
            last_error: Set(None),
            delivered_at: Set(None),
        });
        entity::Entity::insert_many(rows)
            .exec_without_returning(conn)
            .await?;
    }
    wake::notify(conn, destination).await
}

/// The insert on PostgreSQL: the events' ids and payloads as two arrays, read in order by
/// `unnest`. Every emitter runs it with each claim, completion and audited change, so its text
/// is fixed: the server parses it once per connection, and no statement is built per call
/// (building the `VALUES` form was about a quarter of the enqueue's time in a profile of the
/// scheduler). `attempts` takes its default.
const POSTGRES_INSERT: &str = "INSERT INTO outbox_events (event_id, destination, payload, created_at) \
     SELECT event_id, $2, payload, $4 FROM unnest($1::text[], $3::bytea[]) AS v(event_id, payload)";

/// Shorthand: one audit record to the audit service, inside the caller's transaction.
pub async fn enqueue_audit<C: ConnectionTrait>(
    conn: &C,
    source: &str,
    record: AuditRecord,
) -> Result<Event, sea_orm::DbErr> {
    let event = event(source, Payload::Audit(record));
    enqueue(conn, destination::AUDIT, std::slice::from_ref(&event)).await?;
    Ok(event)
}

/// Records `service.started` for this instance through the outbox (one transaction), so the
/// audit trail shows every start even when the audit service is down at the time.
pub async fn record_started(
    db: &sea_orm::DatabaseConnection,
    service: &str,
    instance_id: &str,
) -> Result<(), sea_orm::DbErr> {
    let details =
        serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "instance": instance_id });
    let txn = crate::db::write_txn(db).await?;
    enqueue_audit(
        &txn,
        service,
        service_record(service, "service.started", instance_id, &details),
    )
    .await?;
    txn.commit().await
}

/// Starts the relay that delivers this service's events for `destination` to that consumer
/// (its endpoint from the outbox configuration).
pub fn spawn_relay_to(
    service: &'static str,
    db: sea_orm::DatabaseConnection,
    destination: &'static str,
    config: &crate::config::OutboxConfig,
    shutdown: crate::shutdown::Shutdown,
) -> Result<tokio::task::JoinHandle<()>, crate::RuntimeError> {
    let endpoint = match destination {
        destination::AUDIT => &config.audit_endpoint,
        destination::SCHEDULER => &config.scheduler_endpoint,
        destination::CONTROL_PLANE => &config.control_plane_endpoint,
        _ => &config.monitoring_endpoint,
    };
    let channel = crate::grpc::channel(endpoint)?;
    Ok(spawn_relay(
        service,
        db,
        destination,
        wire::SinkClient::new(channel),
        config.clone(),
        shutdown,
    ))
}

/// Starts the relay that delivers this service's audit records to the audit service.
pub fn spawn_audit_relay(
    service: &'static str,
    db: sea_orm::DatabaseConnection,
    config: &crate::config::OutboxConfig,
    shutdown: crate::shutdown::Shutdown,
) -> Result<tokio::task::JoinHandle<()>, crate::RuntimeError> {
    let channel = crate::grpc::channel(&config.audit_endpoint)?;
    Ok(spawn_relay(
        service,
        db,
        destination::AUDIT,
        wire::SinkClient::new(channel),
        config.clone(),
        shutdown,
    ))
}
