//! When a running attempt is stuck, as pure rules (the handler gathers the facts):
//! - `heartbeat_stale`: its agent's last heartbeat is older than
//!   `stuck.heartbeat_stale_fraction` of a lease while the lease still runs — the agent is
//!   probably gone, and the scheduler will expire the lease (and retry) unless it returns;
//! - `over_expected_duration`: it has run longer than expected — `stuck.duration_factor` times
//!   the p95 of its node's successful runs (at least `stuck.min_samples` of them in the
//!   window, and never less than `stuck.min_expected`), else its node's timeout when it has
//!   one; a node without either has no expectation.
//!
//! One finding per attempt: a stale heartbeat is named first, being the more urgent (the
//! attempt is about to be lost).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::config::StuckConfig;

pub const HEARTBEAT_STALE: &str = "heartbeat_stale";
pub const OVER_EXPECTED_DURATION: &str = "over_expected_duration";

/// What a node's history says about how long it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct History {
    /// Successful attempts in the window with a run time.
    pub samples: u64,
    pub p95_ms: Option<i64>,
}

/// The facts about one running attempt.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub started_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The node's timeout, `None` without one.
    pub timeout: Option<Duration>,
}

/// A stuck attempt's reason and message in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub reason: &'static str,
    pub message: String,
}

/// How long the node's attempts are expected to take, and what says so.
pub fn expected(
    history: History,
    timeout: Option<Duration>,
    config: &StuckConfig,
) -> Option<(Duration, String)> {
    match history.p95_ms {
        Some(p95) if history.samples >= config.min_samples => {
            let scaled = Duration::from_millis(u64::try_from(p95).unwrap_or(0))
                .mul_f64(config.duration_factor);
            let expected = scaled.max(config.min_expected);
            Some((
                expected,
                format!(
                    "{}x the p95 of its node's last {} successful runs ({})",
                    config.duration_factor,
                    history.samples,
                    human(Duration::from_millis(u64::try_from(p95).unwrap_or(0)))
                ),
            ))
        }
        _ => timeout.map(|t| (t, "its node's timeout".to_owned())),
    }
}

pub fn judge(
    running: &Running,
    history: History,
    lease: Duration,
    now: DateTime<Utc>,
    config: &StuckConfig,
) -> Option<Verdict> {
    if let (Some(beat), Some(expires)) = (running.last_heartbeat_at, running.lease_expires_at) {
        let silent = (now - beat).to_std().unwrap_or_default();
        let stale_after = lease.mul_f64(config.heartbeat_stale_fraction);
        if !lease.is_zero() && silent > stale_after && now < expires {
            let left = (expires - now).to_std().unwrap_or_default();
            return Some(Verdict {
                reason: HEARTBEAT_STALE,
                message: format!(
                    "its agent last sent a heartbeat {} ago (a lease lasts {}); the lease runs out in {} unless the agent comes back",
                    human(silent),
                    human(lease),
                    human(left)
                ),
            });
        }
    }
    let started = running.started_at?;
    let ran = (now - started).to_std().unwrap_or_default();
    let (limit, basis) = expected(history, running.timeout, config)?;
    (ran > limit).then(|| Verdict {
        reason: OVER_EXPECTED_DURATION,
        message: format!(
            "it has run for {}, longer than the {} expected ({basis})",
            human(ran),
            human(limit)
        ),
    })
}

/// `1h 5m`, `3m 20s`, `42s`, `800ms`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn ago(secs: i64) -> Option<DateTime<Utc>> {
        Some(now() - chrono::Duration::seconds(secs))
    }

    const LEASE: Duration = Duration::from_secs(30);

    fn healthy() -> Running {
        Running {
            started_at: ago(10),
            last_heartbeat_at: ago(1),
            lease_expires_at: Some(now() + chrono::Duration::seconds(29)),
            timeout: None,
        }
    }

    fn history(samples: u64, p95_s: i64) -> History {
        History {
            samples,
            p95_ms: Some(p95_s * 1000),
        }
    }

    #[test]
    fn stuck_a_silent_agent_with_a_live_lease_is_stale() {
        let config = StuckConfig::default();
        let silent = Running {
            last_heartbeat_at: ago(21),
            lease_expires_at: Some(now() + chrono::Duration::seconds(9)),
            ..healthy()
        };
        let verdict = judge(&silent, History::default(), LEASE, now(), &config);
        assert_eq!(verdict.as_ref().map(|v| v.reason), Some(HEARTBEAT_STALE));
        assert!(verdict.is_some_and(|v| v.message.contains("21s ago") && v.message.contains("9s")));
        // Within 2/3 of a lease: a late heartbeat, not a stale one.
        let late = Running {
            last_heartbeat_at: ago(19),
            ..silent
        };
        assert_eq!(
            judge(&late, History::default(), LEASE, now(), &config),
            None
        );
        // The lease ran out: the scheduler expires it, nothing to warn about here.
        let expired = Running {
            lease_expires_at: ago(1),
            ..silent
        };
        assert_eq!(
            judge(&expired, History::default(), LEASE, now(), &config),
            None
        );
    }

    #[test]
    fn stuck_over_three_times_the_p95_with_enough_samples() {
        let config = StuckConfig::default();
        let long = Running {
            started_at: ago(400),
            ..healthy()
        };
        let verdict = judge(&long, history(20, 100), LEASE, now(), &config);
        assert_eq!(
            verdict.as_ref().map(|v| v.reason),
            Some(OVER_EXPECTED_DURATION)
        );
        assert!(
            verdict.is_some_and(|v| v.message.contains("6m 40s") && v.message.contains("5m 0s"))
        );
        assert_eq!(judge(&long, history(20, 200), LEASE, now(), &config), None);
        // Too few samples and no timeout: no expectation.
        assert_eq!(judge(&long, history(19, 100), LEASE, now(), &config), None);
    }

    #[test]
    fn stuck_fast_nodes_get_the_floor_and_sparse_ones_their_timeout() {
        let config = StuckConfig::default();
        let forty = Running {
            started_at: ago(40),
            ..healthy()
        };
        assert_eq!(
            judge(&forty, history(50, 1), LEASE, now(), &config),
            None,
            "3s < 60s floor"
        );
        let seventy = Running {
            started_at: ago(70),
            ..healthy()
        };
        assert!(judge(&seventy, history(50, 1), LEASE, now(), &config).is_some());
        let timed = Running {
            timeout: Some(Duration::from_secs(30)),
            ..forty
        };
        let verdict = judge(&timed, history(2, 1), LEASE, now(), &config);
        assert!(verdict.is_some_and(|v| v.message.contains("its node's timeout")));
    }

    #[test]
    fn stuck_durations_read_in_plain_words() {
        assert_eq!(human(Duration::from_millis(800)), "800ms");
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(3900)), "1h 5m");
    }
}
