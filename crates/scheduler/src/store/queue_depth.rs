//! How many tasks wait in the queue per project, for the queue depth gauge. One grouped count
//! over the rows in the partial `tasks_ready` index (`WHERE status = 'queued'`), so the cost
//! follows the queue's length, not the table's; it runs on a timer, never per claim.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement};

#[derive(Debug, FromQueryResult)]
struct Depth {
    project_id: String,
    queued: i64,
}

/// `(project_id, queued tasks)` for every project with queued tasks (ready or backing off).
pub async fn per_project<C: ConnectionTrait>(conn: &C) -> Result<Vec<(String, i64)>, DbErr> {
    let statement = Statement::from_string(
        conn.get_database_backend(),
        "SELECT project_id, CAST(COUNT(*) AS BIGINT) AS queued FROM tasks \
         WHERE status = 'queued' GROUP BY project_id",
    );
    let rows = Depth::find_by_statement(statement).all(conn).await?;
    Ok(rows.into_iter().map(|d| (d.project_id, d.queued)).collect())
}
