//! Cron expressions (5 fields, or 6 with seconds first), evaluated in UTC, through `croner`.

use chrono::{DateTime, Utc};
use croner::Cron;

/// Parses an expression, or says why not.
pub fn parse(expression: &str) -> Result<Cron, String> {
    let fields = expression.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "`{expression}` has {fields} fields; a cron expression has 5 (minute hour day month weekday) or 6 (seconds first)"
        ));
    }
    expression
        .parse::<Cron>()
        .map_err(|e| format!("`{expression}` is not a cron expression: {e}"))
}

/// The first time strictly after `after` that the expression names.
pub fn next_after(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_and_six_field_expressions_give_their_next_time() {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 23, 10, 7, 30)
            .single()
            .expect("time");
        let hourly = parse("0 * * * *").expect("valid");
        assert_eq!(
            next_after(&hourly, at),
            Utc.with_ymd_and_hms(2026, 11, 23, 11, 0, 0).single()
        );
        let every_second = parse("* * * * * *").expect("valid");
        assert_eq!(
            next_after(&every_second, at),
            Utc.with_ymd_and_hms(2026, 11, 23, 10, 7, 31).single()
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        for bad in ["", "* * *", "61 * * * *", "* * * * * * * *", "every day"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
