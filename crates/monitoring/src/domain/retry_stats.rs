//! Retry statistics math: a node's attempt counts and its most frequent error reasons (both
//! aggregated by the store in SQL) become one [`NodeRetries`] each, with the retry rate.
//! Pure; the store's queries are in `store::statistics`.

use std::collections::BTreeMap;

/// Error reasons listed per node.
pub const TOP_ERRORS: usize = 5;

/// Attempt counts of one (project, workflow, node) over the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub project_id: String,
    pub workflow: String,
    pub node: String,
    /// Attempts that ended in the window.
    pub attempts: u64,
    /// Of those, attempts beyond a task's first.
    pub retries: u64,
    /// Successful attempts beyond a task's first: tasks that failed and then succeeded.
    pub succeeded_after_retry: u64,
    pub dead_lettered: u64,
}

/// One node's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRetries {
    pub counts: Counts,
    /// `retries / attempts`, 0 without attempts.
    pub retry_rate: f64,
    /// Most frequent first, at most [`TOP_ERRORS`].
    pub top_errors: Vec<(String, u64)>,
}

/// `retries / attempts`, 0 when nothing ran; never above 1.
pub fn retry_rate(retries: u64, attempts: u64) -> f64 {
    if attempts == 0 {
        return 0.0;
    }
    (retries as f64 / attempts as f64).min(1.0)
}

/// Joins each node's counts with its error reasons `(project, workflow, node, reason, count)`,
/// keeping the most frequent [`TOP_ERRORS`] (ties by reason). Nodes keep the counts' order.
pub fn assemble(
    counts: Vec<Counts>,
    errors: Vec<(String, String, String, String, u64)>,
) -> Vec<NodeRetries> {
    let mut by_node: BTreeMap<(String, String, String), Vec<(String, u64)>> = BTreeMap::new();
    for (project, workflow, node, reason, n) in errors {
        by_node
            .entry((project, workflow, node))
            .or_default()
            .push((reason, n));
    }
    counts
        .into_iter()
        .map(|c| {
            let key = (c.project_id.clone(), c.workflow.clone(), c.node.clone());
            let mut top = by_node.remove(&key).unwrap_or_default();
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(TOP_ERRORS);
            NodeRetries {
                retry_rate: retry_rate(c.retries, c.attempts),
                counts: c,
                top_errors: top,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(node: &str, attempts: u64, retries: u64) -> Counts {
        Counts {
            project_id: "p".into(),
            workflow: "w".into(),
            node: node.into(),
            attempts,
            retries,
            ..Counts::default()
        }
    }

    #[test]
    fn retry_rate_is_retries_over_attempts() {
        assert_eq!(retry_rate(0, 0), 0.0);
        assert_eq!(retry_rate(1, 4), 0.25);
        assert_eq!(retry_rate(2, 3), 2.0 / 3.0);
        assert_eq!(
            retry_rate(5, 4),
            1.0,
            "never above 1 whatever the counts say"
        );
    }

    #[test]
    fn assemble_keeps_the_top_five_errors_per_node() {
        let error = |node: &str, reason: &str, n| {
            (
                "p".to_owned(),
                "w".to_owned(),
                node.to_owned(),
                reason.to_owned(),
                n,
            )
        };
        let mut errors: Vec<_> = (1..=7)
            .map(|i| error("test", &format!("exit_code_{i}"), i))
            .collect();
        errors.push(error("build", "timed_out", 2));
        errors.push(error("build", "lease_expired", 2));
        errors.push(error("other", "exit_code_9", 1));
        let stats = assemble(vec![counts("test", 10, 4), counts("build", 3, 1)], errors);
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[0].counts.node, "test");
        assert_eq!(stats[0].retry_rate, 0.4);
        let reasons: Vec<&str> = stats[0]
            .top_errors
            .iter()
            .map(|(r, _)| r.as_str())
            .collect();
        assert_eq!(
            reasons,
            [
                "exit_code_7",
                "exit_code_6",
                "exit_code_5",
                "exit_code_4",
                "exit_code_3"
            ]
        );
        // Ties are ordered by reason; a node without counts is not invented.
        assert_eq!(
            stats[1].top_errors,
            [("lease_expired".to_owned(), 2), ("timed_out".to_owned(), 2)]
        );
    }
}
