//! Where a relay reads and retires its destination's rows: through sea-orm on SQLite, and on
//! PostgreSQL through the connection that holds the destination's lead (see `lead`), one
//! statement each, outside any transaction.

use chrono::Utc;
use prost::Message;
use sea_orm::sea_query::Expr;
use sea_orm::sqlx::{self, PgConnection};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use switchyard_proto::events::v1::Event;

use super::entity::{Column, Entity as Outbox};
use super::wire::EncodedEvents;
use crate::db::driver_error;

/// A row's id and its stored event bytes.
pub(crate) type Row = (i64, Vec<u8>);

pub(crate) trait Rows {
    /// The destination's oldest pending rows, at most `limit`, in id order.
    async fn pending(&mut self, destination: &str, limit: u32) -> Result<Vec<Row>, DbErr>;
    /// Retires delivered rows: deletes them, or marks them delivered when `mark` (for
    /// housekeeping to delete once their keep period is over; `outbox.keep_delivered`).
    ///
    /// Deleting at once is the default because marking costs more than it seems: the mark is
    /// an update of an indexed column (no HOT update, a new index entry in the delivered
    /// index) and housekeeping's later delete writes the row a third time. Counted with
    /// callgrind on PostgreSQL 15, mark plus later delete took about three times the
    /// instructions of deleting at delivery. The consumers keep what the events said.
    async fn settle(&mut self, ids: &[i64], mark: bool) -> Result<(), DbErr>;
    /// Counts a failed delivery attempt on the rows, with its error.
    async fn record_failure(&mut self, ids: &[i64], error: &str) -> Result<(), DbErr>;
    /// The rows again, in id order.
    async fn payloads(&mut self, ids: &[i64]) -> Result<Vec<Row>, DbErr>;
}

/// The rows through sea-orm (SQLite, embedded mode: one process, no other relay).
pub(crate) struct SeaRows(pub(crate) DatabaseConnection);

impl Rows for SeaRows {
    async fn pending(&mut self, destination: &str, limit: u32) -> Result<Vec<Row>, DbErr> {
        Outbox::find()
            .select_only()
            .columns([Column::Id, Column::Payload])
            .filter(Column::Destination.eq(destination))
            .filter(Column::DeliveredAt.is_null())
            .order_by_asc(Column::Id)
            .limit(u64::from(limit))
            .into_tuple()
            .all(&self.0)
            .await
    }

    async fn settle(&mut self, ids: &[i64], mark: bool) -> Result<(), DbErr> {
        let delivered = Column::Id.is_in(ids.iter().copied());
        if mark {
            Outbox::update_many()
                .col_expr(Column::DeliveredAt, Expr::value(Utc::now()))
                .filter(delivered)
                .exec(&self.0)
                .await?;
        } else {
            Outbox::delete_many()
                .filter(delivered)
                .exec(&self.0)
                .await?;
        }
        Ok(())
    }

    async fn record_failure(&mut self, ids: &[i64], error: &str) -> Result<(), DbErr> {
        // Scoped: ExprTrait is implemented for every type and would shadow `Ord::min` elsewhere.
        use sea_orm::sea_query::ExprTrait as _;
        Outbox::update_many()
            .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
            .col_expr(Column::LastError, Expr::value(error.to_owned()))
            .filter(Column::Id.is_in(ids.iter().copied()))
            .exec(&self.0)
            .await?;
        Ok(())
    }

    async fn payloads(&mut self, ids: &[i64]) -> Result<Vec<Row>, DbErr> {
        Outbox::find()
            .select_only()
            .columns([Column::Id, Column::Payload])
            .filter(Column::Id.is_in(ids.iter().copied()))
            .order_by_asc(Column::Id)
            .into_tuple()
            .all(&self.0)
            .await
    }
}

/// The rows through the leading connection (PostgreSQL).
pub(crate) struct LeadRows<'a>(pub(crate) &'a mut PgConnection);

impl Rows for LeadRows<'_> {
    async fn pending(&mut self, destination: &str, limit: u32) -> Result<Vec<Row>, DbErr> {
        sqlx::query_as(
            "SELECT id, payload FROM outbox_events \
             WHERE destination = $1 AND delivered_at IS NULL ORDER BY id LIMIT $2",
        )
        .bind(destination)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.0)
        .await
        .map_err(driver_error)
    }

    async fn settle(&mut self, ids: &[i64], mark: bool) -> Result<(), DbErr> {
        let sql = if mark {
            "UPDATE outbox_events SET delivered_at = now() WHERE id = ANY($1)"
        } else {
            "DELETE FROM outbox_events WHERE id = ANY($1)"
        };
        sqlx::query(sql)
            .bind(ids)
            .execute(&mut *self.0)
            .await
            .map_err(driver_error)?;
        Ok(())
    }

    async fn record_failure(&mut self, ids: &[i64], error: &str) -> Result<(), DbErr> {
        sqlx::query(
            "UPDATE outbox_events SET attempts = attempts + 1, last_error = $2 \
             WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(error)
        .execute(&mut *self.0)
        .await
        .map_err(driver_error)?;
        Ok(())
    }

    async fn payloads(&mut self, ids: &[i64]) -> Result<Vec<Row>, DbErr> {
        sqlx::query_as("SELECT id, payload FROM outbox_events WHERE id = ANY($1) ORDER BY id")
            .bind(ids)
            .fetch_all(&mut *self.0)
            .await
            .map_err(driver_error)
    }
}

/// The batch without the rows that do not decode as an event (each logged); `None` when
/// every row decodes, i.e. the consumer's refusal was not about them.
pub(crate) fn readable(rows: Vec<Row>) -> Option<EncodedEvents> {
    let total = rows.len();
    let mut events = Vec::with_capacity(total);
    for (id, payload) in rows {
        match Event::decode(payload.as_slice()) {
            Ok(_) => events.push(payload),
            Err(error) => {
                tracing::error!(%error, outbox_id = id, "undecodable outbox event skipped")
            }
        }
    }
    (events.len() < total).then_some(EncodedEvents { events })
}
