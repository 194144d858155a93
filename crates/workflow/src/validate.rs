//! Validation: every problem of a definition at once, each with the path of the field, a
//! stable reason and a sentence for people.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{Definition, Node, RetryPolicy};

pub const MAX_NODES: usize = 1_000;
pub const MAX_SHARDS: u32 = 10_000;
/// The longest timeout a step or a run may ask for: a week. Longer is a typo, and the
/// scheduler's deadline arithmetic stays far from overflow.
pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;
pub const MAX_ATTEMPTS: u32 = 100;
pub const MAX_ITERATIONS: u32 = 1_000;
const MAX_ID_LEN: usize = 64;

/// One problem with a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// e.g. `nodes[2].needs[0]`.
    pub field: String,
    /// Stable, machine-readable, e.g. `unknown_dependency`.
    pub reason: &'static str,
    pub message: String,
}

fn problem(field: String, reason: &'static str, message: String) -> Problem {
    Problem {
        field,
        reason,
        message,
    }
}

/// Every problem of `definition`; empty when it is valid.
pub fn validate(definition: &Definition) -> Vec<Problem> {
    let mut problems = Vec::new();
    if definition.nodes.is_empty() {
        problems.push(problem(
            "nodes".into(),
            "required",
            "a workflow needs at least one node".into(),
        ));
    }
    if definition.nodes.len() > MAX_NODES {
        problems.push(problem(
            "nodes".into(),
            "too_many_nodes",
            format!("at most {MAX_NODES} nodes are allowed"),
        ));
    }
    if let Some(message) = definition.timeout_s.and_then(timeout_problem) {
        problems.push(problem("timeout_s".into(), "invalid_timeout", message));
    }
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, node) in definition.nodes.iter().enumerate() {
        if let Some(first) = first_index.get(node.id.as_str()) {
            problems.push(problem(
                format!("nodes[{i}].id"),
                "duplicate_id",
                format!("node id `{}` is already used by nodes[{first}]", node.id),
            ));
        } else {
            first_index.insert(&node.id, i);
        }
        check_node(i, node, &mut problems);
    }
    check_needs(definition, &first_index, &mut problems);
    // Cycles and loop targets only make sense over known, unique ids.
    if !problems.iter().any(|p| {
        matches!(
            p.reason,
            "unknown_dependency" | "duplicate_id" | "self_dependency"
        )
    }) {
        check_cycles(definition, &mut problems);
        check_loops(definition, &mut problems);
    }
    problems
}

fn check_node(i: usize, node: &Node, problems: &mut Vec<Problem>) {
    let at = |field: &str| format!("nodes[{i}].{field}");
    if !valid_id(&node.id) {
        problems.push(problem(
            at("id"),
            "invalid_id",
            format!(
                "node id `{}` must be 1-{MAX_ID_LEN} characters of letters, digits, `-` and `_`, starting with a letter or digit",
                node.id
            ),
        ));
    }
    if node.run.trim().is_empty() {
        problems.push(problem(
            at("run"),
            "required",
            "run must be a non-empty command".into(),
        ));
    }
    if node.shards == 0 {
        problems.push(problem(
            at("shards"),
            "zero_shards",
            "shards must be at least 1".into(),
        ));
    } else if node.shards > MAX_SHARDS {
        problems.push(problem(
            at("shards"),
            "too_many_shards",
            format!("shards must be at most {MAX_SHARDS}"),
        ));
    }
    if let Some(message) = node.timeout_s.and_then(timeout_problem) {
        problems.push(problem(at("timeout_s"), "invalid_timeout", message));
    }
    if node.concurrency == Some(0) {
        problems.push(problem(
            at("concurrency"),
            "invalid_concurrency",
            "concurrency must be at least 1 (leave it out for no limit)".into(),
        ));
    }
    if let Some(retry) = &node.retry {
        check_retry(i, retry, problems);
    }
    check_env(i, &node.env, problems);
    for key in node.labels.keys() {
        if key.trim().is_empty() {
            problems.push(problem(
                at("labels"),
                "invalid_label",
                "label names must not be empty".into(),
            ));
        }
    }
}

fn check_retry(i: usize, retry: &RetryPolicy, problems: &mut Vec<Problem>) {
    let at = |field: &str| format!("nodes[{i}].retry.{field}");
    if retry.max_attempts == 0 || retry.max_attempts > MAX_ATTEMPTS {
        problems.push(problem(
            at("max_attempts"),
            "invalid_retry",
            format!("max_attempts must be between 1 and {MAX_ATTEMPTS}"),
        ));
    }
    if retry.initial_backoff_ms == 0 {
        problems.push(problem(
            at("initial_backoff_ms"),
            "invalid_retry",
            "initial_backoff_ms must be at least 1".into(),
        ));
    }
    if retry.max_backoff_ms < retry.initial_backoff_ms {
        problems.push(problem(
            at("max_backoff_ms"),
            "invalid_retry",
            format!(
                "max_backoff_ms ({}) must not be below initial_backoff_ms ({})",
                retry.max_backoff_ms, retry.initial_backoff_ms
            ),
        ));
    }
    if !retry.backoff_multiplier.is_finite() || retry.backoff_multiplier < 1.0 {
        problems.push(problem(
            at("backoff_multiplier"),
            "invalid_retry",
            "backoff_multiplier must be a number of at least 1".into(),
        ));
    }
    for (j, code) in retry.non_retryable_exit_codes.iter().enumerate() {
        if !(1..=255).contains(code) {
            problems.push(problem(
                format!("nodes[{i}].retry.non_retryable_exit_codes[{j}]"),
                "invalid_retry",
                format!("{code} is not a failing exit code (1-255)"),
            ));
        }
    }
}

fn check_env(i: usize, env: &BTreeMap<String, String>, problems: &mut Vec<Problem>) {
    for key in env.keys() {
        let well_formed = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            problems.push(problem(
                format!("nodes[{i}].env.{key}"),
                "invalid_env",
                format!("`{key}` is not a valid environment variable name"),
            ));
        } else if key.starts_with("SWITCHYARD_") {
            problems.push(problem(
                format!("nodes[{i}].env.{key}"),
                "reserved_env",
                "SWITCHYARD_* variables are set by the agent".into(),
            ));
        }
    }
}

fn check_needs(definition: &Definition, ids: &HashMap<&str, usize>, problems: &mut Vec<Problem>) {
    for (i, node) in definition.nodes.iter().enumerate() {
        let mut seen = HashSet::new();
        for (j, need) in node.needs.iter().enumerate() {
            let field = format!("nodes[{i}].needs[{j}]");
            if need == &node.id {
                problems.push(problem(
                    field,
                    "self_dependency",
                    format!("node `{need}` needs itself"),
                ));
            } else if !ids.contains_key(need.as_str()) {
                problems.push(problem(
                    field,
                    "unknown_dependency",
                    format!("node `{}` needs `{need}`, which is not a node", node.id),
                ));
            } else if !seen.insert(need.as_str()) {
                problems.push(problem(
                    field,
                    "duplicate_dependency",
                    format!("`{need}` is listed twice"),
                ));
            }
        }
    }
}

/// Reports each cycle in `needs` once, with its path.
fn check_cycles(definition: &Definition, problems: &mut Vec<Problem>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let index: HashMap<&str, usize> = definition
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; definition.nodes.len()];
    for start in 0..definition.nodes.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next dependency to visit); the stack is the current path.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnStack;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let needs = &definition.nodes[node].needs;
            if *next == needs.len() {
                marks[node] = Mark::Done;
                stack.pop();
                continue;
            }
            let dep = index[needs[*next].as_str()];
            *next += 1;
            match marks[dep] {
                Mark::New => {
                    marks[dep] = Mark::OnStack;
                    stack.push((dep, 0));
                }
                Mark::OnStack => {
                    let from = stack.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                    let mut path: Vec<&str> = stack[from..]
                        .iter()
                        .map(|&(n, _)| definition.nodes[n].id.as_str())
                        .collect();
                    path.push(&definition.nodes[dep].id);
                    problems.push(problem(
                        format!("nodes[{dep}].needs"),
                        "cycle",
                        format!(
                            "needs form a cycle: {} (express a repeat as a `loop` with max_iterations)",
                            path.join(" → ")
                        ),
                    ));
                }
                Mark::Done => {}
            }
        }
    }
}

fn check_loops(definition: &Definition, problems: &mut Vec<Problem>) {
    for (i, node) in definition.nodes.iter().enumerate() {
        let Some(loop_back) = &node.loop_back else {
            continue;
        };
        let at = |field: &str| format!("nodes[{i}].loop.{field}");
        if loop_back.max_iterations == 0 || loop_back.max_iterations > MAX_ITERATIONS {
            problems.push(problem(
                at("max_iterations"),
                "unbounded_loop",
                format!("max_iterations must be between 1 and {MAX_ITERATIONS}"),
            ));
        }
        if loop_back.when.key.trim().is_empty() {
            problems.push(problem(
                at("when.key"),
                "required",
                "a loop needs the state key its condition reads".into(),
            ));
        }
        if definition.node(&loop_back.to).is_none() {
            problems.push(problem(
                at("to"),
                "unknown_loop_target",
                format!("loop target `{}` is not a node", loop_back.to),
            ));
        } else if !ancestors_or_self(definition, &node.id).contains(loop_back.to.as_str()) {
            problems.push(problem(
                at("to"),
                "invalid_loop_target",
                format!(
                    "loop target `{}` must be `{}` or a node it needs (directly or not)",
                    loop_back.to, node.id
                ),
            ));
        }
    }
}

fn ancestors_or_self<'a>(definition: &'a Definition, id: &'a str) -> HashSet<&'a str> {
    let mut seen: HashSet<&str> = HashSet::from([id]);
    let mut todo = vec![id];
    while let Some(current) = todo.pop() {
        if let Some(node) = definition.node(current) {
            for need in &node.needs {
                if seen.insert(need) {
                    todo.push(need);
                }
            }
        }
    }
    seen
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn timeout_problem(seconds: u64) -> Option<String> {
    match seconds {
        0 => Some("timeout_s must be at least 1".into()),
        s if s > MAX_TIMEOUT_S => Some(format!(
            "timeout_s must be at most {MAX_TIMEOUT_S} (7 days)"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, parse};

    fn problems_of(json: &str) -> Vec<(String, &'static str)> {
        let parsed = parse(json, Format::Json).expect("parses");
        validate(&parsed.definition)
            .into_iter()
            .map(|p| (p.field, p.reason))
            .collect()
    }

    #[test]
    fn the_api_example_is_valid() {
        let json = r#"{"nodes": [
            {"id": "build", "run": "make build", "timeout_s": 600},
            {"id": "test", "needs": ["build"], "run": "make test SHARD=$SWITCHYARD_SHARD_INDEX",
             "shards": 4, "allow_partial": true,
             "retry": {"max_attempts": 3, "initial_backoff_ms": 1000, "max_backoff_ms": 60000,
                       "non_retryable_exit_codes": [2]}},
            {"id": "report", "needs": ["test"], "run": "make report"}]}"#;
        assert_eq!(problems_of(json), vec![]);
    }

    /// A timeout past a week (a typo, or an attempt to overflow deadline arithmetic) is
    /// refused for the run and for a step.
    #[test]
    fn timeouts_are_bounded() {
        let json = r#"{"timeout_s": 10000000000000, "nodes": [
            {"id": "a", "run": "x", "timeout_s": 18446744073709551615},
            {"id": "b", "run": "x", "timeout_s": 604800}]}"#;
        assert_eq!(
            problems_of(json),
            vec![
                ("timeout_s".to_owned(), "invalid_timeout"),
                ("nodes[0].timeout_s".to_owned(), "invalid_timeout")
            ]
        );
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let json = r#"{"nodes": [
            {"id": "a", "run": "x", "shards": 0},
            {"id": "a", "run": "", "needs": ["ghost"]},
            {"id": "c", "run": "x", "retry": {"max_attempts": 0, "initial_backoff_ms": 10,
                                             "max_backoff_ms": 5, "non_retryable_exit_codes": [0]}}]}"#;
        assert_eq!(
            problems_of(json),
            vec![
                ("nodes[0].shards".to_owned(), "zero_shards"),
                ("nodes[1].id".to_owned(), "duplicate_id"),
                ("nodes[1].run".to_owned(), "required"),
                ("nodes[2].retry.max_attempts".to_owned(), "invalid_retry"),
                ("nodes[2].retry.max_backoff_ms".to_owned(), "invalid_retry"),
                (
                    "nodes[2].retry.non_retryable_exit_codes[0]".to_owned(),
                    "invalid_retry"
                ),
                ("nodes[1].needs[0]".to_owned(), "unknown_dependency"),
            ]
        );
    }

    #[test]
    fn a_cycle_is_reported_with_its_path() {
        let json = r#"{"nodes": [
            {"id": "a", "run": "x", "needs": ["c"]},
            {"id": "b", "run": "x", "needs": ["a"]},
            {"id": "c", "run": "x", "needs": ["b"]}]}"#;
        let parsed = parse(json, Format::Json).expect("parses");
        let problems = validate(&parsed.definition);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].reason, "cycle");
        assert!(
            problems[0].message.contains("a → c → b → a"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn a_bounded_loop_back_to_an_ancestor_is_valid_and_an_unbounded_one_is_not() {
        let good = r#"{"nodes": [
            {"id": "review", "run": "x"},
            {"id": "fix", "run": "x", "needs": ["review"],
             "loop": {"to": "review", "max_iterations": 3, "when": {"key": "approved", "equals": false}}}]}"#;
        assert_eq!(problems_of(good), vec![]);
        let unbounded = good.replace("\"max_iterations\": 3", "\"max_iterations\": 0");
        assert_eq!(
            problems_of(&unbounded),
            vec![("nodes[1].loop.max_iterations".to_owned(), "unbounded_loop")]
        );
        let sideways = r#"{"nodes": [
            {"id": "a", "run": "x"}, {"id": "b", "run": "x",
             "loop": {"to": "a", "max_iterations": 2, "when": {"key": "k", "equals": 1}}}]}"#;
        assert_eq!(
            problems_of(sideways),
            vec![("nodes[1].loop.to".to_owned(), "invalid_loop_target")]
        );
    }

    #[test]
    fn yaml_and_json_give_the_same_canonical_form() {
        let yaml =
            "nodes:\n  - id: build\n    run: make\n    shards: 2\n    env: {B: '2', A: '1'}\n";
        let json = r#"{"nodes":[{"run":"make","id":"build","env":{"A":"1","B":"2"},"shards":2}]}"#;
        let from_yaml = parse(yaml, Format::Yaml).expect("yaml parses");
        let from_json = parse(json, Format::Json).expect("json parses");
        assert_eq!(from_yaml.canonical_json, from_json.canonical_json);
        assert_eq!(from_yaml.definition.digest(), from_json.definition.digest());
    }

    #[test]
    fn shape_errors_name_the_field() {
        let err = parse(
            r#"{"nodes":[{"id":"a","run":"x","shards":-1}]}"#,
            Format::Json,
        )
        .expect_err("negative shards do not fit");
        assert!(
            matches!(&err, crate::ParseError::Shape { path, .. } if path == "nodes[0].shards"),
            "{err:?}"
        );
        let err = parse(
            r#"{"nodes":[{"id":"a","run":"x","bogus":1}]}"#,
            Format::Json,
        )
        .expect_err("unknown field");
        assert!(matches!(err, crate::ParseError::Shape { .. }), "{err:?}");
        let err = parse("{\"nodes\": [", Format::Json).expect_err("broken syntax");
        assert!(
            matches!(err, crate::ParseError::Syntax { line: 1, .. }),
            "{err:?}"
        );
    }

    proptest::proptest! {
        /// Any DAG built by only depending on earlier nodes validates; adding one edge from
        /// the first node to the last closes a cycle, which is then reported.
        #[test]
        fn dags_pass_and_closing_edges_are_cycles(
            deps in proptest::collection::vec(proptest::collection::vec(0usize..100, 0..4), 2..30)
        ) {
            let mut nodes: Vec<Node> = Vec::new();
            for (i, d) in deps.iter().enumerate() {
                let mut needs: Vec<String> = d.iter().filter(|_| i > 0).map(|x| format!("n{}", x % i)).collect();
                needs.sort();
                needs.dedup();
                nodes.push(node(&format!("n{i}"), needs));
            }
            let mut definition = Definition { description: None, timeout_s: None, nodes };
            proptest::prop_assert_eq!(validate(&definition), vec![]);
            let last = definition.nodes.len() - 1;
            definition.nodes[last].needs = vec!["n0".into()];
            for i in 1..last { definition.nodes[i].needs = vec![format!("n{}", i - 1)]; }
            definition.nodes[0].needs = vec![format!("n{last}")];
            let problems = validate(&definition);
            proptest::prop_assert!(problems.iter().any(|p| p.reason == "cycle"), "{:?}", problems);
        }
    }

    fn node(id: &str, needs: Vec<String>) -> Node {
        Node {
            id: id.into(),
            run: "true".into(),
            needs,
            shards: 1,
            allow_partial: false,
            timeout_s: None,
            retry: None,
            labels: BTreeMap::new(),
            env: BTreeMap::new(),
            priority: 0,
            concurrency: None,
            loop_back: None,
        }
    }
}
