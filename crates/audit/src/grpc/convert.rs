//! Stored records to their protobuf and JSON forms; request filters from protobuf.

use serde::Serialize;
use switchyard_proto::audit::v1::{AuditEvent, EventFilter};
use switchyard_proto::common::v1::{Actor, RequestOrigin};
use switchyard_runtime::error::violation;
use switchyard_runtime::time::{from_proto, to_proto};

use crate::domain::chain::Chained;
use crate::domain::record::{actor_type_value, outcome_value};
use crate::error::AuditError;
use crate::store::Filter;

pub fn to_proto_event(c: Chained) -> AuditEvent {
    let r = c.record;
    AuditEvent {
        seq: c.seq,
        event_id: r.event_id,
        source: r.source,
        actor: Some(Actor {
            r#type: actor_type_value(&r.actor_type) as i32,
            id: r.actor_id,
            display_name: r.actor_display_name,
        }),
        action: r.action,
        resource_type: r.resource_type,
        resource_id: r.resource_id,
        org_id: r.org_id,
        project_id: r.project_id,
        outcome: outcome_value(&r.outcome) as i32,
        details_json: r.details_json,
        origin: Some(RequestOrigin {
            client_ip: r.client_ip,
            user_agent: r.user_agent,
            request_id: r.request_id,
            trace_id: r.trace_id,
        }),
        occurred_at: Some(to_proto(r.occurred_at)),
        recorded_at: Some(to_proto(r.recorded_at)),
        prev_hash: c.prev_hash,
        hash: c.hash,
    }
}

/// One export line: the record with `details` as JSON rather than an escaped string.
#[derive(Serialize)]
struct JsonLine<'a> {
    seq: u64,
    event_id: &'a str,
    source: &'a str,
    actor: JsonActor<'a>,
    action: &'a str,
    resource_type: &'a str,
    resource_id: &'a str,
    org_id: &'a str,
    project_id: &'a str,
    outcome: &'a str,
    details: serde_json::Value,
    client_ip: &'a str,
    user_agent: &'a str,
    request_id: &'a str,
    trace_id: &'a str,
    occurred_at: String,
    recorded_at: String,
    prev_hash: &'a str,
    hash: &'a str,
}

#[derive(Serialize)]
struct JsonActor<'a> {
    r#type: &'a str,
    id: &'a str,
    display_name: &'a str,
}

pub fn to_json_line(c: &Chained, out: &mut Vec<u8>) {
    let r = &c.record;
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let line = JsonLine {
        seq: c.seq,
        event_id: &r.event_id,
        source: &r.source,
        actor: JsonActor {
            r#type: &r.actor_type,
            id: &r.actor_id,
            display_name: &r.actor_display_name,
        },
        action: &r.action,
        resource_type: &r.resource_type,
        resource_id: &r.resource_id,
        org_id: &r.org_id,
        project_id: &r.project_id,
        outcome: &r.outcome,
        details: serde_json::from_str(&r.details_json).unwrap_or(serde_json::Value::Null),
        client_ip: &r.client_ip,
        user_agent: &r.user_agent,
        request_id: &r.request_id,
        trace_id: &r.trace_id,
        occurred_at: fmt(r.occurred_at),
        recorded_at: fmt(r.recorded_at),
        prev_hash: &c.prev_hash,
        hash: &c.hash,
    };
    // Serializing plain strings and numbers into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}

pub fn filter_from_proto(filter: Option<EventFilter>) -> Result<Filter, AuditError> {
    let f = filter.unwrap_or_default();
    let some = |s: String| (!s.is_empty()).then_some(s);
    let mut problems = Vec::new();
    let mut time = |field: &str, t: Option<prost_types::Timestamp>| {
        t.and_then(|t| {
            let parsed = from_proto(&t);
            if parsed.is_none() {
                problems.push(violation(
                    field,
                    "invalid_timestamp",
                    format!("{field} is not a valid timestamp"),
                ));
            }
            parsed
        })
    };
    let since = time("filter.since", f.since);
    let until = time("filter.until", f.until);
    if let (Some(since), Some(until)) = (since, until)
        && since > until
    {
        problems.push(violation(
            "filter.since",
            "after_until",
            "since must not be after until",
        ));
    }
    if !problems.is_empty() {
        return Err(AuditError::Invalid(problems));
    }
    Ok(Filter {
        actor: some(f.actor),
        action: some(f.action),
        resource_type: some(f.resource_type),
        resource_id: some(f.resource_id),
        org_id: some(f.org_id),
        project_id: some(f.project_id),
        since,
        until,
    })
}
