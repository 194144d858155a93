//! The consumer side of event delivery: a table of event ids already applied, written in the
//! same transaction as their effects, so an event delivered twice (the relay retries a batch
//! whose answer it lost) changes things once.

use std::collections::HashSet;

use chrono::Utc;
use sea_orm::sea_query::{OnConflict, Query};
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

/// Records a batch of `(event_id, source)` inside the caller's transaction in one statement
/// (`INSERT ... ON CONFLICT DO NOTHING RETURNING`, on PostgreSQL and SQLite alike) and returns
/// the ids recorded now: the first deliveries. Ids missing from the answer are duplicates,
/// including ones a concurrent transaction recorded first.
pub async fn first_deliveries<C: ConnectionTrait>(
    conn: &C,
    events: &[(&str, &str)],
) -> Result<HashSet<String>, DbErr> {
    use inbox_event::Column;
    let mut fresh = HashSet::with_capacity(events.len());
    // Well under both databases' bound-parameter limits (3 per row).
    for chunk in events.chunks(1000) {
        let now = Utc::now();
        let mut insert = Query::insert();
        insert
            .into_table(inbox_event::Entity)
            .columns([Column::EventId, Column::Source, Column::ReceivedAt])
            .on_conflict(OnConflict::column(Column::EventId).do_nothing().to_owned())
            .returning_col(Column::EventId);
        for (id, source) in chunk {
            insert.values_panic([(*id).into(), (*source).into(), now.into()]);
        }
        for row in conn.query_all(&insert).await? {
            fresh.insert(row.try_get::<String>("", "event_id")?);
        }
    }
    Ok(fresh)
}

/// [`first_deliveries`] on a PostgreSQL connection that sea-orm does not wrap (a consumer
/// that writes its effects with `COPY`, which sea-orm cannot issue, holds its transaction
/// on such a connection). The same rows, in the given order (callers sort them, so that
/// concurrent batches lock in the same order), and the same answer.
pub async fn first_deliveries_postgres(
    conn: &mut sea_orm::sqlx::PgConnection,
    events: &[(&str, &str)],
) -> Result<HashSet<String>, DbErr> {
    use sea_orm::sqlx::Row;
    let (ids, sources): (Vec<&str>, Vec<&str>) = events.iter().copied().unzip();
    let rows = sea_orm::sqlx::query(
        "INSERT INTO inbox_events (event_id, source, received_at) \
         SELECT event_id, source, $3 FROM unnest($1::text[], $2::text[]) \
         WITH ORDINALITY AS v(event_id, source, n) ORDER BY n \
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    .bind(ids)
    .bind(sources)
    .bind(Utc::now())
    .fetch_all(conn)
    .await
    .map_err(crate::db::driver_error)?;
    rows.iter()
        .map(|row| row.try_get::<String, _>(0).map_err(crate::db::driver_error))
        .collect()
}
