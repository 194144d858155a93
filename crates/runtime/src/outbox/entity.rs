//! The `outbox_events` table, present in every emitting service's schema.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_events")]
pub struct Model {
    /// Delivery order within a destination.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The event's own id (what consumers de-duplicate on).
    pub event_id: String,
    pub destination: String,
    /// Encoded `switchyard.events.v1.Event`.
    pub payload: Vec<u8>,
    pub created_at: DateTimeUtc,
    /// Failed delivery attempts so far.
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
