//! Alerting queries: rules, alerts, the webhook outbox and the condition reads over the
//! execution history. Functions take any connection so callers compose them inside one
//! transaction (a change, its audit record and its notifications commit together).

pub mod conditions;
pub mod notifications;
pub mod open;
pub mod rules;

/// Whether `error` is a unique-index violation (a rule name taken, a condition already open).
pub fn is_unique_violation(error: &sea_orm::DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
