//! The Grafana dashboard in `deploy/grafana` cannot drift from the code: every metric its
//! queries use is one a service exports (histograms through their `_bucket`, `_sum` and
//! `_count` series), and it has the panels the operators rely on.

use std::collections::BTreeSet;

use serde_json::Value;

/// Every metric name the services export, from the constants the code records them with.
fn exported() -> BTreeSet<&'static str> {
    use switchyard_runtime::metrics as rt;
    [
        rt::GRPC_REQUESTS,
        rt::GRPC_DURATION,
        rt::OUTBOX_BACKLOG,
        rt::OUTBOX_DELIVERED,
        rt::OUTBOX_FAILURES,
        rt::SERVICE_UP,
        switchyard_monitoring::alerts::evaluator::ALERTS_GAUGE,
    ]
    .into_iter()
    .chain(switchyard_monitoring::metrics::NAMES)
    .chain(switchyard_scheduler::queue_depth::NAMES)
    .chain(switchyard_gateway::middleware::METRICS)
    .collect()
}

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/switchyard-dashboard.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn expressions(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    out
}

/// Identifiers in a PromQL expression that look like our metric names.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("switchyard_") || word.starts_with("gateway_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn dashboard_queries_only_metrics_the_code_exports() {
    let exported = exported();
    let known = |name: &str| {
        exported.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| exported.contains(base))
            })
    };
    let dashboard = dashboard();
    let expressions = expressions(&dashboard);
    assert!(expressions.len() >= 20, "{expressions:?}");
    let mut used = BTreeSet::new();
    for expr in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(
                known(&name),
                "{name} (in {expr}) is not exported by any service"
            );
            used.insert(name);
        }
    }
    for wanted in [
        "switchyard_queue_depth",
        "switchyard_task_wait_seconds_bucket",
        "switchyard_task_run_seconds_bucket",
        "switchyard_task_retries_total",
        "switchyard_task_dead_letters_total",
        "switchyard_task_leases_expired_total",
        "switchyard_outbox_backlog",
        "switchyard_alerts",
        "switchyard_grpc_server_requests_total",
        "gateway_http_requests_total",
    ] {
        assert!(
            used.contains(wanted),
            "the dashboard has no panel on {wanted}"
        );
    }
    // Panels use the datasource variable, so the dashboard imports into any Grafana.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus")
    );
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        }
    }
}

#[test]
fn dashboard_metric_names_are_read_from_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.95, sum by (le) (rate(switchyard_task_wait_seconds_bucket{project=~\"$project\"}[$__rate_interval])))"
        ),
        ["switchyard_task_wait_seconds_bucket"]
    );
}
