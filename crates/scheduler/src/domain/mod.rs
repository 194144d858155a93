//! Pure scheduler logic: the run graph, retry decisions, the task state machine. No I/O.

pub mod cron;
pub mod graph;
pub mod retry;
pub mod task_status;
