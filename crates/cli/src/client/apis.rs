//! `switchyard apis`: API checks' health and the API usage the gateway reported, as readable
//! tables (or the API's JSON with `--json`).

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::http::{Client, Connection};
use super::tasks::{show, table};

#[derive(Debug, Subcommand)]
pub enum ApisCommand {
    /// API checks: healthy or not, last probe, 24-hour availability.
    Health {
        #[arg(long)]
        project: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Requests, errors and latency percentiles per route (platform administrators).
    Usage {
        /// RFC 3339: whole minutes from this one on (default: the last hour).
        #[arg(long)]
        since: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(connection: &Connection, command: ApisCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(connection)?;
    match command {
        ApisCommand::Health { project, json } => {
            show(
                &client,
                "/api/v1/monitoring/apis/health",
                &[("project_id", project.as_deref())],
                json,
                health_table,
            )
            .await?;
        }
        ApisCommand::Usage { since, json } => {
            show(
                &client,
                "/api/v1/monitoring/apis/usage",
                &[("since", since.as_deref())],
                json,
                usage_table,
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn percent(value: &Value) -> String {
    value
        .as_f64()
        .map(|f| format!("{:.1}%", f * 100.0))
        .unwrap_or_else(|| "-".to_owned())
}

fn ms(value: &Value) -> String {
    value
        .as_f64()
        .map(|f| format!("{f:.0}ms"))
        .unwrap_or_else(|| "-".to_owned())
}

fn health_table(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let state = match (c["healthy"].as_bool(), c["last_checked_at"].is_null()) {
                (_, true) => "pending",
                (Some(true), _) => "healthy",
                _ => "failing",
            };
            vec![
                text(&c["name"]),
                text(&c["protocol"]),
                text(&c["target"]),
                state.to_owned(),
                percent(&c["availability"]),
                ms(&c["last_latency_ms"]),
                text(&c["last_checked_at"]),
                text(&c["last_error"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no api check registered\n".to_owned();
    }
    let headers = [
        "NAME", "PROTOCOL", "TARGET", "STATE", "24H", "LATENCY", "CHECKED", "ERROR",
    ];
    table(&headers, &rows)
}

fn usage_table(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = answer["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                text(&r["method"]),
                text(&r["route"]),
                text(&r["requests"]),
                text(&r["errors"]),
                percent(&r["error_rate"]),
                ms(&r["p50_ms"]),
                ms(&r["p95_ms"]),
                ms(&r["p99_ms"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no request recorded in this window\n".to_owned();
    }
    let headers = [
        "METHOD", "ROUTE", "REQUESTS", "ERRORS", "ERROR%", "P50", "P95", "P99",
    ];
    table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn apis_health_prints_state_and_availability() {
        let answer = json!({"items": [
            {"name": "web", "protocol": "http", "target": "http://10.0.0.1/", "healthy": false,
             "availability": 0.75, "last_latency_ms": 12, "last_checked_at": "2026-11-28T12:00:00.000Z",
             "last_error": "http status 503"},
            {"name": "new", "protocol": "grpc", "target": "a:1", "healthy": false,
             "availability": 0.0, "last_latency_ms": null, "last_checked_at": null, "last_error": null}
        ]});
        let out = health_table(&answer);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[1].contains("failing") && lines[1].contains("75.0%"),
            "{out}"
        );
        assert!(lines[1].ends_with("http status 503"), "{out}");
        assert!(lines[2].contains("pending"), "{out}");
        assert_eq!(
            health_table(&json!({"items": []})),
            "no api check registered\n"
        );
    }

    #[test]
    fn apis_usage_prints_one_line_per_route() {
        let answer = json!({"routes": [
            {"method": "GET", "route": "/api/v1/runs/{run_id}", "requests": 10, "errors": 2,
             "error_rate": 0.2, "p50_ms": 3.2, "p95_ms": 48.0, "p99_ms": 99.0}
        ]});
        let out = usage_table(&answer);
        assert!(
            out.lines()
                .nth(1)
                .is_some_and(|l| l.contains("20.0%") && l.ends_with("99ms")),
            "{out}"
        );
    }
}
