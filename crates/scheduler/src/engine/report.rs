//! The run's report: per-shard test counts and line coverage merged across shards, from what
//! agents sent with their completions (`result_json` of each task's last attempt).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::store::entity::task;

/// What an agent reported with a completion, as stored on the task.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    #[serde(default)]
    pub passed: u32,
    #[serde(default)]
    pub failed: u32,
    #[serde(default)]
    pub skipped: u32,
    /// File → (covered lines, executable lines).
    #[serde(default)]
    pub coverage: BTreeMap<String, (BTreeSet<u32>, BTreeSet<u32>)>,
    #[serde(default)]
    pub artifacts: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct Shard<'a> {
    node: &'a str,
    shard_index: u32,
    passed: u32,
    failed: u32,
    skipped: u32,
}

#[derive(Serialize)]
struct FileCoverage {
    path: String,
    lines_covered: u32,
    lines_total: u32,
}

#[derive(Serialize)]
struct Coverage {
    files: Vec<FileCoverage>,
    total_percent: f64,
}

/// `(shards_json, coverage_json)` as `RunStatusChanged` carries them; coverage is empty when
/// no task reported any. A line counts as covered when any shard covered it.
pub fn aggregate(tasks: &[task::Model]) -> (String, String) {
    let mut shards = Vec::new();
    let mut files: BTreeMap<String, (BTreeSet<u32>, BTreeSet<u32>)> = BTreeMap::new();
    for t in tasks {
        let Ok(result) = serde_json::from_str::<TaskResult>(&t.result_json) else {
            continue;
        };
        shards.push(Shard {
            node: &t.node,
            shard_index: t.shard_index as u32,
            passed: result.passed,
            failed: result.failed,
            skipped: result.skipped,
        });
        for (path, (covered, executable)) in result.coverage {
            let entry = files.entry(path).or_default();
            entry.0.extend(covered);
            entry.1.extend(executable);
        }
    }
    let shards_json = serde_json::to_string(&shards).unwrap_or_default();
    if files.is_empty() {
        return (shards_json, String::new());
    }
    let (mut covered_all, mut total_all) = (0u64, 0u64);
    let files: Vec<FileCoverage> = files
        .into_iter()
        .map(|(path, (covered, executable))| {
            let covered = covered.intersection(&executable).count() as u32;
            let total = executable.len() as u32;
            covered_all += u64::from(covered);
            total_all += u64::from(total);
            FileCoverage {
                path,
                lines_covered: covered,
                lines_total: total,
            }
        })
        .collect();
    let total_percent = if total_all == 0 {
        0.0
    } else {
        (covered_all as f64 * 10_000.0 / total_all as f64).round() / 100.0
    };
    let coverage = Coverage {
        files,
        total_percent,
    };
    (
        shards_json,
        serde_json::to_string(&coverage).unwrap_or_default(),
    )
}
