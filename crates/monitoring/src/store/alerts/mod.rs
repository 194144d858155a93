//! Alerting queries: rules, alerts, the webhook outbox and the condition reads over the
//! execution history. Functions take any connection so callers compose them inside one
//! transaction (a change, its audit record and its notifications commit together).

pub mod conditions;
pub mod notifications;
pub mod open;
pub mod rules;
