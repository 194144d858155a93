//! The consumer side of event delivery: a table of event ids already applied, written in the
//! same transaction as their effects, so an event delivered twice (the relay retries a batch
//! whose answer it lost) changes things once.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Set};

pub mod migration;

crate::entity!(inbox_event, "inbox_events", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    pub source: String,
    pub received_at: DateTimeUtc,
});

/// Records `event_id` inside the caller's transaction. `true` the first time; `false` for a
/// duplicate, whose effects the caller must then skip.
pub async fn first_delivery<C: ConnectionTrait>(
    conn: &C,
    event_id: &str,
    source: &str,
) -> Result<bool, DbErr> {
    let row = inbox_event::ActiveModel {
        event_id: Set(event_id.to_owned()),
        source: Set(source.to_owned()),
        received_at: Set(Utc::now()),
    };
    let inserted = inbox_event::Entity::insert(row)
        .on_conflict(
            OnConflict::column(inbox_event::Column::EventId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(inserted == 1)
}
