//! The history's key becomes the attempt's own, `(run_id, task_id, attempt)`, and the
//! surrogate `id` (a `bigserial` primary key) goes. Every ended attempt is one insert into
//! the history, and the surrogate cost it a sequence call and an index of its own: inserting
//! 20,000 attempts took about a third less time without them (PostgreSQL 15, this repo's
//! 2-core machine; `switchyard-bench history` measures the event sink's path). The unique
//! index on the attempt's key, which every insert kept anyway, becomes the primary key.
//!
//! `id` ordered listings newest first and paged them; they now go by finish time (served by
//! `task_executions_project_finished`), with the key breaking ties. An ended attempt always
//! has a finish time: rows stored without one (an event that lacked it) take the time the
//! history last wrote them, and the column becomes NOT NULL. Rows an older version stored for
//! running attempts go: running attempts live in the active-task view, and their endings
//! are written as new rows when they come.
//!
//! PostgreSQL drops the column in place (a catalog change; the rows are not rewritten).
//! SQLite cannot drop a primary key column, so the table is rebuilt under the same name with
//! the columns it has (the embedded mode's history is small), in one transaction: the
//! migrator runs SQLite's migrations outside one by default, and the rebuild's statements
//! would then go to whichever pooled connection was free.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseBackend, Statement};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_natural_history_key"
    }
}

/// The attempt's key, as the primary key's (and before it the unique index's) columns.
const KEY: &str = "run_id, task_id, attempt";

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    for sql in statements {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            return run(
                manager,
                &[
                    "DELETE FROM task_executions WHERE status = 'running'",
                    "UPDATE task_executions SET finished_at = updated_at WHERE finished_at IS NULL",
                    "ALTER TABLE task_executions ALTER COLUMN finished_at SET NOT NULL, \
                     DROP COLUMN id",
                    "ALTER TABLE task_executions ADD CONSTRAINT task_executions_run_attempt \
                     PRIMARY KEY USING INDEX task_executions_run_attempt",
                ],
            )
            .await;
        }
        let columns = sqlite_columns(manager).await?;
        let kept: Vec<&Column> = columns.iter().filter(|c| c.name != "id").collect();
        let definitions: Vec<String> = kept
            .iter()
            .map(|c| c.definition(c.not_null || c.name == "finished_at"))
            .collect();
        let names = kept.iter().map(|c| c.name.as_str()).collect::<Vec<_>>();
        let values = names
            .iter()
            .map(|n| match *n {
                "finished_at" => "coalesce(finished_at, updated_at)".to_owned(),
                other => other.to_owned(),
            })
            .collect::<Vec<_>>();
        rebuild_sqlite(
            manager,
            &format!("{}, PRIMARY KEY ({KEY})", definitions.join(", ")),
            &names.join(", "),
            &format!(
                "{} FROM task_executions WHERE status <> 'running'",
                values.join(", ")
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let index =
            format!("CREATE UNIQUE INDEX task_executions_run_attempt ON task_executions ({KEY})");
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            return run(
                manager,
                &[
                    "ALTER TABLE task_executions DROP CONSTRAINT task_executions_run_attempt, \
                     ALTER COLUMN finished_at DROP NOT NULL, \
                     ADD COLUMN id bigserial PRIMARY KEY",
                    &index,
                ],
            )
            .await;
        }
        let columns = sqlite_columns(manager).await?;
        let definitions: Vec<String> = columns
            .iter()
            .map(|c| c.definition(c.not_null && c.name != "finished_at"))
            .collect();
        let names = columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>();
        rebuild_sqlite(
            manager,
            &format!(
                "id integer NOT NULL PRIMARY KEY AUTOINCREMENT, {}",
                definitions.join(", ")
            ),
            &names.join(", "),
            &format!("{} FROM task_executions", names.join(", ")),
        )
        .await?;
        run(manager, &[&index]).await
    }
}

/// A column of the SQLite table as `pragma table_info` describes it.
struct Column {
    name: String,
    declared: String,
    not_null: bool,
    /// The default's SQL text, as declared.
    default: Option<String>,
}

impl Column {
    fn definition(&self, not_null: bool) -> String {
        let constraint = if not_null { " NOT NULL" } else { "" };
        let default = match &self.default {
            Some(sql) => format!(" DEFAULT {sql}"),
            None => String::new(),
        };
        format!("\"{}\" {}{constraint}{default}", self.name, self.declared)
    }
}

async fn sqlite_columns(manager: &SchemaManager<'_>) -> Result<Vec<Column>, DbErr> {
    let rows = manager
        .get_connection()
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "SELECT name, type, \"notnull\" AS not_null, dflt_value AS \"default\" \
             FROM pragma_table_info('task_executions') ORDER BY cid",
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Column {
                name: row.try_get("", "name")?,
                declared: row.try_get("", "type")?,
                not_null: row.try_get::<i32>("", "not_null")? != 0,
                default: row.try_get("", "default")?,
            })
        })
        .collect()
}

/// Rebuilds the SQLite table as `definition` (its columns and constraints), copying `names`
/// from `select` (a SELECT list and what follows it, over the old table), and makes its
/// project index again.
async fn rebuild_sqlite(
    manager: &SchemaManager<'_>,
    definition: &str,
    names: &str,
    select: &str,
) -> Result<(), DbErr> {
    run(
        manager,
        &[
            &format!("CREATE TABLE task_executions_rebuilt ({definition})"),
            &format!("INSERT INTO task_executions_rebuilt ({names}) SELECT {select}"),
            "DROP TABLE task_executions",
            "ALTER TABLE task_executions_rebuilt RENAME TO task_executions",
            "CREATE INDEX task_executions_project_finished \
             ON task_executions (project_id, finished_at)",
        ],
    )
    .await
}
