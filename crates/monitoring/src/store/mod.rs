//! The only place SQL lives: sea-orm entities and the queries over them. Functions take any
//! connection, so the event sink composes them inside one transaction per batch.

pub mod alert_entity;
pub mod alerts;
pub mod checks;
pub mod durations;
pub mod entity;
pub mod executions;
pub mod history_copy;
pub mod history_cursor;
pub mod history_ids;
pub mod replays;
pub mod statistics;
pub mod usage;

/// Whether `error` is a unique-index violation (a rule or check name taken, a condition
/// already open, an attempt already in the history).
pub fn is_unique_violation(error: &sea_orm::DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
