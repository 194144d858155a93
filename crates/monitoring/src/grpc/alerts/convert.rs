//! Stored rules and alerts as their API messages.

use switchyard_proto::monitoring::v1 as pb;
use switchyard_runtime::time::to_proto;

use crate::domain::alert::{Kind, State};
use crate::store::alert_entity::{alert, alert_rule};
use crate::store::alerts::rules;

fn kind(text: &str) -> i32 {
    Kind::parse(text).map_or(pb::AlertKind::Unspecified, Kind::to_proto) as i32
}

pub fn rule_message(row: &alert_rule::Model) -> pb::AlertRule {
    let ms = row.window_ms.max(0);
    pb::AlertRule {
        id: row.id.clone(),
        project_id: row.project_id.clone(),
        name: row.name.clone(),
        kind: kind(&row.kind),
        threshold: row.threshold,
        window: Some(prost_types::Duration {
            seconds: ms / 1000,
            nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
        }),
        webhooks: rules::webhooks(row),
        enabled: row.enabled,
    }
}

pub fn alert_message(row: &alert::Model) -> pb::Alert {
    pb::Alert {
        id: row.id.clone(),
        rule_id: row.rule_id.clone(),
        project_id: row.project_id.clone(),
        kind: kind(&row.kind),
        state: State::parse(&row.state).map_or(pb::AlertState::Unspecified, State::to_proto) as i32,
        dedupe_key: row.dedupe_key.clone(),
        message: row.message.clone(),
        fired_at: Some(to_proto(row.fired_at)),
        acknowledged_at: row.acknowledged_at.map(to_proto),
        resolved_at: row.resolved_at.map(to_proto),
        resolved_by: row.resolved_by.clone(),
    }
}
