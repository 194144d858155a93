//! Where a page of the execution history ends. Listings go newest first by finish time, the
//! attempt's key `(run_id, task_id, attempt)` breaking ties, so the cursor is the last row's
//! finish time and key; the next page holds the rows that sort after it. Clients see it as an
//! opaque string (`{finish s}.{ns}_{run}_{task}_{attempt}`, ids without hyphens) and hand it
//! back as it was. The time keeps every digit the database returned: SQLite compares stored
//! times as text, and a cursor rounded to microseconds would sort apart from its own row.

use chrono::{DateTime, Utc};
use sea_orm::prelude::Uuid;

use super::entity::task_execution::Model;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    pub finished_at: DateTime<Utc>,
    pub run_id: Uuid,
    pub task_id: Uuid,
    pub attempt: i32,
}

impl HistoryCursor {
    /// The cursor past `row`.
    pub fn after(row: &Model) -> HistoryCursor {
        HistoryCursor {
            finished_at: row.finished_at,
            run_id: row.run_id,
            task_id: row.task_id,
            attempt: row.attempt,
        }
    }

    /// Reads a cursor this module wrote; `None` for anything else.
    pub fn parse(text: &str) -> Option<HistoryCursor> {
        let mut parts = text.split('_');
        let (seconds, nanos) = parts.next()?.split_once('.')?;
        let (seconds, nanos): (i64, u32) = (seconds.parse().ok()?, nanos.parse().ok()?);
        if nanos >= 1_000_000_000 {
            return None;
        }
        let run_id = Uuid::try_parse(parts.next()?).ok()?;
        let task_id = Uuid::try_parse(parts.next()?).ok()?;
        let attempt: i32 = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(HistoryCursor {
            finished_at: DateTime::from_timestamp(seconds, nanos)?,
            run_id,
            task_id,
            attempt,
        })
    }
}

impl std::fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{:09}_{}_{}_{}",
            self.finished_at.timestamp(),
            self.finished_at.timestamp_subsec_nanos(),
            self.run_id.simple(),
            self.task_id.simple(),
            self.attempt
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_cursors_read_back_what_they_wrote_and_nothing_else() {
        let cursor = HistoryCursor {
            finished_at: DateTime::from_timestamp(1_764_400_000, 123_456_789).expect("a time"),
            run_id: Uuid::from_u128(7),
            task_id: Uuid::from_u128(u128::MAX),
            attempt: 3,
        };
        let text = cursor.to_string();
        assert_eq!(
            text,
            "1764400000.123456789_00000000000000000000000000000007_ffffffffffffffffffffffffffffffff_3"
        );
        assert_eq!(HistoryCursor::parse(&text), Some(cursor));
        for bad in [
            "",
            "42",
            "abc_def",
            &format!("{text}_9"),
            "1.0_00000000000000000000000000000007_x_1",
            "1.0_00000000000000000000000000000007_00000000000000000000000000000007_",
            "1_00000000000000000000000000000007_00000000000000000000000000000007_1",
            "1.1000000000_00000000000000000000000000000007_00000000000000000000000000000007_1",
            "99999999999999999999.0_00000000000000000000000000000007_00000000000000000000000000000007_1",
        ] {
            assert_eq!(HistoryCursor::parse(bad), None, "{bad}");
        }
    }
}
