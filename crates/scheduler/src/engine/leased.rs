//! `LEASED` steps of committed claims, waiting in memory to be written for monitoring (see
//! `lifecycle` for why they do not ride in the claim). A step is written once its attempt has
//! been running for `engine.leased_delay`: an attempt that ends sooner takes its step with it
//! (its ending says so, `leased_unsent`), so a short task costs monitoring one step, not two.
//! Nobody could have seen such an attempt in the active view anyway; a long one shows there
//! that much later.
//!
//! Kept by task id: an ending finds its attempt's step in one lookup, however many wait (at a
//! few thousand claims a second, a second's worth).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use switchyard_proto::events::v1::{TaskLifecycle, TaskPhase};

/// Most `LEASED` steps [`LeasedSteps`] holds: past it (the database refusing every write for
/// a long while, say) the oldest are dropped, which the active view's reconciliation makes up
/// for.
pub(super) const MAX_WAITING: usize = 100_000;

/// One waiting step.
pub(super) struct Waiting {
    /// Order of the claims, kept when a step is put back, so steps are written in the order
    /// their attempts were leased.
    seq: u64,
    /// When the claim committed.
    since: Instant,
    pub(super) step: TaskLifecycle,
}

#[derive(Default)]
struct Inner {
    next_seq: u64,
    by_task: HashMap<String, Waiting>,
}

/// The waiting steps. Cheap to clone: clones share them.
#[derive(Clone, Default)]
pub struct LeasedSteps(Arc<Mutex<Inner>>);

impl LeasedSteps {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a map, which still holds whole steps.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A claim committed: its attempts' steps wait. A task has one attempt leased at a time,
    /// so a step replaces any left over from an earlier attempt of its task.
    pub fn add(&self, steps: impl IntoIterator<Item = TaskLifecycle>) {
        self.add_at(steps, Instant::now());
    }

    fn add_at(&self, steps: impl IntoIterator<Item = TaskLifecycle>, since: Instant) {
        let mut inner = self.lock();
        for step in steps {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner
                .by_task
                .insert(step.task_id.clone(), Waiting { seq, since, step });
        }
        if inner.by_task.len() > MAX_WAITING {
            let dropped = inner.by_task.len() - MAX_WAITING;
            let mut seqs: Vec<u64> = inner.by_task.values().map(|w| w.seq).collect();
            let (_, first_kept, _) = seqs.select_nth_unstable(dropped);
            let first_kept = *first_kept;
            inner.by_task.retain(|_, w| w.seq >= first_kept);
            tracing::warn!(
                dropped,
                "leased steps for monitoring could not be written for a long while; the oldest were dropped"
            );
        }
    }

    /// Takes out the waiting steps of attempts that `endings` end, and marks those endings
    /// `leased_unsent`: an attempt that ended before its `LEASED` was written has nothing
    /// left to show as running, so the step is never sent, and monitoring counts the
    /// attempt's wait from its ending instead. Returns the steps taken, to be put back if
    /// the endings' transaction does not commit.
    pub(super) fn take_ended(&self, endings: &mut [TaskLifecycle]) -> Vec<Waiting> {
        let mut inner = self.lock();
        if inner.by_task.is_empty() {
            return Vec::new();
        }
        let mut taken = Vec::new();
        for ending in endings
            .iter_mut()
            .filter(|step| step.phase != TaskPhase::Leased as i32)
        {
            let same_attempt = inner
                .by_task
                .get(ending.task_id.as_str())
                .is_some_and(|w| w.step.attempt == ending.attempt);
            if !same_attempt {
                continue;
            }
            if let Some(waiting) = inner.by_task.remove(ending.task_id.as_str()) {
                ending.leased_unsent = true;
                taken.push(waiting);
            }
        }
        taken
    }

    /// Takes the steps whose claims committed at least `age` ago, in claim order, to be
    /// written.
    pub(super) fn take_older_than(&self, age: Duration) -> Vec<Waiting> {
        self.take_older_than_at(age, Instant::now())
    }

    fn take_older_than_at(&self, age: Duration, now: Instant) -> Vec<Waiting> {
        let mut due: Vec<Waiting> = self
            .lock()
            .by_task
            .extract_if(|_, w| now.saturating_duration_since(w.since) >= age)
            .map(|(_, w)| w)
            .collect();
        due.sort_unstable_by_key(|w| w.seq);
        due
    }

    /// Puts back steps whose transaction did not commit, in their places. A step whose task
    /// has been leased again since stays replaced.
    pub(super) fn restore(&self, steps: impl IntoIterator<Item = Waiting>) {
        let mut inner = self.lock();
        for waiting in steps {
            inner
                .by_task
                .entry(waiting.step.task_id.clone())
                .or_insert(waiting);
        }
    }

    /// Rebuilds the entries of `steps` taken by [`take_older_than`](Self::take_older_than)
    /// and given out as a batch, in the same order (`taken` is what they were).
    pub(super) fn rejoin(taken: Vec<(u64, Instant)>, steps: Vec<TaskLifecycle>) -> Vec<Waiting> {
        taken
            .into_iter()
            .zip(steps)
            .map(|((seq, since), step)| Waiting { seq, since, step })
            .collect()
    }

    /// Whether a step of task `task_id` waits.
    pub fn contains(&self, task_id: &str) -> bool {
        self.lock().by_task.contains_key(task_id)
    }

    /// How many steps wait.
    pub fn len(&self) -> usize {
        self.lock().by_task.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().by_task.is_empty()
    }
}

impl Waiting {
    /// Its place, to [`rejoin`](LeasedSteps::rejoin) it after giving out its step.
    pub(super) fn place(&self) -> (u64, Instant) {
        (self.seq, self.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, attempt: u32) -> TaskLifecycle {
        TaskLifecycle {
            task_id: id.into(),
            attempt,
            phase: TaskPhase::Leased as i32,
            ..TaskLifecycle::default()
        }
    }

    fn ids(steps: Vec<Waiting>) -> Vec<String> {
        steps.into_iter().map(|w| w.step.task_id).collect()
    }

    /// Every waiting step, however young.
    fn all(waiting: &LeasedSteps) -> Vec<Waiting> {
        waiting.take_older_than(Duration::ZERO)
    }

    #[test]
    fn steps_put_back_keep_their_place_among_those_added_since() {
        let waiting = LeasedSteps::default();
        waiting.add([step("a", 1), step("b", 1)]);
        let taken = all(&waiting);
        assert!(waiting.is_empty());
        // Claimed while the write failed: goes after the ones put back.
        waiting.add([step("c", 1)]);
        waiting.restore(taken);
        assert_eq!(ids(all(&waiting)), ["a", "b", "c"]);
    }

    #[test]
    fn only_steps_older_than_the_delay_are_taken() {
        let waiting = LeasedSteps::default();
        let start = Instant::now();
        let later = start + Duration::from_secs(10);
        waiting.add_at([step("old", 1)], start);
        waiting.add_at([step("new", 1)], later);
        let delay = Duration::from_secs(5);
        assert_eq!(ids(waiting.take_older_than_at(delay, later)), ["old"]);
        assert_eq!(waiting.len(), 1, "the young one still waits");
        assert!(waiting.take_older_than_at(delay, later).is_empty());
        let due = later + delay;
        assert_eq!(ids(waiting.take_older_than_at(delay, due)), ["new"]);
    }

    #[test]
    fn an_ending_takes_its_attempts_waiting_step_and_says_so() {
        let waiting = LeasedSteps::default();
        let ending = |id: &str, attempt: u32| TaskLifecycle {
            phase: TaskPhase::Succeeded as i32,
            ..step(id, attempt)
        };
        waiting.add([step("a", 1), step("b", 1), step("c", 1)]);
        // b's attempt ends; a's next attempt ends (not the one waiting); d's was never here.
        let mut endings = vec![ending("b", 1), ending("a", 2), ending("d", 1)];
        let taken = waiting.take_ended(&mut endings);
        assert_eq!(ids(taken), ["b"]);
        let marked: Vec<bool> = endings.iter().map(|e| e.leased_unsent).collect();
        assert_eq!(marked, [true, false, false]);
        assert_eq!(ids(all(&waiting)), ["a", "c"]);
    }

    #[test]
    fn a_new_attempt_replaces_its_tasks_leftover_step() {
        let waiting = LeasedSteps::default();
        waiting.add([step("a", 1)]);
        waiting.add([step("a", 2)]);
        let taken = all(&waiting);
        let attempts: Vec<u32> = taken.iter().map(|w| w.step.attempt).collect();
        assert_eq!(attempts, [2]);
        // Put back after the task was leased again: the newer step stays.
        waiting.add([step("a", 3)]);
        waiting.restore(taken);
        let kept: Vec<u32> = all(&waiting).iter().map(|w| w.step.attempt).collect();
        assert_eq!(kept, [3]);
    }

    #[test]
    fn a_batch_given_out_rejoins_in_its_places() {
        let waiting = LeasedSteps::default();
        waiting.add([step("a", 1), step("b", 1)]);
        let taken = all(&waiting);
        let places: Vec<(u64, Instant)> = taken.iter().map(Waiting::place).collect();
        let steps: Vec<TaskLifecycle> = taken.into_iter().map(|w| w.step).collect();
        waiting.add([step("c", 1)]);
        waiting.restore(LeasedSteps::rejoin(places, steps));
        assert_eq!(ids(all(&waiting)), ["a", "b", "c"]);
    }

    #[test]
    fn waiting_steps_are_bounded_dropping_the_oldest() {
        let waiting = LeasedSteps::default();
        let numbered = |n: usize| step(&n.to_string(), 1);
        waiting.add((0..MAX_WAITING).map(numbered));
        waiting.add((MAX_WAITING..MAX_WAITING + 3).map(numbered));
        let kept = all(&waiting);
        assert_eq!(kept.len(), MAX_WAITING);
        assert_eq!(kept[0].step.task_id, "3");
    }
}
