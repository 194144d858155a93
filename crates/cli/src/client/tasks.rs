//! `switchyard tasks`: what monitoring knows about tasks — the attempts running now and the
//! execution history — as readable tables (or the API's JSON with `--json`).

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::http::{Client, Connection};
use super::print;

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Tasks leased to agents now: by which agent, for how long.
    Active {
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Where the previous page ended (printed under a full table).
        #[arg(long)]
        cursor: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Running tasks that look stuck (stale heartbeat, or far over their usual duration),
    /// longest running first, each with why.
    Stuck {
        #[arg(long)]
        project: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Execution history of ended attempts, one line per attempt, newest first (running ones
    /// are in `tasks active`).
    History {
        #[arg(long)]
        run: Option<String>,
        #[arg(long)]
        project: Option<String>,
        /// running, succeeded, retrying, lease_expired, dead_lettered, cancelled or failed.
        #[arg(long)]
        status: Option<String>,
        /// RFC 3339: attempts that ended at or after this time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Where the previous page ended (printed under a full table).
        #[arg(long)]
        cursor: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(connection: &Connection, command: TasksCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(connection)?;
    match command {
        TasksCommand::Active {
            project,
            limit,
            cursor,
            json,
        } => {
            let limit = limit.to_string();
            show(
                &client,
                "/api/v1/monitoring/tasks/active",
                &[
                    ("project_id", project.as_deref()),
                    ("limit", Some(&limit)),
                    ("cursor", cursor.as_deref()),
                ],
                json,
                active_table,
            )
            .await?;
        }
        TasksCommand::Stuck { project, json } => {
            show(
                &client,
                "/api/v1/monitoring/tasks/stuck",
                &[("project_id", project.as_deref())],
                json,
                stuck_table,
            )
            .await?;
        }
        TasksCommand::History {
            run,
            project,
            status,
            since,
            limit,
            cursor,
            json,
        } => {
            let limit = limit.to_string();
            show(
                &client,
                "/api/v1/monitoring/tasks/history",
                &[
                    ("run_id", run.as_deref()),
                    ("project_id", project.as_deref()),
                    ("status", status.as_deref()),
                    ("since", since.as_deref()),
                    ("limit", Some(&limit)),
                    ("cursor", cursor.as_deref()),
                ],
                json,
                history_table,
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// GETs `path?k=v&...` and prints the answer: pretty JSON, or through `table` for people.
pub(super) async fn show(
    client: &Client,
    path: &str,
    pairs: &[(&str, Option<&str>)],
    json: bool,
    table: fn(&Value) -> String,
) -> anyhow::Result<()> {
    let answer = client
        .call(Method::GET, &path_with_query(path, pairs)?, None)
        .await?;
    if json {
        print(&answer);
    } else {
        print!("{}", table(&answer));
    }
    Ok(())
}

/// `path?k=v&...` with the values percent-encoded (`since` carries `+` and `:`).
pub(super) fn path_with_query(
    path: &str,
    pairs: &[(&str, Option<&str>)],
) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse("http://switchyard.invalid")?.join(path)?;
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in pairs {
            if let Some(value) = value {
                query.append_pair(key, value);
            }
        }
    }
    Ok(match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `850ms`, `12.3s`, `4m05s`, `2h03m`; `-` when unknown.
fn duration(value: &Value) -> String {
    let Some(ms) = value.as_i64() else {
        return "-".to_owned();
    };
    match ms {
        ..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

fn shard(item: &Value) -> String {
    format!("{}/{}", item["shard_index"], item["shard_count"])
}

fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list["items"].as_array().into_iter().flatten()
}

fn active_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = items(list)
        .map(|t| {
            vec![
                text(&t["task_id"]),
                text(&t["run_id"]),
                text(&t["node"]),
                shard(t),
                text(&t["attempt"]),
                text(&t["agent_id"]),
                text(&t["started_at"]),
                duration(&t["running_ms"]),
                duration(&t["wait_ms"]),
            ]
        })
        .collect();
    let headers = [
        "TASK", "RUN", "NODE", "SHARD", "ATTEMPT", "AGENT", "STARTED", "RUNNING", "WAITED",
    ];
    finish(&headers, &rows, list, "no task is running")
}

fn stuck_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = items(list)
        .map(|s| {
            let t = &s["task"];
            vec![
                text(&t["task_id"]),
                text(&t["node"]),
                shard(t),
                text(&t["attempt"]),
                text(&t["agent_id"]),
                duration(&t["running_ms"]),
                text(&s["reason"]),
                text(&s["message"]),
            ]
        })
        .collect();
    let headers = [
        "TASK", "NODE", "SHARD", "ATTEMPT", "AGENT", "RUNNING", "REASON", "WHY",
    ];
    finish(&headers, &rows, list, "no task looks stuck")
}

fn history_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = items(list)
        .map(|e| {
            let reason = match (text(&e["retry_reason"]), text(&e["error"])) {
                (r, err) if r == "-" => err,
                (r, err) if err == "-" => r,
                (r, err) => format!("{r}: {err}"),
            };
            vec![
                text(&e["task_id"]),
                text(&e["node"]),
                shard(e),
                text(&e["attempt"]),
                text(&e["status"]),
                text(&e["agent_id"]),
                text(&e["exit_code"]),
                duration(&e["wait_ms"]),
                duration(&e["run_ms"]),
                text(&e["finished_at"]),
                reason,
            ]
        })
        .collect();
    let headers = [
        "TASK", "NODE", "SHARD", "ATTEMPT", "STATUS", "AGENT", "EXIT", "WAIT", "RUN", "FINISHED",
        "REASON",
    ];
    finish(&headers, &rows, list, "no attempt recorded")
}

/// The table, or `empty` when there are no rows, and a hint when there are more.
fn finish(headers: &[&str], rows: &[Vec<String>], list: &Value, empty: &str) -> String {
    if rows.is_empty() {
        return format!("{empty}\n");
    }
    let mut out = table(headers, rows);
    if let Some(cursor) = list["next_cursor"].as_str() {
        out.push_str(&format!("(more: --cursor {cursor})\n"));
    }
    out
}

/// Columns padded to their widest cell, separated by two spaces; the last one unpadded.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn monitoring_history_prints_one_aligned_line_per_attempt() {
        let list = json!({"items": [
            {"task_id": "t1", "node": "test", "shard_index": 1, "shard_count": 2, "attempt": 1,
             "status": "retrying", "agent_id": "agent-1", "exit_code": 1, "wait_ms": 250,
             "run_ms": 61_000, "finished_at": "2026-11-28T12:00:07.000Z",
             "retry_reason": "exit_code_1", "error": "exit code 1"},
            {"task_id": "t1", "node": "test", "shard_index": 1, "shard_count": 2, "attempt": 2,
             "status": "running", "agent_id": "agent-22", "exit_code": null, "wait_ms": null,
             "run_ms": null, "finished_at": null, "retry_reason": null, "error": null}
        ], "next_cursor": "7"});
        let out = history_table(&list);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("TASK  NODE  SHARD  ATTEMPT  STATUS    AGENT"));
        assert!(lines[1].contains("retrying  agent-1 "));
        assert!(lines[1].contains("250ms"));
        assert!(lines[1].contains("1m01s"));
        assert!(lines[1].ends_with("exit_code_1: exit code 1"));
        assert!(lines[2].contains("running   agent-22"));
        assert_eq!(lines[3], "(more: --cursor 7)");
        assert_eq!(
            history_table(&json!({"items": []})),
            "no attempt recorded\n"
        );
    }

    #[test]
    fn monitoring_stuck_tasks_print_their_reason_in_words() {
        let list = json!({"items": [
            {"task": {"task_id": "t1", "node": "build", "shard_index": 0, "shard_count": 1,
                      "attempt": 2, "agent_id": "agent-1", "running_ms": 400_000},
             "reason": "over_expected_duration",
             "message": "it has run for 6m 40s, longer than the 5m 0s expected"}
        ]});
        let out = stuck_table(&list);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("TASK  NODE   SHARD  ATTEMPT  AGENT    RUNNING  REASON"));
        assert!(lines[1].contains("6m40s"));
        assert!(lines[1].ends_with(
            "over_expected_duration  it has run for 6m 40s, longer than the 5m 0s expected"
        ));
        assert_eq!(stuck_table(&json!({"items": []})), "no task looks stuck\n");
    }

    #[test]
    fn monitoring_query_values_are_encoded() {
        let path = path_with_query(
            "/api/v1/monitoring/tasks/history",
            &[
                ("since", Some("2026-11-28T12:00:00+01:00")),
                ("run_id", None),
            ],
        )
        .ok();
        assert_eq!(
            path.as_deref(),
            Some("/api/v1/monitoring/tasks/history?since=2026-11-28T12%3A00%3A00%2B01%3A00")
        );
    }

    #[test]
    fn monitoring_durations_read_like_people_write_them() {
        assert_eq!(duration(&json!(850)), "850ms");
        assert_eq!(duration(&json!(12_345)), "12.3s");
        assert_eq!(duration(&json!(245_000)), "4m05s");
        assert_eq!(duration(&json!(7_380_000)), "2h03m");
        assert_eq!(duration(&Value::Null), "-");
    }
}
