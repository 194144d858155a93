//! Pure scheduler logic: the run graph, retry decisions, the task state machine,
//! concurrency-limit admission. No I/O.

pub mod cron;
pub mod graph;
pub mod limits;
pub mod retry;
pub mod task_status;
pub mod wait;
