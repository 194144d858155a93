//! The definition types. Field names are the HTTP contract; defaults are what a CI author
//! expects when a field is left out (one shard, one attempt, no timeout).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A workflow: a graph of nodes linked by `needs`, optionally with bounded loops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Deadline for the whole run, in seconds; the run ends `timed_out` past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    pub nodes: Vec<Node>,
}

/// One step: a shell command run by an agent, once per shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    /// Run with `sh -c` by the agent.
    pub run: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub shards: u32,
    /// When some shards fail and others pass, the run ends `partial_failed` instead of
    /// `failed`, and downstream nodes still run.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_partial: bool,
    /// Start-to-close timeout of one attempt, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Agent labels this node requires (all must match).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra environment variables for the command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Higher runs first among ready tasks; 0 is normal.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// At most this many of this node's tasks run at once; unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Go back to an earlier node after this one while a condition holds, at most
    /// `max_iterations` times (e.g. review → fix → review).
    #[serde(default, rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_back: Option<LoopBack>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    #[serde(default = "one")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    #[serde(default = "default_multiplier")]
    pub backoff_multiplier: f64,
    /// Exit codes that fail the task at once, without another attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_retryable_exit_codes: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopBack {
    /// The node to go back to: this node or one it (transitively) needs.
    pub to: String,
    /// Upper bound on iterations; required so that every loop ends.
    pub max_iterations: u32,
    /// Loop while this holds on the run's current state (merged node outputs).
    pub when: LoopCondition,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopCondition {
    /// Key in the current state.
    pub key: String,
    pub equals: serde_json::Value,
}

fn one() -> u32 {
    1
}
fn is_one(value: &u32) -> bool {
    *value == 1
}
fn is_false(value: &bool) -> bool {
    !*value
}
fn is_zero(value: &i32) -> bool {
    *value == 0
}
fn default_initial_backoff_ms() -> u64 {
    1_000
}
fn default_max_backoff_ms() -> u64 {
    60_000
}
fn default_multiplier() -> f64 {
    2.0
}

impl Definition {
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Canonical JSON: fields in declaration order, maps sorted, defaults omitted. Two
    /// definitions that mean the same render the same.
    pub fn canonical_json(&self) -> String {
        // Serializing plain structs, strings, numbers and BTreeMaps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// SHA-256 of the canonical JSON, hex.
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(self.canonical_json().as_bytes()))
    }
}

impl RetryPolicy {
    /// Backoff before attempt `next_attempt` (2 = the first retry), before jitter.
    pub fn backoff_ms(&self, next_attempt: u32) -> u64 {
        let exponent = next_attempt.saturating_sub(2).min(63) as i32;
        let raw = self.initial_backoff_ms as f64 * self.backoff_multiplier.powi(exponent);
        if raw.is_finite() {
            (raw as u64).min(self.max_backoff_ms)
        } else {
            self.max_backoff_ms
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 350,
            backoff_multiplier: 2.0,
            non_retryable_exit_codes: vec![],
        };
        assert_eq!(policy.backoff_ms(2), 100);
        assert_eq!(policy.backoff_ms(3), 200);
        assert_eq!(policy.backoff_ms(4), 350);
        assert_eq!(policy.backoff_ms(u32::MAX), 350);
    }
}
