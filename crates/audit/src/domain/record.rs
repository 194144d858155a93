//! An audit record in its stored, hashable form, and its validation from the wire format.

use chrono::{DateTime, SubsecRound, Utc};
use switchyard_proto::common::v1::{ActorType, FieldViolation};
use switchyard_proto::events::v1::{AuditRecord, Event, Outcome};
use switchyard_runtime::error::violation;
use switchyard_runtime::time::from_proto;

/// Longest value kept in a short text field; longer values are a producer bug.
const MAX_FIELD: usize = 512;
/// Largest `details_json` accepted.
const MAX_DETAILS: usize = 64 * 1024;

/// Everything a chained record's hash covers, in the exact form it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub event_id: String,
    pub source: String,
    pub actor_type: String,
    pub actor_id: String,
    pub actor_display_name: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub org_id: String,
    pub project_id: String,
    pub outcome: String,
    pub details_json: String,
    pub client_ip: String,
    pub user_agent: String,
    pub request_id: String,
    pub trace_id: String,
    /// Truncated to microseconds: what PostgreSQL stores, so the hash survives a round trip.
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

pub fn actor_type_name(value: i32) -> &'static str {
    match ActorType::try_from(value).unwrap_or(ActorType::Unspecified) {
        ActorType::User => "user",
        ActorType::ServiceToken => "service_token",
        ActorType::Service => "service",
        ActorType::Bootstrap => "bootstrap",
        ActorType::Anonymous => "anonymous",
        ActorType::Unspecified => "unspecified",
    }
}

pub fn actor_type_value(name: &str) -> ActorType {
    match name {
        "user" => ActorType::User,
        "service_token" => ActorType::ServiceToken,
        "service" => ActorType::Service,
        "bootstrap" => ActorType::Bootstrap,
        "anonymous" => ActorType::Anonymous,
        _ => ActorType::Unspecified,
    }
}

pub fn outcome_name(value: i32) -> Option<&'static str> {
    match Outcome::try_from(value).ok()? {
        Outcome::Success => Some("success"),
        Outcome::Denied => Some("denied"),
        Outcome::Failed => Some("failed"),
        Outcome::Unspecified => None,
    }
}

pub fn outcome_value(name: &str) -> Outcome {
    match name {
        "success" => Outcome::Success,
        "denied" => Outcome::Denied,
        "failed" => Outcome::Failed,
        _ => Outcome::Unspecified,
    }
}

/// Validates one delivered event carrying an audit record. `index` locates it in the batch.
pub fn from_event(
    index: usize,
    event: &Event,
    recorded_at: DateTime<Utc>,
) -> Result<Record, Vec<FieldViolation>> {
    use switchyard_proto::events::v1::event::Payload;
    let at = |field: &str| format!("events[{index}].{field}");
    let mut problems = Vec::new();
    if uuid::Uuid::parse_str(&event.id).is_err() {
        problems.push(violation(
            &at("id"),
            "invalid_uuid",
            "event id must be a UUID",
        ));
    }
    let occurred_at = match event.occurred_at.as_ref().and_then(from_proto) {
        Some(t) => t.trunc_subsecs(6),
        None => {
            problems.push(violation(
                &at("occurred_at"),
                "required",
                "occurred_at is required",
            ));
            recorded_at
        }
    };
    let Some(Payload::Audit(record)) = &event.payload else {
        problems.push(violation(
            &at("payload"),
            "not_audit",
            "the audit service only accepts audit records",
        ));
        return Err(problems);
    };
    let record = validate_record(record, &at, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Record {
        event_id: event.id.clone(),
        source: event.source.clone(),
        occurred_at,
        recorded_at: recorded_at.trunc_subsecs(6),
        ..record
    })
}

fn validate_record(
    record: &AuditRecord,
    at: &dyn Fn(&str) -> String,
    problems: &mut Vec<FieldViolation>,
) -> Record {
    let actor = record.actor.clone().unwrap_or_default();
    if record.actor.is_none() || actor.id.is_empty() {
        problems.push(violation(
            &at("audit.actor.id"),
            "required",
            "an actor is required",
        ));
    }
    if record.action.is_empty() {
        problems.push(violation(
            &at("audit.action"),
            "required",
            "action is required",
        ));
    }
    let outcome = outcome_name(record.outcome).unwrap_or_else(|| {
        problems.push(violation(
            &at("audit.outcome"),
            "required",
            "outcome must be success, denied or failed",
        ));
        ""
    });
    let details_json = if record.details_json.trim().is_empty() {
        "{}".to_owned()
    } else {
        match serde_json::from_str::<serde_json::Value>(&record.details_json) {
            Ok(serde_json::Value::Object(_)) if record.details_json.len() <= MAX_DETAILS => {
                record.details_json.clone()
            }
            Ok(serde_json::Value::Object(_)) => {
                problems.push(violation(
                    &at("audit.details_json"),
                    "too_large",
                    format!("details_json is larger than {MAX_DETAILS} bytes"),
                ));
                String::new()
            }
            _ => {
                problems.push(violation(
                    &at("audit.details_json"),
                    "invalid_json",
                    "details_json must be a JSON object",
                ));
                String::new()
            }
        }
    };
    let origin = record.origin.clone().unwrap_or_default();
    let fields = [
        ("audit.actor.id", &actor.id),
        ("audit.actor.display_name", &actor.display_name),
        ("audit.action", &record.action),
        ("audit.resource_type", &record.resource_type),
        ("audit.resource_id", &record.resource_id),
        ("audit.org_id", &record.org_id),
        ("audit.project_id", &record.project_id),
        ("audit.origin.client_ip", &origin.client_ip),
        ("audit.origin.user_agent", &origin.user_agent),
        ("audit.origin.request_id", &origin.request_id),
        ("audit.origin.trace_id", &origin.trace_id),
    ];
    for (field, value) in fields {
        if value.len() > MAX_FIELD {
            problems.push(violation(
                &at(field),
                "too_long",
                format!("{field} is longer than {MAX_FIELD} bytes"),
            ));
        }
    }
    Record {
        event_id: String::new(),
        source: String::new(),
        actor_type: actor_type_name(actor.r#type).to_owned(),
        actor_id: actor.id,
        actor_display_name: actor.display_name,
        action: record.action.clone(),
        resource_type: record.resource_type.clone(),
        resource_id: record.resource_id.clone(),
        org_id: record.org_id.clone(),
        project_id: record.project_id.clone(),
        outcome: outcome.to_owned(),
        details_json,
        client_ip: origin.client_ip,
        user_agent: origin.user_agent,
        request_id: origin.request_id,
        trace_id: origin.trace_id,
        occurred_at: Utc::now(),
        recorded_at: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::common::v1::Actor;
    use switchyard_proto::events::v1::event::Payload;

    fn event(record: AuditRecord) -> Event {
        Event {
            id: uuid::Uuid::now_v7().to_string(),
            source: "test".into(),
            occurred_at: Some(switchyard_runtime::time::to_proto(Utc::now())),
            payload: Some(Payload::Audit(record)),
        }
    }

    fn good() -> AuditRecord {
        AuditRecord {
            actor: Some(Actor {
                r#type: ActorType::User as i32,
                id: "u1".into(),
                display_name: "ada".into(),
            }),
            action: "run.created".into(),
            resource_type: "run".into(),
            resource_id: "r1".into(),
            outcome: Outcome::Success as i32,
            details_json: r#"{"workflow":"ci"}"#.into(),
            ..AuditRecord::default()
        }
    }

    #[test]
    fn a_good_record_validates_and_truncates_to_microseconds() {
        let record = from_event(0, &event(good()), Utc::now()).expect("valid");
        assert_eq!(record.actor_type, "user");
        assert_eq!(record.outcome, "success");
        assert_eq!(record.occurred_at.timestamp_subsec_nanos() % 1000, 0);
    }

    #[test]
    fn every_problem_is_listed_with_its_field() {
        let bad = AuditRecord {
            actor: None,
            action: String::new(),
            outcome: 0,
            details_json: "[1,2]".into(),
            ..AuditRecord::default()
        };
        let problems = from_event(3, &event(bad), Utc::now()).expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"events[3].audit.actor.id"), "{fields:?}");
        assert!(fields.contains(&"events[3].audit.action"), "{fields:?}");
        assert!(fields.contains(&"events[3].audit.outcome"), "{fields:?}");
        assert!(
            fields.contains(&"events[3].audit.details_json"),
            "{fields:?}"
        );
    }

    #[test]
    fn empty_details_become_an_empty_object() {
        let record = AuditRecord {
            details_json: String::new(),
            ..good()
        };
        let record = from_event(0, &event(record), Utc::now()).expect("valid");
        assert_eq!(record.details_json, "{}");
    }

    #[test]
    fn non_audit_payloads_are_refused() {
        let mut e = event(good());
        e.payload = None;
        assert!(from_event(0, &e, Utc::now()).is_err());
    }
}
