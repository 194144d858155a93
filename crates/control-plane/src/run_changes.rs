//! The in-process hub of run status changes: the event sink publishes the id of every run whose
//! status it changed, after the change commits; `WatchRun` streams subscribe to learn when to
//! re-read their run. Only a hint: another replica may apply a change this one never hears of,
//! and a slow subscriber may lag and lose hints, so watchers also re-read on a timer. Owns no
//! data and touches no database.

use std::sync::Arc;

use tokio::sync::broadcast;

/// Hints buffered per subscriber before the slowest one lags (and falls back to re-reading).
const CAPACITY: usize = 1024;

/// Sender side of the hub; cheap to clone.
#[derive(Debug, Clone)]
pub struct RunChanges {
    sender: broadcast::Sender<Arc<str>>,
}

impl Default for RunChanges {
    fn default() -> Self {
        RunChanges::new()
    }
}

impl RunChanges {
    pub fn new() -> RunChanges {
        let (sender, _) = broadcast::channel(CAPACITY);
        RunChanges { sender }
    }

    /// Tells every watcher that `run_id` changed. Nobody listening is fine.
    pub fn publish(&self, run_id: &str) {
        let _ = self.sender.send(Arc::from(run_id));
    }

    /// Hints from now on (subscribe before reading the run, so no change falls in between).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.sender.subscribe()
    }

    /// How many watchers are subscribed (for tests and metrics).
    pub fn watchers(&self) -> usize {
        self.sender.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_hear_changes_published_after_they_subscribed() {
        let changes = RunChanges::new();
        changes.publish("before");
        let mut receiver = changes.subscribe();
        assert_eq!(changes.watchers(), 1);
        changes.publish("after");
        assert_eq!(receiver.recv().await.ok().as_deref(), Some("after"));
        drop(receiver);
        assert_eq!(changes.watchers(), 0);
    }
}
