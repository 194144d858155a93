//! Filters over audit records.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, QueryFilter, Select};

use super::entity::audit_event::{Column, Entity};

/// Every set field must match. Time bounds: `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub org_id: Option<String>,
    pub project_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn apply(&self, mut query: Select<Entity>) -> Select<Entity> {
        let text = [
            (Column::ActorId, &self.actor),
            (Column::Action, &self.action),
            (Column::ResourceType, &self.resource_type),
            (Column::ResourceId, &self.resource_id),
            (Column::OrgId, &self.org_id),
            (Column::ProjectId, &self.project_id),
        ];
        for (column, value) in text {
            if let Some(value) = value {
                query = query.filter(column.eq(value.as_str()));
            }
        }
        if let Some(since) = self.since {
            query = query.filter(Column::OccurredAt.gte(since));
        }
        if let Some(until) = self.until {
            query = query.filter(Column::OccurredAt.lt(until));
        }
        query
    }
}
