//! The only place SQL lives: sea-orm entities and the queries over them. Functions take any
//! connection, so callers compose them inside one transaction with the audit event.

pub mod datasets;
pub mod entity;
pub mod identity;
pub mod page;
pub mod runs;
pub mod suites;
pub mod tenancy;
pub mod workflows;

/// A new time-ordered id (UUIDv7 text sorts by creation time, which pagination relies on).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
