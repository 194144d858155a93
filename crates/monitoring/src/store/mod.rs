//! The only place SQL lives: sea-orm entities and the queries over them. Functions take any
//! connection, so the event sink composes them inside one transaction per batch.

pub mod alert_entity;
pub mod alerts;
pub mod checks;
pub mod durations;
pub mod entity;
pub mod executions;
pub mod statistics;
pub mod usage;
