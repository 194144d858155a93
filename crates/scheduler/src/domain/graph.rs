//! How a run moves through its workflow graph: which nodes are ready, what a node's shard
//! results add up to, which nodes a failure skips, when a bounded loop goes round again, and
//! what the run's outcome is once every node has one. Pure functions over the definition and
//! the nodes' states; the store applies what they decide.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use switchyard_workflow::{Definition, Node};

/// Where one node of a run stands (in its current iteration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Not started: waiting for what it needs.
    Pending,
    /// Tasks exist for it and not all are finished.
    Running,
    Succeeded,
    /// Some shards failed and the node allows partial results.
    Partial,
    Failed,
    /// Never ran because something it needs failed (or the run was cancelled).
    Skipped,
}

impl NodeStatus {
    pub fn is_done(self) -> bool {
        matches!(
            self,
            NodeStatus::Succeeded | NodeStatus::Partial | NodeStatus::Failed | NodeStatus::Skipped
        )
    }

    /// Whether nodes that need this one may start.
    pub fn lets_downstream_run(self) -> bool {
        matches!(self, NodeStatus::Succeeded | NodeStatus::Partial)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Pending => "pending",
            NodeStatus::Running => "running",
            NodeStatus::Succeeded => "succeeded",
            NodeStatus::Partial => "partial",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<NodeStatus> {
        [
            NodeStatus::Pending,
            NodeStatus::Running,
            NodeStatus::Succeeded,
            NodeStatus::Partial,
            NodeStatus::Failed,
            NodeStatus::Skipped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What a node's finished shards add up to, once every shard has finished.
pub fn node_outcome(node: &Node, succeeded: u32, failed: u32) -> Option<NodeStatus> {
    let shards = node.shards.max(1);
    if succeeded + failed < shards {
        return None;
    }
    Some(match (succeeded, failed) {
        (_, 0) => NodeStatus::Succeeded,
        (0, _) => NodeStatus::Failed,
        _ if node.allow_partial => NodeStatus::Partial,
        _ => NodeStatus::Failed,
    })
}

/// The final status of a run whose nodes are all done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Completed,
    PartialFailed,
    Failed,
}

/// The definition with its edges indexed both ways.
pub struct Graph<'d> {
    definition: &'d Definition,
    /// Node id → the nodes that need it.
    dependents: HashMap<&'d str, Vec<&'d str>>,
}

impl<'d> Graph<'d> {
    pub fn new(definition: &'d Definition) -> Graph<'d> {
        let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
        for node in &definition.nodes {
            for need in &node.needs {
                dependents
                    .entry(need.as_str())
                    .or_default()
                    .push(node.id.as_str());
            }
        }
        Graph {
            definition,
            dependents,
        }
    }

    pub fn node(&self, id: &str) -> Option<&'d Node> {
        self.definition.node(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &'d Node> {
        self.definition.nodes.iter()
    }

    /// Pending nodes whose every need has let them run: start these now.
    pub fn ready(&self, states: &HashMap<String, NodeStatus>) -> Vec<&'d Node> {
        self.nodes()
            .filter(|n| status(states, &n.id) == NodeStatus::Pending)
            .filter(|n| {
                n.needs
                    .iter()
                    .all(|need| status(states, need).lets_downstream_run())
            })
            .collect()
    }

    /// Pending nodes that can never run because a need failed or was skipped, transitively.
    pub fn skipped(&self, states: &HashMap<String, NodeStatus>) -> Vec<&'d Node> {
        let mut dead: BTreeSet<&str> = self
            .nodes()
            .filter(|n| {
                matches!(
                    status(states, &n.id),
                    NodeStatus::Failed | NodeStatus::Skipped
                )
            })
            .map(|n| n.id.as_str())
            .collect();
        let mut out = Vec::new();
        let mut frontier: Vec<&str> = dead.iter().copied().collect();
        while let Some(id) = frontier.pop() {
            for &dependent in self.dependents.get(id).into_iter().flatten() {
                if status(states, dependent) == NodeStatus::Pending && dead.insert(dependent) {
                    if let Some(node) = self.node(dependent) {
                        out.push(node);
                    }
                    frontier.push(dependent);
                }
            }
        }
        out.sort_by_key(|n| n.id.as_str());
        out
    }

    /// The run's outcome once every node is done; `None` while anything is pending or running.
    pub fn outcome(&self, states: &HashMap<String, NodeStatus>) -> Option<RunOutcome> {
        let all: Vec<NodeStatus> = self.nodes().map(|n| status(states, &n.id)).collect();
        if !all.iter().all(|s| s.is_done()) {
            return None;
        }
        Some(
            if all
                .iter()
                .any(|s| matches!(s, NodeStatus::Failed | NodeStatus::Skipped))
            {
                RunOutcome::Failed
            } else if all.contains(&NodeStatus::Partial) {
                RunOutcome::PartialFailed
            } else {
                RunOutcome::Completed
            },
        )
    }

    /// After `node` succeeded in `iteration` (0-based): whether its loop goes round again on
    /// `state`, and if so which nodes start over (the loop target, `node`, and every node
    /// between them), in definition order.
    pub fn loop_again(
        &self,
        node: &Node,
        iteration: u32,
        state: &serde_json::Value,
    ) -> Option<Vec<&'d Node>> {
        let loop_back = node.loop_back.as_ref()?;
        if iteration + 1 >= loop_back.max_iterations {
            return None;
        }
        if state.get(&loop_back.when.key) != Some(&loop_back.when.equals) {
            return None;
        }
        let upstream = self.ancestors_or_self(&node.id);
        let downstream = self.descendants_or_self(&loop_back.to);
        Some(
            self.nodes()
                .filter(|n| upstream.contains(n.id.as_str()) && downstream.contains(n.id.as_str()))
                .collect(),
        )
    }

    fn ancestors_or_self(&self, id: &str) -> BTreeSet<&'d str> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![id];
        while let Some(current) = stack.pop() {
            if let Some(node) = self.node(current)
                && seen.insert(node.id.as_str())
            {
                stack.extend(node.needs.iter().map(String::as_str));
            }
        }
        seen
    }

    fn descendants_or_self(&self, id: &str) -> BTreeSet<&'d str> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![id];
        while let Some(current) = stack.pop() {
            if let Some(node) = self.node(current)
                && seen.insert(node.id.as_str())
            {
                stack.extend(self.dependents.get(node.id.as_str()).into_iter().flatten());
            }
        }
        seen
    }
}

fn status(states: &HashMap<String, NodeStatus>, id: &str) -> NodeStatus {
    states.get(id).copied().unwrap_or(NodeStatus::Pending)
}

/// Merges a node's outputs into the run's current state: top-level keys of `outputs`
/// replace the state's. Non-object outputs are kept under the node's id.
pub fn merge_outputs(state: &mut serde_json::Value, node: &str, outputs: serde_json::Value) {
    if !state.is_object() {
        *state = serde_json::Value::Object(Default::default());
    }
    let Some(target) = state.as_object_mut() else {
        return;
    };
    match outputs {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                target.insert(key, value);
            }
        }
        serde_json::Value::Null => {}
        other => {
            target.insert(node.to_owned(), other);
        }
    }
}

/// Node states as a sorted map, for logs and tests.
pub fn describe(states: &HashMap<String, NodeStatus>) -> BTreeMap<&str, &'static str> {
    states
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_workflow::{Format, parse};

    fn definition(json: &str) -> Definition {
        parse(json, Format::Json).expect("valid").definition
    }

    fn states(pairs: &[(&str, NodeStatus)]) -> HashMap<String, NodeStatus> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn ids(nodes: &[&Node]) -> Vec<String> {
        nodes.iter().map(|n| n.id.clone()).collect()
    }

    const DIAMOND: &str = r#"{"nodes": [
        {"id": "build", "run": "b"},
        {"id": "unit", "needs": ["build"], "run": "u", "shards": 4, "allow_partial": true},
        {"id": "lint", "needs": ["build"], "run": "l"},
        {"id": "report", "needs": ["unit", "lint"], "run": "r"}]}"#;

    #[test]
    fn nodes_become_ready_when_everything_they_need_has_let_them() {
        let def = definition(DIAMOND);
        let graph = Graph::new(&def);
        use NodeStatus::*;
        assert_eq!(ids(&graph.ready(&states(&[]))), vec!["build"]);
        assert_eq!(
            ids(&graph.ready(&states(&[("build", Succeeded)]))),
            vec!["unit", "lint"]
        );
        let partway = states(&[("build", Succeeded), ("unit", Partial), ("lint", Running)]);
        assert!(graph.ready(&partway).is_empty());
        let both = states(&[("build", Succeeded), ("unit", Partial), ("lint", Succeeded)]);
        assert_eq!(ids(&graph.ready(&both)), vec!["report"]);
        assert_eq!(graph.outcome(&both), None);
        let done = states(&[
            ("build", Succeeded),
            ("unit", Partial),
            ("lint", Succeeded),
            ("report", Succeeded),
        ]);
        assert_eq!(graph.outcome(&done), Some(RunOutcome::PartialFailed));
    }

    #[test]
    fn a_failure_skips_everything_downstream_and_fails_the_run() {
        let def = definition(DIAMOND);
        let graph = Graph::new(&def);
        use NodeStatus::*;
        let failed = states(&[("build", Succeeded), ("lint", Failed), ("unit", Running)]);
        assert_eq!(ids(&graph.skipped(&failed)), vec!["report"]);
        let early = states(&[("build", Failed)]);
        assert_eq!(ids(&graph.skipped(&early)), vec!["lint", "report", "unit"]);
        let settled = states(&[
            ("build", Failed),
            ("lint", Skipped),
            ("unit", Skipped),
            ("report", Skipped),
        ]);
        assert_eq!(graph.outcome(&settled), Some(RunOutcome::Failed));
    }

    #[test]
    fn shard_results_add_up_by_the_partial_rule() {
        let def = definition(DIAMOND);
        let unit = def.node("unit").expect("unit");
        let lint = def.node("lint").expect("lint");
        assert_eq!(node_outcome(unit, 3, 0), None, "one shard still out");
        assert_eq!(node_outcome(unit, 4, 0), Some(NodeStatus::Succeeded));
        assert_eq!(node_outcome(unit, 3, 1), Some(NodeStatus::Partial));
        assert_eq!(node_outcome(unit, 0, 4), Some(NodeStatus::Failed));
        assert_eq!(node_outcome(lint, 0, 1), Some(NodeStatus::Failed));
        assert_eq!(node_outcome(lint, 1, 0), Some(NodeStatus::Succeeded));
    }

    #[test]
    fn a_bounded_loop_repeats_the_nodes_between_target_and_source() {
        let def = definition(
            r#"{"nodes": [
            {"id": "plan", "run": "p"},
            {"id": "fix", "needs": ["plan"], "run": "f"},
            {"id": "review", "needs": ["fix"], "run": "r",
             "loop": {"to": "fix", "max_iterations": 3, "when": {"key": "approved", "equals": false}}},
            {"id": "ship", "needs": ["review"], "run": "s"}]}"#,
        );
        let graph = Graph::new(&def);
        let review = def.node("review").expect("review");
        let rejected = serde_json::json!({"approved": false});
        let approved = serde_json::json!({"approved": true});
        assert_eq!(
            graph.loop_again(review, 0, &rejected).map(|n| ids(&n)),
            Some(vec!["fix".to_owned(), "review".to_owned()])
        );
        assert_eq!(
            graph
                .loop_again(review, 1, &rejected)
                .map(|n| ids(&n))
                .map(|v| v.len()),
            Some(2)
        );
        assert!(
            graph.loop_again(review, 2, &rejected).is_none(),
            "the third iteration is the last"
        );
        assert!(graph.loop_again(review, 0, &approved).is_none());
        assert!(
            graph
                .loop_again(review, 0, &serde_json::json!({}))
                .is_none()
        );
    }

    #[test]
    fn outputs_merge_into_the_state() {
        let mut state = serde_json::json!({"branch": "main", "approved": false});
        merge_outputs(
            &mut state,
            "review",
            serde_json::json!({"approved": true, "score": 9}),
        );
        merge_outputs(&mut state, "count", serde_json::json!(3));
        merge_outputs(&mut state, "none", serde_json::Value::Null);
        assert_eq!(
            state,
            serde_json::json!({"branch": "main", "approved": true, "score": 9, "count": 3})
        );
    }

    proptest::proptest! {
        /// Driving any valid DAG to the end by finishing ready nodes in any order visits every
        /// node exactly once and ends with an outcome.
        #[test]
        fn any_dag_runs_to_an_outcome(
            edges in proptest::collection::vec(proptest::collection::vec(proptest::bool::ANY, 8), 8),
            fail_at in proptest::option::of(0usize..8),
        ) {
            let nodes: Vec<serde_json::Value> = (0..8)
                .map(|i| {
                    let needs: Vec<String> = (0..i)
                        .filter(|&j| edges[i][j])
                        .map(|j| format!("n{j}"))
                        .collect();
                    serde_json::json!({"id": format!("n{i}"), "run": "x", "needs": needs})
                })
                .collect();
            let def = definition(&serde_json::json!({"nodes": nodes}).to_string());
            let graph = Graph::new(&def);
            let mut states: HashMap<String, NodeStatus> = HashMap::new();
            let mut started = 0;
            for _ in 0..20 {
                for node in graph.skipped(&states) {
                    states.insert(node.id.clone(), NodeStatus::Skipped);
                }
                let ready = graph.ready(&states);
                if ready.is_empty() {
                    break;
                }
                for node in ready {
                    started += 1;
                    let failed = fail_at.is_some_and(|f| node.id == format!("n{f}"));
                    let status = if failed { NodeStatus::Failed } else { NodeStatus::Succeeded };
                    states.insert(node.id.clone(), status);
                }
            }
            let outcome = graph.outcome(&states);
            proptest::prop_assert!(outcome.is_some(), "stuck: {:?}", describe(&states));
            proptest::prop_assert!(started <= 8);
            if fail_at.is_none() {
                proptest::prop_assert_eq!(outcome, Some(RunOutcome::Completed));
                proptest::prop_assert_eq!(started, 8);
            } else {
                proptest::prop_assert_eq!(outcome, Some(RunOutcome::Failed));
            }
        }
    }
}
