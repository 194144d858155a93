//! Concurrency limits at claim time: which of the ready tasks a claimer picked may be leased
//! without a project or a node going over its limit. The store counts what is running under a
//! lock per limited key; this decides, in priority order, with those counts.

use std::collections::HashMap;

/// A ready task a claimer picked, with the limits that apply to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i64,
    pub project_id: String,
    pub run_id: String,
    pub node: String,
    /// Most running tasks of the project; `None` for no limit.
    pub project_limit: Option<u32>,
    /// Most running tasks of this (run, node); `None` for no limit.
    pub node_limit: Option<u32>,
}

impl Candidate {
    pub fn is_limited(&self) -> bool {
        self.project_limit.is_some() || self.node_limit.is_some()
    }
}

/// Tasks running now, per limited project and per limited (run, node).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Running {
    pub projects: HashMap<String, u32>,
    pub nodes: HashMap<(String, String), u32>,
}

/// The ids of the candidates that may be leased, at most `max`, in the candidates' order
/// (best first): a candidate is taken when its project and its node both have a free slot,
/// counting the ones taken before it. `running` ends up counting them too.
pub fn admit(candidates: &[Candidate], running: &mut Running, max: usize) -> Vec<i64> {
    let mut taken = Vec::new();
    for c in candidates {
        if taken.len() >= max {
            break;
        }
        let node_key = (c.run_id.clone(), c.node.clone());
        let project_full = c.project_limit.is_some_and(|limit| {
            running.projects.get(&c.project_id).copied().unwrap_or(0) >= limit
        });
        let node_full = c
            .node_limit
            .is_some_and(|limit| running.nodes.get(&node_key).copied().unwrap_or(0) >= limit);
        if project_full || node_full {
            continue;
        }
        if c.project_limit.is_some() {
            *running.projects.entry(c.project_id.clone()).or_default() += 1;
        }
        if c.node_limit.is_some() {
            *running.nodes.entry(node_key).or_default() += 1;
        }
        taken.push(c.id);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(
        id: i64,
        project: &str,
        node: &str,
        project_limit: Option<u32>,
        node_limit: Option<u32>,
    ) -> Candidate {
        Candidate {
            id,
            project_id: project.into(),
            run_id: "run".into(),
            node: node.into(),
            project_limit,
            node_limit,
        }
    }

    #[test]
    fn unlimited_tasks_are_taken_up_to_max() {
        let all: Vec<Candidate> = (1..=5).map(|i| task(i, "p", "n", None, None)).collect();
        assert_eq!(admit(&all, &mut Running::default(), 3), vec![1, 2, 3]);
    }

    #[test]
    fn a_node_limit_counts_what_already_runs() {
        let all: Vec<Candidate> = (1..=5)
            .map(|i| task(i, "p", "test", None, Some(2)))
            .collect();
        let mut running = Running::default();
        running.nodes.insert(("run".into(), "test".into()), 1);
        assert_eq!(admit(&all, &mut running, 10), vec![1]);
        assert_eq!(running.nodes[&("run".to_owned(), "test".to_owned())], 2);
    }

    #[test]
    fn a_full_project_lets_other_projects_through() {
        let all = vec![
            task(1, "busy", "n", Some(1), None),
            task(2, "busy", "n", Some(1), None),
            task(3, "free", "n", None, None),
        ];
        let mut running = Running::default();
        running.projects.insert("busy".into(), 1);
        assert_eq!(admit(&all, &mut running, 10), vec![3]);
    }

    #[test]
    fn both_limits_must_have_room() {
        let all = vec![
            task(1, "p", "a", Some(2), Some(1)),
            task(2, "p", "a", Some(2), Some(1)),
            task(3, "p", "b", Some(2), None),
            task(4, "p", "c", Some(2), None),
        ];
        assert_eq!(admit(&all, &mut Running::default(), 10), vec![1, 3]);
    }

    proptest::proptest! {
        /// Whatever runs already and whatever is picked, no limit is ever exceeded by what
        /// is admitted, and nothing is admitted twice.
        #[test]
        fn no_limit_is_exceeded(
            picks in proptest::collection::vec((0u8..3, 0u8..3, proptest::option::of(1u32..4), proptest::option::of(1u32..4)), 0..40),
            already in proptest::collection::vec(0u32..4, 6),
            max in 0usize..50,
        ) {
            // One limit per project and per node, as the store reads them.
            let project_limit = |p: u8| picks.iter().find(|x| x.0 == p).and_then(|x| x.2);
            let node_limit = |n: u8| picks.iter().find(|x| x.1 == n).and_then(|x| x.3);
            let candidates: Vec<Candidate> = picks.iter().enumerate().map(|(i, (p, n, _, _))| Candidate {
                id: i as i64,
                project_id: format!("p{p}"),
                run_id: "r".into(),
                node: format!("n{n}"),
                project_limit: project_limit(*p),
                node_limit: node_limit(*n),
            }).collect();
            let mut running = Running::default();
            for i in 0..3u8 {
                running.projects.insert(format!("p{i}"), already[i as usize]);
                running.nodes.insert(("r".into(), format!("n{i}")), already[3 + i as usize]);
            }
            let before = running.clone();
            let taken = admit(&candidates, &mut running, max);
            proptest::prop_assert!(taken.len() <= max);
            let mut unique = taken.clone();
            unique.sort_unstable();
            unique.dedup();
            proptest::prop_assert_eq!(unique.len(), taken.len());
            for i in 0..3u8 {
                let p = format!("p{i}");
                let n = format!("n{i}");
                let taken_p = taken.iter().filter(|id| candidates[**id as usize].project_id == p).count() as u32;
                let taken_n = taken.iter().filter(|id| candidates[**id as usize].node == n).count() as u32;
                if let Some(limit) = project_limit(i) {
                    proptest::prop_assert!(taken_p == 0 || before.projects[&p] + taken_p <= limit);
                }
                if let Some(limit) = node_limit(i) {
                    proptest::prop_assert!(taken_n == 0 || before.nodes[&("r".to_owned(), n.clone())] + taken_n <= limit);
                }
            }
        }
    }
}
