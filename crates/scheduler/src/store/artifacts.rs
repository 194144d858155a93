//! Artifacts agents reported with their completions: recorded in the completion's
//! transaction, read by artifact retention in chunks, marked deleted once their objects are
//! gone, and removed with their runs.
//!
//! Only a location shaped like an object the reporting attempt stored is recorded —
//! `file://` or `s3://`, ending in `/<run_id>/<task uuid>-<attempt>/<name>` (the agent's key
//! layout) — so an agent cannot make retention delete anything outside its own attempt's
//! objects.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Deserialize;

use super::entity::{artifact, run, task};
use crate::error::Result;

/// Artifacts recorded per attempt at most (the agent stores at most as many).
pub const MAX_PER_ATTEMPT: usize = 1000;

/// One artifact as the worker API stores it in the completion's result.
#[derive(Debug, Deserialize)]
struct Reported {
    name: String,
    location: String,
    #[serde(default)]
    size_bytes: u64,
    #[serde(default)]
    sha256: String,
}

/// Records the artifacts one attempt of `task` reported; those that are malformed or point
/// outside the attempt's own keys are logged and left out. Returns how many were recorded.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    task: &task::Model,
    reported: &[serde_json::Value],
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut rows = Vec::new();
    for value in reported.iter().take(MAX_PER_ATTEMPT) {
        let Ok(artifact) = Reported::deserialize(value) else {
            tracing::warn!(task_id = %task.uuid, "malformed artifact report ignored");
            continue;
        };
        let acceptable = belongs_to(&artifact.location, &task.run_id, &task.uuid, task.attempt)
            && plain(&artifact.name, 255)
            && plain(&artifact.location, 2048)
            && artifact.sha256.len() == 64
            && artifact.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !acceptable {
            tracing::warn!(task_id = %task.uuid, location = %artifact.location, "artifact not recorded: outside the attempt's keys or malformed");
            continue;
        }
        rows.push(artifact::ActiveModel {
            task_id: Set(task.id),
            run_id: Set(task.run_id.clone()),
            project_id: Set(task.project_id.clone()),
            name: Set(artifact.name),
            location: Set(artifact.location),
            size_bytes: Set(i64::try_from(artifact.size_bytes).unwrap_or(i64::MAX)),
            sha256: Set(artifact.sha256.to_ascii_lowercase()),
            created_at: Set(now),
            deleted_at: Set(None),
            ..Default::default()
        });
    }
    if reported.len() > MAX_PER_ATTEMPT {
        tracing::warn!(task_id = %task.uuid, reported = reported.len(), limit = MAX_PER_ATTEMPT, "more artifacts than recorded");
    }
    if rows.is_empty() {
        return Ok(0);
    }
    Ok(artifact::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?)
}

/// Non-empty text of at most `max` bytes without control characters: one bad report (a NUL
/// that PostgreSQL refuses) must not fail the whole batch of completions it rides in.
fn plain(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && !text.chars().any(char::is_control)
}

/// Whether `location` is a `file://` or `s3://` URL of an object under
/// `<run_id>/<task_uuid>-<attempt>/`.
fn belongs_to(location: &str, run_id: &str, task_uuid: &str, attempt: i32) -> bool {
    if location.len() > 2048 {
        return false;
    }
    let Ok(url) = url::Url::parse(location) else {
        return false;
    };
    if !matches!(url.scheme(), "file" | "s3" | "s3a")
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    let Some(segments) = url.path_segments() else {
        return false;
    };
    let segments: Vec<&str> = segments.collect();
    let attempt = format!("{task_uuid}-{attempt}");
    matches!(
        segments.as_slice(),
        [.., run, key, name] if *run == run_id && *key == attempt && !name.is_empty()
    )
}

/// Live artifacts created before `cutoff`, after id `after`, oldest id first.
pub async fn due<C: ConnectionTrait>(
    conn: &C,
    cutoff: DateTime<Utc>,
    after: i64,
    limit: u64,
) -> Result<Vec<artifact::Model>> {
    Ok(artifact::Entity::find()
        .filter(artifact::Column::DeletedAt.is_null())
        .filter(artifact::Column::CreatedAt.lt(cutoff))
        .filter(artifact::Column::Id.gt(after))
        .order_by_asc(artifact::Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Marks artifacts whose objects are gone.
pub async fn mark_deleted<C: ConnectionTrait>(
    conn: &C,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let result = artifact::Entity::update_many()
        .col_expr(artifact::Column::DeletedAt, Expr::value(now))
        .filter(artifact::Column::Id.is_in(ids.iter().copied()))
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// A condition on runs: none of the run's artifacts still has its object (run retention
/// waits for artifact retention).
pub fn no_live_artifacts() -> sea_orm::sea_query::SimpleExpr {
    let live = Query::select()
        .expr(Expr::val(1))
        .from(artifact::Entity)
        .and_where(
            Expr::col((artifact::Entity, artifact::Column::RunId))
                .equals((run::Entity, run::Column::Id)),
        )
        .and_where(Expr::col((artifact::Entity, artifact::Column::DeletedAt)).is_null())
        .to_owned();
    Expr::exists(live).not()
}

/// Deletes the artifact rows of runs being deleted.
pub async fn delete_of_runs<C: ConnectionTrait>(conn: &C, run_ids: &[String]) -> Result<u64> {
    let result = artifact::Entity::delete_many()
        .filter(artifact::Column::RunId.is_in(run_ids.iter().cloned()))
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_text_must_be_plain() {
        assert!(plain("report.txt", 255));
        assert!(!plain("", 255));
        assert!(
            !plain("a\0b", 255),
            "a NUL would fail the whole batch's insert"
        );
        assert!(!plain("line\nbreak", 255));
        assert!(!plain(&"x".repeat(256), 255));
    }

    #[test]
    fn only_the_attempts_own_artifact_keys_are_recorded() {
        let key = |location: &str| belongs_to(location, "r-1", "t-1", 2);
        for ok in [
            "file:///var/lib/agent/artifacts/r-1/t-1-2/report.txt",
            "s3://bucket/ci/r-1/t-1-2/report.txt",
            "s3://bucket/r-1/t-1-2/a%20b",
        ] {
            assert!(key(ok), "{ok}");
        }
        for bad in [
            "file:///etc/passwd",
            "file:///var/lib/r-1/t-1-1/report.txt",
            "s3://bucket/ci/r-2/t-1-2/report.txt",
            "s3://bucket/ci/r-1/t-1-2/",
            "https://example.com/r-1/t-1-2/x",
            "s3://bucket/r-1/t-1-2/x?versionId=1",
            "s3://user@bucket/r-1/t-1-2/x",
            "not a url",
        ] {
            assert!(!key(bad), "{bad}");
        }
    }
}
