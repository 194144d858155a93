//! Gherkin `.feature` files → the feature model the control plane stores. Parsing is the
//! `gherkin` crate's (cucumber-rs); this module only maps its tree onto ours and turns its
//! parse errors into `path:line:column` messages. No I/O.

use serde::{Deserialize, Serialize};

/// Largest `.feature` file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 512 * 1024;
/// Most files one ingestion may carry.
pub const MAX_FILES: usize = 500;
/// Longest path accepted.
pub const MAX_PATH_CHARS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureDoc {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub background: Vec<StepDoc>,
    pub scenarios: Vec<ScenarioDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioDoc {
    pub name: String,
    /// Name of the `Rule:` the scenario sits under; empty for none.
    pub rule: String,
    /// The rule's own `Background:` steps, which run before this scenario's (after the
    /// feature's).
    pub rule_background: Vec<StepDoc>,
    pub tags: Vec<String>,
    /// `Scenario Outline` / `Scenario Template`, or any scenario carrying examples.
    pub outline: bool,
    pub steps: Vec<StepDoc>,
    pub examples: Vec<ExamplesDoc>,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDoc {
    /// As written, trailing space trimmed (`Given`, `And`, `But`...).
    pub keyword: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_string: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub table: Vec<Vec<String>>,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExamplesDoc {
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// First row is the header.
    pub table: Vec<Vec<String>>,
    pub line: u32,
}

/// Why a file was refused, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: String,
    /// 1-based; 0 when the problem is the file as a whole (too large, bad path).
    pub line: u32,
    pub column: u32,
    pub problem: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path, self.problem)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path, self.line, self.column, self.problem
            )
        }
    }
}

/// A path names a feature inside its suite: relative, `/`-separated, ending in `.feature`.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("path is required".into());
    }
    if path.chars().count() > MAX_PATH_CHARS {
        return Err(format!("path may be at most {MAX_PATH_CHARS} characters"));
    }
    if path.chars().any(char::is_control) || path.contains('\\') {
        return Err("path may not contain control characters or `\\`".into());
    }
    if path.starts_with('/') || path.split('/').any(|part| part.is_empty() || part == "..") {
        return Err("path must be relative, without empty or `..` parts".into());
    }
    if !path.ends_with(".feature") {
        return Err("path must end in `.feature`".into());
    }
    Ok(())
}

/// Parses one file. The error names the line and column the parser stopped at.
pub fn parse(path: &str, content: &str) -> Result<FeatureDoc, FileError> {
    let whole_file = |problem: String| FileError {
        path: path.to_owned(),
        line: 0,
        column: 0,
        problem,
    };
    check_path(path).map_err(whole_file)?;
    if content.len() > MAX_FILE_BYTES {
        return Err(whole_file(format!(
            "file is larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    if content.trim().is_empty() {
        return Err(whole_file("file is empty".into()));
    }
    let env = gherkin::GherkinEnv::default();
    let feature = gherkin::Feature::parse(content, env).map_err(|error| {
        let (line, column, expected) = locate(&error.to_string());
        FileError {
            path: path.to_owned(),
            line,
            column,
            problem: describe(&expected),
        }
    })?;
    Ok(convert(feature))
}

/// The crate's error keeps its position private and shows it only as
/// `Error at LINE:COL: {"expected", ...}`; this reads it back (guarded by a test, so a change
/// of that format fails the build's tests rather than the users' error messages).
fn locate(display: &str) -> (u32, u32, Vec<String>) {
    let rest = display.strip_prefix("Error at ").unwrap_or(display);
    let (position, expected) = rest.split_once(": ").unwrap_or((rest, ""));
    let mut numbers = position.split(':').map(|n| n.trim().parse::<u32>().ok());
    let line = numbers.next().flatten().unwrap_or(1);
    let column = numbers.next().flatten().unwrap_or(1);
    let mut tokens: Vec<String> = expected
        .trim_matches(|c| c == '{' || c == '}')
        .split(", ")
        .map(|t| t.trim_matches('"').to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    tokens.sort();
    tokens.dedup();
    (line, column, tokens)
}

fn describe(expected: &[String]) -> String {
    // The parser reports grammar-internal token names ("EOF", "new line", keyword lists);
    // keep them, they tell a reader what could have come here.
    if expected.is_empty() {
        "not valid Gherkin".into()
    } else if expected.iter().all(|t| t == "unknown keyword") {
        // The parser's name for "a line that starts with no keyword it knows here".
        "not valid Gherkin: this line starts with no keyword allowed here (Feature, Rule, Background, Scenario, Examples, Given/When/Then/And/But, a tag, a table row or a doc string)".into()
    } else {
        format!("not valid Gherkin: expected {}", expected.join(" or "))
    }
}

fn convert(feature: gherkin::Feature) -> FeatureDoc {
    let mut scenarios: Vec<ScenarioDoc> = feature
        .scenarios
        .into_iter()
        .map(|s| scenario(s, "", &[]))
        .collect();
    for rule in feature.rules {
        let rule_background = rule.background.map(steps_of).unwrap_or_default();
        for s in rule.scenarios {
            let mut doc = scenario(s, &rule.name, &rule_background);
            // A rule's tags apply to every scenario under it (Gherkin's inheritance).
            let mut tags = rule.tags.clone();
            tags.append(&mut doc.tags);
            doc.tags = tags;
            scenarios.push(doc);
        }
    }
    scenarios.sort_by_key(|s| s.line);
    FeatureDoc {
        name: feature.name,
        description: feature.description.unwrap_or_default(),
        tags: feature.tags,
        background: feature.background.map(steps_of).unwrap_or_default(),
        scenarios,
    }
}

fn steps_of(background: gherkin::Background) -> Vec<StepDoc> {
    background.steps.into_iter().map(step).collect()
}

fn scenario(s: gherkin::Scenario, rule: &str, rule_background: &[StepDoc]) -> ScenarioDoc {
    let keyword = s.keyword.to_ascii_lowercase();
    let outline =
        !s.examples.is_empty() || keyword.contains("outline") || keyword.contains("template");
    ScenarioDoc {
        name: s.name,
        rule: rule.to_owned(),
        rule_background: rule_background.to_vec(),
        tags: s.tags,
        outline,
        steps: s.steps.into_iter().map(step).collect(),
        examples: s
            .examples
            .into_iter()
            .map(|e| ExamplesDoc {
                name: e.name.unwrap_or_default(),
                tags: e.tags,
                table: e.table.map(|t| t.rows).unwrap_or_default(),
                line: line(e.position),
            })
            .collect(),
        line: line(s.position),
    }
}

fn step(s: gherkin::Step) -> StepDoc {
    StepDoc {
        keyword: s.keyword.trim().to_owned(),
        text: s.value,
        doc_string: s.docstring,
        table: s.table.map(|t| t.rows).unwrap_or_default(),
        line: line(s.position),
    }
}

fn line(position: gherkin::LineCol) -> u32 {
    u32::try_from(position.line).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKOUT: &str = r#"@shop @smoke
Feature: Checkout
  Paying for what is in the cart.

  Background:
    Given a signed-in customer

  Scenario: Pay by card
    Given a cart with 2 items
    When the customer pays with:
      | card             | expiry |
      | 4111111111111111 | 12/30  |
    Then the order is confirmed
    And a receipt is sent:
      """
      Thank you for your order
      """

  @slow
  Scenario Outline: Shipping costs
    Given a cart worth <total>
    Then shipping costs <shipping>

    @eu
    Examples: Europe
      | total | shipping |
      | 10    | 5        |
      | 100   | 0        |

  Rule: Gift cards
    Background:
      Given a gift card

    Scenario: Pay by gift card
      When the customer pays by gift card
      Then the balance goes down
"#;

    #[test]
    fn a_feature_maps_onto_the_model_with_every_part() {
        let doc = parse("shop/checkout.feature", CHECKOUT).expect("valid");
        assert_eq!(doc.name, "Checkout");
        assert_eq!(doc.description.trim(), "Paying for what is in the cart.");
        assert_eq!(doc.tags, vec!["shop", "smoke"]);
        assert_eq!(doc.background.len(), 1);
        assert_eq!(doc.background[0].keyword, "Given");
        let names: Vec<&str> = doc.scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["Pay by card", "Shipping costs", "Pay by gift card"]
        );

        let card = &doc.scenarios[0];
        assert!(!card.outline);
        let keywords: Vec<&str> = card.steps.iter().map(|s| s.keyword.as_str()).collect();
        assert_eq!(keywords, vec!["Given", "When", "Then", "And"]);
        assert_eq!(card.steps[1].text, "the customer pays with:");
        assert_eq!(
            card.steps[1].table,
            vec![vec!["card", "expiry"], vec!["4111111111111111", "12/30"]]
        );
        assert_eq!(
            card.steps[3].doc_string.as_deref().map(str::trim),
            Some("Thank you for your order")
        );
        assert_eq!(card.line, 8);
        assert_eq!(card.steps[0].line, 9);

        let outline = &doc.scenarios[1];
        assert!(outline.outline);
        assert_eq!(outline.tags, vec!["slow"]);
        assert_eq!(outline.examples.len(), 1);
        assert_eq!(outline.examples[0].name, "Europe");
        assert_eq!(outline.examples[0].tags, vec!["eu"]);
        assert_eq!(outline.examples[0].table.len(), 3);
        assert_eq!(outline.examples[0].table[0], vec!["total", "shipping"]);

        let gift = &doc.scenarios[2];
        assert_eq!(gift.rule, "Gift cards");
        assert_eq!(gift.rule_background.len(), 1);
        assert_eq!(gift.rule_background[0].text, "a gift card");
    }

    #[test]
    fn a_malformed_file_is_refused_with_its_path_and_line() {
        let bad = "Feature: Broken\n\n  Scenario: fine\n    Given a step\n\n  This line is not Gherkin\n  | a | b |\n";
        let error = parse("broken.feature", bad).expect_err("invalid");
        assert_eq!(error.path, "broken.feature");
        assert!(
            error.line >= 6,
            "line {} should point at the bad part",
            error.line
        );
        let text = error.to_string();
        assert!(text.starts_with("broken.feature:"), "{text}");
        assert!(text.contains("not valid Gherkin"), "{text}");
    }

    #[test]
    fn inconsistent_table_rows_are_refused() {
        let bad =
            "Feature: Tables\n  Scenario: rows\n    Given rows:\n      | a | b |\n      | 1 |\n";
        let error = parse("tables.feature", bad).expect_err("ragged table");
        assert!(error.line >= 3, "{error}");
    }

    #[test]
    fn the_crate_error_format_is_read_back() {
        let (line, column, expected) = locate(r#"Error at 12:5: {"Scenario", "EOF"}"#);
        assert_eq!((line, column), (12, 5));
        assert_eq!(expected, vec!["EOF", "Scenario"]);
        // The real error still has that shape.
        let bad = "Feature: x\n  Scenario: y\n    Given z\n\n  not a step\n  | a |\n";
        let real = gherkin::Feature::parse(bad, Default::default()).expect_err("invalid");
        assert!(real.to_string().starts_with("Error at "), "{real}");
        let ours = parse("x.feature", bad).expect_err("invalid");
        assert!(ours.to_string().starts_with("x.feature:"), "{ours}");
        assert!(ours.line > 1, "{ours}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever a client sends, parsing answers (a feature or a located error); it never
        /// panics and never points past the end of the file.
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::string_regex("(Feature|Scenario|Scenario Outline|Background|Rule|Examples|Given|When|Then|And|But|@tag|\\|| a \\||\"\"\"|#)?[ a-z<>:|]{0,12}").expect("regex"),
                    proptest::string::string_regex("[^\\x00]{0,20}").expect("regex"),
                ],
                0..12,
            )
        ) {
            let text = lines.join("\n");
            if let Err(error) = parse("fuzz.feature", &text) {
                let lines = text.lines().count() as u32 + 2;
                proptest::prop_assert!(error.line <= lines, "{error} for {text:?}");
            }
        }
    }

    #[test]
    fn paths_and_sizes_are_checked_before_parsing() {
        for bad in [
            "",
            "/abs.feature",
            "a/../b.feature",
            "a//b.feature",
            "notes.txt",
            "a\\b.feature",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check_path("features/login.feature").is_ok());
        assert_eq!(parse("empty.feature", "  \n").map_err(|e| e.line), Err(0));
        let huge = format!("Feature: big\n{}", " ".repeat(MAX_FILE_BYTES));
        assert!(parse("big.feature", &huge).is_err());
    }
}
