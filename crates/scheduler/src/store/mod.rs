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

/// `tasks.status = '<status>'`, the status written into the SQL rather than bound. The
/// partial indexes on `tasks` (queued rows, leased rows) are used only when the planner sees
/// the value, and the generic plan a prepared statement switches to after a few runs sees
/// only a parameter: the sweepers' queries then scanned the whole table, which holds every
/// task ever run (over 100 ms a query at 140,000 tasks, from pg_stat_statements during
/// `make bench`, where the index answers in well under one). The statuses are our own
/// constants, never input.
pub fn task_status_is(
    status: crate::domain::task_status::TaskStatus,
) -> sea_orm::sea_query::SimpleExpr {
    sea_orm::sea_query::Expr::cust(format!("\"tasks\".\"status\" = '{}'", status.as_str()))
}

/// A new time-ordered public id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
