//! What happens to a task after a failed attempt: another attempt after a backoff with full
//! jitter, or the dead-letter queue. Failures of the platform (a lease that expired because
//! the agent vanished) draw on their own budget, so a flaky machine does not use up the
//! attempts the node's policy gives the user's code.

use std::time::Duration;

use switchyard_workflow::RetryPolicy;

/// Why an attempt ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The command exited with this code.
    Exit(i32),
    /// The command ran past the node's timeout and was stopped.
    TimedOut,
    /// The lease expired: the agent stopped heartbeating (crashed, lost, killed).
    LeaseExpired,
}

impl Failure {
    /// In words, for the task's error and its attempt record.
    pub fn describe(self) -> String {
        match self {
            Failure::Exit(code) => format!("exit code {code}"),
            Failure::TimedOut => "timed out".to_owned(),
            Failure::LeaseExpired => "lease expired".to_owned(),
        }
    }
}

/// The decision for the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Queue attempt `attempt` after `backoff`.
    Retry { attempt: u32, backoff: Duration },
    /// No attempt left (or the failure is not retryable): to the dead-letter queue.
    Dead { reason: String },
}

/// Limits the scheduler applies beside the node's own policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Attempts that may be lost to the platform (expired leases) before the task is dead.
    pub infra_attempts: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { infra_attempts: 3 }
    }
}

/// Decides after attempt `attempt` (1-based) failed with `failure`. `infra_losses` counts
/// earlier attempts of this task lost to the platform (this one excluded). `jitter` is a
/// number in `[0, 1)` (random in production, fixed in tests): full jitter spreads retries of
/// many failed shards so they do not return in one wave.
pub fn decide(
    policy: Option<&RetryPolicy>,
    budget: Budget,
    attempt: u32,
    infra_losses: u32,
    failure: Failure,
    jitter: f64,
) -> Decision {
    let next = attempt + 1;
    if failure == Failure::LeaseExpired {
        // The user's code did not fail: retry at once, within the platform's budget.
        return if infra_losses + 1 < budget.infra_attempts {
            Decision::Retry {
                attempt: next,
                backoff: Duration::ZERO,
            }
        } else {
            Decision::Dead {
                reason: format!(
                    "lost to the platform {} times (lease expired: the agent stopped heartbeating)",
                    infra_losses + 1
                ),
            }
        };
    }
    let default = RetryPolicy {
        max_attempts: 1,
        initial_backoff_ms: 0,
        max_backoff_ms: 0,
        backoff_multiplier: 1.0,
        non_retryable_exit_codes: Vec::new(),
    };
    let policy = policy.unwrap_or(&default);
    if let Failure::Exit(code) = failure
        && policy.non_retryable_exit_codes.contains(&code)
    {
        return Decision::Dead {
            reason: format!("exit code {code} is not retryable"),
        };
    }
    // Attempts lost to the platform do not count against the user's policy.
    let user_attempts = attempt.saturating_sub(infra_losses);
    if user_attempts >= policy.max_attempts.max(1) {
        let what = match failure {
            Failure::Exit(code) => format!("exit code {code}"),
            Failure::TimedOut => "timed out".to_owned(),
            Failure::LeaseExpired => "lease expired".to_owned(),
        };
        return Decision::Dead {
            reason: format!(
                "{what} on attempt {attempt}; {} attempt{} allowed",
                policy.max_attempts.max(1),
                if policy.max_attempts.max(1) == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        };
    }
    let ceiling = policy.backoff_ms(user_attempts + 1) as f64;
    let backoff = (ceiling * jitter.clamp(0.0, 1.0)) as u64;
    Decision::Retry {
        attempt: next,
        backoff: Duration::from_millis(backoff),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            backoff_multiplier: 2.0,
            non_retryable_exit_codes: vec![2],
        }
    }

    #[test]
    fn failures_retry_with_growing_jittered_backoff_until_the_budget_is_spent() {
        let p = policy();
        let b = Budget::default();
        assert_eq!(
            decide(Some(&p), b, 1, 0, Failure::Exit(1), 0.5),
            Decision::Retry {
                attempt: 2,
                backoff: Duration::from_millis(500)
            }
        );
        assert_eq!(
            decide(Some(&p), b, 2, 0, Failure::TimedOut, 0.999),
            Decision::Retry {
                attempt: 3,
                backoff: Duration::from_millis(1_998)
            }
        );
        assert!(matches!(
            decide(Some(&p), b, 3, 0, Failure::Exit(1), 0.5),
            Decision::Dead { .. }
        ));
    }

    #[test]
    fn a_non_retryable_exit_code_is_dead_at_once() {
        let decision = decide(
            Some(&policy()),
            Budget::default(),
            1,
            0,
            Failure::Exit(2),
            0.5,
        );
        assert_eq!(
            decision,
            Decision::Dead {
                reason: "exit code 2 is not retryable".into()
            }
        );
    }

    #[test]
    fn without_a_policy_one_attempt_is_all() {
        assert!(matches!(
            decide(None, Budget::default(), 1, 0, Failure::Exit(1), 0.5),
            Decision::Dead { .. }
        ));
    }

    #[test]
    fn lost_leases_use_the_platform_budget_not_the_users() {
        let b = Budget { infra_attempts: 2 };
        // Attempt 1 lost: retried at once even without a policy.
        assert_eq!(
            decide(None, b, 1, 0, Failure::LeaseExpired, 0.5),
            Decision::Retry {
                attempt: 2,
                backoff: Duration::ZERO
            }
        );
        // A second loss spends the platform budget.
        assert!(matches!(
            decide(None, b, 2, 1, Failure::LeaseExpired, 0.5),
            Decision::Dead { .. }
        ));
        // Attempt 3 fails in user code after two platform losses: the user still had only one
        // attempt of their three, so it retries.
        assert!(matches!(
            decide(Some(&policy()), b, 3, 2, Failure::Exit(1), 0.0),
            Decision::Retry { attempt: 4, .. }
        ));
    }

    proptest::proptest! {
        /// The backoff never exceeds the policy's ceiling, and retries stop within the policy.
        #[test]
        fn backoff_is_bounded_and_attempts_end(
            max_attempts in 1u32..8,
            initial in 0u64..10_000,
            cap in 0u64..120_000,
            jitter in 0.0f64..1.0,
            code in 0i32..5,
        ) {
            let p = RetryPolicy {
                max_attempts,
                initial_backoff_ms: initial,
                max_backoff_ms: cap,
                backoff_multiplier: 2.0,
                non_retryable_exit_codes: vec![],
            };
            let mut attempt = 1;
            while let Decision::Retry { attempt: next, backoff } =
                decide(Some(&p), Budget::default(), attempt, 0, Failure::Exit(code), jitter)
            {
                proptest::prop_assert!(backoff.as_millis() as u64 <= cap);
                proptest::prop_assert_eq!(next, attempt + 1);
                attempt = next;
                proptest::prop_assert!(attempt <= max_attempts);
            }
            proptest::prop_assert_eq!(attempt, max_attempts);
        }
    }
}
