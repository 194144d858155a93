//! The only place SQL lives: sea-orm entities and the queries over them. Functions take any
//! connection, so the engine composes them inside one transaction with the events they cause.

pub mod agents;
pub mod artifacts;
pub mod attempts;
pub mod claim;
pub mod diagnosis;
pub mod entity;
pub mod leases;
pub mod limits;
pub mod operator;
pub mod queue;
pub mod queue_depth;
pub mod runs;
pub mod schedules;

/// A new time-ordered public id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
