//! The history's plain insert on PostgreSQL: `COPY task_executions FROM STDIN` in the binary
//! format, on the connection of the event sink's transaction.
//!
//! Why not an `INSERT`: the insert read its rows with `unnest` over one array per column,
//! and PostgreSQL materialises each of those 21 functions' results before zipping them into
//! rows; that took about a third of the statement's time (EXPLAIN ANALYZE, 400 rows), and
//! building the arrays as sea-orm values cost this process about 5 µs an attempt. COPY reads
//! each field in its binary form straight into the row and writes heap pages a batch at a
//! time. It cannot merge: a batch that meets a stored attempt fails with a unique violation,
//! and the caller writes it again with the merging `INSERT` (see `executions::upsert`).

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use sea_orm::prelude::Uuid;
use sea_orm::sqlx::PgConnection;
use switchyard_runtime::db::driver_error;

use super::executions::stored_ids;
use crate::domain::execution::Execution;
use crate::error::{Error, Result};

/// The columns, in the order every row's fields are encoded.
const COPY: &str = "COPY task_executions (task_id, attempt, run_id, project_id, workflow, \
     node, shard_index, shard_count, iteration, status, agent_id, exit_code, error, \
     retry_reason, queued_at, started_at, finished_at, not_before, wait_ms, run_ms, \
     precedence, updated_at) FROM STDIN (FORMAT binary)";

/// Fields a row has in [`COPY`].
const FIELDS: i16 = 22;

/// The binary format's signature, flags (none) and header extension length (none).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01), where binary timestamps
/// count from.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Writes `rows` (ended attempts, folded: one per attempt) with one COPY. Fails with a
/// unique violation, and writes nothing, when any of them is stored already.
pub async fn copy<E: Borrow<Execution>>(conn: &mut PgConnection, rows: &[E]) -> Result<u64> {
    let data = encode(rows, Utc::now())?;
    let driver = |e| Error::Database(driver_error(e));
    let mut copy = conn.copy_in_raw(COPY).await.map_err(driver)?;
    if let Err(error) = copy.send(data).await {
        // Ends the COPY so the connection is usable again; the error is the one to report.
        let _ = copy.abort("history batch not sent").await;
        return Err(driver(error));
    }
    copy.finish().await.map_err(driver)
}

/// The rows in COPY's binary format, `updated_at` set to `now`.
pub fn encode<E: Borrow<Execution>>(rows: &[E], now: DateTime<Utc>) -> Result<Vec<u8>> {
    // About 260 bytes a row with short texts.
    let mut out = Row(Vec::with_capacity(HEADER.len() + rows.len() * 300 + 2));
    out.0.extend_from_slice(HEADER);
    for row in rows {
        let e = row.borrow();
        let [task_id, run_id, project_id] = stored_ids(e)?;
        out.0.extend_from_slice(&FIELDS.to_be_bytes());
        out.uuid(task_id);
        out.int4(e.attempt);
        out.uuid(run_id);
        out.uuid(project_id);
        out.text(&e.workflow)?;
        out.text(&e.node)?;
        out.int4(e.shard_index);
        out.int4(e.shard_count);
        out.int4(e.iteration);
        out.text(e.status.as_str())?;
        out.text(&e.agent_id)?;
        match e.exit_code {
            Some(code) => out.int4(code),
            None => out.null(),
        }
        out.text(&e.error)?;
        out.text(&e.retry_reason)?;
        // An ending without a time counts as finished when the history wrote it.
        for time in [
            e.queued_at,
            e.started_at,
            e.finished_at.or(Some(now)),
            e.not_before,
        ] {
            out.time(time);
        }
        for number in [e.wait_ms(), e.run_ms(), Some(e.precedence())] {
            match number {
                Some(n) => out.int8(n),
                None => out.null(),
            }
        }
        out.time(Some(now));
    }
    out.0.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(out.0)
}

/// Fields in the binary format: each a 32-bit length (-1 for NULL), then the value as the
/// type's `send` function writes it.
struct Row(Vec<u8>);

impl Row {
    fn field(&mut self, bytes: &[u8]) {
        // Every caller's value is far below 2 GiB (`text` checks).
        self.0
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.0.extend_from_slice(bytes);
    }

    fn null(&mut self) {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn uuid(&mut self, id: Uuid) {
        self.field(id.as_bytes());
    }

    fn int4(&mut self, n: i32) {
        self.field(&n.to_be_bytes());
    }

    fn int8(&mut self, n: i64) {
        self.field(&n.to_be_bytes());
    }

    fn text(&mut self, text: &str) -> Result<()> {
        if i32::try_from(text.len()).is_err() {
            return Err(Error::InvalidArgument(
                "a text of the history is too long".into(),
            ));
        }
        self.field(text.as_bytes());
        Ok(())
    }

    fn time(&mut self, time: Option<DateTime<Utc>>) {
        match time {
            Some(t) => self.int8(t.timestamp_micros() - PG_EPOCH_MICROS),
            None => self.null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::execution::Status;

    fn attempt() -> Execution {
        Execution {
            task_id: "0190a0b0-0000-7000-8000-000000000001".into(),
            attempt: 2,
            run_id: "0190a0b0-0000-7000-8000-000000000002".into(),
            project_id: "0190a0b0-0000-7000-8000-000000000003".into(),
            workflow: "wf".into(),
            node: "n".into(),
            shard_index: 0,
            shard_count: 1,
            iteration: 0,
            status: Status::Succeeded,
            agent_id: "a".into(),
            exit_code: None,
            error: String::new(),
            retry_reason: String::new(),
            queued_at: None,
            started_at: None,
            finished_at: DateTime::from_timestamp(946_684_800, 1_000),
            not_before: None,
            leased_unsent: false,
        }
    }

    #[test]
    fn rows_follow_the_binary_copy_format() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let data = encode(&[attempt()], now).expect("a valid attempt encodes");
        assert!(data.starts_with(HEADER));
        assert!(data.ends_with(&[0xff, 0xff]));
        let row = &data[HEADER.len()..data.len() - 2];
        assert_eq!(&row[..2], &22i16.to_be_bytes());
        // task_id: a 16-byte field.
        assert_eq!(&row[2..6], &16i32.to_be_bytes());
        assert_eq!(row[21], 1);
        // attempt: a 4-byte field holding 2.
        assert_eq!(&row[22..30], &[0, 0, 0, 4, 0, 0, 0, 2]);
        // updated_at closes the row: the Unix epoch is 946,684,800 s before PostgreSQL's.
        let tail = &row[row.len() - 12..];
        assert_eq!(&tail[..4], &8i32.to_be_bytes());
        assert_eq!(&tail[4..], &(-PG_EPOCH_MICROS).to_be_bytes());
    }

    #[test]
    fn ids_that_are_no_uuids_are_refused() {
        let mut bad = attempt();
        bad.run_id = "r1".into();
        assert!(matches!(
            encode(&[bad], Utc::now()),
            Err(Error::InvalidArgument(_))
        ));
    }
}
