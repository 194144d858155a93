//! Names people give to organizations, projects, workflows and users: short, printable, safe
//! in URLs and logs.

/// Why a name was refused, as a sentence.
pub fn check(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} `{name}` must be 1-100 characters of letters, digits, `-`, `_` and `.`, starting with a letter or digit"
        ))
    }
}

/// Free-text labels (token names): non-empty, at most 200 characters, no control characters.
pub fn check_label(kind: &str, label: &str) -> Result<(), String> {
    if label.trim().is_empty() || label.chars().count() > 200 || label.chars().any(char::is_control)
    {
        Err(format!("{kind} must be 1-200 printable characters"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_url_safe() {
        assert!(check("project", "web-app_2.0").is_ok());
        for bad in ["", "-lead", "has space", "slash/y", "ünï", &"x".repeat(101)] {
            assert!(check("project", bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check_label("name", "CI token for web").is_ok());
        assert!(check_label("name", "bad\nname").is_err());
        assert!(check_label("name", "  ").is_err());
    }
}
