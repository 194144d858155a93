//! Rows to and from the domain's chained records.

use sea_orm::ActiveValue::Set;

use super::entity::audit_event;
use crate::domain::chain::Chained;
use crate::domain::record::Record;

pub fn to_active(c: &Chained) -> audit_event::ActiveModel {
    let r = &c.record;
    audit_event::ActiveModel {
        seq: Set(c.seq as i64),
        event_id: Set(r.event_id.clone()),
        source: Set(r.source.clone()),
        actor_type: Set(r.actor_type.clone()),
        actor_id: Set(r.actor_id.clone()),
        actor_display_name: Set(r.actor_display_name.clone()),
        action: Set(r.action.clone()),
        resource_type: Set(r.resource_type.clone()),
        resource_id: Set(r.resource_id.clone()),
        org_id: Set(r.org_id.clone()),
        project_id: Set(r.project_id.clone()),
        outcome: Set(r.outcome.clone()),
        details_json: Set(r.details_json.clone()),
        client_ip: Set(r.client_ip.clone()),
        user_agent: Set(r.user_agent.clone()),
        request_id: Set(r.request_id.clone()),
        trace_id: Set(r.trace_id.clone()),
        occurred_at: Set(r.occurred_at),
        recorded_at: Set(r.recorded_at),
        prev_hash: Set(c.prev_hash.clone()),
        hash: Set(c.hash.clone()),
    }
}

pub fn from_model(m: audit_event::Model) -> Chained {
    Chained {
        seq: m.seq as u64,
        prev_hash: m.prev_hash,
        hash: m.hash,
        record: Record {
            event_id: m.event_id,
            source: m.source,
            actor_type: m.actor_type,
            actor_id: m.actor_id,
            actor_display_name: m.actor_display_name,
            action: m.action,
            resource_type: m.resource_type,
            resource_id: m.resource_id,
            org_id: m.org_id,
            project_id: m.project_id,
            outcome: m.outcome,
            details_json: m.details_json,
            client_ip: m.client_ip,
            user_agent: m.user_agent,
            request_id: m.request_id,
            trace_id: m.trace_id,
            occurred_at: m.occurred_at,
            recorded_at: m.recorded_at,
        },
    }
}
