//! The one place the active-task view's bytes are made and read. A value is a format byte
//! followed by an `ActiveTask` in protobuf: protobuf so a field added later (by a newer
//! replica) is skipped, not misread, by an older one; the format byte so bytes that are not
//! ours at all (another writer, a future encoding) are refused instead of decoded into
//! nonsense. A value that cannot be read is an error the reader logs and skips, never a
//! panic.

use prost::Message;
use switchyard_proto::monitoring::v1::ActiveTask;

/// The current encoding: protobuf `ActiveTask`.
const FORMAT_V1: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty value")]
    Empty,
    #[error("unknown value format {0}")]
    Format(u8),
    #[error("not an ActiveTask: {0}")]
    Protobuf(String),
    #[error("value lacks {0}")]
    Missing(&'static str),
}

/// The hash field of an attempt: unique per attempt, and in time order within a project
/// because task ids are UUIDv7 (newest first is a descending sort of the fields).
pub fn field(task_id: &str, attempt: u32) -> String {
    format!("{task_id}:{attempt:010}")
}

/// The field of an encoded task.
pub fn field_of(task: &ActiveTask) -> String {
    field(&task.task_id, task.attempt)
}

pub fn encode(task: &ActiveTask) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + task.encoded_len());
    bytes.push(FORMAT_V1);
    task.encode(&mut bytes)
        .unwrap_or_else(|_| unreachable!("a Vec grows to fit"));
    bytes
}

pub fn decode(bytes: &[u8]) -> Result<ActiveTask, CodecError> {
    let (&format, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if format != FORMAT_V1 {
        return Err(CodecError::Format(format));
    }
    let task = ActiveTask::decode(body).map_err(|e| CodecError::Protobuf(e.to_string()))?;
    if task.task_id.is_empty() {
        return Err(CodecError::Missing("task_id"));
    }
    if task.project_id.is_empty() {
        return Err(CodecError::Missing("project_id"));
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost_types::{Duration, Timestamp};

    use super::*;

    fn time() -> impl Strategy<Value = Option<Timestamp>> {
        proptest::option::of(
            (0i64..4_000_000_000, 0i32..1_000_000_000)
                .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }),
        )
    }

    prop_compose! {
        fn task()(
            task_id in "[0-9a-f-]{1,36}", run_id in "[0-9a-f-]{0,36}",
            project_id in "[0-9a-f-]{1,36}", node in "\\PC{0,40}", workflow in "\\PC{0,40}",
            agent_id in "\\PC{0,40}", shard in any::<(u32, u32)>(), attempt in any::<u32>(),
            iteration in any::<u32>(), started_at in time(), heartbeat in time(),
            queued_at in time(), lease in time(), wait_ms in proptest::option::of(0i64..1_000_000),
        ) -> ActiveTask {
            ActiveTask {
                task_id, run_id, project_id, node, workflow, agent_id,
                shard_index: shard.0, shard_count: shard.1, attempt, iteration,
                started_at, last_heartbeat_at: heartbeat, queued_at, lease_expires_at: lease,
                wait: wait_ms.map(|ms| Duration { seconds: ms / 1000, nanos: 0 }),
            }
        }
    }

    proptest! {
        #[test]
        fn active_codec_round_trips_every_task(task in task()) {
            prop_assert_eq!(decode(&encode(&task)), Ok(task));
        }

        #[test]
        fn active_codec_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn active_codec_names_what_is_wrong_with_foreign_bytes() {
        assert_eq!(decode(b""), Err(CodecError::Empty));
        assert_eq!(decode(b"{\"task\":1}"), Err(CodecError::Format(b'{')));
        assert!(matches!(
            decode(&[FORMAT_V1, 0xff, 0xff]),
            Err(CodecError::Protobuf(_))
        ));
        let anonymous = ActiveTask {
            project_id: "p".into(),
            ..ActiveTask::default()
        };
        assert_eq!(
            decode(&encode(&anonymous)),
            Err(CodecError::Missing("task_id"))
        );
    }

    #[test]
    fn active_fields_sort_attempts_in_order() {
        assert_eq!(field("t", 9), "t:0000000009");
        assert!(field("t", 9) < field("t", 10), "attempts are zero-padded");
    }
}
