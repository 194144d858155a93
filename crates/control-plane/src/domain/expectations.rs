//! Dataset expectations and their evaluation over CSV or JSON-lines bytes, in one pass.
//! What a row is, what null means and how values compare live here and nowhere else. No I/O:
//! fetching the bytes is [`crate::data_source`]'s job.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// Most expectations one dataset may carry.
pub const MAX_EXPECTATIONS: usize = 100;
/// Largest compiled regex, so a pattern cannot make the gate slow or huge.
const MAX_REGEX_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    Csv,
    JsonLines,
}

impl DataFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DataFormat::Csv => "csv",
            DataFormat::JsonLines => "jsonl",
        }
    }

    pub fn parse(text: &str) -> Option<DataFormat> {
        match text {
            "csv" => Some(DataFormat::Csv),
            "jsonl" => Some(DataFormat::JsonLines),
            _ => None,
        }
    }
}

/// One expectation, stored as tagged JSON (`{"type": "column_not_null", "column": "email"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// `max` absent: no upper bound.
    RowCountBetween {
        min: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
    },
    ColumnNotNull {
        column: String,
    },
    /// Nulls are not compared (as in SQL).
    ColumnUnique {
        column: String,
    },
    /// Nulls pass: say `column_not_null` as well to forbid them.
    ColumnValuesInSet {
        column: String,
        values: Vec<String>,
    },
    /// The whole value must match; nulls pass.
    ColumnMatchesRegex {
        column: String,
        pattern: String,
    },
}

impl Expectation {
    pub fn column(&self) -> Option<&str> {
        match self {
            Expectation::RowCountBetween { .. } => None,
            Expectation::ColumnNotNull { column }
            | Expectation::ColumnUnique { column }
            | Expectation::ColumnValuesInSet { column, .. }
            | Expectation::ColumnMatchesRegex { column, .. } => Some(column),
        }
    }

    /// Short human form used in messages: `column_unique(id)`.
    pub fn label(&self) -> String {
        match self {
            Expectation::RowCountBetween { min, max } => match max {
                Some(max) => format!("row_count_between({min}, {max})"),
                None => format!("row_count_between({min}, ∞)"),
            },
            Expectation::ColumnNotNull { column } => format!("column_not_null({column})"),
            Expectation::ColumnUnique { column } => format!("column_unique({column})"),
            Expectation::ColumnValuesInSet { column, .. } => {
                format!("column_values_in_set({column})")
            }
            Expectation::ColumnMatchesRegex { column, .. } => {
                format!("column_matches_regex({column})")
            }
        }
    }
}

/// Every problem with a set of expectations, as `(index, message)`.
pub fn validate(expectations: &[Expectation]) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    if expectations.len() > MAX_EXPECTATIONS {
        problems.push((
            MAX_EXPECTATIONS,
            format!("at most {MAX_EXPECTATIONS} expectations"),
        ));
    }
    for (i, e) in expectations.iter().enumerate() {
        if let Some(column) = e.column()
            && (column.trim().is_empty() || column.len() > 200)
        {
            problems.push((i, "column must be 1-200 characters".into()));
        }
        match e {
            Expectation::RowCountBetween {
                min,
                max: Some(max),
            } if min > max => {
                problems.push((i, format!("min {min} is greater than max {max}")));
            }
            Expectation::ColumnValuesInSet { values, .. } if values.is_empty() => {
                problems.push((i, "values must not be empty".into()));
            }
            Expectation::ColumnMatchesRegex { pattern, .. } => {
                if let Err(error) = compile(pattern) {
                    problems.push((i, format!("pattern is not a valid regex: {error}")));
                }
            }
            _ => {}
        }
    }
    problems
}

fn compile(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(MAX_REGEX_BYTES)
        .build()
}

/// The verdict on one expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub expectation: Expectation,
    pub passed: bool,
    /// What was found: `3 rows have null in column "email" (first at row 17)`.
    pub message: String,
}

/// Evaluates every expectation over `data` in one pass. Data that cannot be read as `format`
/// fails every expectation with the reason, so the gate refuses it rather than passing it.
pub fn evaluate(data: &[u8], format: DataFormat, expectations: &[Expectation]) -> Vec<Verdict> {
    let mut checks: Vec<Check> = expectations.iter().map(Check::new).collect();
    let outcome = match format {
        DataFormat::Csv => scan_csv(data, &mut checks),
        DataFormat::JsonLines => scan_json_lines(data, &mut checks),
    };
    match outcome {
        Ok(scan) => checks.into_iter().map(|c| c.verdict(&scan)).collect(),
        Err(reason) => expectations
            .iter()
            .map(|e| Verdict {
                expectation: e.clone(),
                passed: false,
                message: format!("the data could not be read: {reason}"),
            })
            .collect(),
    }
}

/// What a pass over the rows learned beyond the per-check counters.
struct Scan {
    rows: u64,
    /// Columns seen at all (CSV header, or any key of any JSON row).
    columns: HashSet<String>,
}

/// A running evaluation of one expectation.
struct Check {
    expectation: Expectation,
    regex: Option<regex::Regex>,
    allowed: HashSet<String>,
    seen: HashSet<String>,
    failures: u64,
    first: Option<(u64, Option<String>)>,
}

impl Check {
    fn new(expectation: &Expectation) -> Check {
        let regex = match expectation {
            Expectation::ColumnMatchesRegex { pattern, .. } => compile(pattern).ok(),
            _ => None,
        };
        let allowed = match expectation {
            Expectation::ColumnValuesInSet { values, .. } => values.iter().cloned().collect(),
            _ => HashSet::new(),
        };
        Check {
            expectation: expectation.clone(),
            regex,
            allowed,
            seen: HashSet::new(),
            failures: 0,
            first: None,
        }
    }

    fn observe(&mut self, row: u64, value: Option<Cow<'_, str>>) {
        let failed = match (&self.expectation, &value) {
            (Expectation::RowCountBetween { .. }, _) => false,
            (Expectation::ColumnNotNull { .. }, v) => v.is_none(),
            (_, None) => false,
            (Expectation::ColumnUnique { .. }, Some(v)) => !self.seen.insert(v.to_string()),
            (Expectation::ColumnValuesInSet { .. }, Some(v)) => !self.allowed.contains(v.as_ref()),
            (Expectation::ColumnMatchesRegex { .. }, Some(v)) => {
                !self.regex.as_ref().is_some_and(|r| r.is_match(v))
            }
        };
        if failed {
            self.failures += 1;
            if self.first.is_none() {
                self.first = Some((row, value.map(|v| shorten(&v))));
            }
        }
    }

    fn verdict(self, scan: &Scan) -> Verdict {
        let (passed, message) = self.judge(scan);
        Verdict {
            expectation: self.expectation,
            passed,
            message,
        }
    }

    fn judge(&self, scan: &Scan) -> (bool, String) {
        if let Expectation::RowCountBetween { min, max } = &self.expectation {
            let rows = scan.rows;
            let within = rows >= *min && max.is_none_or(|max| rows <= max);
            let bound = match max {
                Some(max) => format!("between {min} and {max}"),
                None => format!("at least {min}"),
            };
            return (within, format!("{rows} rows, expected {bound}"));
        }
        let column = self.expectation.column().unwrap_or_default();
        if !scan.columns.contains(column) {
            return (false, format!("column {column:?} is not in the data"));
        }
        if self.failures == 0 {
            return (true, format!("all {} rows pass", scan.rows));
        }
        let rows = plural(self.failures);
        let first = match &self.first {
            Some((row, Some(value))) => format!(" (first at row {row}: {value:?})"),
            Some((row, None)) => format!(" (first at row {row})"),
            None => String::new(),
        };
        let what = match &self.expectation {
            Expectation::ColumnNotNull { .. } => format!("with null in column {column:?}"),
            Expectation::ColumnUnique { .. } => {
                format!("with a repeated value of column {column:?}")
            }
            Expectation::ColumnValuesInSet { .. } => {
                format!("with a value of column {column:?} outside the set")
            }
            Expectation::ColumnMatchesRegex { pattern, .. } => {
                format!("with a value of column {column:?} not matching /{pattern}/")
            }
            Expectation::RowCountBetween { .. } => String::new(),
        };
        (false, format!("{rows} {what}{first}"))
    }
}

fn plural(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

/// Values quoted in messages stay short.
fn shorten(value: &str) -> String {
    const MAX: usize = 60;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}…")
    }
}

/// CSV: the first record is the header; an empty field is null. Rows are numbered from 1
/// after the header.
fn scan_csv(data: &[u8], checks: &mut [Check]) -> Result<Scan, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(data);
    let header = reader
        .headers()
        .map_err(|e| format!("CSV header: {e}"))?
        .clone();
    let columns: HashSet<String> = header.iter().map(str::to_owned).collect();
    let positions: Vec<Option<usize>> = checks
        .iter()
        .map(|c| {
            c.expectation
                .column()
                .and_then(|name| header.iter().position(|h| h == name))
        })
        .collect();
    let mut rows = 0u64;
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(format!("CSV row {}: {e}", rows + 1)),
        }
        rows += 1;
        for (check, position) in checks.iter_mut().zip(&positions) {
            let value = position
                .and_then(|p| record.get(p))
                .filter(|v| !v.is_empty())
                .map(Cow::Borrowed);
            if position.is_some() || check.expectation.column().is_none() {
                check.observe(rows, value);
            }
        }
    }
    Ok(Scan { rows, columns })
}

/// JSON lines: one object per non-blank line; a missing key or JSON `null` is null; strings
/// compare as they are, other values as their JSON text.
fn scan_json_lines(data: &[u8], checks: &mut [Check]) -> Result<Scan, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut rows = 0u64;
    let mut columns = HashSet::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", index + 1))?;
        let serde_json::Value::Object(object) = value else {
            return Err(format!("line {}: not a JSON object", index + 1));
        };
        rows += 1;
        for key in object.keys() {
            if !columns.contains(key) {
                columns.insert(key.clone());
            }
        }
        for check in checks.iter_mut() {
            let value = check
                .expectation
                .column()
                .and_then(|column| object.get(column))
                .and_then(|v| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                    other => Some(Cow::Owned(other.to_string())),
                });
            check.observe(rows, value);
        }
    }
    Ok(Scan { rows, columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Expectation> {
        vec![
            Expectation::RowCountBetween {
                min: 2,
                max: Some(10),
            },
            Expectation::ColumnNotNull {
                column: "email".into(),
            },
            Expectation::ColumnUnique {
                column: "id".into(),
            },
            Expectation::ColumnValuesInSet {
                column: "plan".into(),
                values: vec!["free".into(), "pro".into()],
            },
            Expectation::ColumnMatchesRegex {
                column: "email".into(),
                pattern: r"[^@\s]+@[^@\s]+".into(),
            },
        ]
    }

    fn failed(verdicts: &[Verdict]) -> Vec<String> {
        verdicts
            .iter()
            .filter(|v| !v.passed)
            .map(|v| v.expectation.label())
            .collect()
    }

    const GOOD_CSV: &str = "id,email,plan\n1,a@x.io,free\n2,b@x.io,pro\n3,c@x.io,free\n";

    #[test]
    fn clean_csv_passes_every_expectation() {
        let verdicts = evaluate(GOOD_CSV.as_bytes(), DataFormat::Csv, &all());
        assert_eq!(failed(&verdicts), Vec::<String>::new(), "{verdicts:?}");
    }

    #[test]
    fn each_kind_of_failure_is_found_and_described() {
        let csv = "id,email,plan\n1,a@x.io,free\n1,,gold\n3,not-an-email,pro\n";
        let verdicts = evaluate(csv.as_bytes(), DataFormat::Csv, &all());
        assert_eq!(
            failed(&verdicts),
            vec![
                "column_not_null(email)",
                "column_unique(id)",
                "column_values_in_set(plan)",
                "column_matches_regex(email)",
            ]
        );
        assert_eq!(
            verdicts[1].message,
            r#"1 row with null in column "email" (first at row 2)"#
        );
        assert_eq!(
            verdicts[2].message,
            r#"1 row with a repeated value of column "id" (first at row 2: "1")"#
        );
        assert!(
            verdicts[3].message.contains(r#""gold""#),
            "{}",
            verdicts[3].message
        );
        assert!(
            verdicts[4].message.contains("row 3"),
            "{}",
            verdicts[4].message
        );
    }

    #[test]
    fn row_count_bounds_are_inclusive_and_max_is_optional() {
        let count = |min, max| Expectation::RowCountBetween { min, max };
        let verdicts = evaluate(
            GOOD_CSV.as_bytes(),
            DataFormat::Csv,
            &[
                count(3, Some(3)),
                count(4, None),
                count(0, Some(2)),
                count(1, None),
            ],
        );
        let passed: Vec<bool> = verdicts.iter().map(|v| v.passed).collect();
        assert_eq!(passed, vec![true, false, false, true]);
        assert_eq!(verdicts[1].message, "3 rows, expected at least 4");
    }

    #[test]
    fn json_lines_treat_missing_and_null_alike_and_compare_numbers_as_text() {
        let jsonl = r#"{"id": 1, "email": "a@x.io", "plan": "free"}

{"id": 2, "email": null, "plan": "pro"}
{"id": 2, "plan": "free"}
"#;
        let verdicts = evaluate(jsonl.as_bytes(), DataFormat::JsonLines, &all());
        assert_eq!(
            failed(&verdicts),
            vec!["column_not_null(email)", "column_unique(id)"]
        );
        assert!(
            verdicts[1].message.starts_with("2 rows"),
            "{}",
            verdicts[1].message
        );
    }

    #[test]
    fn a_missing_column_fails_rather_than_passing_vacuously() {
        let e = [Expectation::ColumnUnique {
            column: "nope".into(),
        }];
        let verdicts = evaluate(GOOD_CSV.as_bytes(), DataFormat::Csv, &e);
        assert!(!verdicts[0].passed);
        assert_eq!(verdicts[0].message, r#"column "nope" is not in the data"#);
    }

    #[test]
    fn unreadable_data_fails_every_expectation_with_the_reason() {
        let verdicts = evaluate(b"{\"id\": 1}\nnot json\n", DataFormat::JsonLines, &all());
        assert!(verdicts.iter().all(|v| !v.passed));
        assert!(
            verdicts[0].message.contains("line 2"),
            "{}",
            verdicts[0].message
        );
        let ragged = evaluate(b"a,b\n1,2\n3\n", DataFormat::Csv, &all());
        assert!(ragged.iter().all(|v| !v.passed), "{ragged:?}");
    }

    #[test]
    fn regexes_match_whole_values() {
        let e = [Expectation::ColumnMatchesRegex {
            column: "plan".into(),
            pattern: "fr".into(),
        }];
        let verdicts = evaluate(GOOD_CSV.as_bytes(), DataFormat::Csv, &e);
        assert!(!verdicts[0].passed);
    }

    #[test]
    fn invalid_expectations_are_listed() {
        let problems = validate(&[
            Expectation::RowCountBetween {
                min: 5,
                max: Some(1),
            },
            Expectation::ColumnValuesInSet {
                column: "a".into(),
                values: vec![],
            },
            Expectation::ColumnMatchesRegex {
                column: "a".into(),
                pattern: "(".into(),
            },
            Expectation::ColumnNotNull { column: " ".into() },
        ]);
        let indexes: Vec<usize> = problems.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![0, 1, 2, 3]);
    }

    #[test]
    fn expectations_round_trip_as_tagged_json() {
        let json = serde_json::to_string(&all()).expect("serializes");
        assert!(json.contains(r#""type":"row_count_between""#), "{json}");
        let back: Vec<Expectation> = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, all());
        assert!(serde_json::from_str::<Expectation>(r#"{"type":"nope"}"#).is_err());
    }
}
