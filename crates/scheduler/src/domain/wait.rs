//! Pure helpers behind a run's wait state (`GetRunWaitState`): which live agents could take a
//! task by its labels, which of its labels no live agent offers, and the label sets the live
//! pool offers. No I/O; the store reads the agents, the handler assembles the answer.

use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// Whether an agent with `have` may run a task requiring `required` (every pair must match,
/// the rule the queue's claim applies).
pub fn matches(required: &Labels, have: &Labels) -> bool {
    required.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// How many of the live agents' label sets match `required`.
pub fn matching(required: &Labels, live: &[Labels]) -> u32 {
    live.iter().filter(|have| matches(required, have)).count() as u32
}

/// The required pairs that no live agent offers (each checked on its own: a pair offered by
/// some agent is not listed even when no single agent has every pair).
pub fn unoffered(required: &Labels, live: &[Labels]) -> Labels {
    required
        .iter()
        .filter(|(k, v)| !live.iter().any(|have| have.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The distinct label sets of the live agents with how many agents offer each, most common
/// first (ties in label order), at most `max`.
pub fn label_sets(live: &[Labels], max: usize) -> Vec<(Labels, u32)> {
    let mut counts: BTreeMap<&Labels, u32> = BTreeMap::new();
    for labels in live {
        *counts.entry(labels).or_default() += 1;
    }
    let mut sets: Vec<(Labels, u32)> = counts
        .into_iter()
        .map(|(labels, n)| (labels.clone(), n))
        .collect();
    // Stable: equal counts keep the map's (label) order.
    sets.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    sets.truncate(max);
    sets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn wait_matching_counts_agents_with_every_required_label() {
        let live = [
            labels(&[("os", "linux"), ("gpu", "true")]),
            labels(&[("os", "linux")]),
            labels(&[("os", "macos")]),
        ];
        assert_eq!(matching(&labels(&[]), &live), 3);
        assert_eq!(matching(&labels(&[("os", "linux")]), &live), 2);
        assert_eq!(
            matching(&labels(&[("os", "linux"), ("gpu", "true")]), &live),
            1
        );
        assert_eq!(matching(&labels(&[("os", "windows")]), &live), 0);
        assert_eq!(matching(&labels(&[("os", "linux")]), &[]), 0);
    }

    #[test]
    fn wait_unoffered_names_only_pairs_no_live_agent_has() {
        let live = [labels(&[("os", "linux")]), labels(&[("gpu", "true")])];
        let required = labels(&[("os", "linux"), ("gpu", "true"), ("arch", "arm64")]);
        assert_eq!(unoffered(&required, &live), labels(&[("arch", "arm64")]));
        // A value mismatch counts as not offered.
        assert_eq!(
            unoffered(&labels(&[("os", "macos")]), &live),
            labels(&[("os", "macos")])
        );
        assert!(unoffered(&labels(&[]), &[]).is_empty());
    }

    #[test]
    fn wait_label_sets_are_counted_most_common_first_and_bounded() {
        let live = [
            labels(&[("os", "macos")]),
            labels(&[("os", "linux")]),
            labels(&[("os", "linux")]),
            labels(&[]),
        ];
        let sets = label_sets(&live, 2);
        assert_eq!(
            sets,
            vec![(labels(&[("os", "linux")]), 2), (labels(&[]), 1)]
        );
        assert!(label_sets(&[], 5).is_empty());
    }
}
