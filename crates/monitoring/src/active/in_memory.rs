//! The view in this process's memory, for embedded mode (no Redis): the same operations and
//! rules as the Redis script, over maps. One per monitoring instance, not per process, so
//! several embedded clusters in one test process stay apart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Op, codec};

#[derive(Default)]
struct State {
    /// Project → field → encoded task.
    projects: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// Field → when the tombstone expires.
    ended: HashMap<String, Instant>,
    epoch: bool,
}

#[derive(Clone)]
pub(super) struct MemoryView {
    state: Arc<Mutex<State>>,
    tombstone_ttl: Duration,
}

impl MemoryView {
    pub(super) fn new(tombstone_ttl: Duration) -> MemoryView {
        MemoryView {
            state: Arc::default(),
            tombstone_ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves maps that are still consistent:
        // every operation below is a single insert or remove.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn apply(&self, ops: &[Op]) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        state.ended.retain(|_, expires| *expires > now);
        for op in ops {
            match op {
                Op::Put(task) => {
                    let field = codec::field_of(task);
                    if !state.ended.contains_key(&field) {
                        state
                            .projects
                            .entry(task.project_id.clone())
                            .or_default()
                            .insert(field, codec::encode(task));
                    }
                }
                Op::End {
                    project_id,
                    task_id,
                    attempt,
                } => {
                    let field = codec::field(task_id, *attempt);
                    remove(&mut state, project_id, &field);
                    state.ended.insert(field, now + self.tombstone_ttl);
                }
                Op::Remove {
                    project_id,
                    task_id,
                    attempt,
                } => remove(&mut state, project_id, &codec::field(task_id, *attempt)),
            }
        }
        state.epoch
    }

    pub(super) fn entries(&self, projects: Option<&[String]>) -> Vec<(String, Vec<u8>)> {
        let state = self.lock();
        let pick = |(project, fields): (&String, &BTreeMap<String, Vec<u8>>)| {
            fields
                .iter()
                .map(|(field, bytes)| (format!("{project}/{field}"), bytes.clone()))
                .collect::<Vec<_>>()
        };
        match projects {
            None => state.projects.iter().flat_map(pick).collect(),
            Some(ids) => ids
                .iter()
                .filter_map(|id| state.projects.get_key_value(id))
                .flat_map(pick)
                .collect(),
        }
    }

    pub(super) fn epoch_present(&self) -> bool {
        self.lock().epoch
    }

    pub(super) fn set_epoch(&self) {
        self.lock().epoch = true;
    }
}

fn remove(state: &mut State, project: &str, field: &str) {
    if let Some(fields) = state.projects.get_mut(project) {
        fields.remove(field);
        if fields.is_empty() {
            state.projects.remove(project);
        }
    }
}
