//! Alert rules and alerts as values: kinds and states, the validation of a rule at the
//! boundary (naming the bad field), the condition math, dedupe keys, webhook payloads and the
//! delivery backoff. No I/O.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use switchyard_proto::monitoring::v1 as pb;

use super::url_policy::UrlPolicy;

/// A rule's window when the caller names none.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const MIN_WINDOW: Duration = Duration::from_secs(60);
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
pub const MAX_WEBHOOKS: usize = 10;
pub const MAX_NAME_LEN: usize = 200;
/// The dedupe subject of a condition about the whole project (one alert per rule).
pub const PROJECT_SUBJECT: &str = "project";

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    FailureRate,
    DeadLetterCount,
    StuckTasks,
    AgentPoolEmpty,
    ApiCheckFailing,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::FailureRate,
        Kind::DeadLetterCount,
        Kind::StuckTasks,
        Kind::AgentPoolEmpty,
        Kind::ApiCheckFailing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::FailureRate => "failure_rate",
            Kind::DeadLetterCount => "dead_letter_count",
            Kind::StuckTasks => "stuck_tasks",
            Kind::AgentPoolEmpty => "agent_pool_empty",
            Kind::ApiCheckFailing => "api_check_failing",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    pub fn from_proto(value: i32) -> Option<Kind> {
        match pb::AlertKind::try_from(value).ok()? {
            pb::AlertKind::Unspecified => None,
            pb::AlertKind::FailureRate => Some(Kind::FailureRate),
            pb::AlertKind::DeadLetterCount => Some(Kind::DeadLetterCount),
            pb::AlertKind::StuckTasks => Some(Kind::StuckTasks),
            pb::AlertKind::AgentPoolEmpty => Some(Kind::AgentPoolEmpty),
            pb::AlertKind::ApiCheckFailing => Some(Kind::ApiCheckFailing),
        }
    }

    pub fn to_proto(self) -> pb::AlertKind {
        match self {
            Kind::FailureRate => pb::AlertKind::FailureRate,
            Kind::DeadLetterCount => pb::AlertKind::DeadLetterCount,
            Kind::StuckTasks => pb::AlertKind::StuckTasks,
            Kind::AgentPoolEmpty => pb::AlertKind::AgentPoolEmpty,
            Kind::ApiCheckFailing => pb::AlertKind::ApiCheckFailing,
        }
    }

    /// Rate kinds take a threshold in (0, 1]; the others a whole count of at least 1.
    pub fn is_rate(self) -> bool {
        self == Kind::FailureRate
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Firing,
    Acknowledged,
    Resolved,
}

impl State {
    pub const ALL: [State; 3] = [State::Firing, State::Acknowledged, State::Resolved];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Firing => "firing",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// `None` for UNSPECIFIED (no filter) and for values this build does not know.
    pub fn from_proto(value: i32) -> Option<State> {
        match pb::AlertState::try_from(value).ok()? {
            pb::AlertState::Unspecified => None,
            pb::AlertState::Firing => Some(State::Firing),
            pb::AlertState::Acknowledged => Some(State::Acknowledged),
            pb::AlertState::Resolved => Some(State::Resolved),
        }
    }

    pub fn to_proto(self) -> pb::AlertState {
        match self {
            State::Firing => pb::AlertState::Firing,
            State::Acknowledged => pb::AlertState::Acknowledged,
            State::Resolved => pb::AlertState::Resolved,
        }
    }
}

/// A rule as validated at the boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// `None`: create.
    pub id: Option<String>,
    pub project_id: String,
    pub name: String,
    pub kind: Kind,
    pub threshold: f64,
    pub window: Duration,
    /// Normalised URL text.
    pub webhooks: Vec<String>,
    pub enabled: bool,
}

/// Validates a rule from the API: every field's problem is named, the first one returned.
pub fn rule_spec(rule: &pb::AlertRule, policy: &UrlPolicy) -> Result<RuleSpec, String> {
    let id = match rule.id.trim() {
        "" => None,
        id if uuid::Uuid::parse_str(id).is_ok() => Some(id.to_owned()),
        _ => return Err("rule.id is not an id".into()),
    };
    if uuid::Uuid::parse_str(&rule.project_id).is_err() {
        return Err("rule.project_id is not an id".into());
    }
    let name = rule.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(format!(
            "rule.name must be 1 to {MAX_NAME_LEN} characters without control characters"
        ));
    }
    let kind = Kind::from_proto(rule.kind).ok_or("rule.kind must name an alert kind")?;
    let threshold = rule.threshold;
    if kind.is_rate() {
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err("rule.threshold of a failure rate must be in (0, 1]".into());
        }
    } else if !(threshold.is_finite() && threshold >= 1.0 && threshold.fract() == 0.0) {
        return Err(format!(
            "rule.threshold of {} must be a whole number of at least 1",
            kind.as_str()
        ));
    }
    let window = match &rule.window {
        None => DEFAULT_WINDOW,
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            return Err("rule.window must be positive".into());
        }
        Some(d) => Duration::new(d.seconds.unsigned_abs(), d.nanos.unsigned_abs()),
    };
    if window < MIN_WINDOW || window > MAX_WINDOW {
        return Err("rule.window must be between 1m and 7d".into());
    }
    if rule.webhooks.len() > MAX_WEBHOOKS {
        return Err(format!("rule.webhooks takes at most {MAX_WEBHOOKS} URLs"));
    }
    let mut webhooks = Vec::with_capacity(rule.webhooks.len());
    for (i, raw) in rule.webhooks.iter().enumerate() {
        let url = policy
            .check_url(raw)
            .map_err(|rejection| format!("rule.webhooks[{i}]: {rejection}"))?;
        if !webhooks.contains(&url.to_string()) {
            webhooks.push(url.to_string());
        }
    }
    Ok(RuleSpec {
        id,
        project_id: rule.project_id.clone(),
        name: name.to_owned(),
        kind,
        threshold,
        window,
        webhooks,
        enabled: rule.enabled,
    })
}

/// A condition that holds now, about one subject of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What the condition is about (`project`, an API check id, …); part of the dedupe key.
    pub subject: String,
    /// Plain words for people and webhooks.
    pub message: String,
}

/// The key that makes a condition fire once: the rule and the subject.
pub fn dedupe_key(rule_id: &str, subject: &str) -> String {
    format!("{rule_id}:{subject}")
}

/// Failure rate: `failed` of `ended` attempts in the window, at or above `threshold`, once at
/// least `min_sample` attempts ended (a single failure of a quiet project is not a rate).
pub fn failure_rate(failed: u64, ended: u64, threshold: f64, min_sample: u64) -> Option<Finding> {
    if ended == 0 || ended < min_sample.max(1) {
        return None;
    }
    let rate = failed as f64 / ended as f64;
    (rate >= threshold).then(|| Finding {
        subject: PROJECT_SUBJECT.to_owned(),
        message: format!(
            "failure rate {:.1}% ({failed} of {ended} ended attempts) is at or above {:.1}%",
            rate * 100.0,
            threshold * 100.0
        ),
    })
}

/// Dead letters: at least `threshold` attempts dead-lettered in the window and not replayed.
pub fn dead_letters(count: u64, threshold: f64) -> Option<Finding> {
    (count as f64 >= threshold).then(|| Finding {
        subject: PROJECT_SUBJECT.to_owned(),
        message: format!("{count} task(s) dead-lettered and not replayed (threshold {threshold})"),
    })
}

/// Agent pool: fewer than `threshold` live agents.
pub fn agent_pool(live: u64, threshold: f64) -> Option<Finding> {
    ((live as f64) < threshold).then(|| Finding {
        subject: PROJECT_SUBJECT.to_owned(),
        message: format!("{live} live agent(s), fewer than {threshold}"),
    })
}

/// API checks: one finding per failing check (each fires and resolves on its own), once at
/// least `threshold` of the project's checks fail. `failing` is `(check id, name, error)`.
pub fn api_checks(failing: &[(String, String, String)], threshold: f64) -> Vec<Finding> {
    if (failing.len() as f64) < threshold {
        return Vec::new();
    }
    failing
        .iter()
        .map(|(id, name, error)| Finding {
            subject: format!("check:{id}"),
            message: format!("API check {name} is failing: {error}"),
        })
        .collect()
}

/// What a webhook receives, as JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Payload {
    /// `firing` or `resolved`: what happened.
    pub event: String,
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub project_id: String,
    pub kind: String,
    /// The alert's state when the notification was queued.
    pub state: String,
    pub message: String,
    pub fired_at: String,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
}

/// When attempt `attempts + 1` of a delivery is due after `attempts` failures: exponential
/// from `initial`, capped at `max`.
pub fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
    initial.saturating_mul(factor).min(max)
}

/// RFC 3339 text as the API shows times.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn failing_api_checks_fire_one_finding_each_from_the_threshold() {
        let failing = vec![
            (
                "c1".to_owned(),
                "billing".to_owned(),
                "status 503".to_owned(),
            ),
            ("c2".to_owned(), "search".to_owned(), "timed out".to_owned()),
        ];
        let findings = api_checks(&failing, 1.0);
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].subject, "check:c1");
        assert_eq!(
            findings[0].message,
            "API check billing is failing: status 503"
        );
        assert_ne!(
            findings[0].subject, findings[1].subject,
            "one alert per check"
        );
        assert!(api_checks(&failing, 3.0).is_empty(), "below the threshold");
        assert!(api_checks(&[], 1.0).is_empty());
    }

    use super::*;

    const PROJECT: &str = "0192f1a4-0000-7000-8000-000000000001";

    fn rule(kind: pb::AlertKind, threshold: f64) -> pb::AlertRule {
        pb::AlertRule {
            project_id: PROJECT.into(),
            name: "deploys failing".into(),
            kind: kind as i32,
            threshold,
            webhooks: vec!["https://hooks.example.com/a".into()],
            enabled: true,
            ..Default::default()
        }
    }

    #[test]
    fn alert_rules_validate_thresholds_by_kind() {
        let policy = UrlPolicy::default();
        let ok = rule_spec(&rule(pb::AlertKind::FailureRate, 0.25), &policy).expect("valid");
        assert_eq!(ok.window, DEFAULT_WINDOW);
        assert_eq!(ok.kind, Kind::FailureRate);
        for bad in [0.0, -0.1, 1.5, f64::NAN] {
            let error =
                rule_spec(&rule(pb::AlertKind::FailureRate, bad), &policy).expect_err("invalid");
            assert!(error.starts_with("rule.threshold"), "{bad}: {error}");
        }
        assert!(rule_spec(&rule(pb::AlertKind::DeadLetterCount, 3.0), &policy).is_ok());
        for bad in [0.0, 0.5, 2.5, f64::INFINITY] {
            let error = rule_spec(&rule(pb::AlertKind::DeadLetterCount, bad), &policy)
                .expect_err("invalid");
            assert!(error.starts_with("rule.threshold"), "{bad}: {error}");
        }
        let unspecified = rule_spec(&rule(pb::AlertKind::Unspecified, 1.0), &policy);
        assert_eq!(
            unspecified,
            Err("rule.kind must name an alert kind".to_owned())
        );
    }

    #[test]
    fn alert_rules_validate_window_name_and_webhooks() {
        let policy = UrlPolicy::default();
        let mut short = rule(pb::AlertKind::DeadLetterCount, 1.0);
        short.window = Some(prost_types::Duration {
            seconds: 59,
            nanos: 0,
        });
        assert_eq!(
            rule_spec(&short, &policy),
            Err("rule.window must be between 1m and 7d".to_owned())
        );
        short.window = Some(prost_types::Duration {
            seconds: 8 * 24 * 3600,
            nanos: 0,
        });
        assert!(rule_spec(&short, &policy).is_err());
        let mut nameless = rule(pb::AlertKind::DeadLetterCount, 1.0);
        nameless.name = "  ".into();
        assert!(rule_spec(&nameless, &policy).is_err_and(|e| e.starts_with("rule.name")));
        let mut metadata = rule(pb::AlertKind::DeadLetterCount, 1.0);
        metadata
            .webhooks
            .push("http://169.254.169.254/latest".into());
        assert_eq!(
            rule_spec(&metadata, &policy),
            Err("rule.webhooks[1]: 169.254.169.254 is a cloud metadata endpoint".to_owned())
        );
        let mut doubled = rule(pb::AlertKind::DeadLetterCount, 1.0);
        doubled.webhooks.push("https://HOOKS.example.com/a".into());
        let spec = rule_spec(&doubled, &policy).expect("valid");
        assert_eq!(spec.webhooks, ["https://hooks.example.com/a"]);
    }

    #[test]
    fn failure_rate_needs_a_sample_and_meets_its_threshold_inclusively() {
        assert_eq!(failure_rate(0, 0, 0.5, 1), None);
        assert_eq!(failure_rate(3, 4, 0.5, 5), None, "below the minimum sample");
        assert!(
            failure_rate(2, 4, 0.5, 4).is_some(),
            "exactly at the threshold"
        );
        assert_eq!(failure_rate(1, 4, 0.5, 4), None);
        let finding = failure_rate(1, 1, 0.5, 1).expect("holds");
        assert_eq!(finding.subject, PROJECT_SUBJECT);
        assert!(finding.message.contains("1 of 1"), "{}", finding.message);
    }

    #[test]
    fn counts_compare_against_whole_thresholds() {
        assert!(dead_letters(1, 1.0).is_some());
        assert!(dead_letters(0, 1.0).is_none());
        assert!(dead_letters(2, 3.0).is_none());
        assert!(agent_pool(0, 1.0).is_some());
        assert!(agent_pool(1, 1.0).is_none());
        assert!(agent_pool(1, 2.0).is_some());
    }

    #[test]
    fn dedupe_keys_separate_rules_and_subjects() {
        assert_eq!(dedupe_key("r1", PROJECT_SUBJECT), "r1:project");
        assert_ne!(dedupe_key("r1", "check:a"), dedupe_key("r1", "check:b"));
        assert_ne!(dedupe_key("r1", "x"), dedupe_key("r2", "x"));
    }

    #[test]
    fn delivery_backoff_doubles_up_to_its_cap() {
        let (initial, max) = (Duration::from_secs(5), Duration::from_secs(60));
        assert_eq!(backoff(1, initial, max), Duration::from_secs(5));
        assert_eq!(backoff(2, initial, max), Duration::from_secs(10));
        assert_eq!(backoff(4, initial, max), Duration::from_secs(40));
        assert_eq!(backoff(5, initial, max), max);
        assert_eq!(backoff(200, initial, max), max);
    }

    #[test]
    fn kinds_and_states_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
            assert_eq!(Kind::from_proto(kind.to_proto() as i32), Some(kind));
        }
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
            assert_eq!(State::from_proto(state.to_proto() as i32), Some(state));
        }
        assert_eq!(State::from_proto(0), None);
    }
}
