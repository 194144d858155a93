//! `switchyard alerts`: list, acknowledge and resolve alerts, and manage a project's alert
//! rules, as readable tables (or the API's JSON with `--json`).

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::http::{Client, Connection};
use super::print;
use super::tasks::{show, table};

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Alerts, newest first.
    List {
        #[arg(long)]
        project: Option<String>,
        /// firing, acknowledged or resolved.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Where the previous page ended (printed under a full table).
        #[arg(long)]
        cursor: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Resolves an open alert by hand.
    Resolve { id: String },
    /// Acknowledges a firing alert (it stays open, and no new alert fires for its condition).
    Ack { id: String },
    /// A project's alert rules.
    #[command(subcommand)]
    Rule(RuleCommand),
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Creates a rule, or replaces one with `--id`.
    Put {
        #[arg(long)]
        project: String,
        /// Replace this rule instead of creating one.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: String,
        /// failure_rate, dead_letter_count, agent_pool_empty or stuck_tasks.
        #[arg(long)]
        kind: String,
        /// A rate in (0, 1] for failure_rate; a whole count of at least 1 otherwise.
        #[arg(long)]
        threshold: f64,
        /// How far back the condition looks: e.g. 90s, 15m, 2h, 1d (default 15m).
        #[arg(long)]
        window: Option<String>,
        /// A URL notified on firing and resolution (repeatable).
        #[arg(long = "webhook")]
        webhooks: Vec<String>,
        /// Save the rule without evaluating it.
        #[arg(long)]
        disabled: bool,
    },
    /// The project's rules.
    List {
        #[arg(long)]
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// Deletes a rule (its open alerts are resolved).
    Delete {
        #[arg(long)]
        project: String,
        id: String,
    },
}

/// Seconds in `90s`, `15m`, `2h`, `1d` or a bare number of seconds.
fn window_seconds(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("window {text:?} is not like 90s, 15m, 2h or 1d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("window {text:?} is not like 90s, 15m, 2h or 1d"),
    };
    Ok(n.saturating_mul(scale))
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn alerts_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| {
            [
                "id",
                "state",
                "kind",
                "project_id",
                "fired_at",
                "resolved_by",
                "message",
            ]
            .iter()
            .map(|k| text(&a[*k]))
            .collect()
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "STATE",
            "KIND",
            "PROJECT",
            "FIRED",
            "RESOLVED BY",
            "MESSAGE",
        ],
        &rows,
    );
    if let Some(cursor) = list["next_cursor"].as_str() {
        out.push_str(&format!("more: --cursor {cursor}\n"));
    }
    out
}

fn rules_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let hooks = r["webhooks"].as_array().map_or(0, Vec::len);
            vec![
                text(&r["id"]),
                text(&r["name"]),
                text(&r["kind"]),
                text(&r["threshold"]),
                format!("{}s", text(&r["window_seconds"])),
                hooks.to_string(),
                text(&r["enabled"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "KIND",
            "THRESHOLD",
            "WINDOW",
            "WEBHOOKS",
            "ENABLED",
        ],
        &rows,
    )
}

pub async fn run(connection: &Connection, command: AlertsCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(connection)?;
    match command {
        AlertsCommand::List {
            project,
            state,
            limit,
            cursor,
            json,
        } => {
            let limit = limit.to_string();
            show(
                &client,
                "/api/v1/monitoring/alerts",
                &[
                    ("project_id", project.as_deref()),
                    ("state", state.as_deref()),
                    ("limit", Some(&limit)),
                    ("cursor", cursor.as_deref()),
                ],
                json,
                alerts_table,
            )
            .await?;
        }
        AlertsCommand::Resolve { id } => {
            let path = format!("/api/v1/monitoring/alerts/{id}/resolve");
            print(&client.call(Method::POST, &path, Some(json!({}))).await?);
        }
        AlertsCommand::Ack { id } => {
            let path = format!("/api/v1/monitoring/alerts/{id}/acknowledge");
            print(&client.call(Method::POST, &path, Some(json!({}))).await?);
        }
        AlertsCommand::Rule(command) => rule(&client, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn rule(client: &Client, command: RuleCommand) -> anyhow::Result<()> {
    match command {
        RuleCommand::Put {
            project,
            id,
            name,
            kind,
            threshold,
            window,
            webhooks,
            disabled,
        } => {
            let mut body = json!({
                "name": name, "kind": kind, "threshold": threshold,
                "webhooks": webhooks, "enabled": !disabled,
            });
            if let Some(window) = window {
                body["window_seconds"] = json!(window_seconds(&window)?);
            }
            let saved = match id {
                Some(id) => {
                    let path = format!("/api/v1/projects/{project}/alert-rules/{id}");
                    client.call(Method::PUT, &path, Some(body)).await?
                }
                None => {
                    let path = format!("/api/v1/projects/{project}/alert-rules");
                    client.call(Method::POST, &path, Some(body)).await?
                }
            };
            print(&saved);
        }
        RuleCommand::List { project, json } => {
            let path = format!("/api/v1/projects/{project}/alert-rules");
            let list = client.call(Method::GET, &path, None).await?;
            if json {
                print(&list);
            } else {
                print!("{}", rules_table(&list));
            }
        }
        RuleCommand::Delete { project, id } => {
            let path = format!("/api/v1/projects/{project}/alert-rules/{id}");
            client.call(Method::DELETE, &path, None).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_rule_windows_take_units() {
        assert_eq!(window_seconds("90").ok(), Some(90));
        assert_eq!(window_seconds("90s").ok(), Some(90));
        assert_eq!(window_seconds("15m").ok(), Some(900));
        assert_eq!(window_seconds("2h").ok(), Some(7200));
        assert_eq!(window_seconds("1d").ok(), Some(86_400));
        assert!(window_seconds("15 minutes").is_err());
        assert!(window_seconds("m").is_err());
    }

    #[test]
    fn alerts_print_one_line_each_with_the_next_cursor() {
        let list = json!({"items": [
            {"id": "a1", "state": "firing", "kind": "dead_letter_count", "project_id": "p",
             "fired_at": "2026-11-28T12:00:00.000Z", "resolved_by": null,
             "message": "1 task(s) dead-lettered"}],
            "next_cursor": "a1"});
        let out = alerts_table(&list);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("ID"), "{out}");
        assert!(
            lines[1].contains("firing") && lines[1].ends_with("dead-lettered"),
            "{out}"
        );
        assert_eq!(lines[2], "more: --cursor a1");
    }
}
