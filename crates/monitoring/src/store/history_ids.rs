//! Ids as the execution history stores them. Task, run and project ids arrive as text (from
//! events, requests and the active view) and are stored as UUIDs (see the migration
//! `m20261201_000002_uuid_ids`): every filter on them converts here, so that none binds text
//! against a `uuid` column (an error on PostgreSQL, and on SQLite a comparison that silently
//! never matches).

use sea_orm::prelude::Uuid;

use crate::domain::visibility::Visible;
use crate::error::{Error, Result};

/// The stored form of an id; `None` for text that is not a UUID, which no row can match.
pub fn stored(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}

/// The stored form of an id that must be one (an execution's, checked when it was read from
/// its event).
pub fn required(field: &str, text: &str) -> Result<Uuid> {
    stored(text).ok_or_else(|| Error::InvalidArgument(format!("{field} is not an id")))
}

/// The projects whose history a reader may see, as stored ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projects {
    All,
    /// These only; empty when the reader may see none (ids that are not UUIDs name no
    /// project with history).
    Only(Vec<Uuid>),
}

impl Projects {
    pub fn of(who: &Visible) -> Projects {
        match who {
            Visible::All => Projects::All,
            Visible::Projects(ids) => {
                Projects::Only(ids.iter().filter_map(|id| stored(id)).collect())
            }
        }
    }

    /// Whether no row can be visible.
    pub fn none(&self) -> bool {
        matches!(self, Projects::Only(ids) if ids.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_no_uuids_match_nothing() {
        let id = "0190a0b0-0000-7000-8000-000000000001";
        assert_eq!(stored(id).map(|u| u.to_string()).as_deref(), Some(id));
        assert_eq!(stored("p1"), None);
        assert!(required("task_id", "t").is_err());
        let only_bad = Projects::of(&Visible::Projects(vec!["p1".into()]));
        assert!(only_bad.none());
        let mixed = Projects::of(&Visible::Projects(vec!["p1".into(), id.into()]));
        assert_eq!(mixed, Projects::Only(stored(id).into_iter().collect()));
        assert!(!Projects::of(&Visible::All).none());
    }
}
