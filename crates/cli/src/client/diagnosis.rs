//! `switchyard run why`, `switchyard retries` and `switchyard dlq analysis`: why a run is not
//! running (the summary, then one line per finding), retry statistics per node, and dead
//! letters by reason — readable, or the API's JSON with `--json`.

use reqwest::Method;
use serde_json::Value;

use super::http::Client;
use super::print;
use super::tasks::{path_with_query, show, table};

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `switchyard run why RUN_ID`.
pub async fn why(client: &Client, run_id: &str, json: bool) -> anyhow::Result<()> {
    let path = path_with_query(&format!("/api/v1/runs/{run_id}/diagnosis"), &[])?;
    let answer = client.call(Method::GET, &path, None).await?;
    if json {
        print(&answer);
    } else {
        print!("{}", render_diagnosis(&answer));
    }
    Ok(())
}

/// The summary, then each finding as `- [code] message` with its tasks.
pub fn render_diagnosis(answer: &Value) -> String {
    let mut out = format!(
        "run {} ({})\n\n{}\n",
        text(&answer["run_id"]),
        text(&answer["status"]),
        text(&answer["summary"])
    );
    let findings = answer["findings"].as_array().cloned().unwrap_or_default();
    if !findings.is_empty() {
        out.push_str("\nfindings:\n");
    }
    for finding in &findings {
        out.push_str(&format!(
            "  - [{}] {}\n",
            text(&finding["code"]),
            text(&finding["message"])
        ));
        let tasks: Vec<String> = finding["task_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        if !tasks.is_empty() {
            out.push_str(&format!("    tasks: {}\n", tasks.join(", ")));
        }
    }
    out
}

/// `switchyard retries`.
pub async fn retries(
    client: &Client,
    project: Option<&str>,
    workflow: Option<&str>,
    since: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    show(
        client,
        "/api/v1/monitoring/retry-statistics",
        &[
            ("project_id", project),
            ("workflow", workflow),
            ("since", since),
        ],
        json,
        render_retries,
    )
    .await?;
    Ok(())
}

/// One line per node: counts, rate as a percentage, the top errors with their counts.
pub fn render_retries(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let errors: Vec<String> = s["top_errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| format!("{} ×{}", text(&e["reason"]), text(&e["count"])))
                .collect();
            vec![
                text(&s["workflow"]),
                text(&s["node"]),
                text(&s["attempts"]),
                text(&s["retries"]),
                format!("{:.1}%", s["retry_rate"].as_f64().unwrap_or(0.0) * 100.0),
                text(&s["succeeded_after_retry"]),
                text(&s["dead_lettered"]),
                if errors.is_empty() {
                    "-".to_owned()
                } else {
                    errors.join(", ")
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no attempt ended in the window\n".to_owned();
    }
    let headers = [
        "WORKFLOW",
        "NODE",
        "ATTEMPTS",
        "RETRIES",
        "RATE",
        "OK_AFTER_RETRY",
        "DEAD",
        "TOP_ERRORS",
    ];
    table(&headers, &rows)
}

/// `switchyard dlq analysis`.
pub async fn dead_letters(
    client: &Client,
    project: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    show(
        client,
        "/api/v1/monitoring/dead-letter/analysis",
        &[("project_id", project)],
        json,
        render_dead_letters,
    )
    .await?;
    Ok(())
}

pub fn render_dead_letters(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = answer["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| vec![text(&g["count"]), text(&g["oldest"]), text(&g["reason"])])
        .collect();
    if rows.is_empty() {
        return "no dead letter waits for replay\n".to_owned();
    }
    let mut out = format!(
        "{} dead letter(s) not replayed (replay: switchyard dlq retry ID | --run RUN)\n",
        text(&answer["total"])
    );
    out.push_str(&table(&["COUNT", "OLDEST", "REASON"], &rows));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn diagnosis_prints_the_summary_then_each_finding() {
        let answer = json!({
            "run_id": "r1", "status": "running",
            "summary": "The run is running: 0 tasks running, 1 waiting. No agent with labels gpu=true is polling for node train: no agent is live at all.",
            "findings": [
                {"code": "no_matching_agent", "message": "No agent with labels gpu=true is polling for node train: no agent is live at all.", "task_ids": ["t1", "t2"]},
                {"code": "waiting_on_upstream", "message": "Node report waits on train (running, 0/2 shards done).", "task_ids": []}
            ]
        });
        let out = render_diagnosis(&answer);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "run r1 (running)");
        assert!(lines[2].starts_with("The run is running"));
        assert_eq!(lines[4], "findings:");
        assert_eq!(
            lines[5],
            "  - [no_matching_agent] No agent with labels gpu=true is polling for node train: no agent is live at all."
        );
        assert_eq!(lines[6], "    tasks: t1, t2");
        assert!(lines[7].starts_with("  - [waiting_on_upstream] Node report waits on train"));
        assert_eq!(lines.len(), 8, "{out}");
        let done = json!({"run_id": "r1", "status": "completed", "summary": "Nothing is waiting: the run completed at 12:00:00Z.", "findings": []});
        assert_eq!(
            render_diagnosis(&done),
            "run r1 (completed)\n\nNothing is waiting: the run completed at 12:00:00Z.\n"
        );
    }

    #[test]
    fn retries_print_one_line_per_node_with_rate_and_errors() {
        let list = json!({"items": [
            {"project_id": "p", "workflow": "ci", "node": "flaky", "attempts": 4, "retries": 1,
             "retry_rate": 0.25, "succeeded_after_retry": 1, "dead_lettered": 0,
             "top_errors": [{"reason": "exit_code_1", "count": 1}]}
        ], "next_cursor": null});
        let out = render_retries(&list);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("WORKFLOW  NODE   ATTEMPTS  RETRIES  RATE"),
            "{out}"
        );
        assert!(lines[1].contains("25.0%"), "{out}");
        assert!(lines[1].ends_with("exit_code_1 ×1"), "{out}");
        assert_eq!(
            render_retries(&json!({"items": []})),
            "no attempt ended in the window\n"
        );
    }

    #[test]
    fn dead_letter_analysis_prints_counts_by_reason() {
        let answer = json!({"total": 3, "groups": [
            {"reason": "exit_code_1", "count": 2, "oldest": "2026-11-28T12:00:00.000Z"},
            {"reason": "timed_out", "count": 1, "oldest": null}
        ]});
        let out = render_dead_letters(&answer);
        assert!(out.starts_with("3 dead letter(s) not replayed"), "{out}");
        assert!(
            out.contains("2      2026-11-28T12:00:00.000Z  exit_code_1"),
            "{out}"
        );
        assert!(out.contains("timed_out"));
        assert_eq!(
            render_dead_letters(&json!({"total": 0, "groups": []})),
            "no dead letter waits for replay\n"
        );
    }
}
