//! The task state machine: one function says which moves are legal, so the queue, the lease
//! sweeper, completions, cancellation and replay cannot invent their own.
//!
//! ```text
//! queued ──lease──▶ leased ──exit 0──▶ succeeded
//!   ▲                 │ ├──failed, attempts left──▶ queued (next attempt, backoff)
//!   │                 │ ├──failed, none left / not retryable──▶ dead ──replay──▶ queued
//!   │                 │ └──lease expired──▶ queued (or dead past the platform budget)
//!   └─────────────────┘
//! queued | leased ──cancel──▶ cancelled
//! ```
//! `failed` is the terminal state of an attempt's task whose node accepts failure as a result
//! (a shard of an `allow_partial` node that exhausted its attempts is `failed`, not `dead`,
//! when its run ends without replay); it is reached from `dead` when the run finishes.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Queued,
    Leased,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a task cannot go from {from} to {to}")]
pub struct IllegalMove {
    pub from: &'static str,
    pub to: &'static str,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Queued,
        TaskStatus::Leased,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Dead,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Leased => "leased",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Dead => "dead",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Nothing more happens to the task (a dead task may still be replayed).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    /// The one place that says which moves are legal.
    pub fn transition(self, to: TaskStatus) -> Result<TaskStatus, IllegalMove> {
        use TaskStatus::*;
        let legal = matches!(
            (self, to),
            (Queued, Leased)
                | (Queued, Cancelled)
                | (Leased, Succeeded)
                | (Leased, Queued)
                | (Leased, Dead)
                | (Leased, Cancelled)
                | (Dead, Queued)
                | (Dead, Failed)
                | (Dead, Cancelled)
        );
        if legal {
            Ok(to)
        } else {
            Err(IllegalMove {
                from: self.as_str(),
                to: to.as_str(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    /// Every pair, legal or not, spelled out: a change to the machine changes this table.
    #[test]
    fn every_pair_is_legal_or_illegal_as_the_table_says() {
        let legal = [
            (Queued, Leased),
            (Queued, Cancelled),
            (Leased, Succeeded),
            (Leased, Queued),
            (Leased, Dead),
            (Leased, Cancelled),
            (Dead, Queued),
            (Dead, Failed),
            (Dead, Cancelled),
        ];
        let mut checked = 0;
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(
                    from.transition(to).is_ok(),
                    expected,
                    "{} → {}",
                    from.as_str(),
                    to.as_str()
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 36);
    }

    #[test]
    fn final_states_go_nowhere_and_names_round_trip() {
        for from in TaskStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for to in TaskStatus::ALL {
                assert!(from.transition(to).is_err());
            }
        }
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TaskStatus::parse("nope"), None);
        assert_eq!(
            Leased.transition(Leased).map_err(|e| e.to_string()),
            Err("a task cannot go from leased to leased".into())
        );
    }
}
